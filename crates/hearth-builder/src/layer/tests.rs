//! Layer applier tests on layers built in memory.

use super::*;
use std::os::unix::fs::MetadataExt;

/// A layer under construction.
pub(crate) struct TarBuilder(tar::Builder<Vec<u8>>);

impl TarBuilder {
    pub(crate) fn new() -> Self {
        TarBuilder(tar::Builder::new(Vec::new()))
    }

    fn header(kind: EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        h
    }

    pub(crate) fn dir(mut self, path: &str) -> Self {
        let mut h = Self::header(EntryType::Directory, 0o755);
        self.0.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    pub(crate) fn file(mut self, path: &str, data: &str) -> Self {
        let mut h = Self::header(EntryType::Regular, 0o644);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data.as_bytes()).unwrap();
        self
    }

    pub(crate) fn file_owned(mut self, path: &str, data: &str, uid: u64, mode: u32) -> Self {
        let mut h = Self::header(EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(data.len() as u64);
        self.0.append_data(&mut h, path, data.as_bytes()).unwrap();
        self
    }

    pub(crate) fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Symlink, 0o777);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    pub(crate) fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(EntryType::Link, 0o644);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    pub(crate) fn pax_mtime(mut self, value: &str) -> Self {
        self.0
            .append_pax_extensions([("mtime", value.as_bytes())])
            .unwrap();
        self
    }

    pub(crate) fn device(mut self, path: &str) -> Self {
        let mut h = Self::header(EntryType::Char, 0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        self.0.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    /// An entry with a raw name, bypassing the tar crate's own checks.
    pub(crate) fn raw_file(mut self, name: &str, data: &str) -> Self {
        let mut h = Self::header(EntryType::Regular, 0o644);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data.as_bytes()).unwrap();
        self
    }

    pub(crate) fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn apply(root: &Path, layer: TarBuilder) -> Result<LayerStats, LayerError> {
    apply_layer(root, layer.bytes().as_slice(), ApplyOptions::default())
}

#[test]
fn whiteout_deletes_a_lower_file_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    apply(
        root,
        TarBuilder::new()
            .dir("etc")
            .file("etc/a", "1")
            .file("etc/b", "2"),
    )
    .unwrap();

    let stats = apply(root, TarBuilder::new().file("etc/.wh.a", "")).unwrap();
    assert_eq!(stats.whiteouts, 1);
    assert!(!root.join("etc/a").exists());
    assert_eq!(fs::read_to_string(root.join("etc/b")).unwrap(), "2");
    assert!(!root.join("etc/.wh.a").exists());
}

#[test]
fn whiteout_spares_what_the_same_layer_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    apply(root, TarBuilder::new().file("x", "old")).unwrap();
    apply(root, TarBuilder::new().file("x", "new").file(".wh.x", "")).unwrap();
    assert_eq!(fs::read_to_string(root.join("x")).unwrap(), "new");
}

#[test]
fn opaque_directory_hides_lower_children_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    apply(
        root,
        TarBuilder::new()
            .dir("d")
            .file("d/old", "o")
            .dir("d/sub")
            .file("d/sub/x", "x"),
    )
    .unwrap();
    apply(
        root,
        TarBuilder::new()
            .dir("d")
            .file("d/new", "n")
            .file("d/.wh..wh..opq", ""),
    )
    .unwrap();

    let mut names: Vec<_> = fs::read_dir(root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["new"]);
}

#[test]
fn whiteout_of_a_directory_removes_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    apply(
        root,
        TarBuilder::new().dir("d").dir("d/e").file("d/e/f", "f"),
    )
    .unwrap();
    apply(root, TarBuilder::new().file(".wh.d", "")).unwrap();
    assert!(!root.join("d").exists());
}

#[test]
fn hardlinks_and_symlinks_are_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let layer = TarBuilder::new()
        .dir("bin")
        .file("bin/busybox", "bb")
        .hardlink("bin/sh", "bin/busybox")
        .symlink("bin/ls", "busybox");
    apply(root, layer).unwrap();

    let a = fs::metadata(root.join("bin/busybox")).unwrap();
    let b = fs::metadata(root.join("bin/sh")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(
        fs::read_link(root.join("bin/ls")).unwrap(),
        Path::new("busybox")
    );
}

#[test]
fn modes_owners_and_mtimes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    apply(
        root,
        TarBuilder::new().file_owned("suid", "x", 1000, 0o4755),
    )
    .unwrap();
    let meta = fs::metadata(root.join("suid")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o4755);
    assert_eq!(meta.mtime(), 1_700_000_000);
    if nix::unistd::geteuid().is_root() {
        assert_eq!(meta.uid(), 1000);
    }
}

#[test]
fn a_file_replaces_a_directory_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    apply(root, TarBuilder::new().dir("p").file("p/x", "1")).unwrap();
    apply(root, TarBuilder::new().file("p", "now a file")).unwrap();
    assert!(root.join("p").is_file());
    apply(root, TarBuilder::new().dir("p")).unwrap();
    assert!(root.join("p").is_dir());
}

#[test]
fn writes_through_symlinks_stay_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();

    let layer = TarBuilder::new()
        .symlink("evil", outside.to_str().unwrap())
        .file("evil/planted", "x")
        .symlink("up", "../../..")
        .file("up/also", "y");
    apply(&root, layer).unwrap();

    assert!(!outside.join("planted").exists());
    assert!(root
        .join(outside.strip_prefix("/").unwrap())
        .join("planted")
        .exists());
    assert!(root.join("also").exists());
}

#[test]
fn dotdot_entries_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let err = apply(dir.path(), TarBuilder::new().raw_file("../escape", "x")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer entry ../escape points outside the root"
    );
    assert!(!dir.path().parent().unwrap().join("escape").exists());
}

#[test]
fn gzip_layers_are_detected() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&TarBuilder::new().file("z", "zipped").bytes())
        .unwrap();
    let path = dir.path().join("layer.tgz");
    fs::write(&path, gz.finish().unwrap()).unwrap();

    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    apply_layer_file(&root, &path, ApplyOptions::default()).unwrap();
    assert_eq!(fs::read_to_string(root.join("z")).unwrap(), "zipped");
}

#[test]
fn pax_mtimes_keep_their_nanoseconds() {
    let dir = tempfile::tempdir().unwrap();
    let layer = TarBuilder::new()
        .pax_mtime("1700000001.123456789")
        .file("f", "x")
        .file("g", "y");
    apply(dir.path(), layer).unwrap();
    let f = fs::metadata(dir.path().join("f")).unwrap();
    assert_eq!((f.mtime(), f.mtime_nsec()), (1_700_000_001, 123_456_789));
    let g = fs::metadata(dir.path().join("g")).unwrap();
    assert_eq!(
        (g.mtime(), g.mtime_nsec()),
        (1_700_000_000, 0),
        "one entry only"
    );

    assert_eq!(
        parse_pax_time("5.5"),
        Some(FileTime::from_unix_time(5, 500_000_000))
    );
    assert_eq!(parse_pax_time("7"), Some(FileTime::from_unix_time(7, 0)));
    assert_eq!(parse_pax_time("x.1"), None);
}

#[test]
fn device_nodes_are_skipped_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let layer = TarBuilder::new().device("null").file("f", "x");
    let options = ApplyOptions {
        devices: false,
        ..ApplyOptions::default()
    };
    apply_layer(dir.path(), layer.bytes().as_slice(), options).unwrap();
    assert!(fs::symlink_metadata(dir.path().join("null")).is_err());
    assert!(dir.path().join("f").exists());
}
