//! Images, their versions, and the builds of each version.

use std::path::PathBuf;

use hearth_api::model::{
    Architecture, BuildState, Chipset, ImageConfig, MicrovmImageState, MicrovmImageVersionState,
    MicrovmImageVersionStatus, Tags, Timestamp,
};
use rusqlite::{params, OptionalExtension, Row};

use super::{enum_text, millis, parse_enum, parse_json, timestamp, to_json, Store, StoreError};
use crate::capacity::GuestSize;
use crate::pipeline::ContainerConfig;

/// An image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRow {
    /// The row's key; versions and microVMs refer to it.
    pub image_id: i64,
    /// The image's name.
    pub name: String,
    /// The image's ARN.
    pub arn: String,
    /// The image's state.
    pub state: MicrovmImageState,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Option<Timestamp>,
}

/// A version of an image.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionRow {
    /// The image's key.
    pub image_id: i64,
    /// The version number.
    pub version: u32,
    /// The build state.
    pub state: MicrovmImageVersionState,
    /// Whether it may launch microVMs.
    pub status: MicrovmImageVersionStatus,
    /// Why it is in its state.
    pub state_reason: Option<String>,
    /// The configuration it was built from.
    pub config: ImageConfig,
    /// The snapshot microVMs start from, once built.
    pub snapshot_dir: Option<PathBuf>,
    /// The guest every microVM of this version gets.
    pub guest: GuestSize,
    /// The container the app runs in, once built.
    pub container: Option<ContainerConfig>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Option<Timestamp>,
}

/// A build of a version for one CPU configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildRow {
    /// The build's id.
    pub build_id: String,
    /// The image's key.
    pub image_id: i64,
    /// The version.
    pub version: u32,
    /// The target architecture.
    pub architecture: Architecture,
    /// The target chipset.
    pub chipset: Chipset,
    /// The chipset generation.
    pub chipset_generation: String,
    /// The build's state.
    pub state: BuildState,
    /// Why it is in its state.
    pub state_reason: Option<String>,
    /// The snapshot's sizes, once built.
    pub sizes: Option<BuildSizes>,
    /// The build VM, while one runs.
    pub vm_id: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// The sizes a finished build reports (`snapshotBuild`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildSizes {
    /// Bytes of the memory snapshot.
    pub memory_bytes: u64,
    /// Bytes of the disk snapshot.
    pub disk_bytes: u64,
    /// Bytes of the installed code.
    pub code_bytes: u64,
}

/// A build to record with a new version.
#[derive(Clone, Debug)]
pub struct NewBuild {
    /// The build's id.
    pub build_id: String,
    /// The target architecture.
    pub architecture: Architecture,
}

/// The chipset that goes with an architecture.
pub fn chipset(architecture: Architecture) -> Chipset {
    match architecture {
        Architecture::Arm64 => Chipset::Graviton,
        Architecture::X86_64 => Chipset::Intel,
    }
}

const IMAGE_COLUMNS: &str = "image_id, name, arn, state, created_at_ms, updated_at_ms";

const VERSION_COLUMNS: &str = "image_id, version, state, status, state_reason, config, \
     snapshot_dir, guest_memory_mib, guest_vcpus, container, created_at_ms, updated_at_ms";

const BUILD_COLUMNS: &str = "build_id, image_id, version, architecture, chipset, \
     chipset_generation, state, state_reason, memory_bytes, disk_bytes, code_bytes, vm_id, \
     created_at_ms";

