//! The sweep a starting server makes of VM network namespaces (real
//! namespaces; needs root): the namespace of a VM of this data directory
//! that no longer runs goes; one a process still uses, or one of a VM this
//! server does not know that was made a moment ago, stays.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};

use hearth_control::pipeline::VmHost;
use hearth_control::ShimNode;

/// Namespaces and processes the test made, removed on drop.
struct Made {
    namespaces: Vec<String>,
    procs: Vec<Child>,
}

impl Made {
    fn netns(&mut self, name: &str) {
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        self.namespaces.push(name.to_owned());
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for proc in &mut self.procs {
            let _ = proc.kill();
            let _ = proc.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn exists(netns: &str) -> bool {
    std::path::Path::new("/run/netns").join(netns).exists()
}

#[tokio::test]
async fn only_unused_namespaces_of_vms_that_no_longer_run_are_removed() {
    let data = tempfile::tempdir().unwrap();
    let node = ShimNode::new(VmHost {
        data: data.path().to_owned(),
        kernel: "/nonexistent".into(),
        initramfs: "/nonexistent".into(),
        accel_cache: data.path().join("accel.json"),
        exe: "/nonexistent".into(),
    });
    let tag = std::process::id();
    let (dead, busy, unknown) = (
        format!("vm-dead{tag}"),
        format!("vm-busy{tag}"),
        format!("vm-unknown{tag}"),
    );
    let mut made = Made {
        namespaces: Vec::new(),
        procs: Vec::new(),
    };
    for id in [&dead, &busy] {
        std::fs::create_dir_all(data.path().join("vms").join(id)).unwrap();
    }
    for id in [&dead, &busy, &unknown] {
        made.netns(&format!("hvm-{id}"));
    }
    let sleeper = Command::new("ip")
        .args(["netns", "exec", &format!("hvm-{busy}"), "sleep", "60"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    made.procs.push(sleeper);
    std::thread::sleep(std::time::Duration::from_millis(300));

    let removed = node.remove_orphan_networks().await;
    assert!(removed.contains(&dead), "{removed:?}");
    assert!(!exists(&format!("hvm-{dead}")));
    assert!(!removed.contains(&busy) && exists(&format!("hvm-{busy}")));
    assert!(!removed.contains(&unknown) && exists(&format!("hvm-{unknown}")));
}
