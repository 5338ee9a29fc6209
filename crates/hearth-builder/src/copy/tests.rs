//! COPY/ADD tests on real directories.

use super::*;
use std::os::unix::fs::symlink;

struct Fixture {
    _dir: tempfile::TempDir,
    context: PathBuf,
    rootfs: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(context.join("src/sub")).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(context.join("a.txt"), "A").unwrap();
    fs::write(context.join("b.txt"), "B").unwrap();
    fs::write(context.join("src/main.rs"), "fn main() {}").unwrap();
    fs::write(context.join("src/sub/lib.rs"), "// lib").unwrap();
    fs::write(context.join("src/debug.log"), "noise").unwrap();
    fs::set_permissions(context.join("a.txt"), fs::Permissions::from_mode(0o751)).unwrap();
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
    Fixture {
        _dir: dir,
        context,
        rootfs,
    }
}

fn tree<'a>(root: &'a Path, ignore: Option<&'a IgnoreMatcher>) -> SourceTree<'a> {
    SourceTree {
        root,
        ignore,
        label: "the build context",
    }
}

fn copy(f: &Fixture, sources: &[&str], dest: &str, options: CopyOptions) -> Result<(), CopyError> {
    let ignore = IgnoreMatcher::parse("*.log\n**/*.log\n").unwrap();
    let t = tree(&f.context, Some(&ignore));
    let patterns: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    let resolved = t.resolve(&patterns)?;
    copy_sources(&t, &resolved, &f.rootfs, dest, options)
}

#[test]
fn a_directory_source_copies_its_contents_without_ignored_files() {
    let f = fixture();
    copy(&f, &["src"], "/app/", CopyOptions::default()).unwrap();
    assert!(f.rootfs.join("app/main.rs").is_file());
    assert!(f.rootfs.join("app/sub/lib.rs").is_file());
    assert!(!f.rootfs.join("app/src").exists());
    assert!(
        !f.rootfs.join("app/debug.log").exists(),
        ".dockerignore applies"
    );
}

#[test]
fn files_go_into_a_directory_or_to_a_new_name() {
    let f = fixture();
    copy(&f, &["a.txt"], "/opt/", CopyOptions::default()).unwrap();
    copy(&f, &["b.txt"], "/opt/renamed", CopyOptions::default()).unwrap();
    copy(&f, &["b.txt"], "/etc", CopyOptions::default()).unwrap();
    assert_eq!(fs::read_to_string(f.rootfs.join("opt/a.txt")).unwrap(), "A");
    assert_eq!(
        fs::read_to_string(f.rootfs.join("opt/renamed")).unwrap(),
        "B"
    );
    assert!(
        f.rootfs.join("etc/b.txt").is_file(),
        "an existing directory receives the file"
    );
    let mode = fs::metadata(f.rootfs.join("opt/a.txt")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o751, "the mode is kept");
}

#[test]
fn globs_match_one_component_per_star() {
    let f = fixture();
    copy(&f, &["*.txt"], "/g/", CopyOptions::default()).unwrap();
    assert!(f.rootfs.join("g/a.txt").exists() && f.rootfs.join("g/b.txt").exists());
    assert!(!f.rootfs.join("g/main.rs").exists());

    let err = copy(&f, &["*.nothing"], "/g/", CopyOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "source \"*.nothing\" matched no files");
}

#[test]
fn several_sources_need_a_directory_destination() {
    let f = fixture();
    let err = copy(&f, &["a.txt", "b.txt"], "/x", CopyOptions::default()).unwrap_err();
    assert!(matches!(err, CopyError::DestNotDir { .. }));
    copy(&f, &["a.txt", "b.txt"], "/x/", CopyOptions::default()).unwrap();
}

#[test]
fn missing_outside_and_ignored_sources_are_errors() {
    let f = fixture();
    let err = copy(&f, &["nope"], "/x", CopyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "source \"nope\" not found in the build context (or excluded by .dockerignore)"
    );
    assert!(matches!(
        copy(&f, &["../etc"], "/x", CopyOptions::default()),
        Err(CopyError::Outside { .. })
    ));
    assert!(matches!(
        copy(&f, &["src/debug.log"], "/x", CopyOptions::default()),
        Err(CopyError::NotFound { .. })
    ));
}

