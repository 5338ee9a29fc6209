//! Building Dockerfiles end to end without a VM: a busybox base seeded from
//! the host, a real context, the real cache, and a fake step runner that
//! records what it is asked to run (RUN never executes on the host) and
//! plays a scripted effect on the root file system.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hearth_builder::cache::StepCache;
use hearth_builder::dockerfile::Dockerfile;
use hearth_builder::events::{BuildEvent, CacheStatus};
use hearth_builder::oci::{Puller, RegistryConfig};
use hearth_builder::plan::{BuildError, BuildOutput, BuildRequest, Builder};
use hearth_builder::runner::{OutputSink, RunOutcome, RunnerError, StepRunner};
use hearth_builder::seed::seed_busybox;
use hearth_builder::store::ImageStore;

/// One call the fake runner received.
#[derive(Debug, Clone)]
struct Call {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: String,
    user: String,
}

type Effect = Box<dyn Fn(&Path) -> i32 + Send + Sync>;

/// Records calls; runs the effect scripted for the command's last argv word.
#[derive(Default)]
struct FakeRunner {
    calls: Mutex<Vec<Call>>,
    effects: HashMap<String, Effect>,
}

impl FakeRunner {
    fn on(mut self, command: &str, effect: impl Fn(&Path) -> i32 + Send + Sync + 'static) -> Self {
        self.effects.insert(command.to_owned(), Box::new(effect));
        self
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl StepRunner for FakeRunner {
    async fn run(
        &self,
        rootfs: &Path,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: String,
        user: String,
        output: OutputSink,
    ) -> Result<RunOutcome, RunnerError> {
        let command = argv.last().cloned().unwrap_or_default();
        self.calls.lock().unwrap().push(Call {
            argv,
            env,
            cwd,
            user,
        });
        output.line(format!("running {command}"));
        let exit_code = match self.effects.get(&command) {
            Some(effect) => effect(rootfs),
            None => 0,
        };
        let tail = vec![format!("running {command}"), format!("exit {exit_code}")];
        Ok(RunOutcome {
            exit_code,
            output_tail: tail,
        })
    }
}

/// A store with busybox, a cache, a context and an output area.
struct Env {
    dir: tempfile::TempDir,
    store: ImageStore,
    cache: StepCache,
    puller: Puller,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("store")).unwrap();
        seed_busybox(&store).unwrap();
        let cache = StepCache::open(dir.path().join("cache"), 1 << 30).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        Env {
            dir,
            store,
            cache,
            puller: Puller::new(RegistryConfig::default()),
        }
    }

