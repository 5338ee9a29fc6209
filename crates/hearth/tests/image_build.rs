//! Image builds end to end through `hearth image build`: real build
//! microVMs (RUN steps), a real registry, real debootstrap output, snapshots
//! restored with `hearth_shim::launch::restore` and reached through the
//! agent's tunnel.
//!
//! Needs the guest assets (`HEARTH_ASSETS`, as `scripts/test.sh` sets) and
//! reaches Debian's archive from inside a build microVM (the Python app).
#![allow(clippy::unwrap_used)]

#[path = "../../../tests/fixtures/registry/harness.rs"]
mod harness;
mod image_support;

use std::fs;
use std::path::Path;

use image_support::{context, http_get, zip_file, ImageHearth};

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn python_app_builds_from_debian_and_serves_from_its_snapshot() {
    let hearth = ImageHearth::new();
    let version = hearth.build_ok(
        &example("python-app"),
        "python-app",
        &[
            "--hooks-port",
            "9000",
            "--ready",
            "--validate",
            "--memory",
            "512",
        ],
    );

    let record = hearth.record(&version);
    assert_eq!(record["name"], "python-app");
    assert_eq!(record["version"], 1);
    assert_eq!(record["app"]["argv"][0], "python3");
    assert_eq!(record["resources"]["memory_mib"], 2048);
    assert!(record["sizes"]["memory_snapshot_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(record["sizes"]["disk_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(record["sizes"]["code_bytes"].as_u64().unwrap() > 1000);
    assert!(record["base"]["id"]
        .as_str()
        .unwrap()
        .starts_with(record["base"]["kernel_release"].as_str().unwrap()));
    let log = fs::read_to_string(version.join("build.log")).unwrap();
    assert!(
        log.contains("Setting up python3"),
        "apt's output is in the log"
    );
    assert!(log.contains("waiting for the ready hook on port 9000"));
    assert!(log.contains("validating the snapshot"));

    let vm = hearth.restore(&version).await;
    let (status, body) = http_get(&vm, 8080, "/hello").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello from hearth"), "{body}");
    // The microVM's own network names its resolver; nothing of the build's
    // is left beside it.
    let (code, resolv) = hearth.exec(&vm, &["cat", "/etc/resolv.conf"]);
    assert_eq!(
        (code, resolv.as_str()),
        (0, "nameserver 10.0.2.3\n"),
        "the microVM's DNS and only it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_image_with_a_whiteout_and_a_multi_stage_copy_runs_in_a_microvm() {
    let registry = harness::TestRegistry::start().unwrap();
    registry.push_fixture().unwrap();
    let hearth = ImageHearth::new();
    let auth = hearth.data.path().join("auth.json");
    let creds = format!(
        r#"{{"auths":{{"{}":{{"username":"{}","password":"{}"}}}}}}"#,
        registry.addr,
        harness::USER,
        harness::PASSWORD
    );
    fs::write(&auth, creds).unwrap();

    let dockerfile = format!(
        "FROM busybox AS tools\n\
         RUN echo made-in-stage-one > /stage-one.txt\n\
         \n\
         FROM {}/fixture:multi\n\
         USER 0\n\
         COPY --from=tools /bin/busybox /bin/busybox\n\
         COPY --from=tools /stage-one.txt /opt/stage-one.txt\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox --install -s /bin && test ! -e /etc/deleted.txt\"]\n\
         ENTRYPOINT [\"/bin/busybox\"]\n\
         CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/etc\"]\n",
        registry.addr
    );
    let source = context(hearth.data.path(), "ctx", &[("Dockerfile", &dockerfile)]);
    let auth_arg = auth.to_str().unwrap();
    let version = hearth.build_ok(&source, "fixture-app", &["--registry-auth", auth_arg]);

    let vm = hearth.restore(&version).await;
    let (status, body) = http_get(&vm, 8080, "/hello.txt").await;
    assert_eq!((status, body.as_str()), (200, "hello\n"));
    let (status, _) = http_get(&vm, 8080, "/deleted.txt").await;
    assert_eq!(status, 404, "the whiteout's file is absent");
    assert_eq!(hearth.exec(&vm, &["test", "-e", "/etc/deleted.txt"]).0, 1);
    assert_eq!(
        hearth.exec(&vm, &["cat", "/etc/layer2.txt"]).1,
        "second layer\n"
    );
    assert_eq!(
        hearth.exec(&vm, &["cat", "/opt/stage-one.txt"]).1,
        "made-in-stage-one\n",
        "COPY --from the first stage"
    );
    let record = hearth.record(&version);
    let env = record["config"]["env"].as_array().unwrap();
    assert!(
        env.contains(&"FOO=bar".into()),
        "the fixture's config came along: {env:?}"
    );
}

#[test]
fn an_unchanged_rebuild_hits_every_step_and_a_late_change_reuses_the_early_ones() {
    let hearth = ImageHearth::new();
    let files = |late: &str| {
        vec![
            (
                "Dockerfile",
                "FROM busybox\n\
                 RUN echo one > /one.txt\n\
                 COPY app.txt /app.txt\n\
                 RUN cat /one.txt /app.txt > /both.txt\n\
                 CMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n"
                    .to_owned(),
            ),
            ("app.txt", late.to_owned()),
        ]
    };
    let write = |late: &str| {
        let dir = hearth.data.path().join("ctx");
        let _ = fs::remove_dir_all(&dir);
        let owned = files(late);
        let borrowed: Vec<(&str, &str)> = owned.iter().map(|(p, c)| (*p, c.as_str())).collect();
        context(hearth.data.path(), "ctx", &borrowed)
    };

    let first = hearth.build_ok(&write("v1\n"), "cached", &[]);
    let miss = |k: &str| (k.to_owned(), "miss".to_owned());
    let hit = |k: &str| (k.to_owned(), "hit".to_owned());
    assert_eq!(
        hearth.cache_statuses(&first),
        vec![miss("RUN"), miss("COPY"), miss("RUN")]
    );

    let second = hearth.build_ok(&write("v1\n"), "cached", &[]);
    assert_eq!(
        hearth.cache_statuses(&second),
        vec![hit("RUN"), hit("COPY"), hit("RUN")]
    );
    let log = fs::read_to_string(second.join("build.log")).unwrap();
    assert_eq!(log.matches("cache hit").count(), 3, "{log}");
    assert!(second.ends_with("2"));

    let third = hearth.build_ok(&write("v2\n"), "cached", &[]);
    assert_eq!(
        hearth.cache_statuses(&third),
        vec![hit("RUN"), miss("COPY"), miss("RUN")]
    );
}

#[test]
fn a_dockerfile_syntax_error_names_its_line() {
    let hearth = ImageHearth::new();
    let source = context(
        hearth.data.path(),
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN true\nFROBNICATE now\n")],
    );
    let reason = hearth.build_fails(&source, "bad-syntax", &[]);
    assert_eq!(
        reason,
        "image build failed: Dockerfile: line 3: unknown instruction FROBNICATE"
    );
    hearth.assert_clean("bad-syntax");
}

#[test]
fn a_missing_base_image_is_named() {
    let hearth = ImageHearth::new();
    let source = context(
        hearth.data.path(),
        "ctx",
        &[("Dockerfile", "FROM nosuchimage:1\nRUN true\n")],
    );
    let reason = hearth.build_fails(&source, "no-base", &[]);
    assert_eq!(
        reason,
        "image build failed: line 1: FROM nosuchimage:1: base image nosuchimage:1 not found: \
         it is not in the local image store and names no registry \
         (`hearth image seed` adds debian:12 and busybox)"
    );
    hearth.assert_clean("no-base");
}

#[test]
fn a_run_that_exits_3_reports_the_code_and_its_last_lines() {
    let hearth = ImageHearth::new();
    let source = context(
        hearth.data.path(),
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo fine > /ok\nRUN echo checking; echo broken config >&2; exit 3\n",
        )],
    );
    let reason = hearth.build_fails(&source, "run-fails", &[]);
    let expected = "image build failed: line 3: RUN echo checking; echo broken config >&2; \
                    exit 3 exited with code 3; last output: ";
    assert!(reason.starts_with(expected), "{reason}");
    // stdout and stderr travel apart; both are quoted.
    assert!(
        reason.contains("checking") && reason.contains("broken config"),
        "{reason}"
    );
    hearth.assert_clean("run-fails");
    let cache = hearth.data.path().join("build-cache/entries");
    assert_eq!(
        fs::read_dir(cache).unwrap().count(),
        1,
        "the completed step stays cached"
    );
}

#[test]
fn a_ready_hook_that_never_answers_200_fails_the_build() {
    let hearth = ImageHearth::new();
    let source = context(
        hearth.data.path(),
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY hook.sh /hook.sh\n\
                 CMD [\"nc\", \"-ll\", \"-p\", \"9000\", \"-e\", \"/bin/sh\", \"/hook.sh\"]\n",
            ),
            (
                "hook.sh",
                "printf 'HTTP/1.1 503 Service Unavailable\\r\\nContent-Length: 0\\r\\n\\r\\n'\n",
            ),
        ],
    );
    let args = ["--hooks-port", "9000", "--ready", "--ready-timeout", "4"];
    let reason = hearth.build_fails(&source, "never-ready", &args);
    assert_eq!(
        reason,
        "image build failed: snapshot: the ready hook did not answer 200 on port 9000 \
         within 4 s (last: HTTP 503)"
    );
    hearth.assert_clean("never-ready");
}

