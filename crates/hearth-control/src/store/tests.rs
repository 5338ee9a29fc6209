//! The store against a real SQLite file.

use hearth_api::model::*;
use hearth_api::{StoredCall, TokenKey, TokenStore};

use super::*;
use crate::capacity::GuestSize;
use crate::ids::MicrovmId;

fn config() -> ImageConfig {
    serde_json::from_value(serde_json::json!({
        "baseImageArn": "al2023-1",
        "buildRoleArn": "arn:aws:iam::123456789012:role/b",
        "codeArtifact": {"uri": "s3://b/app.zip"},
    }))
    .unwrap()
}

fn image(name: &str) -> ImageRow {
    ImageRow {
        image_id: 0,
        name: name.to_owned(),
        arn: format!("arn:aws:lambda:us-east-1:000000000000:microvm-image:{name}"),
        state: MicrovmImageState::Creating,
        created_at: Timestamp::from_unix_millis(1_000),
        updated_at: None,
    }
}

fn version() -> VersionRow {
    VersionRow {
        image_id: 0,
        version: 0,
        state: MicrovmImageVersionState::Pending,
        status: MicrovmImageVersionStatus::Active,
        state_reason: None,
        config: config(),
        snapshot_dir: None,
        guest: GuestSize {
            memory_mib: 256,
            vcpus: 1,
        },
        container: None,
        created_at: Timestamp::from_unix_millis(1_000),
        updated_at: None,
    }
}

fn build(id: &str) -> NewBuild {
    NewBuild {
        build_id: id.to_owned(),
        architecture: Architecture::X86_64,
    }
}

#[test]
fn images_versions_and_builds_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("hearth.db")).unwrap();
    let tags: Tags = [("team".to_owned(), "hearth".to_owned())].into();

    let id = store
        .create_image(&image("app"), &version(), &[build("build-1")], &tags)
        .unwrap()
        .expect("the name is free");
    assert!(store
        .create_image(&image("app"), &version(), &[], &Tags::new())
        .unwrap()
        .is_none());

    let two = store
        .add_version(
            id,
            &version(),
            &[build("build-2")],
            MicrovmImageState::Updating,
        )
        .unwrap();
    assert_eq!(two, 2);
    assert_eq!(
        store.live_image("app").unwrap().unwrap().state,
        MicrovmImageState::Updating
    );
    assert_eq!(store.versions(id).unwrap().len(), 2);
    assert_eq!(store.unfinished_builds().unwrap().len(), 2);
    assert_eq!(store.tags(&image("app").arn).unwrap(), tags);

    store
        .set_build_sizes(
            "build-1",
            BuildSizes {
                memory_bytes: 9,
                disk_bytes: 8,
                code_bytes: 7,
            },
        )
        .unwrap();
    store
        .set_build_state("build-1", BuildState::Successful, None, Timestamp::now())
        .unwrap();
    let built = store.builds(id, 1).unwrap().remove(0);
    assert_eq!(built.state, BuildState::Successful);
    assert_eq!(built.sizes.unwrap().code_bytes, 7);
}

#[test]
fn a_deleted_name_can_be_used_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("hearth.db")).unwrap();
    let first = store
        .create_image(&image("app"), &version(), &[], &Tags::new())
        .unwrap()
        .unwrap();
    store
        .set_image_state(first, MicrovmImageState::Deleted, Timestamp::now())
        .unwrap();
    assert!(store.live_image("app").unwrap().is_none());
    let second = store
        .create_image(&image("app"), &version(), &[], &Tags::new())
        .unwrap()
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(store.newest_image("app").unwrap().unwrap().image_id, second);
}

#[test]
fn microvm_moves_are_conditional_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.db");
    let store = Store::open(&path).unwrap();
    let image_id = store
        .create_image(&image("app"), &version(), &[], &Tags::new())
        .unwrap()
        .unwrap();
    let id = MicrovmId::generate();
    let row = MicrovmRow {
        microvm_id: id.clone(),
        image_id,
        image_arn: image("app").arn,
        image_version: 1,
        state: MicrovmState::Pending,
        state_reason: None,
        request: serde_json::from_value(serde_json::json!({"imageIdentifier": "app"})).unwrap(),
        endpoint: "http://x.localhost:7080".to_owned(),
        guest_memory_mib: 256,
        started_at: Timestamp::now(),
        terminated_at: None,
        updated_at: None,
        suspended_snapshot: None,
    };
    store.insert_microvm(&row).unwrap();
    assert_eq!(store.live_guest_memory_mib().unwrap(), 256);

    let now = Timestamp::now();
    let moved = store.move_microvm(
        &id,
        &[MicrovmState::Running],
        MicrovmState::Suspending,
        None,
        now,
    );
    assert!(!moved.unwrap(), "a PENDING microvm cannot start suspending");

    // A reason stays with the states that follow from it, until the
    // microVM runs again.
    let cycle = [
        (MicrovmState::Pending, MicrovmState::Running, None),
        (
            MicrovmState::Running,
            MicrovmState::Suspending,
            Some("IDLE_TIMEOUT"),
        ),
        (MicrovmState::Suspending, MicrovmState::Suspended, None),
    ];
    for (from, to, reason) in cycle {
        assert!(store.move_microvm(&id, &[from], to, reason, now).unwrap());
    }
    let suspended = store.microvm(&id).unwrap().unwrap();
    assert_eq!(suspended.state_reason.as_deref(), Some("IDLE_TIMEOUT"));
    for (from, to) in [
        (MicrovmState::Suspended, MicrovmState::Pending),
        (MicrovmState::Pending, MicrovmState::Running),
    ] {
        assert!(store.move_microvm(&id, &[from], to, None, now).unwrap());
    }
    let running = store.microvm(&id).unwrap().unwrap();
    assert_eq!(
        running.state_reason, None,
        "a resumed microvm has no reason"
    );
    assert!(store
        .move_microvm(
            &id,
            &[MicrovmState::Running],
            MicrovmState::Pending,
            None,
            now
        )
        .unwrap());
    let moved = store.move_microvm(
        &id,
        &[MicrovmState::Pending],
        MicrovmState::Terminating,
        Some("USER_INITIATED"),
        now,
    );
    assert!(moved.unwrap());
    let moved = store.move_microvm(
        &id,
        &[MicrovmState::Terminating],
        MicrovmState::Terminated,
        None,
        now,
    );
    assert!(moved.unwrap());
    drop(store);

    let store = Store::open(&path).unwrap();
    let back = store.microvm(&id).unwrap().unwrap();
    assert_eq!(back.state, MicrovmState::Terminated);
    assert_eq!(back.state_reason.as_deref(), Some("USER_INITIATED"));
    assert!(back.terminated_at.is_some());
    assert_eq!(store.live_microvms_of(image_id, None).unwrap(), 0);
}

#[tokio::test]
async fn client_tokens_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("hearth.db")).unwrap();
    let key = TokenKey {
        operation: "RunMicrovm",
        access_key_id: "AKIA".to_owned(),
        client_token: "t1".to_owned(),
    };
    assert_eq!(store.load(&key).await.unwrap(), None);
    let call = StoredCall {
        fingerprint: "f".to_owned(),
        response: serde_json::json!({"microvmId": "m"}),
    };
    store.save(&key, &call).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(call));
}
