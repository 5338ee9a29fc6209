//! Adds a profile for the server's keys to the user's AWS config files, so
//! that `aws --profile hearth --endpoint-url …` and boto3 work at once.
//!
//! Only the profile's own section is added or replaced: `[hearth]` in the
//! shared credentials file and `[profile hearth]` in the config file. Every
//! other line, comment and profile stays as it was. The files are the ones
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` name, else
//! `~/.aws/credentials` and `~/.aws/config`, as the AWS clients read them.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::credentials::{write_private, Credentials};

/// The profile name hearth uses by default.
pub const DEFAULT_PROFILE: &str = "hearth";

/// Errors finding or writing the AWS config files.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Neither the environment nor `HOME` says where the files are.
    #[error("cannot locate the AWS config files: HOME is not set")]
    NoHome,
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file or its directory could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Where the AWS clients read credentials and configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsConfigFiles {
    /// The shared credentials file.
    pub credentials: PathBuf,
    /// The config file.
    pub config: PathBuf,
}

impl AwsConfigFiles {
    /// The files the AWS clients would use in this environment.
    ///
    /// # Errors
    ///
    /// [`ProfileError::NoHome`] when a path is not set and `HOME` is not
    /// either.
    pub fn from_env() -> Result<Self, ProfileError> {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = || {
            var("HOME")
                .map(|h| h.join(".aws"))
                .ok_or(ProfileError::NoHome)
        };
        let credentials = match var("AWS_SHARED_CREDENTIALS_FILE") {
            Some(path) => path,
            None => home()?.join("credentials"),
        };
        let config = match var("AWS_CONFIG_FILE") {
            Some(path) => path,
            None => home()?.join("config"),
        };
        Ok(Self {
            credentials,
            config,
        })
    }

    /// Adds or replaces `profile` with `credentials` and `region`.
    ///
    /// # Errors
    ///
    /// When a file exists but cannot be read, or cannot be written.
    pub fn install_profile(
        &self,
        profile: &str,
        credentials: &Credentials,
        region: &str,
    ) -> Result<(), ProfileError> {
        let keys = [
            ("aws_access_key_id", credentials.access_key_id.as_str()),
            (
                "aws_secret_access_key",
                credentials.secret_access_key.as_str(),
            ),
        ];
        let text = read_or_empty(&self.credentials)?;
        let updated = upsert_section(&text, profile, &keys);
        write_file(&self.credentials, &updated, true)?;

        let text = read_or_empty(&self.config)?;
        let updated = upsert_section(&text, &format!("profile {profile}"), &[("region", region)]);
        write_file(&self.config, &updated, false)
    }
}

/// A file's text, or nothing if it does not exist.
fn read_or_empty(path: &Path) -> Result<String, ProfileError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ProfileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a config file, private if it holds secrets or is new, otherwise
/// keeping its mode.
fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), ProfileError> {
    let err = |source| ProfileError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(err)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
    }
    let old_mode = fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777);
    write_private(path, text.as_bytes()).map_err(err)?;
    if let (false, Some(mode)) = (secret, old_mode) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)?;
    }
    Ok(())
}

/// The section name of a header line such as `[ profile  hearth ]`,
/// whitespace normalized.
fn section_name(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix('[')?.strip_suffix(']')?;
    Some(inner.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `text` with section `name` set to exactly `entries`, added at the end if
/// absent; every other line is kept.
pub fn upsert_section(text: &str, name: &str, entries: &[(&str, &str)]) -> String {
    let mut block = format!("[{name}]\n");
    for (key, value) in entries {
        block.push_str(&format!("{key} = {value}\n"));
    }

    let mut out = String::new();
    let mut replaced = false;
    let mut skipping = false;
    for line in text.lines() {
        if let Some(section) = section_name(line) {
            skipping = section == name;
            if skipping && !replaced {
                out.push_str(&block);
                replaced = true;
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }

    if !replaced {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXISTING: &str = "\
# my keys
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = s3cret

[hearth]
aws_access_key_id = AKIAOLD
aws_secret_access_key = old
[work]
region = eu-west-1
";

    #[test]
    fn a_profile_is_replaced_and_others_are_kept() {
        let out = upsert_section(EXISTING, "hearth", &[("aws_access_key_id", "AKIANEW")]);
        assert!(out.contains("# my keys\n[default]\naws_access_key_id = AKIADEFAULT\n"));
        let replaced = "[hearth]\naws_access_key_id = AKIANEW\n[work]\nregion = eu-west-1\n";
        assert!(out.contains(replaced));
        assert!(!out.contains("AKIAOLD"));
    }

    #[test]
    fn a_missing_profile_is_appended() {
        let out = upsert_section(
            "[default]\nregion = us-west-2\n",
            "profile hearth",
            &[("region", "us-east-1")],
        );
        assert_eq!(
            out,
            "[default]\nregion = us-west-2\n\n[profile hearth]\nregion = us-east-1\n"
        );
    }

    #[test]
    fn installing_writes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = AwsConfigFiles {
            credentials: dir.path().join("aws/credentials"),
            config: dir.path().join("aws/config"),
        };
        fs::create_dir_all(dir.path().join("aws")).unwrap();
        fs::write(&files.config, "[profile other]\nregion = ap-south-1\n").unwrap();

        let creds = Credentials::new("AKIAHEARTH", "secret");
        files
            .install_profile("hearth", &creds, "us-east-1")
            .unwrap();

        let credentials = fs::read_to_string(&files.credentials).unwrap();
        assert_eq!(
            credentials,
            "[hearth]\naws_access_key_id = AKIAHEARTH\naws_secret_access_key = secret\n"
        );
        let mode = fs::metadata(&files.credentials)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let config = fs::read_to_string(&files.config).unwrap();
        assert!(config.starts_with("[profile other]\nregion = ap-south-1\n"));
        assert!(config.ends_with("[profile hearth]\nregion = us-east-1\n"));
    }
}
