//! Bytes carried through each microVM's endpoint: into the guest (`in`) and
//! out of it (`out`), added to as the ingress proxy reports them.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};

/// Bytes through one microVM's endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes sent into the guest.
    pub bytes_in: u64,
    /// Bytes sent out of the guest.
    pub bytes_out: u64,
}

impl Store {
    /// Adds `delta` to a microVM's counters.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn add_traffic(&self, microvm_id: &str, delta: Traffic) -> Result<(), StoreError> {
        let add_in = i64::try_from(delta.bytes_in).unwrap_or(i64::MAX);
        let add_out = i64::try_from(delta.bytes_out).unwrap_or(i64::MAX);
        self.conn().execute(
            "INSERT INTO microvm_traffic (microvm_id, bytes_in, bytes_out) VALUES (?1, ?2, ?3) \
             ON CONFLICT (microvm_id) DO UPDATE SET bytes_in = bytes_in + ?2, \
             bytes_out = bytes_out + ?3",
            params![microvm_id, add_in, add_out],
        )?;
        Ok(())
    }

    /// A microVM's counters (zero when nothing went through).
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn traffic(&self, microvm_id: &str) -> Result<Traffic, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT bytes_in, bytes_out FROM microvm_traffic WHERE microvm_id = ?1",
                params![microvm_id],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()?;
        Ok(row.map_or_else(Traffic::default, |(i, o)| Traffic {
            bytes_in: u64::try_from(i).unwrap_or(0),
            bytes_out: u64::try_from(o).unwrap_or(0),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn traffic_adds_up_per_microvm() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert_eq!(store.traffic("microvm-a").unwrap(), Traffic::default());
        let delta = Traffic {
            bytes_in: 10,
            bytes_out: 3,
        };
        store.add_traffic("microvm-a", delta).unwrap();
        store.add_traffic("microvm-a", delta).unwrap();
        store.add_traffic("microvm-b", delta).unwrap();
        let got = store.traffic("microvm-a").unwrap();
        assert_eq!((got.bytes_in, got.bytes_out), (20, 6));
    }
}