#[test]
fn a_cmd_that_exits_at_once_fails_with_its_code_and_output() {
    let hearth = ImageHearth::new();
    let source = context(
        hearth.data.path(),
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nCMD [\"sh\", \"-c\", \"echo starting; echo no config >&2; exit 4\"]\n",
        )],
    );
    let reason = hearth.build_fails(&source, "exits", &[]);
    assert_eq!(
        reason,
        "image build failed: snapshot: the app exited with code 4 before it was ready; \
         last output: starting | no config"
    );
    hearth.assert_clean("exits");
}

#[test]
fn a_zip_with_a_parent_dir_entry_is_refused() {
    let hearth = ImageHearth::new();
    let zip = hearth.data.path().join("evil.zip");
    zip_file(
        &zip,
        &[("Dockerfile", b"FROM busybox\n"), ("../evil", b"x")],
    );
    let reason = hearth.build_fails(&zip, "evil", &[]);
    assert_eq!(
        reason,
        "image build failed: code artifact: zip entry \"../evil\" contains a .. component"
    );
    hearth.assert_clean("evil");
    assert!(!hearth.data.path().join("evil").exists());
}

#[test]
fn a_zip_bomb_stops_at_the_size_limit() {
    let hearth = ImageHearth::new();
    let zip = hearth.data.path().join("bomb.zip");
    let zeros = vec![0u8; 16 << 20];
    zip_file(
        &zip,
        &[("Dockerfile", b"FROM busybox\n"), ("bomb.bin", &zeros)],
    );
    assert!(
        fs::metadata(&zip).unwrap().len() < 1 << 20,
        "the bomb is small"
    );
    let reason = hearth.build_fails(&zip, "bomb", &["--max-artifact-bytes", "1048576"]);
    assert_eq!(
        reason,
        "image build failed: code artifact: zip entry \"bomb.bin\" takes the unpacked size \
         past the limit of 1048576 bytes"
    );
    hearth.assert_clean("bomb");
}

