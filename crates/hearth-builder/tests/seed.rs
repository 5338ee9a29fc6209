//! Seeding the base-image store from this machine: busybox always, Debian
//! (debootstrap from Debian's archive, about half a minute) only when
//! `HEARTH_TEST_DEBIAN=1`.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::Instant;

use hearth_builder::seed::{seed_busybox, seed_debian};
use hearth_builder::store::ImageStore;

#[test]
fn busybox_seed_makes_a_usable_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let image = seed_busybox(&store).unwrap();

    assert_eq!(image.reference, "busybox:latest");
    assert_eq!(image.source, "busybox");
    for applet in ["bin/sh", "bin/ls", "usr/bin/env"] {
        let link = fs::read_link(image.rootfs.join(applet)).unwrap();
        assert!(
            link.ends_with("bin/busybox"),
            "{applet} -> {}",
            link.display()
        );
    }
    assert!(fs::read_to_string(image.rootfs.join("etc/passwd"))
        .unwrap()
        .contains("nobody:x:65534"));
    assert_eq!(
        image.config.env_get("PATH").map(|p| p.contains("/bin")),
        Some(true)
    );

    assert_eq!(
        seed_busybox(&store).unwrap(),
        image,
        "seeding again changes nothing"
    );
    assert_eq!(store.get("busybox").unwrap(), Some(image));
}

#[tokio::test]
async fn debian_seed_runs_debootstrap_when_asked() {
    if std::env::var("HEARTH_TEST_DEBIAN").as_deref() != Ok("1") {
        eprintln!("skipped: set HEARTH_TEST_DEBIAN=1 to run debootstrap");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();

    let started = Instant::now();
    let image = seed_debian(&store, "debian:12", None).await.unwrap();
    eprintln!("debootstrap took {:?}", started.elapsed());
    let version = fs::read_to_string(image.rootfs.join("etc/debian_version")).unwrap();
    assert!(version.starts_with("12."), "{version}");
    assert!(image.rootfs.join("bin/bash").exists() || image.rootfs.join("usr/bin/bash").exists());
    assert_eq!(image.config.cmd, vec!["bash"]);
    assert_eq!(
        fs::read_to_string(image.rootfs.join("etc/resolv.conf")).unwrap(),
        "",
        "the host's resolver stays out of the image"
    );
    assert!(
        !Path::new(&image.rootfs).join("proc/self").exists(),
        "nothing stays mounted"
    );

    let started = Instant::now();
    assert_eq!(seed_debian(&store, "debian:12", None).await.unwrap(), image);
    assert!(
        started.elapsed().as_secs() < 5,
        "the second seed is a lookup"
    );
}
