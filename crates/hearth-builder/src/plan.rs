//! Executing a parsed Dockerfile: stage by stage, step by step, into a
//! root file system and an [`ImageConfig`].
//!
//! Each stage starts from a copy of its base (an image from the store or a
//! registry, an earlier stage, or `scratch`) in a work directory beside the
//! output. Config instructions (ENV, ARG, LABEL, USER, EXPOSE, ENTRYPOINT,
//! CMD, SHELL) update the stage's config. File-system steps (RUN, COPY,
//! ADD, WORKDIR) go through the step cache: a hit is replayed from its
//! stored diff, lazily, only once a later step misses or the stage ends; a
//! miss runs the step (RUN only through the [`StepRunner`]) and stores its
//! diff. Progress goes out as [`BuildEvent`]s.
//!
//! The output directory (which must not exist) receives `rootfs/` and
//! `config.json` by one rename at the end. A failed build leaves the cache
//! entries of the steps that completed and nothing else.

mod error;
mod state;
mod steps;

pub use error::{BuildError, StepError};

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::cache::{CacheKey, StepCache};
use crate::config::ImageConfig;
use crate::diff::Snapshot;
use crate::dockerfile::{Dockerfile, Instruction, Stage, Step};
use crate::events::{BuildEvent, CacheStatus};
use crate::fsutil::{self, clean_relative};
use crate::ignore::IgnoreMatcher;
use crate::layer::{self, ApplyOptions, LayerError};
use crate::oci::Puller;
use crate::runner::StepRunner;
use crate::store::ImageStore;
use state::StageState;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The parsed Dockerfile.
    pub dockerfile: Dockerfile,
    /// The build context directory.
    pub context: PathBuf,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The stage to build (name or index); the last one if `None`.
    pub target: Option<String>,
    /// Where the result goes; must not exist. Its parent holds the build's
    /// work directory, so keep it on the same file system as the store.
    pub output: PathBuf,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image's root file system (`<output>/rootfs`).
    pub rootfs: PathBuf,
    /// Its config as JSON (`<output>/config.json`).
    pub config_path: PathBuf,
    /// Its config.
    pub config: ImageConfig,
    /// One report per step, FROM lines included.
    pub steps: Vec<StepReport>,
}

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// Its number, from 1.
    pub step: usize,
    /// Its Dockerfile line.
    pub line: usize,
    /// The instruction after substitution.
    pub instruction: String,
    /// Whether it came from the cache.
    pub cache: CacheStatus,
    /// How long it took.
    pub duration: Duration,
}

/// Runs builds.
pub struct Builder<'a, R> {
    /// Base images.
    pub store: &'a ImageStore,
    /// For base images that name a registry.
    pub puller: &'a Puller,
    /// The step cache; `None` runs every step.
    pub cache: Option<&'a StepCache>,
    /// Runs RUN steps.
    pub runner: &'a R,
    /// Where progress events go.
    pub events: Option<mpsc::UnboundedSender<BuildEvent>>,
}

/// A finished stage, kept for later `FROM` and `COPY --from`.
struct BuiltStage {
    rootfs: PathBuf,
    config: ImageConfig,
    key: CacheKey,
}

/// The state of one build while it runs.
struct Run<'r> {
    request: &'r BuildRequest,
    work: PathBuf,
    ignore: IgnoreMatcher,
    globals: BTreeMap<String, String>,
    built: Vec<BuiltStage>,
    step: usize,
    total: usize,
    reports: Vec<StepReport>,
    /// Keys used by this build, which eviction spares.
    used: HashSet<CacheKey>,
}

/// A stage's file system and its cache position.
struct StageFs {
    rootfs: PathBuf,
    key: CacheKey,
    /// Cache hits not yet applied to `rootfs`, each layer held open so
    /// that another build's eviction cannot take it away.
    pending: Vec<(CacheKey, fs::File)>,
}

