//! The control plane's state machines, through the API's `Control` trait,
//! with a fake node and pipeline so that no VM is needed: the real ones are
//! driven end to end by `tests/conformance`.

// A test's fakes may unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hearth_api::model::*;
use hearth_api::{ApiError, Control, RequestContext};
use hearth_control::hooks::Hook;
use hearth_control::ids::MicrovmId;
use hearth_control::pipeline::ContainerConfig;
use hearth_control::store::BuildSizes;
use hearth_control::*;

/// Runs "VMs" as entries in a set, and records hook calls.
#[derive(Default)]
struct FakeNode {
    running: Mutex<HashSet<String>>,
    hooks: Mutex<Vec<(String, &'static str, Vec<u8>)>>,
    fail_run_hook: AtomicBool,
    /// Hooks (by name) that never answer, as a hung app's would not.
    hang_hooks: Mutex<HashSet<&'static str>>,
}

impl FakeNode {
    /// A node whose shims kept these microVMs' VMs running.
    fn running(ids: &[&str]) -> Arc<Self> {
        let node = Self::default();
        node.running
            .lock()
            .unwrap()
            .extend(ids.iter().map(|id| (*id).to_owned()));
        Arc::new(node)
    }

    fn called(&self, id: &str, hook: &str) -> bool {
        self.hooks
            .lock()
            .unwrap()
            .iter()
            .any(|(i, h, _)| i == id && *h == hook)
    }
}

#[async_trait]
impl Node for FakeNode {
    async fn restore(
        &self,
        id: &MicrovmId,
        snapshot: &Path,
        _egress: Egress,
    ) -> Result<(), NodeError> {
        assert!(
            snapshot.join("memory").is_file(),
            "restored from a snapshot"
        );
        self.running.lock().unwrap().insert(id.to_string());
        Ok(())
    }

    async fn call_hook(
        &self,
        id: &MicrovmId,
        _port: u16,
        hook: Hook,
        body: &[u8],
        _timeout: Duration,
    ) -> Result<(), NodeError> {
        self.hooks
            .lock()
            .unwrap()
            .push((id.to_string(), hook.name(), body.to_vec()));
        if self.hang_hooks.lock().unwrap().contains(hook.name()) {
            std::future::pending::<()>().await;
        }
        if hook == Hook::Run && self.fail_run_hook.load(Ordering::SeqCst) {
            return Err(NodeError::Hook {
                hook: "run",
                source: hearth_control::hooks::HookError::Status { status: 500 },
            });
        }
        Ok(())
    }

    async fn suspend(&self, id: &MicrovmId, dest: &Path) -> Result<(), NodeError> {
        std::fs::create_dir_all(dest).unwrap();
        std::fs::write(dest.join("memory"), b"m").unwrap();
        self.running.lock().unwrap().remove(id.as_str());
        Ok(())
    }

    async fn stop(&self, id: &MicrovmId) {
        self.running.lock().unwrap().remove(id.as_str());
    }

    fn is_running(&self, id: &MicrovmId) -> bool {
        self.running.lock().unwrap().contains(id.as_str())
    }

    async fn discard_vm(&self, _vm_id: &str) {}
}

/// Writes a snapshot directory at once, or never finishes.
struct FakePipeline {
    hang: bool,
}

#[async_trait]
impl ImagePipeline for FakePipeline {
    async fn build(
        &self,
        job: BuildJob,
        progress: Arc<dyn BuildProgress>,
    ) -> Result<BuiltVersion, BuildFailure> {
        progress.vm_started("vm-build");
        if self.hang {
            std::future::pending::<()>().await;
        }
        std::fs::create_dir_all(&job.snapshot_dir).unwrap();
        std::fs::write(job.snapshot_dir.join("memory"), b"m").unwrap();
        progress.vm_stopped("vm-build");
        Ok(BuiltVersion {
            snapshot_dir: job.snapshot_dir,
            container: ContainerConfig::default(),
            sizes: BuildSizes {
                memory_bytes: 3,
                disk_bytes: 2,
                code_bytes: 1,
            },
        })
    }
}

struct Harness {
    dir: tempfile::TempDir,
    node: Arc<FakeNode>,
    control: HearthControl,
}

fn ctx() -> RequestContext {
    RequestContext {
        request_id: "r".to_owned(),
        access_key_id: "AKIA".to_owned(),
    }
}

fn config(dir: &Path, budget: Option<u64>) -> ControlConfig {
    let assets = dir.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    for file in ["vmlinuz", "initramfs.cpio.gz"] {
        std::fs::write(assets.join(file), b"").unwrap();
    }
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("artifacts/apps")).unwrap();
    std::fs::write(data.join("artifacts/apps/app.zip"), b"zip").unwrap();
    let mut config = ControlConfig::new(data, assets, "/bin/false".into());
    config.guest_memory_cap_mib = Some(256);
    config.memory_budget_mib = budget;
    config
}

