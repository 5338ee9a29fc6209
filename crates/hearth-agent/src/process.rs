//! Turning a command spec (an exec or the app) into a process.
//!
//! A [`Plan`] is checked before anything is forked: the user is resolved
//! from the root filesystem, the environment is built, the working directory
//! must exist and the program must be found in the command's own `PATH`. So a
//! missing program is reported as "exec NAME: No such file or directory"
//! without a child ever existing. The child then starts a session of its own,
//! drops capabilities as asked and switches user before `exec`.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::caps;
use crate::sys::{self, ChildSetup, RawCredentials};
use crate::users::{self, UserError};

/// `PATH` when the command's environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors preparing or spawning a command.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The spec names no program.
    #[error("empty argv")]
    EmptyArgv,
    /// The program is not in `PATH` or does not exist.
    #[error("exec {program}: No such file or directory")]
    NotFound {
        /// The program as the spec named it.
        program: String,
    },
    /// The working directory is unusable.
    #[error("working directory {cwd}")]
    Cwd {
        /// The directory.
        cwd: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The user spec does not resolve.
    #[error(transparent)]
    User(#[from] UserError),
    /// The process could not be set up (pipes, terminal).
    #[error("set up {what}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `fork`, the child's setup or `exec` failed.
    #[error("exec {program}")]
    Spawn {
        /// The program as the spec named it.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Which capabilities the process keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capabilities {
    /// Every capability the agent has.
    All,
    /// Docker's default set.
    Default,
}

/// What a command spec asks for.
pub struct Request<'a> {
    /// Program and arguments.
    pub argv: &'a [String],
    /// `KEY=value` entries, which override the defaults.
    pub env: &'a [String],
    /// Working directory (default `/`).
    pub cwd: Option<&'a str>,
    /// `user[:group]` (default root, unchanged).
    pub user: Option<&'a str>,
    /// `TERM` to set by default, for commands on a terminal.
    pub term: Option<&'a str>,
    /// Capabilities to keep.
    pub capabilities: Capabilities,
}

/// A checked command, ready to spawn.
#[derive(Debug)]
pub struct Plan {
    /// The program's path, found in `PATH`.
    pub program: PathBuf,
    /// Program name and arguments, as given.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Ids to switch to, when a user was given.
    pub credentials: Option<RawCredentials>,
    /// Capabilities to keep.
    pub capabilities: Capabilities,
}

impl Plan {
    /// Checks a request against the root filesystem whose `/etc` is `etc`.
    ///
    /// # Errors
    ///
    /// Fails when the argv is empty, the user or group is unknown, the working
    /// directory is not a directory or the program cannot be found.
    pub fn new(req: &Request<'_>, etc: &Path) -> Result<Plan, LaunchError> {
        let program = req.argv.first().ok_or(LaunchError::EmptyArgv)?;
        if program.is_empty() {
            return Err(LaunchError::EmptyArgv);
        }

        let spec = req.user.unwrap_or("").trim();
        let user = users::resolve_in(spec, etc)?;
        let credentials = (!spec.is_empty()).then(|| RawCredentials {
            uid: user.uid,
            gid: user.gid,
            groups: user.groups.clone(),
        });

        let mut defaults = vec![
            ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
            ("HOME".to_owned(), user.home.clone()),
        ];
        if let Some(term) = req.term {
            defaults.push(("TERM".to_owned(), term.to_owned()));
        }
        let env = merge_env(defaults, req.env);

        let cwd = PathBuf::from(req.cwd.filter(|c| !c.is_empty()).unwrap_or("/"));
        check_dir(&cwd)?;

        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        let program = find_program(program, path_var, &cwd)?;

        Ok(Plan {
            program,
            argv: req.argv.to_vec(),
            env,
            cwd,
            credentials,
            capabilities: req.capabilities,
        })
    }

    /// A command for this plan; the caller sets its stdio.
    pub fn command(&self, controlling_tty: bool) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg0(&self.argv[0])
            .args(&self.argv[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd);

        let drop_capabilities = match self.capabilities {
            Capabilities::All => Vec::new(),
            Capabilities::Default => caps::to_drop(caps::last_cap()),
        };
        let setup = ChildSetup {
            new_session: true,
            controlling_tty,
            drop_capabilities,
            credentials: self.credentials.clone(),
        };
        sys::set_child_setup(&mut cmd, setup);
        cmd
    }
}

/// Parses `KEY=value` entries over `defaults`; a later key replaces an
/// earlier one, and entries without `=` are ignored.
pub fn merge_env(defaults: Vec<(String, String)>, entries: &[String]) -> Vec<(String, String)> {
    let mut env = defaults;
    for entry in entries {
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        if key.is_empty() {
            continue;
        }
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_owned(),
            None => env.push((key.to_owned(), value.to_owned())),
        }
    }
    env
}

