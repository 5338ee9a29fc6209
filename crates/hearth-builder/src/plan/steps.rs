//! The RUN, COPY and ADD steps of a build.

use std::io;
use std::path::PathBuf;

use super::error::{BuildError, StepError};
use super::state::StageState;
use super::{json, Builder, Run, StageFs};
use crate::copy::{self, CopyError, CopyOptions, SourceTree};
use crate::dockerfile::{CommandLine, CopyInstruction, Stage, Step};
use crate::runner::{OutputSink, StepRunner};

impl<R: StepRunner> Builder<'_, R> {
    pub(super) async fn run_command(
        &self,
        run: &mut Run<'_>,
        step: &Step,
        state: &mut StageState,
        fs_state: &mut StageFs,
        command: &CommandLine,
    ) -> Result<(), BuildError> {
        let shown = match command {
            CommandLine::Shell(text) => text.clone(),
            CommandLine::Exec(argv) => json(argv),
        };
        let text = format!("RUN {shown}");
        let argv = state.argv(command);
        let env = state.run_env();
        let cwd = match state.config.workdir.as_str() {
            "" => String::from("/"),
            dir => dir.to_owned(),
        };
        // Without USER a step runs as uid 0, which needs no passwd entry
        // (an image may have no /etc/passwd at all).
        let user = match state.config.user.as_str() {
            "" => String::from("0"),
            u => u.to_owned(),
        };
        let sink = OutputSink::new(run.step + 1, self.events.clone());
        let runner = self.runner;
        let line = step.line;

        self.fs_step(
            run,
            step,
            state,
            fs_state,
            text,
            None,
            |rootfs| async move {
                let outcome = runner
                    .run(&rootfs, argv, env, cwd, user, sink)
                    .await
                    .map_err(|source| BuildError::Runner { line, source })?;
                if outcome.exit_code != 0 {
                    return Err(BuildError::RunFailed {
                        line,
                        command: shown,
                        exit_code: outcome.exit_code,
                        output_tail: outcome.output_tail,
                    });
                }
                Ok(())
            },
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn copy_step(
        &self,
        run: &mut Run<'_>,
        stage: &Stage,
        step: &Step,
        state: &mut StageState,
        fs_state: &mut StageFs,
        copy: &CopyInstruction,
        is_add: bool,
    ) -> Result<(), BuildError> {
        let keyword = step.instruction.keyword();
        let word = |problem| BuildError::Word {
            line: step.line,
            instruction: keyword.to_owned(),
            problem,
        };
        let step_error = |source: StepError| BuildError::Step {
            line: step.line,
            instruction: keyword,
            source: Box::new(source),
        };

        let mut sources = Vec::new();
        for source in &copy.sources {
            sources.push(state.expand(source).map_err(word)?);
        }
        if is_add {
            if let Some(url) = sources.iter().find(|s| s.contains("://")) {
                return Err(step_error(StepError::AddUrl { url: url.clone() }));
            }
        }
        let dest = state.expand(&copy.dest).map_err(word)?;
        let dest = absolute_dest(&dest, &state.config.workdir);
        let chown = copy
            .chown
            .as_deref()
            .map(|c| state.expand(c))
            .transpose()
            .map_err(word)?;
        let chmod = match copy
            .chmod
            .as_deref()
            .map(|c| state.expand(c))
            .transpose()
            .map_err(word)?
        {
            Some(mode) => Some(copy::parse_chmod(&mode).map_err(|e| step_error(e.into()))?),
            None => None,
        };
        let from = copy
            .from
            .as_deref()
            .map(|f| state.expand(f))
            .transpose()
            .map_err(word)?;

        // Where the sources come from.
        let (tree_root, tree_label, use_ignore) = match &from {
            None => (
                run.request.context.clone(),
                String::from("the build context"),
                true,
            ),
            Some(name) => {
                let root = self
                    .copy_source_root(run, stage, name)
                    .await
                    .map_err(step_error)?;
                (root, format!("--from={name}"), false)
            }
        };
        let ignore = use_ignore.then(|| run.ignore.clone());

        let (resolved, hash) = {
            let tree = SourceTree {
                root: &tree_root,
                ignore: ignore.as_ref(),
                label: &tree_label,
            };
            let resolved = tree.resolve(&sources).map_err(|e| step_error(e.into()))?;
            let hash = tree.hash(&resolved).map_err(|e| step_error(e.into()))?;
            (resolved, hash)
        };

        let mut text = String::from(keyword);
        for (flag, value) in [("from", &from), ("chown", &chown)] {
            if let Some(value) = value {
                text.push_str(&format!(" --{flag}={value}"));
            }
        }
        if let Some(mode) = chmod {
            text.push_str(&format!(" --chmod={mode:o}"));
        }
        text.push_str(&format!(" {} {dest}", sources.join(" ")));

        let line = step.line;
        self.fs_step(
            run,
            step,
            state,
            fs_state,
            text,
            Some(hash),
            |rootfs| async move {
                let dest_path = PathBuf::from(&dest);
                let job = move || -> Result<(), CopyError> {
                    let owner = chown
                        .map(|spec| copy::resolve_owner(&rootfs, &spec))
                        .transpose()?;
                    let options = CopyOptions {
                        owner,
                        chmod,
                        unpack_archives: is_add,
                    };
                    let tree = SourceTree {
                        root: &tree_root,
                        ignore: ignore.as_ref(),
                        label: &tree_label,
                    };
                    copy::copy_sources(&tree, &resolved, &rootfs, &dest, options)
                };
                let result =
                    tokio::task::spawn_blocking(job)
                        .await
                        .map_err(|e| BuildError::Io {
                            path: dest_path,
                            source: io::Error::other(e.to_string()),
                        })?;
                result.map_err(|source| BuildError::Step {
                    line,
                    instruction: keyword,
                    source: Box::new(source.into()),
                })
            },
        )
        .await
    }

    /// The root of a `COPY --from` tree: an earlier stage, or an image.
    async fn copy_source_root(
        &self,
        run: &Run<'_>,
        stage: &Stage,
        name: &str,
    ) -> Result<PathBuf, StepError> {
        let dockerfile = &run.request.dockerfile;
        if let Some(other) = dockerfile.stage(name) {
            return match run.built.get(other.index) {
                Some(built) if other.index < stage.index => Ok(built.rootfs.clone()),
                _ => Err(StepError::LaterStage {
                    name: name.to_owned(),
                }),
            };
        }
        let stored = self
            .store
            .resolve(name, self.puller)
            .await
            .map_err(|source| StepError::FromImage {
                name: name.to_owned(),
                source: Box::new(source),
            })?;
        Ok(stored.rootfs)
    }
}

/// A COPY destination made absolute against the working directory; a
/// trailing `/` (or `.`) is kept, since it marks a directory.
fn absolute_dest(dest: &str, workdir: &str) -> String {
    if dest.starts_with('/') {
        return dest.to_owned();
    }
    let base = match workdir {
        "" => "/",
        dir => dir,
    };
    let joined = format!("{}/{dest}", base.trim_end_matches('/'));
    match dest {
        "." | "./" => format!("{}/", base.trim_end_matches('/')),
        _ => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_resolve_against_the_workdir() {
        assert_eq!(absolute_dest("/abs", "/w"), "/abs");
        assert_eq!(absolute_dest("rel", "/w"), "/w/rel");
        assert_eq!(absolute_dest("rel/", ""), "/rel/");
        assert_eq!(absolute_dest(".", "/w/"), "/w/");
        assert_eq!(absolute_dest("./", ""), "/");
    }
}
