//! The server's API key pair: made on first start, kept in the data
//! directory, readable by its owner only.
//!
//! The file is JSON (`accessKeyId`, `secretAccessKey`), written to a
//! temporary file with mode 0600 and renamed into place, so a crash never
//! leaves half a key and the secret is never readable by others, even for a
//! moment.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The file in the data directory that holds the key pair.
pub const CREDENTIALS_FILE: &str = "api-credentials.json";

/// An access key id and its secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The access key id: `AKIA` and 16 uppercase letters or digits.
    pub access_key_id: String,
    /// The secret access key: 40 characters.
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Errors reading or writing the key pair.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The data directory could not be made.
    #[error("cannot create data directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The key file could not be read.
    #[error("cannot read credentials file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The key file is not valid.
    #[error("credentials file {path} is malformed")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The key file could not be written.
    #[error("cannot write credentials file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Characters of an access key id after `AKIA`.
const KEY_ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Characters of a secret access key.
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl Credentials {
    /// A key pair from its parts.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Self {
        let pick = |alphabet: &[u8], len: usize| -> String {
            (0..len)
                .map(|_| char::from(alphabet[OsRng.gen_range(0..alphabet.len())]))
                .collect()
        };
        Self {
            access_key_id: format!("AKIA{}", pick(KEY_ID_ALPHABET, 16)),
            secret_access_key: pick(SECRET_ALPHABET, 40),
        }
    }

    /// The key pair in `data_dir`, made and stored there if there is none.
    ///
    /// # Errors
    ///
    /// When the directory or file cannot be made, read or parsed.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, CredentialsError> {
        let path = data_dir.join(CREDENTIALS_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                restrict_mode(&path).map_err(|source| CredentialsError::Write {
                    path: path.clone(),
                    source,
                })?;
                return serde_json::from_slice(&bytes)
                    .map_err(|source| CredentialsError::Malformed { path, source });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(CredentialsError::Read { path, source }),
        }

        fs::create_dir_all(data_dir).map_err(|source| CredentialsError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let credentials = Self::generate();
        let json = serde_json::to_vec_pretty(&credentials).map_err(|source| {
            CredentialsError::Malformed {
                path: path.clone(),
                source,
            }
        })?;
        write_private(&path, &json).map_err(|source| CredentialsError::Write { path, source })?;
        Ok(credentials)
    }
}

/// Takes group and other permissions off a key file someone loosened.
fn restrict_mode(path: &Path) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "credentials file was readable by others; setting mode 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Writes `contents` to `path` atomically with mode 0600.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));

    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        // A leftover temporary file may have had other permissions.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_aws_shapes() {
        let creds = Credentials::generate();
        assert_eq!(creds.access_key_id.len(), 20);
        assert!(creds.access_key_id.starts_with("AKIA"));
        assert!(creds.access_key_id[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(creds.secret_access_key.len(), 40);
    }

    #[test]
    fn the_key_pair_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = Credentials::load_or_create(&data).unwrap();
        let again = Credentials::load_or_create(&data).unwrap();
        assert_eq!(first, again);

        let mode = fs::metadata(data.join(CREDENTIALS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_loosened_key_file_is_made_private_again() {
        let dir = tempfile::tempdir().unwrap();
        Credentials::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(CREDENTIALS_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

        Credentials::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let creds = Credentials::new("AKIAEXAMPLE", "topsecret");
        assert!(!format!("{creds:?}").contains("topsecret"));
    }
}