impl Store {
    /// Records a new image with its first version, that version's builds and
    /// the image's tags. `None` when a live image already has the name.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn create_image(
        &self,
        image: &ImageRow,
        version: &VersionRow,
        builds: &[NewBuild],
        tags: &Tags,
    ) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let taken: Option<i64> = tx
            .query_row(
                "SELECT image_id FROM images WHERE name = ?1 AND state <> 'DELETED'",
                [&image.name],
                |row| row.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Ok(None);
        }

        tx.execute(
            "INSERT INTO images (name, arn, state, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![
                image.name,
                image.arn,
                enum_text(&image.state),
                millis(image.created_at)
            ],
        )?;
        let image_id = tx.last_insert_rowid();
        insert_version(&tx, image_id, 1, version, builds)?;
        for (key, value) in tags {
            tx.execute(
                "INSERT INTO tags (resource_arn, key, value) VALUES (?1, ?2, ?3)",
                params![image.arn, key, value],
            )?;
        }
        tx.commit()?;
        Ok(Some(image_id))
    }

    /// Records a new version of an image (numbered after the newest) and its
    /// builds, and moves the image to `state`. Returns the version number.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn add_version(
        &self,
        image_id: i64,
        version: &VersionRow,
        builds: &[NewBuild],
        state: MicrovmImageState,
    ) -> Result<u32, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let newest: Option<u32> = tx.query_row(
            "SELECT MAX(version) FROM image_versions WHERE image_id = ?1",
            [image_id],
            |row| row.get(0),
        )?;
        let number = newest.unwrap_or(0) + 1;
        insert_version(&tx, image_id, number, version, builds)?;
        tx.execute(
            "UPDATE images SET state = ?2, updated_at_ms = ?3 WHERE image_id = ?1",
            params![image_id, enum_text(&state), millis(version.created_at)],
        )?;
        tx.commit()?;
        Ok(number)
    }

    /// The live (not deleted) image named `name`.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn live_image(&self, name: &str) -> Result<Option<ImageRow>, StoreError> {
        let sql =
            format!("SELECT {IMAGE_COLUMNS} FROM images WHERE name = ?1 AND state <> 'DELETED'");
        let row = self.conn().query_row(&sql, [name], image_row).optional()?;
        row.transpose()
    }

    /// The newest image ever named `name`, deleted or not.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn newest_image(&self, name: &str) -> Result<Option<ImageRow>, StoreError> {
        let sql = format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE name = ?1 ORDER BY image_id DESC LIMIT 1"
        );
        let row = self.conn().query_row(&sql, [name], image_row).optional()?;
        row.transpose()
    }

    /// The image with key `image_id`.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn image(&self, image_id: i64) -> Result<Option<ImageRow>, StoreError> {
        let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE image_id = ?1");
        let row = self
            .conn()
            .query_row(&sql, [image_id], image_row)
            .optional()?;
        row.transpose()
    }

    /// Every live image.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn live_images(&self) -> Result<Vec<ImageRow>, StoreError> {
        let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE state <> 'DELETED'");
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], image_row)?;
        rows.map(|row| row?).collect()
    }

    /// Moves an image to `state`.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn set_image_state(
        &self,
        image_id: i64,
        state: MicrovmImageState,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE images SET state = ?2, updated_at_ms = ?3 WHERE image_id = ?1",
            params![image_id, enum_text(&state), millis(now)],
        )?;
        Ok(())
    }

    /// Every version of an image, oldest first.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn versions(&self, image_id: i64) -> Result<Vec<VersionRow>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM image_versions WHERE image_id = ?1 ORDER BY version"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([image_id], version_row)?;
        rows.map(|row| row?).collect()
    }

    /// One version of an image.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn version(&self, image_id: i64, version: u32) -> Result<Option<VersionRow>, StoreError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM image_versions WHERE image_id = ?1 AND version = ?2"
        );
        let row = self
            .conn()
            .query_row(&sql, params![image_id, version], version_row)
            .optional()?;
        row.transpose()
    }

    /// Moves a version to `state`, with a reason when it failed.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn set_version_state(
        &self,
        image_id: i64,
        version: u32,
        state: MicrovmImageVersionState,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE image_versions SET state = ?3, state_reason = ?4, updated_at_ms = ?5 \
             WHERE image_id = ?1 AND version = ?2",
            params![image_id, version, enum_text(&state), reason, millis(now)],
        )?;
        Ok(())
    }

    /// Records a version's finished build: its snapshot and container.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn set_version_built(
        &self,
        image_id: i64,
        version: u32,
        snapshot_dir: &std::path::Path,
        container: &ContainerConfig,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let container = to_json("container", container)?;
        self.conn().execute(
            "UPDATE image_versions SET state = 'SUCCESSFUL', state_reason = NULL, \
             snapshot_dir = ?3, container = ?4, updated_at_ms = ?5 \
             WHERE image_id = ?1 AND version = ?2",
            params![
                image_id,
                version,
                snapshot_dir.to_string_lossy(),
                container,
                millis(now)
            ],
        )?;
        Ok(())
    }

    /// Sets a version's status.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn set_version_status(
        &self,
        image_id: i64,
        version: u32,
        status: MicrovmImageVersionStatus,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE image_versions SET status = ?3, updated_at_ms = ?4 \
             WHERE image_id = ?1 AND version = ?2",
            params![image_id, version, enum_text(&status), millis(now)],
        )?;
        Ok(())
    }

    /// The builds of a version, by id.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn builds(&self, image_id: i64, version: u32) -> Result<Vec<BuildRow>, StoreError> {
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE image_id = ?1 AND version = ?2 \
             ORDER BY build_id"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params![image_id, version], build_row)?;
        rows.map(|row| row?).collect()
    }

    /// Builds that had not finished, oldest first.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn unfinished_builds(&self) -> Result<Vec<BuildRow>, StoreError> {
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE state IN ('PENDING', 'IN_PROGRESS') \
             ORDER BY created_at_ms"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], build_row)?;
        rows.map(|row| row?).collect()
    }

    /// Moves a build to `state`, with a reason when it failed.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn set_build_state(
        &self,
        build_id: &str,
        state: BuildState,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE builds SET state = ?2, state_reason = ?3, updated_at_ms = ?4 \
             WHERE build_id = ?1",
            params![build_id, enum_text(&state), reason, millis(now)],
        )?;
        Ok(())
    }

    /// Records (or clears) the VM a build runs in.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn set_build_vm(&self, build_id: &str, vm_id: Option<&str>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE builds SET vm_id = ?2 WHERE build_id = ?1",
            params![build_id, vm_id],
        )?;
        Ok(())
    }

    /// Records a successful build's sizes.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub fn set_build_sizes(&self, build_id: &str, sizes: BuildSizes) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE builds SET memory_bytes = ?2, disk_bytes = ?3, code_bytes = ?4 \
             WHERE build_id = ?1",
            params![
                build_id,
                sizes.memory_bytes as i64,
                sizes.disk_bytes as i64,
                sizes.code_bytes as i64
            ],
        )?;
        Ok(())
    }
}