#[test]
fn a_zip_without_a_dockerfile_is_refused() {
    let hearth = ImageHearth::new();
    let zip = hearth.data.path().join("nodockerfile.zip");
    zip_file(
        &zip,
        &[
            ("app/Dockerfile", b"FROM busybox\n"),
            ("main.py", b"print(1)\n"),
        ],
    );
    let reason = hearth.build_fails(&zip, "no-dockerfile", &[]);
    assert_eq!(
        reason,
        "image build failed: code artifact: the artifact has no Dockerfile at its root"
    );
    hearth.assert_clean("no-dockerfile");
}

#[test]
fn the_app_gets_dockers_default_capabilities_unless_the_image_asks_for_all() {
    let hearth = ImageHearth::new();
    let source = context(
        hearth.data.path(),
        "caps",
        &[(
            "Dockerfile",
            "FROM busybox\nEXPOSE 8080\n\
             CMD [\"sh\", \"-c\", \"grep CapBnd /proc/self/status > /tmp/caps; exec nc -ll -p 8080 -e cat\"]\n",
        )],
    );
    let bounding = |name: &str, args: &[&str]| {
        hearth.build_ok(&source, name, args);
        let out = hearth
            .cmd()
            .args(["image", "run", name])
            .output()
            .expect("image run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let dir = hearth_shim::VmDir::new(hearth.data.path(), &id);
        let (code, caps) = hearth.exec(&dir, &["cat", "/tmp/caps"]);
        assert_eq!(code, 0);
        caps.split_whitespace()
            .nth(1)
            .expect("CapBnd value")
            .to_owned()
    };

    // Docker's default set, then every capability the kernel has.
    assert_eq!(bounding("default-caps", &[]), "00000000a80425fb");
    let all = bounding("all-caps", &["--additional-os-capabilities", "ALL"]);
    assert!(all.starts_with("000001ff"), "CapBnd with ALL: {all}");
}
