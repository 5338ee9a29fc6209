//! Build progress events, for the build log and for tests.
//!
//! A build sends them in order over an unbounded channel: each stage starts,
//! each step starts (`step N/M` and its instruction after substitution),
//! RUN output arrives line by line, each step finishes with its cache status
//! and duration, and the build ends.

use std::time::Duration;

use serde::Serialize;

/// Whether a step came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}
