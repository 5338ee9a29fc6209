//! The image configuration a build produces and a base image starts from:
//! environment, user, working directory, entrypoint, command, exposed ports
//! and labels.
//!
//! It is written as JSON beside the root file system. `env` keeps the OCI
//! form (`KEY=value`, in order), and `exposed_ports` are `port/protocol`
//! strings, sorted. Empty strings and lists mean "not set": the user is
//! then root, the working directory `/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The default PATH Docker gives a RUN step when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image's runtime configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// Environment variables, `KEY=value`, in order.
    pub env: Vec<String>,
    /// `user[:group]`; empty means root.
    pub user: String,
    /// The working directory; empty means `/`.
    pub workdir: String,
    /// ENTRYPOINT.
    pub entrypoint: Vec<String>,
    /// CMD.
    pub cmd: Vec<String>,
    /// Exposed ports, `8080/tcp`, sorted.
    pub exposed_ports: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// The platform an OCI image config declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
}

/// The parts of an OCI image config that hearth reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OciImage {
    os: String,
    architecture: String,
    config: Option<OciConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct OciConfig {
    env: Option<Vec<String>>,
    user: Option<String>,
    working_dir: Option<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    labels: Option<BTreeMap<String, String>>,
}

impl ImageConfig {
    /// Reads an OCI (or Docker) image config JSON.
    ///
    /// # Errors
    ///
    /// The JSON error when the document is not an image config.
    pub fn from_oci_json(json: &[u8]) -> Result<(ImageConfig, Platform), serde_json::Error> {
        let image: OciImage = serde_json::from_slice(json)?;
        let c = image.config.unwrap_or_default();
        let mut config = ImageConfig {
            env: c.env.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            workdir: c.working_dir.unwrap_or_default(),
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            exposed_ports: Vec::new(),
            labels: c.labels.unwrap_or_default(),
        };
        for port in c.exposed_ports.unwrap_or_default().into_keys() {
            config.add_port(&port);
        }
        let platform = Platform {
            os: image.os,
            architecture: image.architecture,
        };
        Ok((config, platform))
    }

    /// The value of an environment variable.
    pub fn env_get(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find_map(|kv| match kv.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                _ => None,
            })
    }

    /// Sets an environment variable, replacing an earlier value in place.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self
            .env
            .iter_mut()
            .find(|kv| kv.split_once('=').map(|(k, _)| k) == Some(key))
        {
            Some(existing) => *existing = entry,
            None => self.env.push(entry),
        }
    }

    /// The environment as pairs.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }

    /// Adds an exposed port (`8080` becomes `8080/tcp`), keeping the list
    /// sorted and without duplicates.
    pub fn add_port(&mut self, port: &str) {
        let port = if port.contains('/') {
            port.to_ascii_lowercase()
        } else {
            format!("{port}/tcp")
        };
        if let Err(at) = self.exposed_ports.binary_search(&port) {
            self.exposed_ports.insert(at, port);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn oci_config_is_read() {
        let json = br#"{"architecture":"amd64","os":"linux","config":{
            "Env":["PATH=/bin","A=1"],"User":"app","WorkingDir":"/srv",
            "Entrypoint":["/init"],"Cmd":["serve"],
            "ExposedPorts":{"8080/tcp":{},"53/udp":{}},"Labels":{"k":"v"}},
            "rootfs":{"type":"layers","diff_ids":[]}}"#;
        let (config, platform) = ImageConfig::from_oci_json(json).unwrap();
        assert_eq!(platform.architecture, "amd64");
        assert_eq!(config.env_get("A"), Some("1"));
        assert_eq!(config.user, "app");
        assert_eq!(config.workdir, "/srv");
        assert_eq!(config.entrypoint, vec!["/init"]);
        assert_eq!(config.cmd, vec!["serve"]);
        assert_eq!(config.exposed_ports, vec!["53/udp", "8080/tcp"]);
        assert_eq!(config.labels["k"], "v");
    }

    #[test]
    fn null_fields_are_unset() {
        let (config, _) =
            ImageConfig::from_oci_json(br#"{"config":{"Env":null,"Cmd":null}}"#).unwrap();
        assert_eq!(config, ImageConfig::default());
    }

    #[test]
    fn env_is_replaced_in_place() {
        let mut config = ImageConfig::default();
        config.set_env("A", "1");
        config.set_env("B", "x=y");
        config.set_env("A", "2");
        assert_eq!(config.env, vec!["A=2", "B=x=y"]);
        assert_eq!(config.env_get("B"), Some("x=y"));
    }

    #[test]
    fn ports_default_to_tcp_and_stay_sorted() {
        let mut config = ImageConfig::default();
        config.add_port("8080");
        config.add_port("53/UDP");
        config.add_port("8080/tcp");
        assert_eq!(config.exposed_ports, vec!["53/udp", "8080/tcp"]);
    }
}
