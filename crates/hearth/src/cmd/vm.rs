//! `hearth vm`: single VMs, driven through their shims.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hearth_protocol::{AppSpec, ExecSpec, Request, TtySize};
use hearth_shim::launch::{self, BootSpec, Host, RootSource};
use hearth_shim::{ShimClient, VmDir, VmStatus};

use crate::paths;

pub mod tty;

/// Operations on single VMs.
#[derive(Subcommand)]
pub enum VmCommand {
    /// Boot a VM from a root filesystem and print its id.
    Boot(BootArgs),
    /// Run a command in a VM; exits with the command's exit code.
    Exec(ExecArgs),
    /// Snapshot a VM's memory, devices and disk into a directory.
    Snapshot {
        /// The VM.
        id: String,
        /// The snapshot directory to write (must not exist).
        file: PathBuf,
        /// Stop the VM after the snapshot instead of continuing it.
        #[arg(long)]
        stop: bool,
    },
    /// Start a new VM from a snapshot and print its id.
    Restore {
        /// The snapshot directory.
        file: PathBuf,
    },
    /// List VMs.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a VM's serial console.
    Console {
        /// The VM.
        id: String,
        /// Keep printing as the console grows.
        #[arg(short, long)]
        follow: bool,
    },
    /// Print the output of a VM's app.
    Logs {
        /// The VM.
        id: String,
        /// Keep printing new output.
        #[arg(short, long)]
        follow: bool,
    },
    /// Copy a file into or out of a VM (`ID:/path` names the VM's side).
    Cp {
        /// Source: a local path or `ID:/path`.
        src: String,
        /// Destination: a local path or `ID:/path`.
        dst: String,
    },
    /// Stop a VM and delete its files.
    Rm {
        /// The VMs.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// Arguments of `hearth vm boot`.
#[derive(Args)]
pub struct BootArgs {
    /// Root filesystem: a directory (made into ext4) or a disk image.
    #[arg(long)]
    rootfs: PathBuf,
    /// Start this shell command as the VM's app.
    #[arg(long)]
    cmd: Option<String>,
    /// Environment for the app (`KEY=value`, repeatable).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// Root disk size in MiB when the root filesystem is a directory.
    #[arg(long, default_value_t = 8192)]
    disk: u64,
    /// A NIC in a network namespace of the VM's own, with internet egress
    /// through NAT and no way to the host or other VMs (needs root).
    #[arg(long)]
    net: bool,
}

/// Arguments of `hearth vm exec`.
#[derive(Args)]
pub struct ExecArgs {
    /// The VM.
    id: String,
    /// Run on a terminal (interactive programs, shells).
    #[arg(short, long)]
    tty: bool,
    /// Forward standard input even when it is a terminal.
    #[arg(short, long)]
    interactive: bool,
    /// Environment (`KEY=value`, repeatable).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User (`name`, `uid` or `uid:gid`).
    #[arg(short, long)]
    user: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Runs a `hearth vm` subcommand.
pub async fn run(command: VmCommand) -> Result<ExitCode> {
    match command {
        VmCommand::Boot(args) => boot(args).await,
        VmCommand::Exec(args) => exec(args).await,
        VmCommand::Snapshot { id, file, stop } => snapshot(&id, &file, stop).await,
        VmCommand::Restore { file } => restore(&file).await,
        VmCommand::Ls { json } => ls(json).await,
        VmCommand::Console { id, follow } => console(&id, follow).await,
        VmCommand::Logs { id, follow } => logs(&id, follow).await,
        VmCommand::Cp { src, dst } => cp(&src, &dst, Owner::Root).await,
        VmCommand::Rm { ids } => rm(&ids).await,
    }
}

/// The files every VM needs, from the environment.
pub fn host() -> Result<Host> {
    let assets = paths::assets()?;
    Ok(Host {
        data: paths::data_dir(),
        kernel: assets.kernel,
        initramfs: assets.initramfs,
        accel_cache: paths::accel_cache(),
        exe: std::env::current_exe().context("locating the hearth binary")?,
    })
}

async fn boot(args: BootArgs) -> Result<ExitCode> {
    if !(1..=64).contains(&args.vcpus) {
        bail!("--vcpus must be between 1 and 64, not {}", args.vcpus);
    }
    if !(128..=262_144).contains(&args.memory) {
        bail!(
            "--memory must be between 128 and 262144 MiB, not {}",
            args.memory
        );
    }
    if args.disk < 64 {
        bail!("--disk must be at least 64 MiB, not {}", args.disk);
    }
    if let Some(bad) = args.env.iter().find(|e| !e.contains('=')) {
        bail!("--env takes KEY=value, not {bad:?}");
    }
    let host = host()?;
    let root = if args.rootfs.is_dir() {
        RootSource::Dir(args.rootfs)
    } else {
        RootSource::Image(args.rootfs)
    };
    let app = args.cmd.map(|cmd| AppSpec {
        argv: vec!["/bin/sh".to_owned(), "-c".to_owned(), cmd],
        env: args.env,
        ..AppSpec::default()
    });
    let spec = BootSpec {
        root,
        app,
        vcpus: args.vcpus,
        memory_mib: args.memory,
        disk_bytes: args.disk * 1024 * 1024,
        network: args.net.then_some(hearth_net::Egress::Internet),
    };
    let dir = launch::boot(&host, spec).await?;
    println!("{}", dir.id());
    Ok(ExitCode::SUCCESS)
}

/// The directory of an existing VM.
///
/// # Errors
///
/// Fails when no VM has that id.
pub fn vm_dir(id: &str) -> Result<VmDir> {
    let data = paths::data_dir();
    let dir = VmDir::new(&data, id);
    if id.is_empty() || id.contains('/') || !dir.config().is_file() {
        bail!("{}", missing_vm(&data, id));
    }
    Ok(dir)
}

/// Why `id` has no VM directory under `data`: a microVM suspended (its
/// snapshot in `<data>/suspended/<id>`), else unknown.
fn missing_vm(data: &std::path::Path, id: &str) -> String {
    let named = !id.is_empty() && !id.contains('/');
    if named && id.starts_with("microvm-") && data.join("suspended").join(id).is_dir() {
        return format!("microvm {id} is SUSPENDED: resume it first (hearth resume {id})");
    }
    match id.starts_with("microvm-") {
        true => format!("no such microvm: {id}"),
        false => format!("no such vm: {id}"),
    }
}

/// Connects to a VM's shim.
///
/// # Errors
///
/// Fails when the VM does not exist or is not running.
pub async fn connect(id: &str) -> Result<ShimClient> {
    let dir = vm_dir(id)?;
    if let Ok(state) = dir.read_state() {
        if state.status == VmStatus::Exited {
            let reason = state.exit.unwrap_or_default();
            bail!("vm {id} is not running: it exited ({reason})");
        }
    }
    Ok(ShimClient::connect(&dir).await?)
}

async fn exec(args: ExecArgs) -> Result<ExitCode> {
    let client = connect(&args.id).await?;
    let mut spec = ExecSpec {
        argv: args.command,
        env: args.env,
        cwd: args.workdir,
        user: args.user,
        tty: None,
    };

    let status = if args.tty {
        let size = tty::size().unwrap_or(TtySize { rows: 24, cols: 80 });
        spec.tty = Some(size);
        tty::interactive(&client, spec).await?
    } else {
        let forward = args.interactive || !std::io::stdin().is_terminal();
        let stdin = forward.then(tokio::io::stdin);
        let mut stdout = tokio::io::stdout();
        let mut stderr = tokio::io::stderr();
        match client.exec(spec, stdin, &mut stdout, &mut stderr).await {
            Ok(status) => status,
            // As shells do: 127 for a program not found, 126 for one that
            // cannot be run.
            Err(hearth_shim::ClientError::Refused(message)) => {
                eprintln!("hearth: {message}");
                let code = if message.contains("No such file") {
                    127
                } else {
                    126
                };
                return Ok(ExitCode::from(code));
            }
            Err(hearth_shim::ClientError::Io(err))
                if err.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                return Ok(ExitCode::from(141));
            }
            Err(err) => return Err(err.into()),
        }
    };
    Ok(ExitCode::from(status.shell_code().clamp(0, 255) as u8))
}

async fn snapshot(id: &str, file: &std::path::Path, stop: bool) -> Result<ExitCode> {
    let client = connect(id).await?;
    let path = absolute(file)?;
    let result = client
        .snapshot(&path, stop)
        .await
        .context("snapshot failed")?;
    eprintln!(
        "snapshot {}: memory {:.1} MiB, disk {:.1} MiB, paused {} ms, total {} ms",
        path.display(),
        result.memory_bytes as f64 / 1048576.0,
        result.disk_bytes as f64 / 1048576.0,
        result.paused_ms,
        result.total_ms,
    );
    Ok(ExitCode::SUCCESS)
}

fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(path)
    })
}