    fn context(&self, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.dir.path().join("ctx");
        let _ = fs::remove_dir_all(&ctx);
        for (path, text) in files {
            let path = ctx.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        ctx
    }

    fn request(&self, dockerfile: &str, output: &str, args: &[(&str, &str)]) -> BuildRequest {
        BuildRequest {
            dockerfile: Dockerfile::parse(dockerfile).unwrap(),
            context: self.dir.path().join("ctx"),
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target: None,
            output: self.dir.path().join("out").join(output),
        }
    }

    async fn build(
        &self,
        runner: &FakeRunner,
        request: &BuildRequest,
    ) -> (Result<BuildOutput, BuildError>, Vec<BuildEvent>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let builder = Builder {
            store: &self.store,
            puller: &self.puller,
            cache: Some(&self.cache),
            runner,
            events: Some(tx),
        };
        let result = builder.build(request).await;
        drop(builder);
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        (result, events)
    }

    /// Entries in the output area other than finished outputs.
    fn leftovers(&self) -> Vec<String> {
        fs::read_dir(self.dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }
}

const APP: &str = r#"
ARG VERSION=1.0
FROM busybox AS build
ARG VERSION
ENV APP_HOME=/app GREETING="hello world"
WORKDIR $APP_HOME
COPY --chown=nobody:nobody src/ ./src/
RUN make-artifact
FROM busybox
ARG VERSION
LABEL org.example.version=$VERSION
COPY --from=build /app/out/artifact /usr/local/bin/app
ADD bundle.tar /opt/
RUN remove-motd
USER nobody
EXPOSE 8080 9000/udp
ENTRYPOINT ["/usr/local/bin/app"]
CMD --serve
"#;

fn app_context(env: &Env) -> PathBuf {
    let ctx = env.context(&[
        ("src/main.c", "int main;"),
        ("src/notes.tmp", "x"),
        (".dockerignore", "**/*.tmp\n"),
    ]);
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "bundled/data.txt", &b"abc"[..])
        .unwrap();
    fs::write(ctx.join("bundle.tar"), builder.into_inner().unwrap()).unwrap();
    ctx
}

fn app_runner() -> FakeRunner {
    FakeRunner::default()
        .on("make-artifact", |root| {
            fs::create_dir_all(root.join("app/out")).unwrap();
            fs::write(root.join("app/out/artifact"), "binary").unwrap();
            0
        })
        .on("remove-motd", |root| {
            fs::remove_file(root.join("etc/hosts")).unwrap();
            0
        })
}

fn statuses(output: &BuildOutput) -> Vec<(String, CacheStatus)> {
    output
        .steps
        .iter()
        .map(|s| {
            (
                s.instruction
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                s.cache,
            )
        })
        .collect()
}

#[tokio::test]
async fn multi_stage_build_produces_rootfs_and_config() {
    let env = Env::new();
    app_context(&env);
    let runner = app_runner();
    let request = env.request(APP, "image", &[("VERSION", "2.5")]);

    let (result, events) = env.build(&runner, &request).await;
    let output = result.unwrap_or_else(|e| panic!("{}", e.chain()));

    // RUN went to the runner with the stage's shell, env, workdir and user.
    let calls = runner.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].argv, vec!["/bin/sh", "-c", "make-artifact"]);
    assert_eq!(calls[0].cwd, "/app");
    assert_eq!(calls[0].user, "0");
    assert!(calls[0]
        .env
        .contains(&("GREETING".into(), "hello world".into())));
    assert!(
        calls[0].env.contains(&("VERSION".into(), "2.5".into())),
        "ARG in scope"
    );
    assert!(calls[0].env.iter().any(|(k, _)| k == "PATH"));

    let root = &output.rootfs;
    assert_eq!(
        fs::read_to_string(root.join("usr/local/bin/app")).unwrap(),
        "binary"
    );
    assert_eq!(
        fs::read_to_string(root.join("opt/bundled/data.txt")).unwrap(),
        "abc"
    );
    assert!(
        !root.join("etc/hosts").exists(),
        "the RUN's deletion is in the image"
    );
    assert!(root.join("bin/busybox").is_file());
    assert!(
        !root.join("app").exists(),
        "the build stage's files stay in the build stage"
    );

    let config = &output.config;
    assert_eq!(config.user, "nobody");
    assert_eq!(config.entrypoint, vec!["/usr/local/bin/app"]);
    assert_eq!(config.cmd, vec!["/bin/sh", "-c", "--serve"]);
    assert_eq!(config.exposed_ports, vec!["8080/tcp", "9000/udp"]);
    assert_eq!(config.labels["org.example.version"], "2.5");
    let written: serde_json::Value =
        serde_json::from_slice(&fs::read(&output.config_path).unwrap()).unwrap();
    assert_eq!(written["user"], "nobody");
    assert_eq!(written["exposed_ports"][0], "8080/tcp");

    // Events: step N/M with the total, output lines, one finish per step.
    let total = output.steps.len();
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::StepStarted { step, total: t, .. } => Some((*step, *t)),
            _ => None,
        })
        .collect();
    assert_eq!(started, (1..=total).map(|n| (n, total)).collect::<Vec<_>>());
    assert!(events
        .iter()
        .any(|e| matches!(e, BuildEvent::Output { line, .. } if line == "running make-artifact")));
    assert!(matches!(
        events.last(),
        Some(BuildEvent::BuildFinished { cache_hits: 0, .. })
    ));
    assert!(
        env.leftovers().is_empty(),
        "no work directory is left: {:?}",
        env.leftovers()
    );
}

#[tokio::test]
async fn copy_respects_dockerignore_and_chown() {
    let env = Env::new();
    app_context(&env);
    let runner = app_runner();
    let request = BuildRequest {
        target: Some(String::from("build")),
        ..env.request(APP, "build-stage", &[])
    };
    let output = env.build(&runner, &request).await.0.unwrap();

    let src = output.rootfs.join("app/src");
    assert!(src.join("main.c").exists());
    assert!(!src.join("notes.tmp").exists());
    if nix::unistd::geteuid().is_root() {
        assert_eq!(fs::metadata(src.join("main.c")).unwrap().uid(), 65534);
    }
    assert_eq!(output.config.workdir, "/app");
}

#[tokio::test]
async fn a_second_build_is_served_from_the_cache() {
    let env = Env::new();
    app_context(&env);
    let first_runner = app_runner();
    let first = env
        .build(&first_runner, &env.request(APP, "one", &[]))
        .await
        .0
        .unwrap();
    assert!(statuses(&first).iter().all(|(_, s)| *s != CacheStatus::Hit));

    let runner = app_runner();
    let second = env
        .build(&runner, &env.request(APP, "two", &[]))
        .await
        .0
        .unwrap();
    assert!(runner.calls().is_empty(), "no RUN step ran again");
    for (keyword, status) in statuses(&second) {
        match keyword.as_str() {
            "RUN" | "COPY" | "ADD" | "WORKDIR" => assert_eq!(status, CacheStatus::Hit, "{keyword}"),
            _ => assert_eq!(status, CacheStatus::NotCached, "{keyword}"),
        }
    }
    let root = &second.rootfs;
    assert_eq!(
        fs::read_to_string(root.join("usr/local/bin/app")).unwrap(),
        "binary"
    );
    assert!(
        !root.join("etc/hosts").exists(),
        "the cached whiteout is replayed"
    );
    assert_eq!(second.config, first.config);

    // A changed build arg misses from the first step that sees it.
    let runner = app_runner();
    let third = env
        .build(&runner, &env.request(APP, "three", &[("VERSION", "9")]))
        .await
        .0
        .unwrap();
    assert_eq!(runner.calls().len(), 2);
    assert_eq!(third.config.labels["org.example.version"], "9");
}

