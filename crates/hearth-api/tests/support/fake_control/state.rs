//! The fake's records and the lookups over them.

use std::collections::BTreeMap;

use hearth_api::model::*;
use hearth_api::ApiError;
use rand::RngCore;

/// An image with its versions.
pub(super) struct Image {
    pub(super) arn: String,
    pub(super) name: String,
    pub(super) state: MicrovmImageState,
    pub(super) created_at: Timestamp,
    pub(super) updated_at: Option<Timestamp>,
    pub(super) versions: Vec<Version>,
}

/// One version and its builds.
pub(super) struct Version {
    pub(super) number: u32,
    pub(super) state: MicrovmImageVersionState,
    pub(super) status: MicrovmImageVersionStatus,
    pub(super) created_at: Timestamp,
    pub(super) updated_at: Option<Timestamp>,
    pub(super) config: ImageConfig,
    pub(super) builds: Vec<MicrovmImageBuildSummary>,
}

/// Everything the fake knows.
#[derive(Default)]
pub(super) struct State {
    pub(super) images: BTreeMap<String, Image>,
    pub(super) microvms: BTreeMap<String, Microvm>,
    pub(super) tags: BTreeMap<String, Tags>,
}

/// Random lowercase hex of `bytes` bytes.
pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The image an identifier (name or ARN) names, if it is not deleted.
pub(super) fn find_image<'a>(
    state: &'a mut State,
    identifier: &str,
) -> Result<&'a mut Image, ApiError> {
    let name = identifier.rsplit(':').next().unwrap_or(identifier);
    state
        .images
        .get_mut(name)
        .filter(|image| image.state != MicrovmImageState::Deleted)
        .filter(|image| identifier == image.name || identifier == image.arn)
        .ok_or_else(|| ApiError::not_found("microvm-image", identifier))
}

/// A version of an image, if it is not deleted.
pub(super) fn find_version<'a>(
    image: &'a mut Image,
    version: &str,
) -> Result<&'a mut Version, ApiError> {
    let arn = image.arn.clone();
    image
        .versions
        .iter_mut()
        .find(|v| v.number.to_string() == version && v.state != MicrovmImageVersionState::Deleted)
        .ok_or_else(|| ApiError::not_found("microvm-image-version", &format!("{arn}:{version}")))
}

/// The microVM an identifier (id or ARN) names.
pub(super) fn find_microvm<'a>(
    state: &'a mut State,
    identifier: &str,
) -> Result<&'a mut Microvm, ApiError> {
    let id = identifier.rsplit(':').next().unwrap_or(identifier);
    state
        .microvms
        .get_mut(id)
        .ok_or_else(|| ApiError::not_found("microvm", identifier))
}

/// The builds a configuration asks for: one per architecture.
pub(super) fn builds_for(
    arn: &str,
    version: u32,
    config: &ImageConfig,
    now: Timestamp,
) -> Vec<MicrovmImageBuildSummary> {
    let architectures = match &config.cpu_configurations {
        Some(list) if !list.is_empty() => list.iter().map(|c| c.architecture).collect(),
        _ => vec![Architecture::X86_64],
    };
    architectures
        .into_iter()
        .map(|architecture| MicrovmImageBuildSummary {
            image_arn: arn.to_owned(),
            image_version: version.to_string(),
            build_id: format!("build-{}", random_hex(8)),
            build_state: BuildState::Successful,
            architecture,
            chipset: match architecture {
                Architecture::Arm64 => Chipset::Graviton,
                Architecture::X86_64 => Chipset::Intel,
            },
            chipset_generation: "1".to_owned(),
            state_reason: None,
            created_at: now,
        })
        .collect()
}

impl Version {
    pub(super) fn summary(&self, arn: &str, tags: Option<Tags>) -> MicrovmImageVersionSummary {
        MicrovmImageVersionSummary {
            image_arn: arn.to_owned(),
            image_version: self.number.to_string(),
            state: self.state,
            status: self.status,
            created_at: self.created_at,
            updated_at: self.updated_at,
            state_reason: None,
            tags,
            config: self.config.clone(),
        }
    }
}

impl Image {
    pub(super) fn latest_active(&self) -> Option<String> {
        self.versions
            .iter()
            .rev()
            .find(|v| {
                v.status == MicrovmImageVersionStatus::Active
                    && v.state == MicrovmImageVersionState::Successful
            })
            .map(|v| v.number.to_string())
    }

    pub(super) fn summary(&self) -> MicrovmImageSummary {
        MicrovmImageSummary {
            image_arn: self.arn.clone(),
            name: self.name.clone(),
            state: self.state,
            latest_active_image_version: self.latest_active(),
            latest_failed_image_version: None,
            created_at: self.created_at,
        }
    }
}
