//! `hearth vm boot --net`: a VM's NIC in a network namespace of its own,
//! named after the VM, with the same guest addresses after every restore,
//! and no namespace left once the VM is stopped, snapshotted away or removed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Hearth;

fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn has_netns(id: &str) -> bool {
    namespaces().contains(&format!("hvm-{id}"))
}

fn uplink(hearth: &Hearth, id: &str) -> String {
    let text = std::fs::read_to_string(hearth.vm_dir(id).join("network.json")).expect("network");
    let net: serde_json::Value = serde_json::from_str(&text).expect("json");
    net["host_if"].as_str().expect("host_if").to_owned()
}

/// The guest's address and whether its gateway answers.
fn guest_network(hearth: &Hearth, id: &str) -> (String, bool) {
    let addr = hearth.sh(id, "ip -4 addr show eth0 | grep -o 'inet [0-9./]*'");
    let (code, _, _) = hearth.exec(id, &["ping", "-c1", "-W2", "10.0.2.2"]);
    (addr.trim().to_owned(), code == 0)
}

#[test]
fn a_vm_with_a_network_keeps_its_guest_addresses_across_restores_in_fresh_namespaces() {
    let hearth = Hearth::new();
    let rootfs = hearth.rootfs.to_str().expect("path").to_owned();
    let id = hearth
        .ok(&[
            "vm", "boot", "--net", "--rootfs", &rootfs, "--memory", "256", "--disk", "256",
        ])
        .trim()
        .to_owned();
    assert!(has_netns(&id), "no namespace for {id}");
    assert_eq!(
        guest_network(&hearth, &id),
        ("inet 10.0.2.15/24".to_owned(), true)
    );

    let snap = hearth.path("snap");
    hearth.ok(&[
        "vm",
        "snapshot",
        &id,
        snap.to_str().expect("path"),
        "--stop",
    ]);
    hearth.wait_for("the namespace to go", Duration::from_secs(20), || {
        (!has_netns(&id)).then_some(())
    });

    let a = hearth
        .ok(&["vm", "restore", snap.to_str().expect("path")])
        .trim()
        .to_owned();
    let b = hearth
        .ok(&["vm", "restore", snap.to_str().expect("path")])
        .trim()
        .to_owned();
    for vm in [&a, &b] {
        assert!(has_netns(vm), "no namespace for restored {vm}");
        assert_eq!(
            guest_network(&hearth, vm),
            ("inet 10.0.2.15/24".to_owned(), true),
            "{vm}"
        );
    }
    assert_ne!(uplink(&hearth, &a), uplink(&hearth, &b));

    hearth.ok(&["vm", "rm", &a, &b]);
    assert!(!has_netns(&a) && !has_netns(&b), "namespaces left behind");
}
