//! Managed base images: hearth's own OS layer (kernel, modules, agent),
//! named after the kernel release and agent build in the guest assets'
//! `manifest.json`, with AWS's `al2023-1` accepted as an alias so that
//! AWS's documented commands run unchanged.

use std::path::Path;

use hearth_api::model::Timestamp;
use serde::Deserialize;

/// The AWS base image name accepted as an alias of hearth's.
pub const AWS_ALIAS: &str = "al2023-1";

/// The one version each base image has.
pub const BASE_VERSION: &str = "1";

/// The fields of the assets' manifest that name a base image.
#[derive(Debug, Deserialize)]
struct Manifest {
    kernel_release: String,
    #[serde(default)]
    agent_version: Option<String>,
    #[serde(default)]
    agent_sha256: Option<String>,
}

/// hearth's base image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseImage {
    /// Its name: `hearth-<kernel release>-agent-<agent version>`.
    pub name: String,
    /// When the assets were made.
    pub created_at: Timestamp,
}

impl BaseImage {
    /// The base image the assets at `manifest` hold; a placeholder named
    /// `hearth-unbuilt` when there are none (builds then fail and say why).
    pub fn from_manifest(manifest: &Path) -> Self {
        let created_at = std::fs::metadata(manifest)
            .and_then(|m| m.modified())
            .map(Timestamp::from)
            .unwrap_or_else(|_| Timestamp::from_unix_millis(0));
        let parsed = std::fs::read(manifest)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok());
        let name = match parsed {
            Some(m) => {
                let agent = m
                    .agent_version
                    .or_else(|| m.agent_sha256.map(|h| h.chars().take(12).collect()))
                    .unwrap_or_else(|| "unknown".to_owned());
                sanitize(&format!("hearth-{}-agent-{agent}", m.kernel_release))
            }
            None => "hearth-unbuilt".to_owned(),
        };
        Self { name, created_at }
    }

    /// Whether `name` names this base image (or its alias).
    pub fn answers_to(&self, name: &str) -> bool {
        name == self.name || name == AWS_ALIAS
    }
}

/// A name with anything but letters, digits, `.`, `_` and `-` replaced.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_holds_kernel_and_agent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        std::fs::write(
            &path,
            r#"{"format": 1, "kernel_release": "6.1.0-57-cloud-amd64", "agent_sha256": "06e39e8c5a0b8772"}"#,
        )
        .unwrap();
        let base = BaseImage::from_manifest(&path);
        assert_eq!(base.name, "hearth-6.1.0-57-cloud-amd64-agent-06e39e8c5a0b");
        assert!(base.answers_to("al2023-1") && base.answers_to(&base.name));
        assert_eq!(
            BaseImage::from_manifest(&dir.path().join("none")).name,
            "hearth-unbuilt"
        );
    }
}
