//! The control plane's state in SQLite: images, versions, builds, microVMs,
//! tags and `clientToken` records, in one database file.
//!
//! Every state change is written here before the control plane acts on it,
//! and the result after, so that a restarted server finds each resource
//! where it was. The connection is shared behind a mutex and each call is
//! short; SQLite runs in WAL mode with full syncs, so a committed change
//! survives a crash of the process or the host.

mod images;
mod microvms;
mod schema;
mod tags;
mod tokens;
mod traffic;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use hearth_api::model::Timestamp;
use rusqlite::Connection;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use images::{BuildRow, BuildSizes, ImageRow, NewBuild, VersionRow};
pub use microvms::MicrovmRow;
pub use traffic::Traffic;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or set up.
    #[error("cannot open database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement failed.
    #[error("database statement failed")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value does not read back.
    #[error("stored {column} does not read back: {detail}")]
    Corrupt {
        /// The column.
        column: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A value could not be encoded for storage.
    #[error("cannot encode {column}")]
    Encode {
        /// The column.
        column: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The database.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (or creates) the database at `path` and brings its schema up to
    /// date.
    ///
    /// # Errors
    ///
    /// [`StoreError::Open`] when the file cannot be opened or migrated.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        migrate(&conn).map_err(open_err)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// The connection, for one short call.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Applies the migrations the database has not seen.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let done = usize::try_from(current).unwrap_or(0);
    for (step, sql) in (0i64..).zip(schema::MIGRATIONS).skip(done) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", step + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// A wire enum as stored.
fn enum_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => String::new(),
    }
}

/// A wire enum read back.
fn parse_enum<T: DeserializeOwned>(column: &'static str, text: String) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.clone())).map_err(|_| {
        StoreError::Corrupt {
            column,
            detail: format!("unknown value {text:?}"),
        }
    })
}

/// A JSON column read back.
fn parse_json<T: DeserializeOwned>(column: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt {
        column,
        detail: error.to_string(),
    })
}

/// A value as a JSON column.
fn to_json<T: Serialize>(column: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode { column, source })
}

/// A time as stored.
fn millis(ts: Timestamp) -> i64 {
    ts.unix_millis()
}

/// A stored time read back.
fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

#[cfg(test)]
mod tests;