#[test]
fn symlinks_cannot_reach_outside_the_context_or_the_rootfs() {
    let f = fixture();
    symlink("/etc", f.context.join("hostetc")).unwrap();
    let err = copy(&f, &["hostetc/hostname"], "/x", CopyOptions::default()).unwrap_err();
    assert!(
        matches!(err, CopyError::NotFound { .. }),
        "resolved inside the context: {err}"
    );

    // A rootfs symlink to an absolute path lands inside the rootfs.
    symlink("/srv", f.rootfs.join("app")).unwrap();
    copy(&f, &["a.txt"], "/app/", CopyOptions::default()).unwrap();
    assert!(f.rootfs.join("srv/a.txt").exists());
}

#[test]
fn chown_and_chmod_apply() {
    let f = fixture();
    let owner = resolve_owner(&f.rootfs, "app:staff").unwrap();
    assert_eq!(owner, (1000, 50));
    assert_eq!(resolve_owner(&f.rootfs, "7").unwrap(), (7, 7));
    assert!(matches!(
        resolve_owner(&f.rootfs, "ghost"),
        Err(CopyError::UnknownOwner { .. })
    ));

    let options = CopyOptions {
        owner: Some(owner),
        chmod: Some(parse_chmod("0600").unwrap()),
        unpack_archives: false,
    };
    copy(&f, &["src"], "/owned/", options).unwrap();
    let meta = fs::metadata(f.rootfs.join("owned/main.rs")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    if nix::unistd::geteuid().is_root() {
        assert_eq!((meta.uid(), meta.gid()), (1000, 50));
        let dir = fs::metadata(f.rootfs.join("owned")).unwrap();
        assert_eq!(dir.uid(), 1000, "the created destination is owned too");
    }
    assert!(matches!(
        parse_chmod("999"),
        Err(CopyError::BadChmod { .. })
    ));
}

#[test]
fn add_unpacks_tar_and_gzip_archives_but_copies_other_files() {
    use std::io::Write;
    let f = fixture();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "inner/file.txt", &b"hello"[..])
        .unwrap();
    let tar_bytes = builder.into_inner().unwrap();
    fs::write(f.context.join("bundle.tar"), &tar_bytes).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_bytes).unwrap();
    fs::write(f.context.join("bundle.tgz"), gz.finish().unwrap()).unwrap();

    let add = CopyOptions {
        unpack_archives: true,
        ..CopyOptions::default()
    };
    copy(&f, &["bundle.tar"], "/plain", add).unwrap();
    copy(&f, &["bundle.tgz"], "/gz/", add).unwrap();
    copy(&f, &["a.txt"], "/notar", add).unwrap();
    copy(&f, &["bundle.tar"], "/copied", CopyOptions::default()).unwrap();

    assert_eq!(
        fs::read_to_string(f.rootfs.join("plain/inner/file.txt")).unwrap(),
        "hello"
    );
    assert_eq!(
        fs::read_to_string(f.rootfs.join("gz/inner/file.txt")).unwrap(),
        "hello"
    );
    assert!(f.rootfs.join("notar").is_file());
    assert!(f.rootfs.join("copied").is_file(), "COPY never unpacks");

    fs::write(f.context.join("x.bz2"), b"BZh91AY&SY").unwrap();
    let err = copy(&f, &["x.bz2"], "/b", add).unwrap_err();
    assert!(matches!(
        err,
        CopyError::UnsupportedArchive { kind: "bzip2", .. }
    ));
}

#[test]
fn the_hash_follows_content_mode_and_paths() {
    let f = fixture();
    let t = tree(&f.context, None);
    let hash = |p: &str| {
        let sources = t.resolve(&[p.to_string()]).unwrap();
        t.hash(&sources).unwrap()
    };
    let first = hash("src");
    assert_eq!(first, hash("src"));

    fs::write(f.context.join("src/sub/lib.rs"), "// changed").unwrap();
    let second = hash("src");
    assert_ne!(first, second);

    fs::set_permissions(
        f.context.join("src/main.rs"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    assert_ne!(second, hash("src"));
    assert_ne!(hash("a.txt"), hash("b.txt"));
}
