//! Code artifacts: hostile zips are refused with errors that name the entry
//! and leave nothing behind; `s3://` artifacts come from the configured
//! endpoint (a loopback server started here).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use hearth_builder::artifact::{
    extract_zip, ArtifactError, ArtifactFetcher, ArtifactSource, ExtractLimits, S3Settings,
};
use zip::write::SimpleFileOptions;

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        if name.ends_with('/') {
            writer.add_directory(*name, options).unwrap();
        } else {
            writer.start_file(*name, options).unwrap();
            writer.write_all(data).unwrap();
        }
    }
    writer.finish().unwrap().into_inner()
}

fn zip_with_symlink(link: &str, target: &str) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    writer.start_file("Dockerfile", options).unwrap();
    writer.write_all(b"FROM busybox\n").unwrap();
    writer.add_symlink(link, target, options).unwrap();
    writer.finish().unwrap().into_inner()
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join("app.zip");
        fs::write(&path, bytes).unwrap();
        path
    }

    fn dest(&self) -> PathBuf {
        self.dir.path().join("build")
    }

    fn extract(&self, bytes: &[u8], limits: &ExtractLimits) -> Result<PathBuf, ArtifactError> {
        let zip = self.write(bytes);
        extract_zip(&zip, &self.dest(), limits).map(|_| self.dest())
    }

    /// Fails unless only the zip itself is in the directory.
    fn assert_nothing_left(&self) {
        let names: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["app.zip"], "leftovers: {names:?}");
        assert!(!self.dir.path().parent().unwrap().join("evil").exists());
    }
}

const DOCKERFILE: (&str, &[u8]) = ("Dockerfile", b"FROM busybox\n");

#[test]
fn a_good_zip_is_unpacked_with_its_dockerfile() {
    let case = Case::new();
    let bytes = zip_of(&[
        DOCKERFILE,
        ("src/", b""),
        ("src/app.py", b"print(1)\n"),
        ("./README", b"hi"),
    ]);
    let dest = case.extract(&bytes, &ExtractLimits::default()).unwrap();
    assert_eq!(
        fs::read_to_string(dest.join("src/app.py")).unwrap(),
        "print(1)\n"
    );
    assert!(dest.join("README").is_file());
    assert!(dest.join("Dockerfile").is_file());

    let again = extract_zip(&case.write(&bytes), &dest, &ExtractLimits::default()).unwrap_err();
    assert!(matches!(again, ArtifactError::DestinationExists { .. }));
}

#[test]
fn parent_dir_entries_are_refused() {
    let case = Case::new();
    let err = case
        .extract(
            &zip_of(&[DOCKERFILE, ("../evil", b"x")]),
            &ExtractLimits::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "zip entry \"../evil\" contains a .. component"
    );
    case.assert_nothing_left();

    let err = case
        .extract(
            &zip_of(&[DOCKERFILE, ("a/../../evil", b"x")]),
            &ExtractLimits::default(),
        )
        .unwrap_err();
    assert!(matches!(err, ArtifactError::ParentDir { .. }));
    case.assert_nothing_left();
}

#[test]
fn absolute_entries_are_refused() {
    let case = Case::new();
    let err = case
        .extract(
            &zip_of(&[DOCKERFILE, ("/tmp/evil", b"x")]),
            &ExtractLimits::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "zip entry \"/tmp/evil\" has an absolute path"
    );
    case.assert_nothing_left();
}

#[test]
fn symlinks_pointing_outside_are_refused() {
    for (link, target) in [
        ("escape", "../../etc"),
        ("abs", "/etc/passwd"),
        ("d/up", "../.."),
    ] {
        let case = Case::new();
        let err = case
            .extract(&zip_with_symlink(link, target), &ExtractLimits::default())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("zip entry {link:?} is a symlink to {target:?}, outside the artifact")
        );
        case.assert_nothing_left();
    }

    // A link that stays inside is fine.
    let case = Case::new();
    let dest = case
        .extract(
            &zip_with_symlink("link", "Dockerfile"),
            &ExtractLimits::default(),
        )
        .unwrap();
    assert_eq!(
        fs::read_link(dest.join("link")).unwrap(),
        Path::new("Dockerfile")
    );
}

#[test]
fn entries_through_a_symlink_are_refused() {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    writer.start_file("Dockerfile", options).unwrap();
    writer.write_all(b"FROM x\n").unwrap();
    writer.add_symlink("sub", ".", options).unwrap();
    writer.start_file("sub/planted", options).unwrap();
    writer.write_all(b"x").unwrap();
    let bytes = writer.finish().unwrap().into_inner();

    let case = Case::new();
    let err = case.extract(&bytes, &ExtractLimits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "zip entry \"sub/planted\" lies under the symlink \"sub\""
    );
    case.assert_nothing_left();
}

