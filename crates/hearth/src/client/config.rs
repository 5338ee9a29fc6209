//! Where a client connects and with which keys.

use std::path::Path;

use hearth_api::credentials::CREDENTIALS_FILE;
use hearth_api::{AwsConfigFiles, Credentials, DEFAULT_PROFILE};

use super::ClientError;

/// The API endpoint when neither a flag nor the environment names one.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7070";

/// The S3 endpoint when neither a flag nor the environment names one.
pub const DEFAULT_S3_ENDPOINT: &str = "http://127.0.0.1:7071";

/// The region when the profile names none.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where and as whom a [`super::Client`] connects.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The Lambda MicroVMs API.
    pub endpoint: reqwest::Url,
    /// The artifact store's S3 API.
    pub s3_endpoint: reqwest::Url,
    /// The region requests are signed for.
    pub region: String,
    /// The keys requests are signed with.
    pub credentials: Credentials,
}

impl ClientConfig {
    /// The configuration from flags, the environment, the data directory
    /// and the AWS config files, in that order of precedence.
    ///
    /// # Errors
    ///
    /// When an endpoint is not a URL or no keys are found.
    pub fn resolve(
        endpoint: Option<&str>,
        s3_endpoint: Option<&str>,
        data_dir: &Path,
    ) -> Result<Self, ClientError> {
        let endpoint = pick(endpoint, "HEARTH_ENDPOINT_URL", DEFAULT_ENDPOINT);
        let s3_endpoint = pick(s3_endpoint, "HEARTH_S3_ENDPOINT_URL", DEFAULT_S3_ENDPOINT);
        let profile = read_profile(DEFAULT_PROFILE);
        let credentials = match read_data_dir_credentials(data_dir)? {
            Some(credentials) => credentials,
            None => profile.credentials.ok_or_else(|| {
                ClientError::Credentials(format!(
                    "no API keys: neither {} nor the AWS profile `{DEFAULT_PROFILE}` holds them \
                     (start `hearth serve` once, or pass --data)",
                    data_dir.join(CREDENTIALS_FILE).display()
                ))
            })?,
        };
        Ok(Self {
            endpoint: parse_url(&endpoint)?,
            s3_endpoint: parse_url(&s3_endpoint)?,
            region: profile.region.unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            credentials,
        })
    }
}

/// The flag's value, else the environment variable's, else the default.
fn pick(flag: Option<&str>, var: &str, default: &str) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| default.to_owned())
}

fn parse_url(text: &str) -> Result<reqwest::Url, ClientError> {
    reqwest::Url::parse(text).map_err(|error| {
        ClientError::Credentials(format!("endpoint {text:?} is not a URL: {error}"))
    })
}

/// The keys `hearth serve` wrote into the data directory, if any.
fn read_data_dir_credentials(data_dir: &Path) -> Result<Option<Credentials>, ClientError> {
    let path = data_dir.join(CREDENTIALS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            ClientError::Credentials(format!("{} is malformed: {error}", path.display()))
        }),
        // Another user's data directory is not ours to read: fall back to the profile.
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(ClientError::Credentials(format!(
            "cannot read {}: {error}",
            path.display()
        ))),
    }
}

/// What a profile of the AWS config files holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Profile {
    credentials: Option<Credentials>,
    region: Option<String>,
}

/// Reads `name` from the AWS config files; missing files are empty.
fn read_profile(name: &str) -> Profile {
    let Ok(files) = AwsConfigFiles::from_env() else {
        return Profile::default();
    };
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let keys = section(&read(&files.credentials), name);
    let config = section(&read(&files.config), &format!("profile {name}"));
    let get = |entries: &[(String, String)], key: &str| {
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let credentials = get(&keys, "aws_access_key_id")
        .zip(get(&keys, "aws_secret_access_key"))
        .map(|(id, secret)| Credentials::new(id, secret));
    Profile {
        credentials,
        region: get(&config, "region"),
    }
}

/// The `key = value` entries of section `[name]` of an INI text.
fn section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.split_whitespace().collect::<Vec<_>>().join(" ") == name;
            continue;
        }
        if !inside || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            entries.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    entries
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_read_without_its_neighbours() {
        let text = "[default]\naws_access_key_id = A\n[ profile  hearth ]\nregion = eu-west-1\n\
                    # note\n[other]\nregion = x\n";
        assert_eq!(
            section(text, "profile hearth"),
            vec![("region".to_owned(), "eu-west-1".to_owned())]
        );
        assert!(section(text, "hearth").is_empty());
    }

    #[test]
    fn data_dir_keys_are_read_without_creating_any() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_data_dir_credentials(dir.path()).unwrap().is_none());
        assert!(!dir.path().join(CREDENTIALS_FILE).exists());

        let keys = Credentials::load_or_create(dir.path()).unwrap();
        assert_eq!(read_data_dir_credentials(dir.path()).unwrap(), Some(keys));
    }
}