async fn open(
    dir: tempfile::TempDir,
    node: Arc<FakeNode>,
    hang: bool,
    budget: Option<u64>,
) -> Harness {
    let pipeline = Arc::new(FakePipeline { hang });
    let control = HearthControl::open(config(dir.path(), budget), pipeline, node.clone())
        .await
        .unwrap();
    Harness { dir, node, control }
}

fn image_request(name: &str) -> CreateMicrovmImageRequest {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "baseImageArn": "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1",
        "buildRoleArn": "arn:aws:iam::123456789012:role/b",
        "codeArtifact": {"uri": "s3://apps/app.zip"},
        "hooks": {"port": 9000, "microvmHooks": {"run": "ENABLED", "terminate": "ENABLED"}},
    }))
    .unwrap()
}

async fn eventually<T>(mut read: impl AsyncFnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    for _ in 0..500 {
        let value = read().await;
        if done(&value) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the state never settled");
}

impl Harness {
    async fn built_image(&self, name: &str) {
        self.control
            .create_microvm_image(&ctx(), image_request(name))
            .await
            .unwrap();
        let got = eventually(
            async || self.image(name).await,
            |i| i.state != MicrovmImageState::Creating,
        )
        .await;
        assert_eq!(got.state, MicrovmImageState::Created);
    }

    async fn image(&self, name: &str) -> GetMicrovmImageOutput {
        let input = GetMicrovmImageInput {
            image_identifier: name.to_owned(),
        };
        self.control.get_microvm_image(&ctx(), input).await.unwrap()
    }

    async fn run(&self, image: &str, payload: &str) -> Result<Microvm, ApiError> {
        let input = serde_json::from_value(serde_json::json!({
            "imageIdentifier": image, "runHookPayload": payload,
        }))
        .unwrap();
        self.control.run_microvm(&ctx(), input).await
    }

    async fn microvm(&self, id: &str) -> Microvm {
        let input = GetMicrovmRequest {
            microvm_identifier: id.to_owned(),
        };
        self.control.get_microvm(&ctx(), input).await.unwrap()
    }

    async fn settled(&self, id: &str) -> Microvm {
        eventually(
            async || self.microvm(id).await,
            |m| {
                !matches!(
                    m.state,
                    MicrovmState::Pending | MicrovmState::Terminating | MicrovmState::Suspending
                )
            },
        )
        .await
    }
}

#[tokio::test]
async fn a_built_image_runs_microvms_that_terminate() {
    let h = open(tempfile::tempdir().unwrap(), Arc::default(), false, None).await;
    h.built_image("app").await;

    let run = h.run("app", "hello").await.unwrap();
    assert_eq!(run.state, MicrovmState::Pending);
    assert!(run.microvm_id.starts_with("microvm-"));
    assert_eq!(
        h.settled(&run.microvm_id).await.state,
        MicrovmState::Running
    );
    let calls = h.node.hooks.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![(run.microvm_id.clone(), "run", b"hello".to_vec())]
    );

    let input = TerminateMicrovmRequest {
        microvm_identifier: run.microvm_id.clone(),
    };
    h.control
        .terminate_microvm(&ctx(), input.clone())
        .await
        .unwrap();
    let done = h.settled(&run.microvm_id).await;
    assert_eq!(done.state, MicrovmState::Terminated);
    assert_eq!(done.state_reason.as_deref(), Some("USER_INITIATED"));
    assert!(!h
        .node
        .is_running(&MicrovmId::parse(&run.microvm_id).unwrap()));
    assert_eq!(h.node.hooks.lock().unwrap().last().unwrap().1, "terminate");
    h.control.terminate_microvm(&ctx(), input).await.unwrap();
}

#[tokio::test]
async fn a_failed_run_hook_terminates_the_microvm_with_a_reason() {
    let node = Arc::new(FakeNode::default());
    node.fail_run_hook.store(true, Ordering::SeqCst);
    let h = open(tempfile::tempdir().unwrap(), node, false, None).await;
    h.built_image("app").await;

    let run = h.run("app", "").await.unwrap();
    let done = h.settled(&run.microvm_id).await;
    assert_eq!(done.state, MicrovmState::Terminated);
    assert_eq!(done.state_reason.as_deref(), Some("RUN_HOOK_FAILED"));
}

#[tokio::test]
async fn suspend_and_resume_follow_the_state_machine() {
    let h = open(tempfile::tempdir().unwrap(), Arc::default(), false, None).await;
    h.built_image("app").await;
    let id = h.run("app", "").await.unwrap().microvm_id;
    h.settled(&id).await;

    let resume = ResumeMicrovmRequest {
        microvm_identifier: id.clone(),
    };
    let error = h
        .control
        .resume_microvm(&ctx(), resume.clone())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "ConflictException");

    let suspend = SuspendMicrovmRequest {
        microvm_identifier: id.clone(),
    };
    h.control
        .suspend_microvm(&ctx(), suspend.clone())
        .await
        .unwrap();
    assert_eq!(h.settled(&id).await.state, MicrovmState::Suspended);
    let error = h
        .control
        .suspend_microvm(&ctx(), suspend)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "ConflictException");

    h.control.resume_microvm(&ctx(), resume).await.unwrap();
    assert_eq!(h.settled(&id).await.state, MicrovmState::Running);
}

