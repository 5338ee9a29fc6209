//! `clientToken` idempotency for `CreateMicrovmImage`, `UpdateMicrovmImage`
//! and `RunMicrovm`.
//!
//! A retried request with the same token and the same parameters gets the
//! first call's response without running again; concurrent retries wait for
//! the first one. The same token with other parameters is a
//! `ConflictException`. Only successes are remembered, so a request that
//! failed may be retried with its token. Tokens are scoped to the access key
//! that signed the request and forgotten after [`TOKEN_LIFETIME`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::error::ApiError;
use crate::operation::{ApiRequest, ApiResponse, Operation};

/// How long a token is remembered.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// How many tokens are remembered at most; the oldest go first.
const CAPACITY: usize = 10_000;

/// Which call a token belongs to.
type Key = (Operation, String, String);

/// A remembered call.
struct Entry {
    fingerprint: String,
    created: Instant,
    response: OnceCell<ApiResponse>,
}

/// The remembered calls of one server.
///
/// Limitation: tokens live in memory, so a restarted server runs a retried
/// request again; a control plane that must survive restarts keeps its own
/// record of `clientToken`s, which every input still carries.
#[derive(Default)]
pub struct Idempotency {
    entries: Mutex<HashMap<Key, Arc<Entry>>>,
}

impl Idempotency {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `call` for `request` unless a call with the same token already
    /// succeeded, in which case its response is returned.
    ///
    /// # Errors
    ///
    /// `call`'s error, or a `ConflictException` when the token was used with
    /// other parameters.
    pub async fn run<F, Fut>(
        &self,
        access_key_id: &str,
        request: &ApiRequest,
        call: F,
    ) -> Result<ApiResponse, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ApiResponse, ApiError>>,
    {
        let Some(token) = request.client_token() else {
            return call().await;
        };
        let fingerprint = fingerprint(request)?;
        let key = (
            request.operation(),
            access_key_id.to_owned(),
            token.to_owned(),
        );

        let entry = self.entry(key, &fingerprint);
        if entry.fingerprint != fingerprint {
            return Err(ApiError::Conflict {
                message: "clientToken was already used with different parameters".to_owned(),
                resource_type: None,
                resource_id: None,
            });
        }
        entry.response.get_or_try_init(call).await.cloned()
    }

    /// The entry for `key`, made if there is none.
    fn entry(&self, key: Key, fingerprint: &str) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        entries.retain(|_, e| now.duration_since(e.created) < TOKEN_LIFETIME);
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Entry {
                    fingerprint: fingerprint.to_owned(),
                    created: now,
                    response: OnceCell::new(),
                })
            })
            .clone()
    }
}

/// A digest of the request's parameters other than its token.
fn fingerprint(request: &ApiRequest) -> Result<String, ApiError> {
    let mut value = request.to_value().map_err(ApiError::internal)?;
    if let Some(object) = value.as_object_mut() {
        object.remove("clientToken");
    }
    let bytes = serde_json::to_vec(&value).map_err(ApiError::internal)?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ListTagsResponse, RunMicrovmRequest};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn run_request(token: &str, duration: i32) -> ApiRequest {
        ApiRequest::RunMicrovm(RunMicrovmRequest {
            image_identifier: "img".into(),
            image_version: None,
            ingress_network_connectors: None,
            egress_network_connectors: None,
            execution_role_arn: None,
            idle_policy: None,
            logging: None,
            run_hook_payload: None,
            maximum_duration_in_seconds: Some(duration),
            client_token: Some(token.into()),
        })
    }

    fn response() -> ApiResponse {
        ApiResponse::ListTags(ListTagsResponse::default())
    }

    #[tokio::test]
    async fn a_retry_with_the_same_token_runs_once() {
        let record = Idempotency::new();
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            record
                .run("AKIA", &run_request("t1", 60), || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(response())
                })
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_same_token_with_other_parameters_conflicts() {
        let record = Idempotency::new();
        record
            .run("AKIA", &run_request("t1", 60), || async { Ok(response()) })
            .await
            .unwrap();
        let error = record
            .run("AKIA", &run_request("t1", 61), || async { Ok(response()) })
            .await
            .unwrap_err();
        assert_eq!(error.code(), "ConflictException");
    }

    #[tokio::test]
    async fn failures_are_not_remembered() {
        let record = Idempotency::new();
        let failed = record
            .run("AKIA", &run_request("t1", 60), || async {
                Err(ApiError::validation("no"))
            })
            .await;
        assert!(failed.is_err());
        let retried = record
            .run("AKIA", &run_request("t1", 60), || async { Ok(response()) })
            .await;
        assert!(retried.is_ok());
    }
}
