//! Tags, keyed by the resource's ARN.

use std::collections::BTreeMap;

use hearth_api::model::Tags;
use rusqlite::params;

use super::{Store, StoreError};

impl Store {
    /// A resource's tags.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn tags(&self, arn: &str) -> Result<Tags, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT key, value FROM tags WHERE resource_arn = ?1")?;
        let rows = stmt.query_map([arn], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<BTreeMap<_, _>, _>>()?)
    }

    /// Adds or overwrites tags.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn put_tags(&self, arn: &str, tags: &Tags) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (key, value) in tags {
            tx.execute(
                "INSERT INTO tags (resource_arn, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (resource_arn, key) DO UPDATE SET value = excluded.value",
                params![arn, key, value],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes tags by key (`None`: all of them).
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn remove_tags(&self, arn: &str, keys: Option<&[String]>) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        match keys {
            Some(keys) => {
                for key in keys {
                    tx.execute(
                        "DELETE FROM tags WHERE resource_arn = ?1 AND key = ?2",
                        params![arn, key],
                    )?;
                }
            }
            None => {
                tx.execute("DELETE FROM tags WHERE resource_arn = ?1", [arn])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
