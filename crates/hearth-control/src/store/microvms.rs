//! MicroVMs and their state machine's moves.
//!
//! A move is a conditional update: it happens only from the states the
//! caller names, so two tasks racing on one microVM cannot undo each
//! other's work (a terminate that lands while a run is still restoring wins,
//! and the run sees that it lost).

use std::path::PathBuf;

use hearth_api::model::{MicrovmState, RunMicrovmRequest, Timestamp};
use rusqlite::{params, OptionalExtension, Row};

use super::{enum_text, millis, parse_enum, parse_json, timestamp, to_json, Store, StoreError};
use crate::ids::MicrovmId;

/// A microVM.
#[derive(Clone, Debug, PartialEq)]
pub struct MicrovmRow {
    /// Its id.
    pub microvm_id: MicrovmId,
    /// The image's key.
    pub image_id: i64,
    /// The image's ARN.
    pub image_arn: String,
    /// The version it runs.
    pub image_version: u32,
    /// Its state.
    pub state: MicrovmState,
    /// Why it is in its state.
    pub state_reason: Option<String>,
    /// The request that ran it, without its `clientToken`.
    pub request: RunMicrovmRequest,
    /// Its endpoint URL.
    pub endpoint: String,
    /// The memory its guest holds, in MiB.
    pub guest_memory_mib: u32,
    /// When it was run.
    pub started_at: Timestamp,
    /// When it terminated.
    pub terminated_at: Option<Timestamp>,
    /// When its state last changed.
    pub updated_at: Option<Timestamp>,
    /// Its snapshot while it is suspended.
    pub suspended_snapshot: Option<PathBuf>,
}

const COLUMNS: &str = "microvm_id, image_id, image_arn, image_version, state, state_reason, \
     request, endpoint, guest_memory_mib, started_at_ms, terminated_at_ms, suspended_snapshot, \
     updated_at_ms";

impl Store {
    /// Records a new microVM.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn insert_microvm(&self, microvm: &MicrovmRow) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO microvms (microvm_id, image_id, image_arn, image_version, state, \
             state_reason, request, endpoint, guest_memory_mib, started_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                microvm.microvm_id.as_str(),
                microvm.image_id,
                microvm.image_arn,
                microvm.image_version,
                enum_text(&microvm.state),
                microvm.state_reason,
                to_json("request", &microvm.request)?,
                microvm.endpoint,
                microvm.guest_memory_mib,
                millis(microvm.started_at)
            ],
        )?;
        Ok(())
    }

    /// One microVM.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn microvm(&self, id: &MicrovmId) -> Result<Option<MicrovmRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM microvms WHERE microvm_id = ?1");
        let row = self
            .conn()
            .query_row(&sql, [id.as_str()], microvm_row)
            .optional()?;
        row.transpose()
    }

    /// Every microVM, by id.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn microvms(&self) -> Result<Vec<MicrovmRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM microvms ORDER BY microvm_id");
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], microvm_row)?;
        rows.map(|row| row?).collect()
    }

    /// Moves a microVM to `to` if it is in one of `from`; whether it moved.
    /// A move to TERMINATED records the time.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn move_microvm(
        &self,
        id: &MicrovmId,
        from: &[MicrovmState],
        to: MicrovmState,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let from: Vec<String> = from.iter().map(enum_text).collect();
        let placeholders = (0..from.len())
            .map(|i| format!("?{}", i + 6))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE microvms SET state = ?2, \
             state_reason = CASE WHEN ?2 = 'RUNNING' THEN ?3 ELSE COALESCE(?3, state_reason) END, \
             updated_at_ms = ?4, \
             terminated_at_ms = CASE WHEN ?2 = 'TERMINATED' THEN ?4 ELSE terminated_at_ms END, \
             suspended_snapshot = CASE WHEN ?5 THEN NULL ELSE suspended_snapshot END \
             WHERE microvm_id = ?1 AND state IN ({placeholders})"
        );
        let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![
            Box::new(id.as_str().to_owned()),
            Box::new(enum_text(&to)),
            Box::new(reason.map(str::to_owned)),
            Box::new(millis(now)),
            Box::new(to == MicrovmState::Terminated),
        ];
        values.extend(
            from.into_iter()
                .map(|s| Box::new(s) as Box<dyn rusqlite::ToSql>),
        );
        let changed = self
            .conn()
            .execute(&sql, rusqlite::params_from_iter(values.iter()))?;
        Ok(changed == 1)
    }

    /// Records (or clears) the snapshot of a suspended microVM.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn set_suspended_snapshot(
        &self,
        id: &MicrovmId,
        snapshot: Option<&std::path::Path>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE microvms SET suspended_snapshot = ?2 WHERE microvm_id = ?1",
            params![
                id.as_str(),
                snapshot.map(|p| p.to_string_lossy().into_owned())
            ],
        )?;
        Ok(())
    }

    /// The guest memory, in MiB, that microVMs not yet terminated hold.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn live_guest_memory_mib(&self) -> Result<u64, StoreError> {
        let total: Option<i64> = self.conn().query_row(
            "SELECT SUM(guest_memory_mib) FROM microvms \
             WHERE state NOT IN ('TERMINATED', 'SUSPENDED')",
            [],
            |row| row.get(0),
        )?;
        Ok(total.unwrap_or(0).max(0) as u64)
    }

    /// How many microVMs of an image (of one version, if given) are not
    /// terminated.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn live_microvms_of(&self, image_id: i64, version: Option<u32>) -> Result<u64, StoreError> {
        let count: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM microvms WHERE image_id = ?1 \
             AND (?2 IS NULL OR image_version = ?2) AND state <> 'TERMINATED'",
            params![image_id, version],
            |row| row.get(0),
        )?;
        Ok(count.max(0) as u64)
    }
}

fn microvm_row(row: &Row<'_>) -> rusqlite::Result<Result<MicrovmRow, StoreError>> {
    let id: String = row.get(0)?;
    let state: String = row.get(4)?;
    let request: String = row.get(6)?;
    let terminated: Option<i64> = row.get(10)?;
    let snapshot: Option<String> = row.get(11)?;
    let updated: Option<i64> = row.get(12)?;
    let (image_id, image_arn, image_version) = (row.get(1)?, row.get(2)?, row.get(3)?);
    let (reason, endpoint, memory) = (row.get(5)?, row.get(7)?, row.get(8)?);
    let started: i64 = row.get(9)?;

    Ok((|| {
        let microvm_id = MicrovmId::parse(&id).ok_or_else(|| StoreError::Corrupt {
            column: "microvms.microvm_id",
            detail: format!("not a microvm id: {id}"),
        })?;
        Ok(MicrovmRow {
            microvm_id,
            image_id,
            image_arn,
            image_version,
            state: parse_enum("microvms.state", state)?,
            state_reason: reason,
            request: parse_json("microvms.request", &request)?,
            endpoint,
            guest_memory_mib: memory,
            started_at: timestamp(started),
            terminated_at: terminated.map(timestamp),
            updated_at: updated.map(timestamp),
            suspended_snapshot: snapshot.map(PathBuf::from),
        })
    })())
}
