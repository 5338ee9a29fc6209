//! The embedded artifact store: a directory, `<data>/artifacts`, holding
//! `<bucket>/<key>`, also served over the S3 API (the `s3s` crate over
//! `s3s-fs`) with the server's keys, so that `aws s3 cp app.zip
//! s3://bucket/app.zip --endpoint-url …` uploads exactly as users upload to
//! AWS. `CreateMicrovmImage` reads `s3://bucket/key` from the same
//! directory.

use std::future::Future;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

/// How long open connections may take to finish after a stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors finding an artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The URI is not `s3://bucket/key`.
    #[error("code artifact {uri:?} is not an s3://bucket/key URI")]
    Unsupported {
        /// The URI.
        uri: String,
    },
    /// Nothing is stored under the URI.
    #[error("code artifact {uri} does not exist in the artifact store")]
    NotFound {
        /// The URI.
        uri: String,
    },
}

/// Errors serving the S3 API.
#[derive(Debug, thiserror::Error)]
pub enum S3ServerError {
    /// The store's directory could not be made or opened.
    #[error("cannot open the artifact store at {path}: {detail}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// The artifact store's directory.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    /// The store at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The local file or directory of `s3://bucket/key`.
    ///
    /// # Errors
    ///
    /// [`ArtifactError`] when the URI has another form, leaves the store, or
    /// names nothing.
    pub fn resolve(&self, uri: &str) -> Result<PathBuf, ArtifactError> {
        let unsupported = || ArtifactError::Unsupported {
            uri: uri.to_owned(),
        };
        let rest = uri.strip_prefix("s3://").ok_or_else(unsupported)?;
        let (bucket, key) = rest.split_once('/').ok_or_else(unsupported)?;
        let key = key.trim_end_matches('/');
        if bucket.is_empty() || key.is_empty() || bucket.starts_with('.') {
            return Err(unsupported());
        }

        let mut path = self.root.join(bucket);
        for part in Path::new(key).components() {
            match part {
                Component::Normal(name) => path.push(name),
                _ => return Err(unsupported()),
            }
        }
        if path.exists() {
            Ok(path)
        } else {
            Err(ArtifactError::NotFound {
                uri: uri.to_owned(),
            })
        }
    }
}

/// Serves the store at `root` over the S3 API on `listener`, accepting
/// requests signed with `access_key`/`secret_key`, until `shutdown`
/// completes; then lets open connections finish for a while.
///
/// # Errors
///
/// [`S3ServerError`] when the store cannot be opened.
pub async fn serve_s3(
    listener: TcpListener,
    root: &Path,
    access_key: &str,
    secret_key: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<(), S3ServerError> {
    let open_err = |detail: String| S3ServerError::Open {
        path: root.to_owned(),
        detail,
    };
    std::fs::create_dir_all(root).map_err(|e| open_err(e.to_string()))?;
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| open_err(format!("{e:?}")))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
    let service = builder.build();

    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(error) => {
                    tracing::warn!(error = %error, "s3: cannot accept a connection");
                    accept_pause(&error).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        let connection = http.serve_connection(TokioIo::new(socket), service.clone());
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }

    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("s3: connections still open after the drain timeout");
        }
    }
    Ok(())
}

/// Backs off after an accept error that a busy host can cause (too many
/// open files), so that the loop does not spin.
async fn accept_pause(error: &io::Error) {
    if error.raw_os_error().is_some() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_resolve_inside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bucket/apps")).unwrap();
        std::fs::write(dir.path().join("bucket/apps/app.zip"), b"zip").unwrap();
        let store = ArtifactStore::new(dir.path().to_owned());

        let path = store.resolve("s3://bucket/apps/app.zip").unwrap();
        assert_eq!(path, dir.path().join("bucket/apps/app.zip"));
        assert!(matches!(
            store.resolve("s3://bucket/../etc/passwd"),
            Err(ArtifactError::Unsupported { .. })
        ));
        assert!(matches!(
            store.resolve("s3://bucket/missing.zip"),
            Err(ArtifactError::NotFound { .. })
        ));
        assert!(matches!(
            store.resolve("https://example.com/app.zip"),
            Err(ArtifactError::Unsupported { .. })
        ));
    }
}
