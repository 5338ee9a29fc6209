//! The seam between the build plan and whatever executes RUN steps.
//!
//! RUN never executes on the host: the plan hands each one to a
//! [`StepRunner`], whose real implementation starts a build microVM on the
//! stage's root file system. The runner gets the argv (the shell form is
//! already wrapped in the stage's SHELL), the environment (image ENV plus
//! the build arguments in scope), the working directory and the user, and
//! streams the command's output through an [`OutputSink`].
//!
//! Contract for implementations: when `run` returns, `rootfs` holds the
//! file system as the command left it, with truthful mtimes (the step's
//! diff is found by comparing metadata, see [`crate::diff`]), and nothing
//! of the run (mounts, processes) remains on it.

use std::future::Future;
use std::path::Path;

use tokio::sync::mpsc;

use crate::events::BuildEvent;

/// How a RUN step ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// The command's exit code; 0 is success.
    pub exit_code: i32,
    /// The last lines of its combined output.
    pub output_tail: Vec<String>,
}

/// Why the runner could not run a step at all (as opposed to a command
/// that ran and failed, which is a non-zero [`RunOutcome::exit_code`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RunnerError {
    /// What went wrong, in a few words.
    pub message: String,
    /// The underlying failure.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl RunnerError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        RunnerError {
            message: message.into(),
            source: None,
        }
    }
}

/// Where a runner sends the command's output, one line at a time; the
/// lines become [`BuildEvent::Output`] events of the current step.
#[derive(Debug, Clone)]
pub struct OutputSink {
    step: usize,
    events: Option<mpsc::UnboundedSender<BuildEvent>>,
}

impl OutputSink {
    pub(crate) fn new(step: usize, events: Option<mpsc::UnboundedSender<BuildEvent>>) -> Self {
        OutputSink { step, events }
    }

    /// A sink that sends its lines to `events` as step `step`'s output,
    /// for runners tested on their own.
    pub fn for_tests(step: usize, events: mpsc::UnboundedSender<BuildEvent>) -> Self {
        OutputSink {
            step,
            events: Some(events),
        }
    }

    /// A sink that drops everything.
    pub fn discard() -> Self {
        OutputSink {
            step: 0,
            events: None,
        }
    }

    /// Reports one line of output (without its newline).
    pub fn line(&self, line: impl Into<String>) {
        if let Some(events) = &self.events {
            let _ = events.send(BuildEvent::Output {
                step: self.step,
                line: line.into(),
            });
        }
    }
}

/// Executes RUN steps. See the module docs for the contract.
pub trait StepRunner: Send + Sync {
    /// Runs `argv` in `rootfs` as `user` (`0` when the image sets none) in
    /// `cwd` with `env`, streaming its output to `output`.
    ///
    /// # Errors
    ///
    /// [`RunnerError`] when the step could not be run at all.
    fn run(
        &self,
        rootfs: &Path,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: String,
        user: String,
        output: OutputSink,
    ) -> impl Future<Output = Result<RunOutcome, RunnerError>> + Send;
}
