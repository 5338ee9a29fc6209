//! The database schema, applied in order; `PRAGMA user_version` records how
//! far a database has come.
//!
//! Times are milliseconds since the Unix epoch. Enumerations are stored as
//! their wire names. Configurations and requests are stored as the JSON the
//! API received, so that a row answers `Get*` calls exactly.

/// Each step of the schema; the database is at step `user_version`.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE images (
    image_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    arn             TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER
);
-- A name is unique among images that are not deleted.
CREATE UNIQUE INDEX images_live_name ON images (name) WHERE state <> 'DELETED';

CREATE TABLE image_versions (
    image_id         INTEGER NOT NULL REFERENCES images (image_id),
    version          INTEGER NOT NULL,
    state            TEXT NOT NULL,
    status           TEXT NOT NULL,
    state_reason     TEXT,
    config           TEXT NOT NULL,
    snapshot_dir     TEXT,
    guest_memory_mib INTEGER NOT NULL,
    guest_vcpus      INTEGER NOT NULL,
    container        TEXT,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER,
    PRIMARY KEY (image_id, version)
);

CREATE TABLE builds (
    build_id            TEXT PRIMARY KEY,
    image_id            INTEGER NOT NULL,
    version             INTEGER NOT NULL,
    architecture        TEXT NOT NULL,
    chipset             TEXT NOT NULL,
    chipset_generation  TEXT NOT NULL,
    state               TEXT NOT NULL,
    state_reason        TEXT,
    memory_bytes        INTEGER,
    disk_bytes          INTEGER,
    code_bytes          INTEGER,
    vm_id               TEXT,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER,
    FOREIGN KEY (image_id, version) REFERENCES image_versions (image_id, version)
);

CREATE TABLE microvms (
    microvm_id          TEXT PRIMARY KEY,
    image_id            INTEGER NOT NULL REFERENCES images (image_id),
    image_arn           TEXT NOT NULL,
    image_version       INTEGER NOT NULL,
    state               TEXT NOT NULL,
    state_reason        TEXT,
    request             TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    guest_memory_mib    INTEGER NOT NULL,
    started_at_ms       INTEGER NOT NULL,
    terminated_at_ms    INTEGER,
    updated_at_ms       INTEGER,
    suspended_snapshot  TEXT
);
CREATE INDEX microvms_by_image ON microvms (image_id, image_version);

CREATE TABLE tags (
    resource_arn  TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (resource_arn, key)
);

CREATE TABLE client_tokens (
    operation       TEXT NOT NULL,
    access_key_id   TEXT NOT NULL,
    client_token    TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    response        TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (operation, access_key_id, client_token)
);
"#,
    // Bytes carried through each microVM's endpoint, for metering.
    r#"
CREATE TABLE microvm_traffic (
    microvm_id  TEXT PRIMARY KEY,
    bytes_in    INTEGER NOT NULL,
    bytes_out   INTEGER NOT NULL
);
"#,
];
