//! Pulling an image from an OCI / Docker registry into a directory.
//!
//! The registry protocol is `oci-client`'s: it answers the registry's
//! challenge with a bearer token or with basic auth, using the credentials
//! the caller configured for that host ([`RegistryConfig`]). An image index
//! or Docker manifest list resolves to its linux/amd64 entry. Layers are
//! downloaded to temporary files (their digests checked as they stream) and
//! applied in order with [`crate::layer`], gzip or uncompressed.
//!
//! Plain HTTP is used only for registries on loopback (`localhost`,
//! 127.0.0.0/8, `::1`) or those the caller lists as insecure; everything
//! else is HTTPS.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::config::ImageConfig;
use crate::layer::{self, ApplyOptions, LayerError};
use crate::reference::ImageRef;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference names no registry.
    #[error("image {reference} names no registry")]
    NoRegistry {
        /// The reference.
        reference: String,
    },
    /// The registry asked for credentials and none are configured.
    #[error("registry {registry} requires credentials for {reference} and none are configured")]
    CredentialsRequired {
        /// The registry host.
        registry: String,
        /// The reference.
        reference: String,
    },
    /// The registry refused the configured credentials.
    #[error("registry {registry} refused the credentials for {reference}")]
    CredentialsRefused {
        /// The registry host.
        registry: String,
        /// The reference.
        reference: String,
    },
    /// The image (or its linux/amd64 entry) does not exist.
    #[error("image {reference} not found: {reason}")]
    NotFound {
        /// The reference.
        reference: String,
        /// What the registry said.
        reason: String,
    },
    /// The image is not for linux/amd64.
    #[error("image {reference} is for {os}/{architecture}, not linux/amd64")]
    WrongPlatform {
        /// The reference.
        reference: String,
        /// Its OS.
        os: String,
        /// Its architecture.
        architecture: String,
    },
    /// Any other registry failure.
    #[error("cannot pull {reference} from {registry}")]
    Registry {
        /// The registry host.
        registry: String,
        /// The reference.
        reference: String,
        /// oci-client's error.
        #[source]
        source: Box<OciDistributionError>,
    },
    /// The image config is not valid JSON.
    #[error("the config of {reference} is not a valid image config")]
    BadConfig {
        /// The reference.
        reference: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A layer could not be applied.
    #[error("cannot apply layer {digest} of {reference}")]
    Layer {
        /// The reference.
        reference: String,
        /// The layer's digest.
        digest: String,
        /// What went wrong.
        #[source]
        source: LayerError,
    },
    /// A local file-system failure.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A registry credentials file that cannot be read.
    #[error("invalid registry credentials config: {reason}")]
    BadCredentials {
        /// What is wrong.
        reason: String,
    },
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials and transport settings per registry host (`host[:port]`).
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Credentials by registry host, such as `127.0.0.1:5000`.
    pub credentials: BTreeMap<String, RegistryCredentials>,
    /// Registries (beyond loopback ones) that may be reached over plain HTTP.
    pub insecure: Vec<String>,
}

impl RegistryConfig {
    /// Adds credentials for a registry.
    pub fn with_credentials(mut self, registry: &str, username: &str, password: &str) -> Self {
        self.credentials.insert(
            registry.to_owned(),
            RegistryCredentials {
                username: username.to_owned(),
                password: password.to_owned(),
            },
        );
        self
    }

    /// Reads the `auths` of a Docker `config.json`: each host maps to
    /// `{"auth": base64("user:password")}` or `{"username", "password"}`.
    ///
    /// # Errors
    ///
    /// [`PullError::BadCredentials`] naming the host whose entry is bad.
    pub fn from_docker_config(json: &str) -> Result<Self, PullError> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            auths: BTreeMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            auth: Option<String>,
            username: Option<String>,
            password: Option<String>,
        }

        let file: File = serde_json::from_str(json).map_err(|e| PullError::BadCredentials {
            reason: e.to_string(),
        })?;
        let mut config = RegistryConfig::default();
        for (host, entry) in file.auths {
            let bad = |reason: &str| PullError::BadCredentials {
                reason: format!("auths.{host}: {reason}"),
            };
            let (username, password) = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| bad("auth is not base64"))?;
                    let text = String::from_utf8(bytes).map_err(|_| bad("auth is not UTF-8"))?;
                    let (u, p) = text
                        .split_once(':')
                        .ok_or_else(|| bad("auth is not user:password"))?;
                    (u.to_owned(), p.to_owned())
                }
                (None, Some(u), Some(p)) => (u, p),
                _ => return Err(bad("needs auth or username and password")),
            };
            let host = host
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned();
            config = config.with_credentials(&host, &username, &password);
        }
        Ok(config)
    }
}

/// What a pull produced.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The digest the reference resolved to (the index's, when it is one).
    pub digest: String,
    /// The linux/amd64 manifest's digest.
    pub manifest_digest: String,
    /// The image's configuration.
    pub config: ImageConfig,
    /// How many layers were applied.
    pub layers: usize,
}

/// Pulls images from registries.
#[derive(Debug, Clone)]
pub struct Puller {
    config: RegistryConfig,
}

impl Puller {
    /// A puller using these credentials and settings.
    pub fn new(config: RegistryConfig) -> Self {
        Puller { config }
    }

    /// The digest a reference currently resolves to, without pulling.
    ///
    /// # Errors
    ///
    /// [`PullError`], as for [`Puller::pull`].
    pub async fn resolve_digest(&self, image: &ImageRef) -> Result<String, PullError> {
        let (client, reference, auth, registry) = self.client_for(image)?;
        client
            .fetch_manifest_digest(&reference, &auth)
            .await
            .map_err(|e| self.map_error(e, &registry, image))
    }

