//! The network of a real build microVM: a RUN step reaches a server standing
//! for the internet (in a namespace this test makes, routed from the host),
//! but not the host's loopback (which QEMU's user network would hand it at
//! 10.0.2.2) nor the host's other addresses; its DNS server (10.0.2.3) is
//! forwarded to the host's (here a stand-in's); the VM's namespace is gone
//! once the step is done. Skipped when the assets are missing.
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

/// A DNS server that answers every A query with one address.
const DNS_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
answer = bytes(int(x) for x in sys.argv[2].split("."))
while True:
    q, peer = s.recvfrom(512)
    end = q.index(b"\0", 12) + 5
    is_a = q[end - 4:end - 2] == b"\0\1"
    head = q[:2] + b"\x81\x80" + q[4:6] + (b"\0\1" if is_a else b"\0\0") + b"\0\0\0\0"
    rr = b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\4" + answer if is_a else b""
    s.sendto(head + q[12:end] + rr, peer)
"#;

impl Lab {
    /// Answers A queries on `listen`:53 in `netns` with `address`.
    fn dns(&mut self, netns: &str, listen: &str, address: &str) {
        let child = Command::new("ip")
            .args([
                "netns", "exec", netns, "python3", "-c", DNS_SERVER, listen, address,
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(child);
        std::thread::sleep(Duration::from_millis(500));
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
    lab.dns(&netns, "198.51.101.2", "198.51.101.7");
    // The guest's DNS server, 10.0.2.3, forwards to the stand-in's.
    std::env::set_var("HEARTH_DNS_SERVER", "198.51.101.2");
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
echo "dns: $(nslookup example.test | grep -c 198.51.101.7)"
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
    assert!(lines.contains(&"dns: 1".to_owned()), "{lines:?}");
    // Other builds on this host may have build VMs of their own running: any
    // namespace that appeared meanwhile must be in use by a VM, not left.
    let left = (0..10).find_map(|_| {
        let left: Vec<String> = build_namespaces()
            .into_iter()
            .filter(|ns| !before.contains(ns) && !in_use(ns))
            .collect();
        if left.is_empty() {
            return Some(left);
        }
        std::thread::sleep(Duration::from_millis(300));
        None
    });
    assert!(left.is_some(), "the build vm's namespace was left behind");
}

fn in_use(netns: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .unwrap();
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}
