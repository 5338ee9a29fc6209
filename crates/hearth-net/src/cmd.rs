//! Running `ip`, `nft` and `sysctl`, with errors that say what failed.

use tokio::process::Command;

/// Errors setting networks up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A tool could not be started (not installed?).
    #[error("cannot run {tool} (install iproute2 and nftables)")]
    Missing {
        /// The tool.
        tool: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool refused a command.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A slot number beyond the address plan.
    #[error("network slot {0} is out of range (0..16384)")]
    Slot(u32),
}

/// Runs `program args…`; stdin, if given, is fed to it.
pub async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    use tokio::io::AsyncWriteExt;

    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| NetError::Missing {
        tool: program.to_owned(),
        source,
    })?;
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(text) = stdin {
            let _ = pipe.write_all(text.as_bytes()).await;
        }
    }

    let output = child
        .wait_with_output()
        .await
        .map_err(|source| NetError::Missing {
            tool: program.to_owned(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NetError::Failed {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs `ip args…`.
pub async fn ip(args: &[&str]) -> Result<String, NetError> {
    run("ip", args, None).await
}

/// Runs `ip -batch -` with one command a line, in `netns` when given; the
/// batch stops at the first command that fails.
pub async fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<String, NetError> {
    let script = lines.join("\n") + "\n";
    let ran = match netns {
        Some(ns) => run("ip", &["-n", ns, "-batch", "-"], Some(&script)).await,
        None => run("ip", &["-batch", "-"], Some(&script)).await,
    };
    // `ip` names the failed line by number: name the commands too.
    ran.map_err(|err| match err {
        NetError::Failed { command, stderr } => NetError::Failed {
            command: format!("{command} ({})", lines.join("; ")),
            stderr,
        },
        other => other,
    })
}

/// Loads an nftables script, in `netns` when given.
pub async fn nft(netns: Option<&str>, script: &str) -> Result<(), NetError> {
    match netns {
        Some(ns) => run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(script)).await?,
        None => run("nft", &["-f", "-"], Some(script)).await?,
    };
    Ok(())
}

/// Sets a sysctl, in `netns` when given.
pub async fn sysctl(netns: Option<&str>, key: &str, value: &str) -> Result<(), NetError> {
    let setting = format!("{key}={value}");
    match netns {
        Some(ns) => {
            run(
                "ip",
                &["netns", "exec", ns, "sysctl", "-qw", &setting],
                None,
            )
            .await?
        }
        None => run("sysctl", &["-qw", &setting], None).await?,
    };
    Ok(())
}