#[test]
fn a_zip_bomb_stops_at_the_size_limit() {
    let zeros = vec![0u8; 4 << 20];
    let bytes = zip_of(&[DOCKERFILE, ("bomb.bin", &zeros)]);
    assert!(bytes.len() < 64 << 10, "the fixture compresses well");

    let case = Case::new();
    let limits = ExtractLimits {
        max_bytes: 1 << 20,
        ..ExtractLimits::default()
    };
    let err = case.extract(&bytes, &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "zip entry \"bomb.bin\" takes the unpacked size past the limit of 1048576 bytes"
    );
    case.assert_nothing_left();
}

#[test]
fn lying_size_headers_do_not_get_past_the_limit() {
    let bytes = zip_of(&[DOCKERFILE, ("liar.bin", &vec![7u8; 3 << 20])]);
    let patched = patch_uncompressed_sizes(bytes, 10);

    let case = Case::new();
    let limits = ExtractLimits {
        max_bytes: 1 << 20,
        ..ExtractLimits::default()
    };
    let err = case.extract(&patched, &limits).unwrap_err();
    // The headers claim 10 bytes; the bytes written are what is counted.
    assert!(
        matches!(&err, ArtifactError::TooLarge { entry, .. } if entry == "liar.bin"),
        "{err:?}"
    );
    case.assert_nothing_left();
}

/// Rewrites every uncompressed-size field (local and central headers).
fn patch_uncompressed_sizes(mut bytes: Vec<u8>, size: u32) -> Vec<u8> {
    let mut i = 0;
    while i + 30 <= bytes.len() {
        let sig = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let offset = match sig {
            0x0403_4b50 => Some(22),
            0x0201_4b50 => Some(24),
            _ => None,
        };
        if let Some(offset) = offset {
            bytes[i + offset..i + offset + 4].copy_from_slice(&size.to_le_bytes());
        }
        i += 1;
    }
    bytes
}

#[test]
fn too_many_entries_are_refused_before_extraction() {
    let names: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
    let mut entries: Vec<(&str, &[u8])> = vec![DOCKERFILE];
    entries.extend(names.iter().map(|n| (n.as_str(), &b"x"[..])));

    let case = Case::new();
    let limits = ExtractLimits {
        max_entries: 10,
        ..ExtractLimits::default()
    };
    let err = case.extract(&zip_of(&entries), &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the zip has 13 entries, more than the limit of 10"
    );
    case.assert_nothing_left();
}

#[test]
fn not_a_zip_and_no_dockerfile_are_distinct_errors() {
    let case = Case::new();
    let err = case
        .extract(b"this is plain text, not a zip", &ExtractLimits::default())
        .unwrap_err();
    assert!(matches!(err, ArtifactError::NotZip { .. }), "{err:?}");
    assert!(err.to_string().ends_with("is not a zip file"));
    case.assert_nothing_left();

    let err = case
        .extract(
            &zip_of(&[("sub/Dockerfile", b"FROM x\n")]),
            &ExtractLimits::default(),
        )
        .unwrap_err();
    assert!(matches!(err, ArtifactError::NoDockerfile), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the artifact has no Dockerfile at its root"
    );
    case.assert_nothing_left();
}

#[tokio::test]
async fn local_directories_are_copied() {
    let case = Case::new();
    let src = case.dir.path().join("src");
    fs::create_dir_all(src.join("lib")).unwrap();
    fs::write(src.join("Dockerfile"), "FROM x\n").unwrap();
    fs::write(src.join("lib/a"), "a").unwrap();

    let fetcher = ArtifactFetcher::default();
    let source = ArtifactSource::parse(src.to_str().unwrap()).unwrap();
    fetcher.fetch(&source, &case.dest()).await.unwrap();
    assert_eq!(fs::read_to_string(case.dest().join("lib/a")).unwrap(), "a");

    fs::remove_file(src.join("Dockerfile")).unwrap();
    let other = case.dir.path().join("other");
    let err = fetcher.fetch(&source, &other).await.unwrap_err();
    assert!(matches!(err, ArtifactError::NoDockerfile));
    assert!(!other.exists());
}

