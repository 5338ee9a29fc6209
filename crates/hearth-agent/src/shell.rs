//! `Shell`: an interactive shell in the app's container.
//!
//! The shell runs on a terminal as the app does: with the app's environment,
//! user, working directory and capability set, in the same root filesystem,
//! network and process table. The program is `/bin/bash` when the image has
//! it, else `/bin/sh`. It is not started as a login shell, because a login
//! shell's `/etc/profile` would replace the app's `PATH`.
//!
//! Before the app has been started there is no app to follow: the shell then
//! runs as root in `/` with the default environment and capabilities, as an
//! exec would.
//!
//! Once started, the stream is a terminal exec's (see `exec`): channel 0 both
//! ways, `Resize`, `Signal`, then `Exit` and the close. When the guest powers
//! off, the stream is closed first with the reason, so the person at the
//! terminal reads why rather than an exit by `SIGKILL`.

use std::path::Path;

use hearth_protocol::{AppSpec, ExecSpec, ShellSpec, Stream};
use tokio::sync::watch;

use crate::exec;
use crate::process::Capabilities;
use crate::AgentConfig;

/// The shells tried, in order; the last is used when none exists.
const SHELLS: [&str; 2] = ["/bin/bash", "/bin/sh"];

/// Runs a shell for `spec` as the app of `app` on `stream`, closing it with
/// the reason `stopping` gives, if it gives one first.
pub async fn run(
    spec: ShellSpec,
    app: Option<AppSpec>,
    mut stopping: watch::Receiver<Option<String>>,
    config: &AgentConfig,
    stream: Stream,
) {
    let (exec, capabilities) = plan(spec, app.as_ref(), &config.fs_root);

    let sender = stream.sender.clone();
    let watcher = tokio::spawn(async move {
        if let Ok(reason) = stopping.wait_for(Option::is_some).await {
            sender.close(reason.as_deref());
        }
    });
    exec::run(exec, capabilities, &config.etc, stream).await;
    watcher.abort();
}

/// The exec that a shell for `spec` amounts to, and its capabilities.
fn plan(spec: ShellSpec, app: Option<&AppSpec>, fs_root: &Path) -> (ExecSpec, Capabilities) {
    let program = pick_shell(fs_root);

    let mut env = app.map(|app| app.env.clone()).unwrap_or_default();
    env.push(format!("SHELL={program}"));
    env.extend(spec.env);

    let capabilities = match app {
        Some(app) if !app.all_capabilities => Capabilities::Default,
        _ => Capabilities::All,
    };
    let exec = ExecSpec {
        argv: vec![program.to_owned()],
        env,
        cwd: app.and_then(|app| app.cwd.clone()),
        user: app.and_then(|app| app.user.clone()),
        tty: Some(spec.tty),
    };
    (exec, capabilities)
}

/// `/bin/bash` when the root filesystem has it, else `/bin/sh`.
fn pick_shell(fs_root: &Path) -> &'static str {
    SHELLS
        .iter()
        .find(|shell| fs_root.join(shell.trim_start_matches('/')).is_file())
        .copied()
        .unwrap_or(SHELLS[SHELLS.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_protocol::TtySize;

    fn root_with(files: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        for file in files {
            let path = root.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            std::fs::write(path, "").expect("file");
        }
        root
    }

    #[test]
    fn bash_is_preferred_and_sh_is_the_fallback() {
        let both = root_with(&["bin/bash", "bin/sh"]);
        assert_eq!(pick_shell(both.path()), "/bin/bash");
        let sh = root_with(&["bin/sh"]);
        assert_eq!(pick_shell(sh.path()), "/bin/sh");
        let none = root_with(&[]);
        assert_eq!(pick_shell(none.path()), "/bin/sh");
    }

    #[test]
    fn the_shell_follows_the_apps_env_user_workdir_and_capabilities() {
        let root = root_with(&["bin/sh"]);
        let app = AppSpec {
            argv: vec!["httpd".to_owned()],
            env: vec!["APP_MODE=prod".to_owned(), "TERM=dumb".to_owned()],
            cwd: Some("/srv".to_owned()),
            user: Some("app".to_owned()),
            all_capabilities: false,
        };
        let spec = ShellSpec {
            tty: TtySize {
                rows: 40,
                cols: 100,
            },
            env: vec!["TERM=screen".to_owned()],
        };
        let (exec, capabilities) = plan(spec, Some(&app), root.path());

        assert_eq!(exec.argv, vec!["/bin/sh"]);
        assert_eq!(exec.cwd.as_deref(), Some("/srv"));
        assert_eq!(exec.user.as_deref(), Some("app"));
        assert_eq!(
            exec.tty,
            Some(TtySize {
                rows: 40,
                cols: 100
            })
        );
        assert_eq!(capabilities, Capabilities::Default);
        // The client's entries come last, so they win over the app's.
        assert_eq!(
            exec.env,
            vec!["APP_MODE=prod", "TERM=dumb", "SHELL=/bin/sh", "TERM=screen"]
        );
    }

    #[test]
    fn without_an_app_the_shell_runs_as_root_with_every_capability() {
        let root = root_with(&["bin/sh"]);
        let (exec, capabilities) = plan(ShellSpec::default(), None, root.path());
        assert_eq!(exec.user, None);
        assert_eq!(exec.cwd, None);
        assert_eq!(capabilities, Capabilities::All);

        let app = AppSpec {
            all_capabilities: true,
            ..AppSpec::default()
        };
        let (_, capabilities) = plan(ShellSpec::default(), Some(&app), root.path());
        assert_eq!(capabilities, Capabilities::All);
    }
}
