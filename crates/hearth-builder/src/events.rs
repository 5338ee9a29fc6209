//! Build progress events, for the build log and for tests.
//!
//! A build sends them in order over an unbounded channel: each stage starts,
//! each step starts (`step N/M` and its instruction after substitution),
//! RUN output arrives line by line, each step finishes with its cache status
//! and duration, and the build ends. An image build wraps that in phases
//! (artifact, Dockerfile, snapshot, validation), adds notes on what it waits
//! for, and ends with the built image's version. [`render`] turns an event
//! into the lines of a build log.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether a step came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Its diff was in the cache.
    Hit,
    /// It ran and its diff was stored.
    Miss,
    /// It ran; caching is off for this build.
    Disabled,
    /// It only changes the config, so there is nothing to cache.
    NotCached,
}

/// One progress event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BuildEvent {
    /// A stage starts.
    StageStarted {
        /// Its index.
        stage: usize,
        /// Its name, if it has one.
        name: Option<String>,
        /// The base it starts from (image reference or stage).
        base: String,
    },
    /// A step starts.
    StepStarted {
        /// Its number, from 1, across all stages.
        step: usize,
        /// How many steps the build has.
        total: usize,
        /// The Dockerfile line it comes from.
        line: usize,
        /// The instruction after substitution.
        instruction: String,
    },
    /// A line of a RUN step's output.
    Output {
        /// The step's number.
        step: usize,
        /// The line.
        line: String,
    },
    /// A step ends.
    StepFinished {
        /// Its number.
        step: usize,
        /// How many steps the build has.
        total: usize,
        /// Whether it came from the cache.
        cache: CacheStatus,
        /// How long it took.
        duration: Duration,
    },
    /// The build ends successfully.
    BuildFinished {
        /// How long it took.
        duration: Duration,
        /// Steps served from the cache.
        cache_hits: usize,
    },
    /// A phase of an image build starts.
    PhaseStarted {
        /// The phase.
        phase: Phase,
    },
    /// A phase of an image build ends successfully.
    PhaseFinished {
        /// The phase.
        phase: Phase,
        /// How long it took.
        duration: Duration,
    },
    /// Something an image build is doing or waiting for.
    Note {
        /// What, in a few words.
        message: String,
    },
    /// A microVM of the build (the app's or a test one) started; it runs
    /// under a shim in the data directory's `vms/<vm_id>`.
    VmStarted {
        /// The VM's id.
        vm_id: String,
    },
    /// That microVM is stopped and its directory removed.
    VmStopped {
        /// The VM's id.
        vm_id: String,
    },
    /// The image version is in place.
    ImageBuilt {
        /// The image's name.
        name: String,
        /// Its new version.
        version: u32,
        /// The version's directory.
        dir: String,
    },
}

/// The phases of an image build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Fetching and unpacking the code artifact.
    Artifact,
    /// Building the Dockerfile into a root filesystem.
    Dockerfile,
    /// Booting the app and snapshotting it once ready.
    Snapshot,
    /// Restoring a test microVM from the snapshot and calling `validate`.
    Validate,
}

impl Phase {
    /// The phase in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Artifact => "fetching the code artifact",
            Phase::Dockerfile => "building the Dockerfile",
            Phase::Snapshot => "starting the app and taking its snapshot",
            Phase::Validate => "validating the snapshot in a test microVM",
        }
    }
}

impl CacheStatus {
    /// The status in a word or two, for logs.
    pub fn describe(self) -> &'static str {
        match self {
            CacheStatus::Hit => "cache hit",
            CacheStatus::Miss => "cache miss",
            CacheStatus::Disabled => "cache off",
            CacheStatus::NotCached => "config only",
        }
    }
}

/// The build log's line for one event (RUN output indented under its
/// step).
pub fn render(event: &BuildEvent) -> String {
    match event {
        BuildEvent::StageStarted { stage, name, base } => match name {
            Some(name) => format!("stage {stage} ({name}) from {base}"),
            None => format!("stage {stage} from {base}"),
        },
        BuildEvent::StepStarted {
            step,
            total,
            line,
            instruction,
        } => format!("step {step}/{total} (line {line}): {instruction}"),
        BuildEvent::Output { line, .. } => format!("  | {line}"),
        BuildEvent::StepFinished {
            step,
            total,
            cache,
            duration,
        } => format!(
            "step {step}/{total}: {} in {:.1} s",
            cache.describe(),
            duration.as_secs_f64()
        ),
        BuildEvent::BuildFinished {
            duration,
            cache_hits,
        } => format!(
            "Dockerfile built in {:.1} s ({cache_hits} steps from the cache)",
            duration.as_secs_f64()
        ),
        BuildEvent::PhaseStarted { phase } => phase.describe().to_owned(),
        BuildEvent::PhaseFinished { phase, duration } => format!(
            "done {} in {:.1} s",
            phase.describe(),
            duration.as_secs_f64()
        ),
        BuildEvent::Note { message } => message.clone(),
        BuildEvent::VmStarted { vm_id } => format!("microVM {vm_id} started"),
        BuildEvent::VmStopped { vm_id } => format!("microVM {vm_id} stopped"),
        BuildEvent::ImageBuilt { name, version, dir } => {
            format!("built {name}:{version} in {dir}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_render_as_log_lines() {
        let started = BuildEvent::StepStarted {
            step: 2,
            total: 5,
            line: 3,
            instruction: String::from("RUN make"),
        };
        assert_eq!(render(&started), "step 2/5 (line 3): RUN make");
        let finished = BuildEvent::StepFinished {
            step: 2,
            total: 5,
            cache: CacheStatus::Hit,
            duration: Duration::from_millis(1300),
        };
        assert_eq!(render(&finished), "step 2/5: cache hit in 1.3 s");
        let json = serde_json::to_value(&finished).expect("json");
        assert_eq!(json["event"], "step_finished");
        assert_eq!(json["cache"], "hit");
    }
}
