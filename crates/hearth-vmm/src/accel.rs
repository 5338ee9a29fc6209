//! Choosing the accelerator: KVM where it can really run the guest kernel,
//! TCG otherwise.
//!
//! The existence of `/dev/kvm` proves nothing: on some hosts KVM runs a
//! real-mode test guest but hangs or kills a Linux kernel. So the probe
//! boots the guest kernel once under KVM, bounded in time, and picks KVM only
//! when the kernel reaches the point where it starts init. The answer is
//! cached in a file because the probe costs seconds. `HEARTH_ACCEL=kvm|tcg`
//! overrides both.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::console;
use crate::qemu::{MachineConfig, QemuVm};

/// The line the kernel prints (at info level) just before it runs init;
/// a kernel that hangs under a broken KVM never gets there.
pub const BOOT_MARKER: &str = "Run /init as init process";

/// The probe's default bound.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's binary translator; slow, but runs anywhere.
    Tcg,
}

impl Accel {
    /// The name QEMU and `HEARTH_ACCEL` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    fn parse(s: &str) -> Option<Accel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a choice of accelerator came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChoiceSource {
    /// The `HEARTH_ACCEL` environment variable.
    Env,
    /// The cache file of an earlier probe.
    Cache,
    /// A probe boot just now.
    Probe,
}

/// The accelerator chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelChoice {
    /// The accelerator to use.
    pub accel: Accel,
    /// Where the answer came from.
    pub source: ChoiceSource,
    /// A short human-readable reason.
    pub reason: String,
}

/// Picks the accelerator for guests of this kernel, as
/// [`choose_accel`] does, and returns only the accelerator.
pub async fn probe_accel(
    kernel: &Path,
    initramfs: &Path,
    cache_file: &Path,
    timeout: Duration,
) -> Accel {
    choose_accel(kernel, initramfs, cache_file, timeout)
        .await
        .accel
}

/// Picks the accelerator: `HEARTH_ACCEL` if set, else the cached answer,
/// else a bounded probe boot under KVM whose answer is then cached.
///
/// Never fails: whatever goes wrong while probing means TCG.
pub async fn choose_accel(
    kernel: &Path,
    initramfs: &Path,
    cache_file: &Path,
    timeout: Duration,
) -> AccelChoice {
    let choice = match env_choice() {
        Some(choice) => choice,
        None => match read_cache(cache_file) {
            Some(choice) => choice,
            None => {
                let choice = probe(kernel, initramfs, timeout).await;
                write_cache(cache_file, &choice);
                choice
            }
        },
    };

    tracing::info!(
        accel = %choice.accel,
        source = ?choice.source,
        reason = %choice.reason,
        "accelerator chosen"
    );
    choice
}

fn env_choice() -> Option<AccelChoice> {
    let value = std::env::var("HEARTH_ACCEL").ok()?;
    match Accel::parse(&value) {
        Some(accel) => Some(AccelChoice {
            accel,
            source: ChoiceSource::Env,
            reason: format!("HEARTH_ACCEL={value}"),
        }),
        None => {
            tracing::warn!(value = %value, "ignoring HEARTH_ACCEL: not kvm or tcg");
            None
        }
    }
}

fn read_cache(cache_file: &Path) -> Option<AccelChoice> {
    let text = std::fs::read_to_string(cache_file).ok()?;
    match serde_json::from_str::<AccelChoice>(&text) {
        Ok(mut choice) => {
            choice.source = ChoiceSource::Cache;
            Some(choice)
        }
        Err(error) => {
            tracing::warn!(path = %cache_file.display(), %error, "ignoring a garbled accel cache");
            None
        }
    }
}

fn write_cache(cache_file: &Path, choice: &AccelChoice) {
    let write = || -> std::io::Result<()> {
        if let Some(parent) = cache_file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = cache_file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(choice)?)?;
        std::fs::rename(&tmp, cache_file)
    };
    if let Err(error) = write() {
        tracing::warn!(path = %cache_file.display(), %error, "cannot cache the accel choice");
    }
}

fn tcg(reason: String) -> AccelChoice {
    AccelChoice {
        accel: Accel::Tcg,
        source: ChoiceSource::Probe,
        reason,
    }
}

/// Boots the kernel under KVM and waits, at most `timeout` after QEMU is
/// up, for [`BOOT_MARKER`] on its serial console; KVM if it appears, TCG
/// otherwise. Ignores `HEARTH_ACCEL` and any cache. QEMU is killed before
/// this returns.
pub async fn probe(kernel: &Path, initramfs: &Path, timeout: Duration) -> AccelChoice {
    if let Err(error) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return tcg(format!("/dev/kvm cannot be opened: {error}"));
    }

    let dir = match tempfile::Builder::new().prefix("hearth-probe").tempdir() {
        Ok(dir) => dir,
        Err(error) => return tcg(format!("cannot make a probe directory: {error}")),
    };
    let config = probe_config(kernel, initramfs, dir.path().to_owned());
    let started = Instant::now();

    let vm = match QemuVm::spawn(config.clone()).await {
        Ok(vm) => vm,
        Err(error) => return tcg(format!("qemu with kvm failed to start: {error}")),
    };
    let reached = tokio::select! {
        found = console::wait_for(&config.console_log, BOOT_MARKER, timeout) => found,
        reason = vm.wait() => {
            let log = console::tail(&config.console_log, 2);
            return tcg(format!("qemu with kvm exited during the probe boot ({reason}): {log}"));
        }
    };
    let elapsed = started.elapsed();
    vm.kill().await;

    match reached {
        Ok(()) => AccelChoice {
            accel: Accel::Kvm,
            source: ChoiceSource::Probe,
            reason: format!("the kernel reached init under kvm in {elapsed:.1?}"),
        },
        Err(_) => tcg(format!(
            "the kernel did not reach init under kvm within {timeout:?}: {}",
            console::tail(&config.console_log, 1)
        )),
    }
}

fn probe_config(kernel: &Path, initramfs: &Path, dir: PathBuf) -> MachineConfig {
    let mut config = MachineConfig::new(kernel, initramfs, &dir, Accel::Kvm);
    config.memory_mib = 256;
    config.vcpus = 1;
    // Without `quiet` the kernel prints the marker; panic=-1 ends a failed boot.
    config.quiet = false;
    config
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trips_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accel.json");
        assert!(read_cache(&path).is_none());

        write_cache(&path, &tcg("because".into()));
        let choice = read_cache(&path).unwrap();
        assert_eq!(choice.accel, Accel::Tcg);
        assert_eq!(choice.source, ChoiceSource::Cache);

        std::fs::write(&path, "{not json").unwrap();
        assert!(read_cache(&path).is_none());
    }

    #[test]
    fn accel_names_parse() {
        assert_eq!(Accel::parse(" KVM\n"), Some(Accel::Kvm));
        assert_eq!(Accel::parse("tcg"), Some(Accel::Tcg));
        assert_eq!(Accel::parse("hvf"), None);
    }
}
