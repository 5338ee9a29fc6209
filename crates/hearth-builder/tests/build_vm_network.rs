//! The network of a real build microVM: a RUN step reaches a server standing
//! for the internet (in a namespace this test makes, routed from the host),
//! but not the host's loopback (which QEMU's user network would hand it at
//! 10.0.2.2) nor the host's other addresses; the VM's namespace is gone once
//! the step is done. Skipped when the assets are missing.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hearth_builder::runner::{OutputSink, StepRunner};
use hearth_builder::seed::seed_busybox;
use hearth_builder::store::ImageStore;
use hearth_builder::vm::BuildVmConfig;
use hearth_builder::vm_runner::VmRunner;

fn assets() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("HEARTH_ASSETS")?);
    dir.join("vmlinuz").is_file().then_some(dir)
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The internet stand-in and the host's listeners, removed on drop.
struct Lab {
    netns: String,
    link: String,
    servers: Vec<Child>,
}

impl Lab {
    fn new(www: &Path) -> Lab {
        let tag = std::process::id() % 10000;
        let lab = Lab {
            netns: format!("hbinet{tag}"),
            link: format!("hxb{tag}"),
            servers: Vec::new(),
        };
        let (ns, link) = (lab.netns.as_str(), lab.link.as_str());
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        sh(&[
            "ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ]);
        sh(&["ip", "addr", "add", "198.51.101.1/24", "dev", link]);
        sh(&["ip", "link", "set", link, "up"]);
        sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            "198.51.101.2/24",
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        sh(&[
            "ip",
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            "198.51.101.1",
        ]);
        std::fs::create_dir_all(www.join("out")).unwrap();
        std::fs::create_dir_all(www.join("host")).unwrap();
        std::fs::write(www.join("out/index.html"), "hello from outside\n").unwrap();
        std::fs::write(www.join("host/index.html"), "hello from the host\n").unwrap();
        lab
    }

    fn httpd(&mut self, netns: Option<&str>, listen: &str, www: &Path) {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "busybox"]);
                c
            }
            None => Command::new("busybox"),
        };
        command
            .args(["httpd", "-f", "-p", listen, "-h"])
            .arg(www)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.servers.push(command.spawn().unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

fn build_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("hvm-b-"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_run_step_reaches_outside_but_not_the_host() {
    let Some(assets) = assets() else {
        eprintln!("skipped: HEARTH_ASSETS has no guest assets");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    let mut lab = Lab::new(&www);
    let netns = lab.netns.clone();
    lab.httpd(Some(&netns), "198.51.101.2:8080", &www.join("out"));
    lab.httpd(None, "127.0.0.1:8094", &www.join("host"));
    lab.httpd(None, "198.51.101.1:8094", &www.join("host"));
    let before = build_namespaces();

    let store = ImageStore::open(dir.path().join("store")).unwrap();
    let image = seed_busybox(&store).unwrap();
    let rootfs = dir.path().join("rootfs");
    hearth_builder::fsutil::copy_tree(&image.rootfs, &rootfs).unwrap();
    std::env::set_var("HEARTH_ACCEL", "tcg");
    let config = BuildVmConfig {
        kernel: assets.join("vmlinuz"),
        initramfs: assets.join("initramfs.cpio.gz"),
        accel_cache: dir.path().join("accel.json"),
        vcpus: 1,
        memory_mib: 256,
        network: true,
    };
    let runner = VmRunner::new(config, dir.path().join("vms"));

    // The internet first, tried for a while (a new link takes a moment to
    // carry traffic), so that the refusals after it cannot pass by accident.
    let script = r#"get() { printf 'GET / HTTP/1.0\r\n\r\n' | timeout 8 nc -w 3 "$1" "$2" 2>/dev/null | tail -n 1; }
for i in $(seq 15); do out=$(get 198.51.101.2 8080); [ -n "$out" ] && break; sleep 1; done
echo "outside: $out"
echo "host loopback: $(get 10.0.2.2 8094)"
echo "host address: $(get 198.51.101.1 8094)"
"#;
    let outcome = runner
        .run(
            &rootfs,
            vec!["/bin/sh".into(), "-c".into(), script.into()],
            vec![("PATH".into(), "/bin:/usr/bin".into())],
            "/".into(),
            "root".into(),
            OutputSink::discard(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, 0, "{outcome:?}");
    let lines = outcome.output_tail;
    assert!(
        lines.contains(&"outside: hello from outside".to_owned()),
        "{lines:?}"
    );
    assert!(lines.contains(&"host loopback: ".to_owned()), "{lines:?}");
    assert!(lines.contains(&"host address: ".to_owned()), "{lines:?}");
    assert_eq!(
        build_namespaces(),
        before,
        "the build vm's namespace is gone"
    );
}