#[tokio::test]
async fn a_run_beyond_the_memory_budget_is_refused() {
    let h = open(
        tempfile::tempdir().unwrap(),
        Arc::default(),
        false,
        Some(300),
    )
    .await;
    h.built_image("app").await;
    h.run("app", "").await.unwrap();
    let error = h.run("app", "").await.unwrap_err();
    assert_eq!(error.code(), "InsufficientCapacityException");
}

#[tokio::test]
async fn a_restart_settles_what_was_cut_short() {
    let h = open(tempfile::tempdir().unwrap(), Arc::default(), false, None).await;
    h.built_image("app").await;
    let id = h.run("app", "").await.unwrap().microvm_id;
    h.settled(&id).await;
    h.control.shutdown().await;

    // The VM died while the server was down; a build is left hanging.
    let Harness { dir, .. } = h;
    let h = open(dir, Arc::default(), true, None).await;
    let gone = h.microvm(&id).await;
    assert_eq!(gone.state, MicrovmState::Terminated);
    assert_eq!(gone.state_reason.as_deref(), Some("VM_EXITED"));

    h.control
        .create_microvm_image(&ctx(), image_request("stuck"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.control.shutdown().await;
    let Harness { dir, .. } = h;
    let h = open(dir, Arc::default(), false, None).await;
    assert_eq!(
        h.image("stuck").await.state,
        MicrovmImageState::CreateFailed
    );
    let input = GetMicrovmImageVersionInput {
        image_identifier: "stuck".to_owned(),
        image_version: "1".to_owned(),
    };
    let version = h
        .control
        .get_microvm_image_version(&ctx(), input)
        .await
        .unwrap();
    assert_eq!(version.state, MicrovmImageVersionState::Failed);
    assert_eq!(
        version.state_reason.as_deref(),
        Some("the server stopped during the build")
    );
    drop(h.dir);
}

#[tokio::test]
async fn a_crash_mid_suspend_and_mid_resume_is_finished_on_restart() {
    let node = Arc::new(FakeNode::default());
    let h = open(tempfile::tempdir().unwrap(), node.clone(), false, None).await;
    let mut request = image_request("app");
    request.config.hooks = serde_json::from_value(serde_json::json!({
        "port": 9000,
        "microvmHooks": {"suspend": "ENABLED", "resume": "ENABLED"},
    }))
    .unwrap();
    h.control
        .create_microvm_image(&ctx(), request)
        .await
        .unwrap();
    eventually(
        async || h.image("app").await,
        |i| i.state == MicrovmImageState::Created,
    )
    .await;
    let suspending = h.run("app", "").await.unwrap().microvm_id;
    let resuming = h.run("app", "").await.unwrap().microvm_id;
    for id in [&suspending, &resuming] {
        assert_eq!(h.settled(id).await.state, MicrovmState::Running);
    }
    let suspend = |id: &str| SuspendMicrovmRequest {
        microvm_identifier: id.to_owned(),
    };
    let resume = |id: &str| ResumeMicrovmRequest {
        microvm_identifier: id.to_owned(),
    };
    h.control
        .suspend_microvm(&ctx(), suspend(&resuming))
        .await
        .unwrap();
    assert_eq!(h.settled(&resuming).await.state, MicrovmState::Suspended);

    // Each is held in its hook when the server dies; their VMs run on.
    node.hang_hooks
        .lock()
        .unwrap()
        .extend(["suspend", "resume"]);
    h.control
        .suspend_microvm(&ctx(), suspend(&suspending))
        .await
        .unwrap();
    h.control
        .resume_microvm(&ctx(), resume(&resuming))
        .await
        .unwrap();
    eventually(
        async || node.called(&suspending, "suspend") && node.called(&resuming, "resume"),
        |called| *called,
    )
    .await;
    let Harness { dir, .. } = h;
    let node = FakeNode::running(&[&suspending, &resuming]);
    let h = open(dir, node.clone(), false, None).await;

    let suspended = h.settled(&suspending).await;
    assert_eq!(suspended.state, MicrovmState::Suspended);
    assert!(node.called(&suspending, "suspend"), "suspended again");
    let resumed = h.settled(&resuming).await;
    assert_eq!(resumed.state, MicrovmState::Running);
    assert!(node.called(&resuming, "resume"), "resumed again");
    let snapshot = h.dir.path().join("data/suspended").join(&resuming);
    eventually(async || snapshot.exists(), |exists| !exists).await;

    h.control
        .resume_microvm(&ctx(), resume(&suspending))
        .await
        .unwrap();
    assert_eq!(h.settled(&suspending).await.state, MicrovmState::Running);
}
