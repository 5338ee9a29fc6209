//! The typed messages carried in `Hello`, `Open` and `Control` frames.
//!
//! Every message is JSON. Requests are what the host asks of the agent; the
//! agent answers on the request's stream with data and [`Control`] messages and
//! then closes it.

use serde::{Deserialize, Serialize};

/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;

/// Name of the agent's virtio-serial port.
pub const AGENT_PORT_NAME: &str = "hearth.agent";

/// Data channel for stdin (host → guest) and stdout (guest → host).
pub const CHAN_STDIO: u8 = 0;

/// Data channel for stderr (guest → host).
pub const CHAN_STDERR: u8 = 1;

/// First frame of a session, sent by the host.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version of the host.
    pub version: u32,
    /// A random number the answer must echo.
    pub nonce: u64,
}

/// The guest's answer to [`Hello`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HelloAck {
    /// Protocol version of the agent.
    pub version: u32,
    /// The nonce of the `Hello` this answers.
    pub nonce: u64,
    /// What the agent reports about itself.
    pub info: AgentInfo,
}

/// What the agent reports about itself and its guest.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentInfo {
    /// The agent's version.
    pub agent_version: String,
    /// The guest kernel's release (`uname -r`).
    pub kernel_release: String,
    /// Seconds since the guest booted.
    pub uptime_secs: f64,
    /// Whether the root filesystem has been mounted and entered.
    pub root_mounted: bool,
}

/// A user and group, as names or numeric ids (`"1000"`, `"app"`,
/// `"app:staff"`, `"1000:1000"`).
pub type UserSpec = String;

/// The program the agent runs as the app.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppSpec {
    /// Program and arguments; the program is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Environment, as `KEY=value` strings.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory (default `/`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// User to run as (default root).
    #[serde(default)]
    pub user: Option<UserSpec>,
    /// Keep all capabilities instead of Docker's default set.
    #[serde(default)]
    pub all_capabilities: bool,
}

/// A command to run inside the guest.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecSpec {
    /// Program and arguments; the program is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Environment, as `KEY=value` strings, added to a minimal default.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory (default `/`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// User to run as (default root).
    #[serde(default)]
    pub user: Option<UserSpec>,
    /// Run on a pseudo-terminal of this size instead of pipes.
    #[serde(default)]
    pub tty: Option<TtySize>,
}

/// An interactive shell as the app, for [`Request::Shell`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShellSpec {
    /// The terminal's initial size.
    pub tty: TtySize,
    /// `KEY=value` entries added over the app's environment (such as the
    /// client's `TERM`).
    #[serde(default)]
    pub env: Vec<String>,
}

/// The size of a terminal.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TtySize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// What the host asks the agent; the payload of an `Open` frame.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Answers with [`Control::Info`].
    Ping,
    /// Starts the app; answers [`Control::Ok`] once it is spawned.
    StartApp(AppSpec),
    /// Answers with [`Control::App`].
    AppStatus,
    /// Runs a command: stdin on channel 0 in, stdout on 0 and stderr on 1 out,
    /// then [`Control::Exit`]. With a tty, [`Control::Resize`] may be sent in.
    Exec(ExecSpec),
    /// Opens an interactive shell in the app's container, on a terminal:
    /// the app's environment, user, working directory and capability set.
    /// The stream then behaves as a terminal [`Request::Exec`].
    Shell(ShellSpec),
    /// Writes the stream's channel-0 bytes to a file, then answers
    /// [`Control::Ok`].
    WriteFile {
        /// Absolute path in the guest.
        path: String,
        /// Permission bits (default 0644).
        #[serde(default)]
        mode: Option<u32>,
        /// Give the file to the app's user and group (root when the app
        /// runs as root or has not been started).
        #[serde(default)]
        as_app: bool,
    },
    /// Sends the file's bytes on channel 0, then `Eof` and [`Control::Ok`].
    ReadFile {
        /// Absolute path in the guest.
        path: String,
    },
    /// Connects to a TCP port inside the guest and carries bytes both ways on
    /// channel 0; answers [`Control::Ok`] once connected.
    Tunnel {
        /// Port on the guest's loopback.
        port: u16,
    },
    /// Sends the app's captured output (stdout on channel 0, stderr on 1),
    /// and with `follow` keeps sending as it comes.
    Logs {
        /// Keep the stream open and send new output.
        #[serde(default)]
        follow: bool,
    },
    /// Refreshes the guest after a restore: entropy, clock, hostname.
    Identity(Identity),
    /// Powers the guest off.
    Shutdown,
    /// Stops every process in the guest but the agent (SIGSTOP) ahead of a
    /// snapshot, so that after a restore nothing runs before the next
    /// [`Request::Identity`] has reseeded the guest; that `Identity` lets
    /// them continue. Answers [`Control::Ok`] with the number stopped.
    Quiesce,
    /// Brings up a network interface with an address, a default route and
    /// DNS servers; answers [`Control::Ok`].
    Network(NetworkSpec),
    /// Records the metadata of every path of the root filesystem (mounts
    /// inside it are not crossed) as the baseline of a later
    /// [`Request::FsExport`]; answers [`Control::Ok`] with the entry count.
    FsMark,
    /// Sends an uncompressed tar of the root filesystem on channel 0, then
    /// `Eof` and [`Control::Ok`] with an [`FsExportSummary`]. Mounts inside
    /// the root, device nodes and sockets are left out.
    FsExport {
        /// Only what changed since the last [`Request::FsMark`], as an OCI
        /// layer: changed and new entries, and `.wh.` whiteouts for removed
        /// ones.
        #[serde(default)]
        since_mark: bool,
    },
}

