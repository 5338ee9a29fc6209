//! `clientToken` idempotency for `CreateMicrovmImage`, `UpdateMicrovmImage`
//! and `RunMicrovm`.
//!
//! A retried request with the same token and the same parameters gets the
//! first call's response without running again; concurrent retries wait for
//! the first one. The same token with other parameters is a
//! `ConflictException`. Only successes are remembered, so a request that
//! failed may be retried with its token. Tokens are scoped to the access key
//! that signed the request and forgotten after [`TOKEN_LIFETIME`].
//!
//! The record in memory coordinates concurrent retries; a [`TokenStore`],
//! when the server has one, keeps each success durably so that a retry
//! after a restart still gets the first response.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::error::{ApiError, BoxError};
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

/// Which call a durable record belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// The operation's name, such as `RunMicrovm`.
    pub operation: &'static str,
    /// The access key that signed the call.
    pub access_key_id: String,
    /// The `clientToken`.
    pub client_token: String,
}

/// A call that succeeded, as a [`TokenStore`] keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCall {
    /// A digest of the call's parameters other than its token.
    pub fingerprint: String,
    /// The response, as the wire sent it.
    pub response: serde_json::Value,
}

/// A durable record of `clientToken` calls, kept beside the control plane's
/// state so that idempotency survives a restart.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The call recorded under `key`, if there is one younger than
    /// [`TOKEN_LIFETIME`].
    async fn load(&self, key: &TokenKey) -> Result<Option<StoredCall>, BoxError>;

    /// Records a call that succeeded.
    async fn save(&self, key: &TokenKey, call: &StoredCall) -> Result<(), BoxError>;
}

/// The remembered calls of one server.
#[derive(Default)]
pub struct Idempotency {
    entries: Mutex<HashMap<Key, Arc<Entry>>>,
    store: Option<Arc<dyn TokenStore>>,
}

impl Idempotency {
    /// An empty record held in memory only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A record that also keeps every success in `store`.
    pub fn with_store(store: Arc<dyn TokenStore>) -> Self {
        Self {
            entries: Mutex::default(),
            store: Some(store),
        }
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

        let entry = self.entry(key.clone(), &fingerprint);
        if entry.fingerprint != fingerprint {
            return Err(reused_token());
        }
        let Some(store) = &self.store else {
            return entry.response.get_or_try_init(call).await.cloned();
        };

        let durable = TokenKey {
            operation: key.0.spec().name,
            access_key_id: key.1,
            client_token: key.2,
        };
        entry
            .response
            .get_or_try_init(|| run_durably(store.as_ref(), durable, fingerprint, call))
            .await
            .cloned()
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

/// Runs `call` unless `store` has its response already, and records a
/// success there.
async fn run_durably<F, Fut>(
    store: &dyn TokenStore,
    key: TokenKey,
    fingerprint: String,
    call: F,
) -> Result<ApiResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<ApiResponse, ApiError>>,
{
    let operation = Operation::ALL
        .iter()
        .copied()
        .find(|op| op.spec().name == key.operation)
        .ok_or_else(|| ApiError::internal("token key names no operation"))?;

    if let Some(stored) = store.load(&key).await.map_err(ApiError::internal)? {
        if stored.fingerprint != fingerprint {
            return Err(reused_token());
        }
        return ApiResponse::from_value(operation, stored.response).map_err(ApiError::internal);
    }

    let response = call().await?;
    let call = StoredCall {
        fingerprint,
        response: response.to_value().map_err(ApiError::internal)?,
    };
    // The call took effect: failing it now would invite a retry that acts
    // twice, so a record that cannot be written is only logged.
    if let Err(error) = store.save(&key, &call).await {
        tracing::error!(operation = key.operation, error = %error, "cannot record clientToken");
    }
    Ok(response)
}

/// The refusal of a token used with other parameters.
fn reused_token() -> ApiError {
    ApiError::Conflict {
        message: "clientToken was already used with different parameters".to_owned(),
        resource_type: None,
        resource_id: None,
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

    /// A store that outlives the in-memory record, as a database would.
    #[derive(Default)]
    struct MemoryStore(Mutex<HashMap<TokenKey, StoredCall>>);

    #[async_trait]
    impl TokenStore for MemoryStore {
        async fn load(&self, key: &TokenKey) -> Result<Option<StoredCall>, BoxError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }

        async fn save(&self, key: &TokenKey, call: &StoredCall) -> Result<(), BoxError> {
            self.0.lock().unwrap().insert(key.clone(), call.clone());
            Ok(())
        }
    }

    /// A response of the operation the durable test calls.
    fn run_response() -> ApiResponse {
        ApiResponse::RunMicrovm(crate::model::Microvm {
            microvm_id: "microvm-1".into(),
            state: crate::model::MicrovmState::Pending,
            endpoint: "http://microvm-1.localhost:7080".into(),
            image_arn: "arn".into(),
            image_version: "1".into(),
            execution_role_arn: None,
            idle_policy: None,
            maximum_duration_in_seconds: 60,
            started_at: crate::model::Timestamp::from_unix_millis(0),
            terminated_at: None,
            state_reason: None,
            ingress_network_connectors: None,
            egress_network_connectors: None,
        })
    }

    #[tokio::test]
    async fn a_durable_record_survives_a_new_server() {
        let store = Arc::new(MemoryStore::default());
        let calls = AtomicUsize::new(0);
        for _ in 0..2 {
            // A fresh record each time: the server restarted.
            let record = Idempotency::with_store(store.clone());
            record
                .run("AKIA", &run_request("t1", 60), || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(run_response())
                })
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let record = Idempotency::with_store(store);
        let error = record
            .run("AKIA", &run_request("t1", 61), || async {
                Ok(run_response())
            })
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
