//! What a QEMU microVM is made of, and the command line that makes it.
//!
//! The machine is `-M microvm`: no PCI, no firmware tables beyond ACPI, only
//! virtio-mmio devices, whose transports are assigned in the order the
//! devices appear. That order is part of what a saved state depends on, so
//! [`MachineConfig::spec`] names it, and the same config always yields the
//! same device order.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::accel::Accel;

/// The kernel command line every guest gets before the caller's part:
/// console on the first serial port, reboot by triple fault (which QEMU's
/// `-no-reboot` turns into an exit) and immediately on panic.
pub const BASE_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1";

/// The name of the virtio-serial port that carries the agent channel.
pub const AGENT_PORT_NAME: &str = "hearth.agent";

/// The format of a disk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// A plain image.
    Raw,
    /// A qcow2 image, possibly with a backing file.
    Qcow2,
}

impl DiskFormat {
    /// The name QEMU uses.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// A virtio-blk disk; the first one is the guest's `/dev/vda`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image file.
    pub path: PathBuf,
    /// Its format.
    pub format: DiskFormat,
    /// Whether the guest sees it read-only.
    pub read_only: bool,
}

/// Everything needed to start one QEMU microVM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The guest kernel (`vmlinuz`).
    pub kernel: PathBuf,
    /// The initramfs (newc cpio, gzip).
    pub initramfs: PathBuf,
    /// Kernel arguments appended to [`BASE_CMDLINE`].
    pub cmdline: String,
    /// Whether to add `quiet` to the kernel command line.
    pub quiet: bool,
    /// Disks, in the order the guest enumerates them.
    pub disks: Vec<Disk>,
    /// The unix socket QEMU listens on for the agent channel.
    pub agent_socket: PathBuf,
    /// The unix socket QEMU listens on for QMP.
    pub qmp_socket: PathBuf,
    /// The file the serial console is appended to.
    pub console_log: PathBuf,
    /// The accelerator.
    pub accel: Accel,
    /// Start paused and wait for a saved state (`-incoming defer`).
    pub incoming: bool,
    /// The guest's network.
    pub network: Network,
    /// The network namespace QEMU runs in (started through
    /// `ip netns exec`), where a [`Network::Tap`] device is.
    pub netns: Option<String>,
}

/// A VM's network device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No network device at all.
    #[default]
    None,
    /// A virtio-net device on QEMU's user-mode network (slirp): the guest
    /// is `10.0.2.15/24`, its gateway `10.0.2.2`, its DNS server `10.0.2.3`,
    /// and its connections leave through QEMU's own sockets on the host.
    // Limitation: QEMU user networking lets the guest reach the host's
    // loopback as 10.0.2.2; isolation needs a network namespace per VM.
    User,
    /// A virtio-net device on the tap device [`Network::TAP_NAME`] of the
    /// network namespace QEMU runs in (see `hearth-net`): the guest is
    /// configured as on the user network, and the namespace decides where
    /// its packets may go.
    Tap,
}

impl Network {
    /// The tap device's name in a VM's network namespace.
    pub const TAP_NAME: &'static str = "tap0";

    /// The guest's address on QEMU's user network, with its prefix.
    pub const USER_ADDRESS: &'static str = "10.0.2.15/24";
    /// The gateway on QEMU's user network.
    pub const USER_GATEWAY: &'static str = "10.0.2.2";
    /// The DNS server QEMU's user network provides.
    pub const USER_DNS: &'static str = "10.0.2.3";

    /// The device as [`MachineSpec::devices`] names it, if there is one.
    fn device(self) -> Option<&'static str> {
        match self {
            Network::None => None,
            Network::User => Some("virtio-net-device,user"),
            Network::Tap => Some("virtio-net-device,tap"),
        }
    }
}

impl MachineConfig {
    /// A config with one vCPU, 512 MiB, no disks, and its sockets and
    /// console log in `dir` (`qmp.sock`, `agent.sock`, `console.log`).
    pub fn new(kernel: &Path, initramfs: &Path, dir: &Path, accel: Accel) -> MachineConfig {
        MachineConfig {
            vcpus: 1,
            memory_mib: 512,
            kernel: kernel.to_owned(),
            initramfs: initramfs.to_owned(),
            cmdline: String::new(),
            quiet: true,
            disks: Vec::new(),
            agent_socket: dir.join("agent.sock"),
            qmp_socket: dir.join("qmp.sock"),
            console_log: dir.join("console.log"),
            accel,
            incoming: false,
            network: Network::None,
            netns: None,
        }
    }

    /// The full kernel command line.
    pub fn kernel_cmdline(&self) -> String {
        let mut cmdline = BASE_CMDLINE.to_owned();
        if self.quiet {
            cmdline.push_str(" quiet");
        }
        // See the `tsc` module: without these a TCG guest hangs in about
        // half the boots, or later drops the TSC for a jiffies clock.
        // Limitation: the rate is this host's, so a TCG snapshot restored on a
        // host with another TSC rate keeps a guest clock that runs off-speed.
        if self.accel == Accel::Tcg {
            if let Some(khz) = crate::tsc::host_tsc_khz() {
                cmdline.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
            }
        }
        if !self.cmdline.trim().is_empty() {
            cmdline.push(' ');
            cmdline.push_str(self.cmdline.trim());
        }
        cmdline
    }