async fn restore(file: &std::path::Path) -> Result<ExitCode> {
    let host = host()?;
    let dir = launch::restore(&host, &absolute(file)?).await?;
    println!("{}", dir.id());
    Ok(ExitCode::SUCCESS)
}

async fn ls(json: bool) -> Result<ExitCode> {
    let root = paths::data_dir().join("vms");
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let dir = VmDir::at(entry.path());
            let (Ok(config), Ok(mut state)) = (dir.read_config(), dir.read_state()) else {
                continue;
            };
            if state.status != VmStatus::Exited && !dir.owns_process(state.shim_pid) {
                state.status = VmStatus::Exited;
                state.exit = Some("its shim is gone".to_owned());
            }
            rows.push((config, state));
        }
    }
    rows.sort_by_key(|(_, state)| state.started_ms);

    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(config, state)| serde_json::json!({"id": config.id, "config": config, "state": state}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<12} {:<5} {:>5} {:>7}  EXIT",
        "ID", "STATUS", "ACCEL", "VCPUS", "MEMORY"
    );
    for (config, state) in rows {
        println!(
            "{:<16} {:<12} {:<5} {:>5} {:>5}Mi  {}",
            config.id,
            format!("{:?}", state.status).to_lowercase(),
            state.accel.unwrap_or_default(),
            config.vcpus,
            config.memory_mib,
            state.exit.unwrap_or_default(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn console(id: &str, follow: bool) -> Result<ExitCode> {
    let dir = vm_dir(id)?;
    let path = dir.console();
    let mut offset = 0usize;
    loop {
        let bytes = std::fs::read(&path).unwrap_or_default();
        if bytes.len() > offset {
            use std::io::Write;
            let mut out = std::io::stdout();
            out.write_all(&bytes[offset..])?;
            out.flush()?;
            offset = bytes.len();
        }
        let running = dir
            .read_state()
            .map(|s| s.status != VmStatus::Exited)
            .unwrap_or(false);
        if !follow || !running {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn logs(id: &str, follow: bool) -> Result<ExitCode> {
    let client = connect(id).await?;
    print_logs(&client, follow, None).await
}

/// Prints the app's output of the VM in `dir` (standard error to standard
/// error), then, with `follow`, its new output until the VM stops. With
/// `json`, everything goes to standard output as JSON lines (see
/// [`JsonLines`]).
pub async fn stream_logs(dir: &std::path::Path, follow: bool, json: bool) -> Result<ExitCode> {
    let dir = VmDir::at(dir.to_owned());
    if !dir.root().exists() {
        bail!("no VM directory at {}", dir.root().display());
    }
    let client = ShimClient::connect(&dir).await?;
    let json = json.then(JsonLines::default);
    print_logs(&client, follow, json).await
}

async fn print_logs(
    client: &ShimClient,
    follow: bool,
    mut json: Option<JsonLines>,
) -> Result<ExitCode> {
    let stream = client.agent(Request::Logs { follow })?;
    let (_tx, mut rx) = stream.split();
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    use tokio::io::AsyncWriteExt;
    loop {
        match rx.recv().await {
            hearth_protocol::Event::Data { chan, bytes } => {
                let is_stderr = chan == hearth_protocol::CHAN_STDERR;
                match json.as_mut() {
                    Some(lines) => {
                        let out = lines.push(is_stderr, &bytes);
                        stdout.write_all(out.as_bytes()).await?;
                    }
                    None if is_stderr => stderr.write_all(&bytes).await?,
                    None => stdout.write_all(&bytes).await?,
                }
            }
            hearth_protocol::Event::Control(hearth_protocol::Control::Error { message }) => {
                bail!("{message}")
            }
            hearth_protocol::Event::Closed { .. } => break,
            _ => {}
        }
    }
    if let Some(lines) = json.as_mut() {
        stdout.write_all(lines.finish().as_bytes()).await?;
    }
    stdout.flush().await?;
    Ok(ExitCode::SUCCESS)
}

/// The app's output as JSON lines, one object per line of output:
/// `{"stream":"stdout","line":"..."}` (or `"stderr"`), the line without
/// its newline, invalid UTF-8 replaced. A last line without a newline is
/// printed at the end.
#[derive(Default)]
pub struct JsonLines {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl JsonLines {
    /// Takes output of one stream; returns the JSON lines it completes.
    pub fn push(&mut self, is_stderr: bool, bytes: &[u8]) -> String {
        let (name, buf) = self.stream(is_stderr);
        buf.extend_from_slice(bytes);
        let mut out = String::new();
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            out.push_str(&json_line(name, &line[..end]));
        }
        out
    }

    /// The JSON lines of what is left without a newline.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        for is_stderr in [false, true] {
            let (name, buf) = self.stream(is_stderr);
            if !buf.is_empty() {
                let rest = std::mem::take(buf);
                out.push_str(&json_line(name, &rest));
            }
        }
        out
    }

    fn stream(&mut self, is_stderr: bool) -> (&'static str, &mut Vec<u8>) {
        match is_stderr {
            true => ("stderr", &mut self.stderr),
            false => ("stdout", &mut self.stdout),
        }
    }
}

fn json_line(stream: &str, line: &[u8]) -> String {
    let line = String::from_utf8_lossy(line);
    let line = line.strip_suffix('\r').unwrap_or(&line);
    let mut out = serde_json::json!({ "stream": stream, "line": line }).to_string();
    out.push('\n');
    out
}

/// `ID:/path` → (id, path), for a VM or a microVM id; anything else is local.
fn remote(spec: &str) -> Option<(&str, &str)> {
    let (id, path) = spec.split_once(':')?;
    let is_id = id.starts_with("vm-") || id.starts_with("microvm-");
    (is_id && path.starts_with('/')).then_some((id, path))
}

/// Whom a file copied into a VM belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Root, as for any file the host administers.
    Root,
    /// The app's user and group, as for a file copied into its container.
    App,
}

/// Copies a file into or out of a VM or microVM (`ID:/path` names its side).
///
/// # Errors
///
/// Fails when neither or both sides are remote, or the copy fails.
pub async fn cp(src: &str, dst: &str, owner: Owner) -> Result<ExitCode> {
    match (remote(src), remote(dst)) {
        (None, Some((id, path))) => {
            let client = connect(id).await?;
            let mut file = tokio::fs::File::open(src)
                .await
                .with_context(|| format!("opening {src}"))?;
            let mode =
                std::os::unix::fs::PermissionsExt::mode(&file.metadata().await?.permissions());
            let mode = Some(mode & 0o7777);
            match owner {
                Owner::Root => client.write_file(path, mode, &mut file).await?,
                Owner::App => client.write_app_file(path, mode, &mut file).await?,
            }
        }
        (Some((id, path)), None) => {
            let client = connect(id).await?;
            copy_out(&client, path, std::path::Path::new(dst)).await?;
        }
        (None, None) => match [src, dst].into_iter().find_map(id_like) {
            Some(id) => bail!("unknown microvm or vm: {id} (ids start with microvm- or vm-)"),
            None => bail!("one side of cp must be ID:/absolute/path and the other a local path"),
        },
        _ => bail!("one side of cp must be ID:/absolute/path and the other a local path"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `name` of a `name:/path` that is not a local path, as a mistyped id.
fn id_like(spec: &str) -> Option<&str> {
    let (name, path) = spec.split_once(':')?;
    let plausible = !name.is_empty() && !name.contains('/') && path.starts_with('/');
    (plausible && !std::path::Path::new(spec).exists()).then_some(name)
}

/// Copies the VM's `path` to the local `dst` through a temporary file
/// beside it, renamed into place once the copy is whole: a failed copy
/// leaves nothing at `dst`.
async fn copy_out(client: &ShimClient, path: &str, dst: &std::path::Path) -> Result<()> {
    let name = dst
        .file_name()
        .with_context(|| format!("{} names no file", dst.display()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".hearth-cp-{}", std::process::id()));
    let temp = dst.with_file_name(temp_name);
    let mut file = tokio::fs::File::create(&temp)
        .await
        .with_context(|| format!("creating {}", temp.display()))?;
    let copied = async {
        client.read_file(path, &mut file).await?;
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        drop(file);
        tokio::fs::rename(&temp, dst)
            .await
            .with_context(|| format!("moving the copy to {}", dst.display()))
    }
    .await;
    if copied.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    copied
}

async fn rm(ids: &[String]) -> Result<ExitCode> {
    let mut failed = false;
    for id in ids {
        if let Err(err) = rm_one(id).await {
            eprintln!("hearth: {id}: {err:#}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn rm_one(id: &str) -> Result<()> {
    let dir = vm_dir(id)?;
    let state = dir.read_state().ok();
    let shim_alive = state.as_ref().is_some_and(|s| dir.owns_process(s.shim_pid));
    if shim_alive {
        if let Ok(client) = ShimClient::connect(&dir).await {
            if let Err(err) = client.stop().await {
                tracing::warn!(vm = id, error = %err, "stop failed; killing the VM");
            }
        }
    }
    // Whatever is still running of it (a QEMU whose shim died, a shim that
    // did not answer) is ended by its recorded pid, once the pid is proven
    // to be this VM's.
    dir.kill_processes();
    // A shim that did not stop its VM itself leaves the VM's network.
    if dir.network().exists() {
        hearth_net::HostNetwork::default().remove_vm_netns(id).await;
    }
    std::fs::remove_dir_all(dir.root())
        .with_context(|| format!("removing {}", dir.root().display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{id_like, missing_vm, remote, JsonLines};

    #[test]
    fn vm_and_microvm_ids_name_the_remote_side_of_cp() {
        assert_eq!(remote("vm-0123:/tmp/a"), Some(("vm-0123", "/tmp/a")));
        let microvm = "microvm-0123456789abcdef0123456789abcdef:/srv/app.py";
        assert_eq!(
            remote(microvm),
            Some(("microvm-0123456789abcdef0123456789abcdef", "/srv/app.py"))
        );
        assert_eq!(remote("./local:file"), None);
        assert_eq!(remote("vm-0123:relative"), None);
    }

    #[test]
    fn log_output_becomes_one_json_object_per_line_and_stream() {
        let mut lines = JsonLines::default();
        assert_eq!(
            lines.push(false, b"one\ntw"),
            "{\"line\":\"one\",\"stream\":\"stdout\"}\n"
        );
        assert_eq!(
            lines.push(true, b"oops \"quoted\"\r\n"),
            "{\"line\":\"oops \\\"quoted\\\"\",\"stream\":\"stderr\"}\n"
        );
        assert_eq!(
            lines.push(false, b"o\n"),
            "{\"line\":\"two\",\"stream\":\"stdout\"}\n"
        );
        assert_eq!(lines.push(false, b"no newline"), "");
        let rest: serde_json::Value = serde_json::from_str(lines.finish().trim()).unwrap();
        assert_eq!(
            rest,
            serde_json::json!({"stream": "stdout", "line": "no newline"})
        );
        assert_eq!(lines.finish(), "");
    }

    #[test]
    fn a_mistyped_id_in_cp_is_named_as_unknown() {
        assert_eq!(id_like("bogus-id:/x"), Some("bogus-id"));
        assert_eq!(id_like("./local:/x"), None);
        assert_eq!(id_like("plain-file"), None);
    }

    #[test]
    fn a_suspended_microvm_is_named_as_suspended_not_missing() {
        let data = tempfile::tempdir().unwrap();
        let id = "microvm-0123456789abcdef0123456789abcdef";
        assert!(missing_vm(data.path(), id).contains("no such microvm"));
        std::fs::create_dir_all(data.path().join("suspended").join(id)).unwrap();
        let message = missing_vm(data.path(), id);
        assert!(
            message.contains("SUSPENDED") && message.contains("resume"),
            "{message}"
        );
        assert_eq!(missing_vm(data.path(), "vm-1"), "no such vm: vm-1");
    }
}