mod s3 {
    //! A loopback stand-in for an S3 endpoint: it answers GET
    //! /<bucket>/<key> for one object and records the requests.

    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    pub struct Server {
        pub endpoint: String,
        pub requests: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    pub async fn start(path: &'static str, body: Vec<u8>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1
                {
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                seen.lock().unwrap().push(text.clone());
                let target = text.split_whitespace().nth(1).unwrap_or("");
                let response = if target == path {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"fixture\"\r\n\
                         Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n\
                         Content-Type: application/zip\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                } else {
                    let xml = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>\
                               <Message>no such key</Message></Error>";
                    format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nContent-Type: application/xml\r\n\
                         Connection: close\r\n\r\n{xml}",
                        xml.len()
                    )
                    .into_bytes()
                };
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            }
        });
        Server {
            endpoint,
            requests,
            task,
        }
    }
}

#[tokio::test]
async fn s3_artifacts_come_from_the_configured_endpoint() {
    let bytes = zip_of(&[DOCKERFILE, ("app.txt", b"from s3")]);
    let server = s3::start("/artifacts/team/app.zip", bytes).await;
    let fetcher = ArtifactFetcher {
        s3: Some(S3Settings {
            endpoint: server.endpoint.clone(),
            region: "us-east-1".into(),
            credentials: Some(("AKIDTEST".into(), "secret".into())),
            allow_http: true,
        }),
        ..ArtifactFetcher::default()
    };
    let case = Case::new();

    let source = ArtifactSource::parse("s3://artifacts/team/app.zip").unwrap();
    fetcher.fetch(&source, &case.dest()).await.unwrap();
    assert_eq!(
        fs::read_to_string(case.dest().join("app.txt")).unwrap(),
        "from s3"
    );
    let first = server.requests.lock().unwrap()[0].clone();
    assert!(first.starts_with("GET /artifacts/team/app.zip "), "{first}");
    assert!(
        first
            .to_ascii_lowercase()
            .contains("authorization: aws4-hmac-sha256 credential=akidtest/"),
        "the request is signed with the configured key: {first}"
    );

    let missing = ArtifactSource::parse("s3://artifacts/none.zip").unwrap();
    let err = fetcher
        .fetch(&missing, &case.dir.path().join("b2"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "s3://artifacts/none.zip does not exist");
    assert!(!case.dir.path().join("b2").exists());
    let leftovers: Vec<_> = fs::read_dir(case.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let unconfigured = ArtifactFetcher::default();
    let err = unconfigured
        .fetch(&source, &case.dir.path().join("b3"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no S3 endpoint is configured for s3://artifacts/team/app.zip"
    );
}

/// A real S3 server (s3s-fs over a directory, with SigV4 keys) on loopback,
/// stopped when dropped.
struct S3Fs {
    endpoint: String,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Fs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_s3fs(access_key: &str, secret_key: &str) -> S3Fs {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;

    let root = tempfile::tempdir().unwrap();
    let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
    let service = builder.build();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            let connection = http.serve_connection(TokioIo::new(socket), service.clone());
            let connection = connection.into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    });
    S3Fs {
        endpoint,
        root,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_artifacts_come_from_a_real_s3_server() {
    let server = start_s3fs("AKIDHEARTHTEST", "hearth-test-secret").await;

    // s3s-fs keeps bucket/key as directory/file.
    let bucket = server.root.path().join("apps");
    fs::create_dir_all(bucket.join("team")).unwrap();
    fs::write(
        bucket.join("team/app.zip"),
        zip_of(&[DOCKERFILE, ("app.txt", b"from s3s")]),
    )
    .unwrap();

    let fetcher = |secret: &str| ArtifactFetcher {
        s3: Some(S3Settings {
            endpoint: server.endpoint.clone(),
            region: "us-east-1".into(),
            credentials: Some(("AKIDHEARTHTEST".into(), secret.into())),
            allow_http: true,
        }),
        ..ArtifactFetcher::default()
    };
    let case = Case::new();
    let source = ArtifactSource::parse("s3://apps/team/app.zip").unwrap();
    fetcher("hearth-test-secret")
        .fetch(&source, &case.dest())
        .await
        .unwrap();
    assert_eq!(
        fs::read_to_string(case.dest().join("app.txt")).unwrap(),
        "from s3s"
    );

    // The server checks signatures: a wrong secret gets nothing, and leaves
    // nothing behind.
    let refused = case.dir.path().join("refused");
    let err = fetcher("wrong-secret")
        .fetch(&source, &refused)
        .await
        .unwrap_err();
    assert!(
        !refused.exists(),
        "a refused fetch left {}",
        refused.display()
    );
    assert!(!err.to_string().is_empty());
}