impl<R: StepRunner> Builder<'_, R> {
    /// Builds the request's target stage.
    ///
    /// # Errors
    ///
    /// [`BuildError`] naming the line that failed.
    pub async fn build(&self, request: &BuildRequest) -> Result<BuildOutput, BuildError> {
        let started = Instant::now();
        if fs::symlink_metadata(&request.output).is_ok() {
            return Err(BuildError::OutputExists {
                path: request.output.clone(),
            });
        }
        let dockerfile = &request.dockerfile;
        let target = match &request.target {
            Some(name) => dockerfile
                .stage(name)
                .ok_or_else(|| BuildError::UnknownTarget {
                    target: name.clone(),
                })?,
            None => dockerfile
                .stages
                .last()
                .ok_or_else(|| BuildError::UnknownTarget {
                    target: String::from("(last)"),
                })?,
        };
        // Limitation: every stage up to the target is built, even one the target never uses.
        let stages = &dockerfile.stages[..=target.index];

        let parent = match request.output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let work = tempfile::Builder::new()
            .prefix(".hearth-build-")
            .tempdir_in(&parent)
            .map_err(|source| BuildError::Io {
                path: parent.clone(),
                source,
            })?;

        let globals = state::global_args(
            &dockerfile.meta_args,
            &request.build_args,
            dockerfile.escape,
        )
        .map_err(|problem| BuildError::GlobalArg { problem })?;
        let mut run = Run {
            request,
            work: work.path().to_path_buf(),
            ignore: IgnoreMatcher::for_context(&request.context)?,
            globals,
            built: Vec::new(),
            step: 0,
            total: stages.iter().map(|s| s.steps.len() + 1).sum(),
            reports: Vec::new(),
            used: HashSet::new(),
        };

        let mut config = ImageConfig::default();
        for stage in stages {
            config = self.build_stage(&mut run, stage).await?;
        }

        // Assemble the output beside it, then move it into place at once.
        let out = run.work.join("output");
        let last = run.built.pop().map(|b| b.rootfs).unwrap_or_default();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildError::Io { path, source }
        };
        fs::create_dir(&out).map_err(io(&out))?;
        fs::rename(&last, out.join("rootfs")).map_err(io(&last))?;
        let json = serde_json::to_vec_pretty(&config).map_err(|e| io::Error::other(e.to_string()));
        json.and_then(|bytes| fs::write(out.join("config.json"), bytes))
            .map_err(io(&out))?;
        fs::rename(&out, &request.output).map_err(io(&request.output))?;

        let hits = run
            .reports
            .iter()
            .filter(|r| r.cache == CacheStatus::Hit)
            .count();
        self.emit(BuildEvent::BuildFinished {
            duration: started.elapsed(),
            cache_hits: hits,
        });
        Ok(BuildOutput {
            rootfs: request.output.join("rootfs"),
            config_path: request.output.join("config.json"),
            config,
            steps: run.reports,
        })
    }

    async fn build_stage(
        &self,
        run: &mut Run<'_>,
        stage: &Stage,
    ) -> Result<ImageConfig, BuildError> {
        let from = &stage.from;
        let globals = run.globals.clone();
        let lookup = |name: &str| globals.get(name).cloned();
        let expand = |word: &str| {
            crate::dockerfile::words::expand(word, run.request.dockerfile.escape, &lookup).map_err(
                |problem| BuildError::Word {
                    line: from.line,
                    instruction: String::from("FROM"),
                    problem,
                },
            )
        };
        let image = expand(&from.image)?;
        if let Some(platform) = &from.platform {
            let platform = expand(platform)?;
            if platform != "linux/amd64" {
                return Err(BuildError::Platform {
                    line: from.line,
                    platform,
                });
            }
        }

        let started = self.start_step(run, from.line, &format!("FROM {image}"));
        self.emit(BuildEvent::StageStarted {
            stage: stage.index,
            name: stage.name().map(str::to_owned),
            base: image.clone(),
        });
        let rootfs = run.work.join(format!("stage-{}", stage.index));
        let (config, key) = self.prepare_base(run, from.line, &image, &rootfs).await?;
        self.finish_step(
            run,
            from.line,
            format!("FROM {image}"),
            CacheStatus::NotCached,
            started,
        );

        let mut state = StageState::new(
            config,
            run.globals.clone(),
            run.request.build_args.clone(),
            run.request.dockerfile.escape,
        );
        let mut fs_state = StageFs {
            rootfs,
            key,
            pending: Vec::new(),
        };
        for step in &stage.steps {
            self.run_step(run, stage, step, &mut state, &mut fs_state)
                .await?;
        }

        let keyword = stage
            .steps
            .last()
            .map_or("FROM", |s| s.instruction.keyword());
        let line = stage.steps.last().map_or(from.line, |s| s.line);
        self.materialize(&mut fs_state)
            .await
            .map_err(|source| BuildError::Step {
                line,
                instruction: keyword,
                source: Box::new(source),
            })?;
        run.built.push(BuiltStage {
            rootfs: fs_state.rootfs,
            config: state.config.clone(),
            key: fs_state.key,
        });
        Ok(state.config)
    }

    /// Puts the stage's base into `rootfs`; returns its config and key.
    async fn prepare_base(
        &self,
        run: &mut Run<'_>,
        line: usize,
        image: &str,
        rootfs: &Path,
    ) -> Result<(ImageConfig, CacheKey), BuildError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildError::Io { path, source }
        };
        let dockerfile = &run.request.dockerfile;
        let earlier = dockerfile
            .stages
            .iter()
            .take(run.built.len())
            .find(|s| s.name() == Some(image.to_ascii_lowercase().as_str()));

        if let Some(stage) = earlier {
            let base = &run.built[stage.index];
            copy_tree_blocking(&base.rootfs, rootfs)
                .await
                .map_err(io(rootfs))?;
            return Ok((base.config.clone(), base.key.clone()));
        }
        if image == "scratch" {
            fs::create_dir(rootfs).map_err(io(rootfs))?;
            return Ok((ImageConfig::default(), CacheKey::for_base("scratch")));
        }

        let stored = self
            .store
            .resolve(image, self.puller)
            .await
            .map_err(|source| BuildError::BaseImage {
                line,
                image: image.to_owned(),
                source: Box::new(source),
            })?;
        copy_tree_blocking(&stored.rootfs, rootfs)
            .await
            .map_err(io(rootfs))?;
        Ok((stored.config, CacheKey::for_base(&stored.id)))
    }

    async fn run_step(
        &self,
        run: &mut Run<'_>,
        stage: &Stage,
        step: &Step,
        state: &mut StageState,
        fs_state: &mut StageFs,
    ) -> Result<(), BuildError> {
        let keyword = step.instruction.keyword();
        let word = |problem| BuildError::Word {
            line: step.line,
            instruction: keyword.to_owned(),
            problem,
        };
        let step_error = |source| BuildError::Step {
            line: step.line,
            instruction: keyword,
            source: Box::new(source),
        };

        // Config-only instructions: update the state and the key chain.
        let text = match &step.instruction {
            Instruction::Env(pairs) => Some(state.set_env(pairs).map_err(word)?),
            Instruction::Arg(decls) => Some(state.declare(decls).map_err(word)?),
            Instruction::Label(pairs) => {
                let pairs = state.pairs(pairs).map_err(word)?;
                let text = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>();
                state.config.labels.extend(pairs);
                Some(format!("LABEL {}", text.join(" ")))
            }
            Instruction::User(user) => {
                state.config.user = state.expand(user).map_err(word)?;
                Some(format!("USER {}", state.config.user))
            }
            Instruction::Expose(ports) => {
                let mut all = Vec::new();
                for raw in ports {
                    for port in state.expand_fields(raw).map_err(word)? {
                        let parsed = state::parse_ports(&port)
                            .ok_or_else(|| step_error(StepError::BadPort { port: port.clone() }))?;
                        all.extend(parsed);
                    }
                }
                for port in &all {
                    state.config.add_port(port);
                }
                Some(format!("EXPOSE {}", all.join(" ")))
            }
            Instruction::Entrypoint(command) => {
                state.set_entrypoint(command);
                Some(format!("ENTRYPOINT {}", json(&state.config.entrypoint)))
            }
            Instruction::Cmd(command) => {
                state.set_cmd(command);
                Some(format!("CMD {}", json(&state.config.cmd)))
            }
            Instruction::Shell(shell) => {
                state.shell = shell.clone();
                Some(format!("SHELL {}", json(shell)))
            }
            _ => None,
        };
        if let Some(text) = text {
            let started = self.start_step(run, step.line, &text);
            fs_state.key = CacheKey::for_step(&fs_state.key, &text, &state.args_in_scope(), None);
            self.finish_step(run, step.line, text, CacheStatus::NotCached, started);
            return Ok(());
        }

        match &step.instruction {
            Instruction::Workdir(path) => {
                let dir = state.expand(path).map_err(word)?;
                let dir = state.set_workdir(&dir);
                let text = format!("WORKDIR {dir}");
                let rel = clean_relative(Path::new(&dir)).unwrap_or_default();
                self.fs_step(
                    run,
                    step,
                    state,
                    fs_state,
                    text,
                    None,
                    |rootfs| async move {
                        fsutil::mkdir_in_root(&rootfs, &rel)
                            .map(|_| ())
                            .map_err(|source| BuildError::Io { path: rel, source })
                    },
                )
                .await
            }
            Instruction::Run(command) => {
                self.run_command(run, step, state, fs_state, command).await
            }
            Instruction::Copy(copy) => {
                self.copy_step(run, stage, step, state, fs_state, copy, false)
                    .await
            }
            Instruction::Add(copy) => {
                self.copy_step(run, stage, step, state, fs_state, copy, true)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Runs a file-system step through the cache.
    #[allow(clippy::too_many_arguments)]
    async fn fs_step<F, Fut>(
        &self,
        run: &mut Run<'_>,
        step: &Step,
        state: &StageState,
        fs_state: &mut StageFs,
        text: String,
        sources: Option<String>,
        execute: F,
    ) -> Result<(), BuildError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<(), BuildError>>,
    {
        let keyword = step.instruction.keyword();
        let step_error = |source| BuildError::Step {
            line: step.line,
            instruction: keyword,
            source: Box::new(source),
        };
        let started = self.start_step(run, step.line, &text);
        let key = CacheKey::for_step(
            &fs_state.key,
            &text,
            &state.args_in_scope(),
            sources.as_deref(),
        );
        fs_state.key = key.clone();
        run.used.insert(key.clone());

        let Some(cache) = self.cache else {
            execute(fs_state.rootfs.clone()).await?;
            self.finish_step(run, step.line, text, CacheStatus::Disabled, started);
            return Ok(());
        };

        let hit = cache.lookup(&key).and_then(|entry| {
            fs::File::open(&entry.layer)
                .ok()
                .map(|file| (entry.key, file))
        });
        if let Some(pending) = hit {
            fs_state.pending.push(pending);
            self.finish_step(run, step.line, text, CacheStatus::Hit, started);
            return Ok(());
        }

        self.materialize(fs_state).await.map_err(step_error)?;
        let rootfs = fs_state.rootfs.clone();
        let snapshot = blocking({
            let rootfs = rootfs.clone();
            move || Snapshot::scan(&rootfs)
        })
        .await
        .map_err(|source| {
            step_error(StepError::Io {
                path: rootfs.clone(),
                source,
            })
        })?;

        execute(rootfs.clone()).await?;

        let (cache, protect, instruction) = (cache.clone(), run.used.clone(), text.clone());
        let stored = tokio::task::spawn_blocking(move || {
            cache.insert(&key, &instruction, &protect, |out| {
                snapshot.write_diff(&rootfs, out).map(|_| ())
            })
        })
        .await
        .map_err(|e| {
            step_error(StepError::Io {
                path: fs_state.rootfs.clone(),
                source: io::Error::other(e.to_string()),
            })
        })?;
        stored.map_err(|e| step_error(e.into()))?;

        self.finish_step(run, step.line, text, CacheStatus::Miss, started);
        Ok(())
    }

    /// Applies pending cache hits to the stage's root file system.
    async fn materialize(&self, fs_state: &mut StageFs) -> Result<(), StepError> {
        for (key, file) in std::mem::take(&mut fs_state.pending) {
            let rootfs = fs_state.rootfs.clone();
            let applied = tokio::task::spawn_blocking(move || {
                layer::apply_layer(&rootfs, io::BufReader::new(file), ApplyOptions::default())
            })
            .await
            .unwrap_or_else(|e| Err(LayerError::Read(io::Error::other(e.to_string()))));
            applied.map_err(|source| StepError::Replay { key, source })?;
        }
        Ok(())
    }

    fn start_step(&self, run: &mut Run<'_>, line: usize, instruction: &str) -> Instant {
        run.step += 1;
        tracing::debug!(
            step = run.step,
            total = run.total,
            line,
            instruction,
            "build step"
        );
        self.emit(BuildEvent::StepStarted {
            step: run.step,
            total: run.total,
            line,
            instruction: instruction.to_owned(),
        });
        Instant::now()
    }

    fn finish_step(
        &self,
        run: &mut Run<'_>,
        line: usize,
        instruction: String,
        cache: CacheStatus,
        started: Instant,
    ) {
        let duration = started.elapsed();
        self.emit(BuildEvent::StepFinished {
            step: run.step,
            total: run.total,
            cache,
            duration,
        });
        run.reports.push(StepReport {
            step: run.step,
            line,
            instruction,
            cache,
            duration,
        });
    }

    fn emit(&self, event: BuildEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }
}

fn json(argv: &[String]) -> String {
    serde_json::to_string(argv).unwrap_or_default()
}

async fn blocking<T: Send + 'static, E: From<io::Error> + Send + 'static>(
    job: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(job)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string()).into()))
}

async fn copy_tree_blocking(src: &Path, dst: &Path) -> io::Result<()> {
    let (src, dst) = (src.to_path_buf(), dst.to_path_buf());
    blocking(move || fsutil::copy_tree(&src, &dst)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn failed_runs_quote_their_last_lines() {
        let err = BuildError::RunFailed {
            line: 3,
            command: String::from("make"),
            exit_code: 2,
            output_tail: (1..=8).map(|i| format!("l{i}")).collect(),
        };
        assert_eq!(
            err.to_string(),
            "line 3: RUN make exited with code 2; last output: l4 | l5 | l6 | l7 | l8"
        );
    }
}
