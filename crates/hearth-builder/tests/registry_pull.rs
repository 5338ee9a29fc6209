//! Pulling from a real registry: Debian's `docker-registry` on loopback with
//! htpasswd auth, holding images made by umoci and pushed by skopeo.
#![allow(clippy::unwrap_used)]

#[path = "../../../tests/fixtures/registry/harness.rs"]
mod harness;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use harness::{TestRegistry, PASSWORD, USER};
use hearth_builder::oci::{PullError, Puller, RegistryConfig};
use hearth_builder::reference::ImageRef;

fn puller(registry: &TestRegistry, password: Option<&str>) -> Puller {
    let config = match password {
        Some(p) => RegistryConfig::default().with_credentials(&registry.addr, USER, p),
        None => RegistryConfig::default(),
    };
    Puller::new(config)
}

fn image(registry: &TestRegistry, name: &str) -> ImageRef {
    ImageRef::parse(&format!("{}/{name}", registry.addr)).unwrap()
}

#[tokio::test]
async fn pull_with_credentials_applies_layers_and_whiteouts() {
    let registry = TestRegistry::start().unwrap();
    registry.push_fixture().unwrap();
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();

    let pulled = puller(&registry, Some(PASSWORD))
        .pull(&image(&registry, "fixture:1"), &rootfs, work.path())
        .await
        .unwrap_or_else(|e| panic!("pull failed: {e:?}\n{}", registry.log()));

    assert_eq!(pulled.layers, 3);
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/hello.txt")).unwrap(),
        "hello\n"
    );
    assert!(
        !rootfs.join("etc/deleted.txt").exists(),
        "the whiteout deleted the lower file"
    );
    assert!(rootfs.join("etc/layer2.txt").exists());
    let old: Vec<_> = fs::read_dir(rootfs.join("opt/old"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(old, vec!["new.txt"]);

    let tool = fs::metadata(rootfs.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o755);
    assert_eq!(
        tool.ino(),
        fs::metadata(rootfs.join("bin/tool-hard")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(rootfs.join("bin/tool-link")).unwrap(),
        Path::new("tool")
    );
    let owned = fs::metadata(rootfs.join("srv/owned.txt")).unwrap();
    assert_eq!(owned.mode() & 0o7777, 0o640);
    assert_eq!((owned.uid(), owned.gid()), (1000, 1000));
    assert!(
        !work
            .path()
            .read_dir()
            .unwrap()
            .any(|e| e.unwrap().file_name() != "rootfs"),
        "no layer downloads are left behind"
    );

    let config = pulled.config;
    assert_eq!(config.env_get("FOO"), Some("bar"));
    assert_eq!(config.user, "1000:1000");
    assert_eq!(config.workdir, "/opt");
    assert_eq!(config.entrypoint, vec!["/bin/tool"]);
    assert_eq!(config.cmd, vec!["serve"]);
    assert_eq!(config.exposed_ports, vec!["8080/tcp"]);
    assert_eq!(config.labels["org.hearth.fixture"], "1");
}

#[tokio::test]
async fn image_index_resolves_to_linux_amd64() {
    let registry = TestRegistry::start().unwrap();
    registry.push_fixture().unwrap();
    let puller = puller(&registry, Some(PASSWORD));
    let work = tempfile::tempdir().unwrap();

    let single = puller
        .resolve_digest(&image(&registry, "fixture:1"))
        .await
        .unwrap();
    let rootfs = work.path().join("multi");
    fs::create_dir(&rootfs).unwrap();
    let pulled = puller
        .pull(&image(&registry, "fixture:multi"), &rootfs, work.path())
        .await
        .unwrap();

    assert_eq!(
        pulled.manifest_digest, single,
        "the amd64 entry, not the arm64 one listed first"
    );
    assert_ne!(
        pulled.digest, pulled.manifest_digest,
        "the index has its own digest"
    );
    assert!(!pulled.config.labels.contains_key("org.hearth.variant"));
    assert!(rootfs.join("opt/old/new.txt").exists());

    let missing = work.path().join("missing");
    fs::create_dir(&missing).unwrap();
    let err = puller
        .pull(&image(&registry, "fixture:nope"), &missing, work.path())
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn pull_without_or_with_wrong_credentials_fails_clearly() {
    let registry = TestRegistry::start().unwrap();
    let work = tempfile::tempdir().unwrap();
    let reference = image(&registry, "fixture:1");

    let err = puller(&registry, None)
        .pull(&reference, work.path(), work.path())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::CredentialsRequired { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "registry {} requires credentials for {reference} and none are configured",
            registry.addr
        )
    );

    let err = puller(&registry, Some("wrong"))
        .pull(&reference, work.path(), work.path())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PullError::CredentialsRefused { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "registry {} refused the credentials for {reference}",
            registry.addr
        )
    );
    assert_eq!(
        fs::read_dir(work.path()).unwrap().count(),
        0,
        "nothing was written"
    );
}

/// A runner that only records what it was asked to run.
#[derive(Default)]
struct Recorder {
    calls: std::sync::Mutex<Vec<(Vec<String>, String, String)>>,
}

impl hearth_builder::runner::StepRunner for Recorder {
    async fn run(
        &self,
        _rootfs: &Path,
        argv: Vec<String>,
        _env: Vec<(String, String)>,
        cwd: String,
        user: String,
        _output: hearth_builder::runner::OutputSink,
    ) -> Result<hearth_builder::runner::RunOutcome, hearth_builder::runner::RunnerError> {
        self.calls.lock().unwrap().push((argv, cwd, user));
        Ok(hearth_builder::runner::RunOutcome::default())
    }
}

#[tokio::test]
async fn builds_start_from_registry_images_kept_in_the_store() {
    use hearth_builder::dockerfile::Dockerfile;
    use hearth_builder::plan::{BuildRequest, Builder};
    use hearth_builder::store::ImageStore;

    let registry = TestRegistry::start().unwrap();
    registry.push_fixture().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let context = dir.path().join("ctx");
    fs::create_dir(&context).unwrap();
    fs::write(context.join("f"), "ctx file").unwrap();
    let reference = format!("{}/fixture:1", registry.addr);

    let request = |out: &str, text: &str| BuildRequest {
        dockerfile: Dockerfile::parse(text).unwrap(),
        context: context.clone(),
        build_args: Default::default(),
        target: None,
        output: dir.path().join(out),
    };
    let dockerfile = format!("FROM {reference}\nRUN check\nCOPY f /opt/f\n");

    // Without credentials the build fails on its FROM line.
    let anonymous = Puller::new(RegistryConfig::default());
    let runner = Recorder::default();
    let builder = Builder {
        store: &store,
        puller: &anonymous,
        cache: None,
        runner: &runner,
        events: None,
    };
    let err = builder
        .build(&request("denied", &dockerfile))
        .await
        .unwrap_err();
    assert!(
        err.chain().starts_with(&format!(
            "line 1: FROM {reference}: registry {} requires credentials",
            registry.addr
        )),
        "{}",
        err.chain()
    );

    let puller = puller(&registry, Some(PASSWORD));
    let builder = Builder {
        puller: &puller,
        ..builder
    };
    let output = builder.build(&request("image", &dockerfile)).await.unwrap();
    let calls = runner.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![(
            vec!["/bin/sh".to_string(), "-c".to_string(), "check".to_string()],
            "/opt".to_string(),
            "1000:1000".to_string()
        )]
    );
    assert_eq!(output.config.env_get("FOO"), Some("bar"));
    assert_eq!(output.config.entrypoint, vec!["/bin/tool"]);
    assert!(!output.rootfs.join("etc/deleted.txt").exists());
    assert_eq!(
        fs::read_to_string(output.rootfs.join("opt/f")).unwrap(),
        "ctx file"
    );

    // The pull is kept; resolving again reuses it.
    let normalized = ImageRef::parse(&reference).unwrap().to_string();
    assert_eq!(store.list().unwrap(), vec![normalized.clone()]);
    let kept = store.get(&normalized).unwrap().unwrap();
    let marker = fs::metadata(kept.rootfs.join("etc/hello.txt"))
        .unwrap()
        .ino();
    let again = store.resolve(&reference, &puller).await.unwrap();
    assert_eq!(again.id, kept.id);
    assert_eq!(
        fs::metadata(again.rootfs.join("etc/hello.txt"))
            .unwrap()
            .ino(),
        marker
    );
}
