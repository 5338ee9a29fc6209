//! `clientToken` records: the durable half of the API's idempotency.

use async_trait::async_trait;
use hearth_api::error::BoxError;
use hearth_api::idempotency::TOKEN_LIFETIME;
use hearth_api::{StoredCall, TokenKey, TokenStore};
use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};

impl Store {
    /// The call recorded under `key`, unless it is older than `oldest_ms`.
    ///
    /// # Errors
    ///
    /// When the database fails or the record does not read back.
    pub fn client_token(
        &self,
        key: &TokenKey,
        oldest_ms: i64,
    ) -> Result<Option<StoredCall>, StoreError> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT fingerprint, response FROM client_tokens \
                 WHERE operation = ?1 AND access_key_id = ?2 AND client_token = ?3 \
                 AND created_at_ms >= ?4",
                params![
                    key.operation,
                    key.access_key_id,
                    key.client_token,
                    oldest_ms
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        row.map(|(fingerprint, response)| {
            Ok(StoredCall {
                fingerprint,
                response: super::parse_json("client_tokens.response", &response)?,
            })
        })
        .transpose()
    }

    /// Records a call, replacing an expired record of the same token, and
    /// forgets records older than `oldest_ms`.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn save_client_token(
        &self,
        key: &TokenKey,
        call: &StoredCall,
        now_ms: i64,
        oldest_ms: i64,
    ) -> Result<(), StoreError> {
        let response = super::to_json("client_tokens.response", &call.response)?;
        let conn = self.conn();
        conn.execute(
            "DELETE FROM client_tokens WHERE created_at_ms < ?1",
            [oldest_ms],
        )?;
        conn.execute(
            "INSERT OR REPLACE INTO client_tokens \
             (operation, access_key_id, client_token, fingerprint, response, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                key.operation,
                key.access_key_id,
                key.client_token,
                call.fingerprint,
                response,
                now_ms
            ],
        )?;
        Ok(())
    }
}

/// The oldest creation time, in milliseconds, a live record may have.
fn oldest_live_ms(now_ms: i64) -> i64 {
    now_ms - i64::try_from(TOKEN_LIFETIME.as_millis()).unwrap_or(i64::MAX / 2)
}

#[async_trait]
impl TokenStore for Store {
    async fn load(&self, key: &TokenKey) -> Result<Option<StoredCall>, BoxError> {
        let now = hearth_api::model::Timestamp::now().unix_millis();
        Ok(self.client_token(key, oldest_live_ms(now))?)
    }

    async fn save(&self, key: &TokenKey, call: &StoredCall) -> Result<(), BoxError> {
        let now = hearth_api::model::Timestamp::now().unix_millis();
        Ok(self.save_client_token(key, call, now, oldest_live_ms(now))?)
    }
}