#[tokio::test]
async fn changed_sources_miss_from_the_copy_on() {
    let env = Env::new();
    let dockerfile = "FROM busybox\nRUN first\nCOPY app.txt /app.txt\nRUN second\n";
    env.context(&[("app.txt", "v1")]);
    let runner = FakeRunner::default();
    env.build(&runner, &env.request(dockerfile, "a", &[]))
        .await
        .0
        .unwrap();

    env.context(&[("app.txt", "v2")]);
    let runner = FakeRunner::default();
    let output = env
        .build(&runner, &env.request(dockerfile, "b", &[]))
        .await
        .0
        .unwrap();
    let got: Vec<_> = output.steps.iter().map(|s| s.cache).collect();
    assert_eq!(
        got,
        vec![
            CacheStatus::NotCached,
            CacheStatus::Hit,
            CacheStatus::Miss,
            CacheStatus::Miss
        ]
    );
    assert_eq!(runner.calls().len(), 1);
    assert_eq!(
        fs::read_to_string(output.rootfs.join("app.txt")).unwrap(),
        "v2"
    );
}

#[tokio::test]
async fn a_failing_run_reports_code_and_output_and_keeps_only_cache() {
    let env = Env::new();
    env.context(&[("f", "x")]);
    let dockerfile = "FROM busybox\nCOPY f /f\nRUN ok-step\n\nRUN broken-step\nRUN never\n";
    let runner = FakeRunner::default().on("broken-step", |root| {
        fs::write(root.join("partial"), "half").unwrap();
        3
    });
    let request = env.request(dockerfile, "img", &[]);
    let (result, _) = env.build(&runner, &request).await;

    let err = result.unwrap_err();
    match &err {
        BuildError::RunFailed {
            line,
            exit_code,
            output_tail,
            ..
        } => {
            assert_eq!((*line, *exit_code), (5, 3));
            assert_eq!(output_tail.last().unwrap(), "exit 3");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "line 5: RUN broken-step exited with code 3; last output: running broken-step | exit 3"
    );
    assert_eq!(
        runner.calls().len(),
        2,
        "the step after the failure never ran"
    );
    assert!(!request.output.exists());
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());

    // The completed steps are cached: a fixed build hits them.
    let fixed = FakeRunner::default();
    let output = env.build(&fixed, &request).await.0.unwrap();
    let got: Vec<_> = output.steps.iter().map(|s| s.cache).collect();
    assert_eq!(
        got,
        vec![
            CacheStatus::NotCached,
            CacheStatus::Hit,
            CacheStatus::Hit,
            CacheStatus::Miss,
            CacheStatus::Miss
        ]
    );
    assert!(!output.rootfs.join("partial").exists());
}

#[tokio::test]
async fn build_errors_name_the_line() {
    let env = Env::new();
    env.context(&[("f", "x")]);
    let runner = FakeRunner::default();
    let cases = [
        (
            "FROM nope:1\n",
            "line 1: FROM nope:1: base image nope:1 not found",
        ),
        (
            "FROM busybox\nCOPY missing /x\n",
            "line 2: COPY failed: source \"missing\" not found",
        ),
        (
            "FROM busybox\nEXPOSE http\n",
            "line 2: EXPOSE failed: \"http\" is not a port",
        ),
        (
            "FROM busybox\nCOPY --from=later f /f\nFROM busybox AS later\n",
            "line 2: COPY failed: --from=later refers to a stage",
        ),
        (
            "FROM --platform=linux/arm64 busybox\n",
            "line 1: FROM --platform=linux/arm64 is not supported",
        ),
        (
            "FROM busybox\nADD https://example.com/x /x\n",
            "line 2: ADD failed: ADD of a URL",
        ),
        (
            "FROM busybox\nENV A=${B:?required}\n",
            "line 2: ENV: B: required",
        ),
    ];
    for (i, (dockerfile, expected)) in cases.iter().enumerate() {
        let request = env.request(dockerfile, &format!("e{i}"), &[]);
        let err = env.build(&runner, &request).await.0.unwrap_err();
        assert!(
            err.chain().starts_with(expected),
            "{dockerfile:?}: {}",
            err.chain()
        );
    }
    assert!(runner.calls().is_empty());
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[tokio::test]
async fn no_cache_runs_every_step() {
    let env = Env::new();
    env.context(&[("f", "x")]);
    let runner = FakeRunner::default();
    let builder = Builder {
        store: &env.store,
        puller: &env.puller,
        cache: None,
        runner: &runner,
        events: None,
    };
    let dockerfile = "FROM busybox\nRUN one\nFROM scratch\nCOPY --from=0 /bin/busybox /busybox\n";
    let out = builder
        .build(&env.request(dockerfile, "nc", &[]))
        .await
        .unwrap();
    assert!(out.steps.iter().all(|s| s.cache != CacheStatus::Hit));
    assert_eq!(runner.calls().len(), 1);
    let names: Vec<_> = fs::read_dir(&out.rootfs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["busybox"], "scratch holds only what was copied");
}