/// Inserts a version and its builds.
fn insert_version(
    tx: &rusqlite::Transaction<'_>,
    image_id: i64,
    number: u32,
    version: &VersionRow,
    builds: &[NewBuild],
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO image_versions (image_id, version, state, status, config, \
         guest_memory_mib, guest_vcpus, created_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            image_id,
            number,
            enum_text(&version.state),
            enum_text(&version.status),
            to_json("config", &version.config)?,
            version.guest.memory_mib,
            version.guest.vcpus,
            millis(version.created_at)
        ],
    )?;
    for build in builds {
        tx.execute(
            "INSERT INTO builds (build_id, image_id, version, architecture, chipset, \
             chipset_generation, state, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, '1', 'PENDING', ?6)",
            params![
                build.build_id,
                image_id,
                number,
                enum_text(&build.architecture),
                enum_text(&chipset(build.architecture)),
                millis(version.created_at)
            ],
        )?;
    }
    Ok(())
}

fn image_row(row: &Row<'_>) -> rusqlite::Result<Result<ImageRow, StoreError>> {
    let state: String = row.get(3)?;
    let updated: Option<i64> = row.get(5)?;
    let fields = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(4)?);
    Ok(parse_enum("images.state", state).map(|state| ImageRow {
        image_id: fields.0,
        name: fields.1,
        arn: fields.2,
        state,
        created_at: timestamp(fields.3),
        updated_at: updated.map(timestamp),
    }))
}

fn version_row(row: &Row<'_>) -> rusqlite::Result<Result<VersionRow, StoreError>> {
    let state: String = row.get(2)?;
    let status: String = row.get(3)?;
    let config: String = row.get(5)?;
    let snapshot: Option<String> = row.get(6)?;
    let container: Option<String> = row.get(9)?;
    let updated: Option<i64> = row.get(11)?;
    let (image_id, version, reason) = (row.get(0)?, row.get(1)?, row.get(4)?);
    let guest = GuestSize {
        memory_mib: row.get(7)?,
        vcpus: row.get(8)?,
    };
    let created: i64 = row.get(10)?;

    Ok((|| {
        Ok(VersionRow {
            image_id,
            version,
            state: parse_enum("image_versions.state", state)?,
            status: parse_enum("image_versions.status", status)?,
            state_reason: reason,
            config: parse_json("image_versions.config", &config)?,
            snapshot_dir: snapshot.map(PathBuf::from),
            guest,
            container: container
                .map(|c| parse_json("image_versions.container", &c))
                .transpose()?,
            created_at: timestamp(created),
            updated_at: updated.map(timestamp),
        })
    })())
}

fn build_row(row: &Row<'_>) -> rusqlite::Result<Result<BuildRow, StoreError>> {
    let architecture: String = row.get(3)?;
    let chipset: String = row.get(4)?;
    let state: String = row.get(6)?;
    let memory: Option<i64> = row.get(8)?;
    let disk: Option<i64> = row.get(9)?;
    let code: Option<i64> = row.get(10)?;
    let sizes = memory.map(|memory| BuildSizes {
        memory_bytes: memory.max(0) as u64,
        disk_bytes: disk.unwrap_or(0).max(0) as u64,
        code_bytes: code.unwrap_or(0).max(0) as u64,
    });
    let (build_id, image_id, version) = (row.get(0)?, row.get(1)?, row.get(2)?);
    let (generation, reason, vm_id) = (row.get(5)?, row.get(7)?, row.get(11)?);
    let created: i64 = row.get(12)?;

    Ok((|| {
        Ok(BuildRow {
            build_id,
            image_id,
            version,
            architecture: parse_enum("builds.architecture", architecture)?,
            chipset: parse_enum("builds.chipset", chipset)?,
            chipset_generation: generation,
            state: parse_enum("builds.state", state)?,
            state_reason: reason,
            sizes,
            vm_id,
            created_at: timestamp(created),
        })
    })())
}