/// How the agent configures the guest's network for [`Request::Network`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkSpec {
    /// The interface (default `eth0`).
    #[serde(default)]
    pub interface: Option<String>,
    /// The IPv4 address with its prefix length, such as `10.0.2.15/24`.
    pub address: String,
    /// The IPv4 address of the default gateway, if any.
    #[serde(default)]
    pub gateway: Option<String>,
    /// DNS servers. Commands see them in `/etc/resolv.conf`, which is
    /// mounted over the image's file and never written into it.
    #[serde(default)]
    pub dns: Vec<String>,
}

/// What a [`Request::FsExport`] sent, the value of its [`Control::Ok`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FsExportSummary {
    /// Entries (files, directories, links) in the tar.
    pub entries: u64,
    /// Whiteouts for removed paths.
    #[serde(default)]
    pub removed: u64,
    /// File content bytes in the tar.
    pub bytes: u64,
    /// Mount points inside the root that were left out, as absolute paths.
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// Fresh identity for a guest, sent after every boot and restore.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    /// Random bytes from the host, base64, credited to the guest's CRNG.
    pub entropy: String,
    /// Host wall clock, nanoseconds since the Unix epoch.
    ///
    /// A JSON number that fits in a `u64` (until the year 2554): serde cannot
    /// read a `u128` inside the internally tagged [`Request`].
    #[serde(with = "nanos_as_u64")]
    pub unix_time_ns: u128,
    /// The guest's hostname.
    pub hostname: String,
}

/// Serializes a `u128` of nanoseconds as a `u64`.
mod nanos_as_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(nanos: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        let nanos = u64::try_from(*nanos)
            .map_err(|_| serde::ser::Error::custom("time beyond the year 2554"))?;
        serializer.serialize_u64(nanos)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        u64::deserialize(deserializer).map(u128::from)
    }
}

/// The app's state as the agent sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppState {
    /// Whether the app was started.
    pub started: bool,
    /// Its pid while it runs.
    pub pid: Option<u32>,
    /// How it ended, if it did.
    pub exit: Option<ExitStatus>,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// The shell's convention: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 255,
        }
    }
}

/// A typed message on a stream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    /// The request succeeded (and carries an optional value).
    Ok {
        /// A request-specific result.
        #[serde(default)]
        value: serde_json::Value,
    },
    /// The request failed.
    Error {
        /// Why, for a person.
        message: String,
    },
    /// The agent's info.
    Info(AgentInfo),
    /// The app's state.
    App(AppState),
    /// An exec'd process ended.
    Exit(ExitStatus),
    /// The terminal was resized (host → guest).
    Resize(TtySize),
    /// Deliver a signal to an exec'd process (host → guest).
    Signal {
        /// Signal number.
        signal: i32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_json_is_tagged() {
        let json = serde_json::to_value(Request::Tunnel { port: 8080 }).expect("json");
        assert_eq!(json, serde_json::json!({"op": "tunnel", "port": 8080}));
        let back: Request = serde_json::from_value(json).expect("parse");
        assert_eq!(back, Request::Tunnel { port: 8080 });
    }

    #[test]
    fn build_requests_round_trip_with_defaults() {
        let json = serde_json::json!({"op": "fs_export"});
        let back: Request = serde_json::from_value(json).expect("parse");
        assert_eq!(back, Request::FsExport { since_mark: false });

        let json = serde_json::json!({"op": "network", "address": "10.0.2.15/24"});
        let back: Request = serde_json::from_value(json).expect("parse");
        let expected = NetworkSpec {
            address: "10.0.2.15/24".to_owned(),
            ..NetworkSpec::default()
        };
        assert_eq!(back, Request::Network(expected));
    }

    #[test]
    fn identity_round_trips_inside_a_request() {
        let request = Request::Identity(Identity {
            entropy: "AAEC".to_owned(),
            unix_time_ns: 1_700_000_000_123_456_789,
            hostname: "vm".to_owned(),
        });
        let json = serde_json::to_vec(&request).expect("json");
        let back: Request = serde_json::from_slice(&json).expect("parse");
        assert_eq!(back, request);
    }

    #[test]
    fn exit_status_maps_signals_like_a_shell() {
        assert_eq!(
            ExitStatus {
                code: Some(3),
                signal: None
            }
            .shell_code(),
            3
        );
        assert_eq!(
            ExitStatus {
                code: None,
                signal: Some(9)
            }
            .shell_code(),
            137
        );
    }
}
