//! The errors of a build: [`BuildError`] names the Dockerfile line, and
//! [`StepError`] says what went wrong inside a step.

use std::io;
use std::path::PathBuf;

use crate::cache::{CacheError, CacheKey};
use crate::copy::CopyError;
use crate::dockerfile::WordError;
use crate::ignore::IgnoreError;
use crate::layer::LayerError;
use crate::runner::RunnerError;
use crate::store::StoreError;

/// How many lines of a failed RUN's output its error message quotes.
const FAILURE_LINES: usize = 5;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `target` names no stage.
    #[error("build target {target:?} is not a stage of the Dockerfile")]
    UnknownTarget {
        /// The target.
        target: String,
    },
    /// The output directory exists already.
    #[error("build output {path} already exists")]
    OutputExists {
        /// The path.
        path: PathBuf,
    },
    /// `.dockerignore` is unusable.
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    /// A word that cannot be expanded.
    #[error("line {line}: {instruction}: {problem}")]
    Word {
        /// Line number.
        line: usize,
        /// The instruction.
        instruction: String,
        /// What is wrong.
        problem: WordError,
    },
    /// A global ARG (before the first FROM) whose default cannot be expanded.
    #[error("global ARG: {problem}")]
    GlobalArg {
        /// What is wrong.
        problem: WordError,
    },
    /// A `FROM --platform` other than linux/amd64.
    #[error("line {line}: FROM --platform={platform} is not supported; hearth builds linux/amd64")]
    Platform {
        /// Line number.
        line: usize,
        /// The platform asked for.
        platform: String,
    },
    /// The base image could not be had.
    #[error("line {line}: FROM {image}")]
    BaseImage {
        /// Line number.
        line: usize,
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: Box<StoreError>,
    },
    /// A step failed (other than a RUN's command).
    #[error("line {line}: {instruction} failed")]
    Step {
        /// Line number.
        line: usize,
        /// The instruction keyword.
        instruction: &'static str,
        /// Why.
        #[source]
        source: Box<StepError>,
    },
    /// A RUN command exited non-zero.
    #[error("line {line}: RUN {command} exited with code {exit_code}{}", tail_suffix(.output_tail))]
    RunFailed {
        /// Line number.
        line: usize,
        /// The command as written.
        command: String,
        /// Its exit code.
        exit_code: i32,
        /// The last lines of its output.
        output_tail: Vec<String>,
    },
    /// The runner could not run a RUN step.
    #[error("line {line}: RUN could not be run")]
    Runner {
        /// Line number.
        line: usize,
        /// Why.
        #[source]
        source: RunnerError,
    },
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A file-system failure outside any one step.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

fn tail_suffix(tail: &[String]) -> String {
    let last: Vec<&str> = tail
        .iter()
        .rev()
        .take(FAILURE_LINES)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    match last.is_empty() {
        true => String::new(),
        false => format!("; last output: {}", last.join(" | ")),
    }
}

impl BuildError {
    /// The message with every cause after it, for a build's state reason.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// COPY or ADD failed.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// `COPY --from` names an image that could not be had.
    #[error("--from={name}")]
    FromImage {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: Box<StoreError>,
    },
    /// `COPY --from` names the current or a later stage.
    #[error("--from={name} refers to a stage that is not built before this one")]
    LaterStage {
        /// The name.
        name: String,
    },
    /// ADD of a URL.
    #[error("ADD of a URL ({url}) is not supported; download it in a RUN step")]
    AddUrl {
        /// The URL.
        url: String,
    },
    /// EXPOSE of something that is no port.
    #[error("{port:?} is not a port (expected 1-65535, optionally /tcp, /udp or /sctp)")]
    BadPort {
        /// The word.
        port: String,
    },
    /// A cached diff could not be replayed.
    #[error("cannot replay cached step {key}")]
    Replay {
        /// The step's key.
        key: CacheKey,
        /// Why.
        #[source]
        source: LayerError,
    },
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A file-system failure.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}