    /// The machine as a saved state sees it.
    pub fn spec(&self) -> MachineSpec {
        let mut devices = vec![
            "isa-serial".to_owned(),
            "virtio-serial-device".to_owned(),
            format!("virtserialport,name={AGENT_PORT_NAME}"),
            "virtio-balloon-device,free-page-reporting=on".to_owned(),
        ];
        for disk in &self.disks {
            let mode = if disk.read_only { "ro" } else { "rw" };
            devices.push(format!("virtio-blk-device,{mode}"));
        }
        devices.extend(self.network.device().map(str::to_owned));

        MachineSpec {
            machine: MACHINE.to_owned(),
            cpu: cpu_model(self.accel).to_owned(),
            accel: self.accel,
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            devices,
        }
    }

    /// QEMU's arguments, without the binary.
    pub fn args(&self) -> Vec<OsString> {
        let mut args = Args::default();
        args.push(["-M", MACHINE]);
        args.push(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
        match self.accel {
            Accel::Kvm => args.push(["-accel", "kvm", "-cpu", cpu_model(self.accel)]),
            Accel::Tcg => args.push(["-accel", "tcg,tb-size=32", "-cpu", cpu_model(self.accel)]),
        }
        args.push(["-m".to_owned(), format!("{}M", self.memory_mib)]);
        args.push(["-smp".to_owned(), self.vcpus.to_string()]);
        args.push(["-kernel"]);
        args.path(&self.kernel);
        args.push(["-initrd"]);
        args.path(&self.initramfs);
        args.push(["-append".to_owned(), self.kernel_cmdline()]);

        args.push([
            "-chardev".to_owned(),
            chardev("file", "console", &self.console_log),
        ]);
        args.push(["-serial", "chardev:console"]);
        args.push([
            "-chardev".to_owned(),
            chardev("socket", "qmp", &self.qmp_socket),
        ]);
        args.push(["-mon", "chardev=qmp,mode=control"]);

        // The devices, in the order `spec` lists them.
        args.push(["-device", "virtio-serial-device"]);
        args.push([
            "-chardev".to_owned(),
            chardev("socket", "agent", &self.agent_socket),
        ]);
        args.push([
            "-device".to_owned(),
            format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME}"),
        ]);
        args.push(["-device", "virtio-balloon-device,free-page-reporting=on"]);
        for (i, disk) in self.disks.iter().enumerate() {
            args.push(["-drive".to_owned(), drive(i, disk)]);
            args.push([
                "-device".to_owned(),
                format!("virtio-blk-device,drive=disk{i}"),
            ]);
        }
        match self.network {
            Network::None => args.push(["-nic", "none"]),
            Network::User => args.push([
                "-netdev",
                "user,id=net0",
                "-device",
                "virtio-net-device,netdev=net0",
            ]),
            Network::Tap => args.push([
                "-netdev".to_owned(),
                format!(
                    "tap,id=net0,ifname={},script=no,downscript=no",
                    Network::TAP_NAME
                ),
                "-device".to_owned(),
                "virtio-net-device,netdev=net0".to_owned(),
            ]),
        }

        if self.incoming {
            // -S keeps the loaded VM paused until `resume`.
            args.push(["-S", "-incoming", "defer"]);
        }
        args.0
    }
}

const MACHINE: &str = "microvm";

fn cpu_model(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    }
}

/// A `-chardev` value; socket chardevs are servers that do not wait.
fn chardev(backend: &str, id: &str, path: &Path) -> String {
    let path = escape(path);
    match backend {
        "socket" => format!("socket,id={id},path={path},server=on,wait=off"),
        _ => format!("{backend},id={id},path={path},append=on"),
    }
}

fn drive(index: usize, disk: &Disk) -> String {
    let mut value = format!(
        "file={},format={},if=none,id=disk{index},cache=writeback,discard=unmap",
        escape(&disk.path),
        disk.format.as_str()
    );
    if disk.read_only {
        value.push_str(",readonly=on");
    }
    value
}

/// QEMU's option syntax doubles commas inside values.
fn escape(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push<I, S>(&mut self, items: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.0.extend(items.into_iter().map(Into::into));
    }

    fn path(&mut self, path: &Path) {
        self.0.push(path.as_os_str().to_owned());
    }
}

/// The parts of a machine that a saved state depends on: a state loads only
/// into a machine with an equal spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSpec {
    /// The machine type (`microvm`).
    pub machine: String,
    /// The CPU model.
    pub cpu: String,
    /// The accelerator.
    pub accel: Accel,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// The devices in creation order.
    pub devices: Vec<String>,
}