fn check_dir(cwd: &Path) -> Result<(), LaunchError> {
    let wrap = |source| LaunchError::Cwd {
        cwd: cwd.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(cwd).map_err(wrap)?;
    if !meta.is_dir() {
        return Err(wrap(io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    Ok(())
}

/// Finds `program` the way a shell does: a name with a slash is a path
/// (relative to `cwd`), anything else is searched in `path_var`.
///
/// # Errors
///
/// Fails with [`LaunchError::NotFound`] naming the program.
pub fn find_program(program: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, LaunchError> {
    let not_found = || LaunchError::NotFound {
        program: program.to_owned(),
    };
    if program.contains('/') {
        let path = cwd.join(program);
        return match path.exists() {
            true => Ok(path),
            false => Err(not_found()),
        };
    }

    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { cwd } else { Path::new(dir) };
        let candidate = dir.join(program);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn env_entries_override_defaults_in_place() {
        let defaults = vec![
            ("PATH".to_owned(), "/bin".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let env = merge_env(
            defaults,
            &strings(&["HOME=/home/app", "A=1=2", "junk", "A=3"]),
        );
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            env,
            vec![("PATH", "/bin"), ("HOME", "/home/app"), ("A", "3")]
        );
    }

    #[test]
    fn programs_are_found_in_the_commands_path() {
        let found = find_program("sh", "/nonexistent:/bin", Path::new("/")).expect("sh");
        assert_eq!(found, PathBuf::from("/bin/sh"));

        let err =
            find_program("nosuch-program", "/bin:/usr/bin", Path::new("/")).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "exec nosuch-program: No such file or directory"
        );

        let found = find_program("bin/sh", "", Path::new("/")).expect("relative path");
        assert_eq!(found, PathBuf::from("/bin/sh"));
    }

    #[test]
    fn a_plan_checks_the_working_directory_and_user() {
        let etc = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            etc.path().join("passwd"),
            "app:x:1000:1000::/home/app:/bin/sh\n",
        )
        .expect("passwd");
        let argv = strings(&["sh", "-c", "true"]);
        let mut req = Request {
            argv: &argv,
            env: &[],
            cwd: Some("/nonexistent-dir"),
            user: Some("app"),
            term: Some("xterm-256color"),
            capabilities: Capabilities::Default,
        };
        let err = Plan::new(&req, etc.path()).expect_err("bad cwd");
        assert!(matches!(err, LaunchError::Cwd { .. }), "{err}");

        req.cwd = None;
        let plan = Plan::new(&req, etc.path()).expect("plan");
        assert_eq!(plan.cwd, PathBuf::from("/"));
        assert_eq!(plan.credentials.as_ref().map(|c| c.uid), Some(1000));
        assert!(plan
            .env
            .contains(&("HOME".to_owned(), "/home/app".to_owned())));
        assert!(plan
            .env
            .contains(&("TERM".to_owned(), "xterm-256color".to_owned())));

        req.user = Some("ghost");
        assert!(matches!(
            Plan::new(&req, etc.path()),
            Err(LaunchError::User(_))
        ));
    }
}