    /// Pulls `image` and applies its layers onto `rootfs` (an existing,
    /// usually empty directory); temporary layer files go to `work`.
    ///
    /// # Errors
    ///
    /// [`PullError`]: credentials missing or refused, image not found, wrong
    /// platform, a registry or layer failure.
    pub async fn pull(
        &self,
        image: &ImageRef,
        rootfs: &Path,
        work: &Path,
    ) -> Result<PulledImage, PullError> {
        let (client, reference, auth, registry) = self.client_for(image)?;
        let reference_text = image.to_string();

        let (manifest, manifest_digest, config_json, list_digest) = client
            .pull_manifest_and_config_and_list_digest(&reference, &auth)
            .await
            .map_err(|e| self.map_error(e, &registry, image))?;

        let (config, platform) =
            ImageConfig::from_oci_json(config_json.as_bytes()).map_err(|source| {
                PullError::BadConfig {
                    reference: reference_text.clone(),
                    source,
                }
            })?;
        let os_ok = platform.os.is_empty() || platform.os == "linux";
        let arch_ok = platform.architecture.is_empty() || platform.architecture == "amd64";
        if !os_ok || !arch_ok {
            return Err(PullError::WrongPlatform {
                reference: reference_text,
                os: platform.os,
                architecture: platform.architecture,
            });
        }

        for descriptor in &manifest.layers {
            let download = tempfile::Builder::new()
                .prefix(".hearth-layer-")
                .tempfile_in(work)
                .map_err(|source| PullError::Io {
                    path: work.to_path_buf(),
                    source,
                })?;
            let file =
                tokio::fs::File::from_std(download.reopen().map_err(|source| PullError::Io {
                    path: download.path().to_path_buf(),
                    source,
                })?);
            client
                .pull_blob(&reference, descriptor, file)
                .await
                .map_err(|e| self.map_error(e, &registry, image))?;

            tracing::debug!(image = %reference_text, layer = %descriptor.digest, "applying layer");
            let (root, layer_path) = (rootfs.to_path_buf(), download.path().to_path_buf());
            let applied = tokio::task::spawn_blocking(move || {
                layer::apply_layer_file(&root, &layer_path, ApplyOptions::default())
            })
            .await
            .map_err(|e| PullError::Io {
                path: rootfs.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
            applied.map_err(|source| PullError::Layer {
                reference: reference_text.clone(),
                digest: descriptor.digest.clone(),
                source,
            })?;
        }

        Ok(PulledImage {
            digest: list_digest.unwrap_or_else(|| manifest_digest.clone()),
            manifest_digest,
            config,
            layers: manifest.layers.len(),
        })
    }

    /// Builds a client for the reference's registry.
    fn client_for(
        &self,
        image: &ImageRef,
    ) -> Result<(Client, Reference, RegistryAuth, String), PullError> {
        let registry = image
            .registry
            .clone()
            .ok_or_else(|| PullError::NoRegistry {
                reference: image.to_string(),
            })?;
        let reference: Reference =
            image
                .to_string()
                .parse()
                .map_err(|e: oci_client::ParseError| PullError::NotFound {
                    reference: image.to_string(),
                    reason: e.to_string(),
                })?;

        let plain_http = image.is_loopback_registry() || self.config.insecure.contains(&registry);
        let protocol = if plain_http {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            platform_resolver: Some(Box::new(linux_amd64_resolver)),
            ..ClientConfig::default()
        });

        let auth = match self.config.credentials.get(&registry) {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Ok((client, reference, auth, registry))
    }

    fn map_error(
        &self,
        error: OciDistributionError,
        registry: &str,
        image: &ImageRef,
    ) -> PullError {
        let reference = image.to_string();
        let has_credentials = self.config.credentials.contains_key(registry);
        let unauthorized = match &error {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => true,
            OciDistributionError::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
            _ => false,
        };
        if unauthorized {
            let registry = registry.to_owned();
            return match has_credentials {
                true => PullError::CredentialsRefused {
                    registry,
                    reference,
                },
                false => PullError::CredentialsRequired {
                    registry,
                    reference,
                },
            };
        }

        let not_found = match &error {
            OciDistributionError::ImageManifestNotFoundError(reason) => Some(reason.clone()),
            OciDistributionError::RegistryError { envelope, .. } => envelope
                .errors
                .iter()
                .find(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                    )
                })
                .map(|e| e.message.clone()),
            _ => None,
        };
        match not_found {
            Some(reason) => PullError::NotFound { reference, reason },
            None => PullError::Registry {
                registry: registry.to_owned(),
                reference,
                source: Box::new(error),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auths_are_read() {
        let json = r#"{"auths":{
            "127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="},
            "https://reg.example/":{"username":"u","password":"p"}}}"#;
        let config = RegistryConfig::from_docker_config(json).unwrap();
        let local = &config.credentials["127.0.0.1:5000"];
        assert_eq!(
            (local.username.as_str(), local.password.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(config.credentials["reg.example"].username, "u");
        assert!(
            !format!("{local:?}").contains("pa:ss"),
            "passwords stay out of Debug"
        );
    }

    #[test]
    fn bad_docker_config_names_the_host() {
        let err =
            RegistryConfig::from_docker_config(r#"{"auths":{"h":{"auth":"!!"}}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid registry credentials config: auths.h: auth is not base64"
        );
    }

    #[tokio::test]
    async fn bare_names_are_not_pulled() {
        let puller = Puller::new(RegistryConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let image = ImageRef::parse("debian:12").unwrap();
        let err = puller
            .pull(&image, dir.path(), dir.path())
            .await
            .unwrap_err();
        assert!(matches!(err, PullError::NoRegistry { .. }));
    }
}