impl MachineSpec {
    /// The first difference between `self` (what a state was saved from)
    /// and `other` (what would load it), as a sentence; `None` when equal.
    pub fn difference(&self, other: &MachineSpec) -> Option<String> {
        let field = |name: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            Some(format!("{name} was {a:?}, is {b:?}"))
        };
        if self.machine != other.machine {
            return field("machine type", &self.machine, &other.machine);
        }
        if self.cpu != other.cpu || self.accel != other.accel {
            return field("cpu", &(&self.cpu, self.accel), &(&other.cpu, other.accel));
        }
        if self.vcpus != other.vcpus {
            return field("vcpus", &self.vcpus, &other.vcpus);
        }
        if self.memory_mib != other.memory_mib {
            return field("memory_mib", &self.memory_mib, &other.memory_mib);
        }
        if self.devices != other.devices {
            return field("devices", &self.devices, &other.devices);
        }
        None
    }
}

/// A QEMU version, as `query-version` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro (patch) version.
    pub micro: u32,
    /// The distribution's package string, possibly empty.
    #[serde(default)]
    pub package: String,
}

impl QemuVersion {
    /// Whether a QEMU of this version can load a state saved by `saved`.
    ///
    /// The microvm machine type is not versioned, so QEMU keeps no promise
    /// across releases; within one major.minor series the stable releases
    /// keep the migration format.
    pub fn can_load(&self, saved: &QemuVersion) -> bool {
        self.major == saved.major && self.minor == saved.minor
    }

    /// Parses the first line of `qemu-system-x86_64 --version`.
    pub fn parse_version_output(text: &str) -> Option<QemuVersion> {
        let rest = text.lines().next()?.split("version ").nth(1)?;
        let (number, package) = match rest.split_once(' ') {
            Some((number, package)) => (number, package.trim()),
            None => (rest.trim(), ""),
        };
        let mut parts = number.split('.').map(|p| p.parse::<u32>().ok());
        Some(QemuVersion {
            major: parts.next()??,
            minor: parts.next()??,
            micro: parts.next().flatten().unwrap_or(0),
            package: package
                .trim_start_matches('(')
                .trim_end_matches(')')
                .to_owned(),
        })
    }
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> MachineConfig {
        let mut config = MachineConfig::new(
            Path::new("/k"),
            Path::new("/i"),
            Path::new("/run/vm,1"),
            Accel::Tcg,
        );
        config.disks.push(Disk {
            path: "/d/root.qcow2".into(),
            format: DiskFormat::Qcow2,
            read_only: false,
        });
        config
    }

    #[test]
    fn args_name_microvm_devices_and_escape_commas() {
        let args: Vec<String> = config()
            .args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.starts_with("-M microvm -nodefaults"));
        assert!(joined.contains("-accel tcg,tb-size=32 -cpu max"));
        assert!(joined.contains("path=/run/vm,,1/qmp.sock,server=on,wait=off"));
        assert!(joined.contains("virtserialport,chardev=agent,name=hearth.agent"));
        assert!(joined.contains("-device virtio-blk-device,drive=disk0"));
        assert!(!joined.contains("-incoming"));
    }

    #[test]
    fn a_tap_network_names_the_namespace_tap_without_scripts() {
        let mut config = config();
        config.network = Network::Tap;
        let joined: Vec<String> = config
            .args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = joined.join(" ");
        assert!(joined.contains(
            "-netdev tap,id=net0,ifname=tap0,script=no,downscript=no -device virtio-net-device,netdev=net0"
        ));
        assert_eq!(
            config.spec().devices.last().map(String::as_str),
            Some("virtio-net-device,tap")
        );
    }

    #[test]
    fn user_networking_adds_a_virtio_net_device() {
        let mut config = config();
        let without = config.spec();
        config.network = Network::User;
        let args: Vec<String> = config
            .args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("-netdev user,id=net0 -device virtio-net-device,netdev=net0"));
        assert!(!joined.contains("-nic none"));
        assert_eq!(
            config.spec().devices.last().map(String::as_str),
            Some("virtio-net-device,user")
        );
        assert!(without.difference(&config.spec()).is_some());
    }

    #[test]
    fn incoming_machine_starts_paused() {
        let mut config = config();
        config.incoming = true;
        let args: Vec<String> = config
            .args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert!(args.ends_with(&["-S".into(), "-incoming".into(), "defer".into()]));
    }

    #[test]
    fn spec_difference_names_the_field() {
        let a = config().spec();
        let mut b = a.clone();
        assert_eq!(a.difference(&b), None);
        b.memory_mib = 1024;
        assert_eq!(a.difference(&b).unwrap(), "memory_mib was 512, is 1024");
    }

    #[test]
    fn version_output_parses() {
        let v = QemuVersion::parse_version_output(
            "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright",
        )
        .unwrap();
        assert_eq!((v.major, v.minor, v.micro), (7, 2, 22));
        assert_eq!(v.package, "Debian 1:7.2+dfsg-7+deb12u18+b3");
        assert!(v.can_load(&QemuVersion {
            micro: 1,
            ..v.clone()
        }));
        assert!(!v.can_load(&QemuVersion {
            minor: 1,
            ..v.clone()
        }));
    }
}
