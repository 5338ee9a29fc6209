//! Reaps every child of the process and hands each exit status to the task
//! that spawned it.
//!
//! As PID 1 the agent inherits every orphan in the guest and must wait for
//! them all, yet the tasks that spawned a command or the app need their own
//! child's real status. One thread does both: it blocks in
//! `waitid(P_ALL, WEXITED | WNOWAIT)` to learn which child ended without
//! reaping it, takes the registry lock, then reaps that child and sends its
//! status to the waiter registered for its pid (orphans have none).
//!
//! [`Reaper::spawn`] holds the same lock while it forks and registers, so a
//! child that exits at once is never reaped before its waiter exists, and the
//! standard library's own clean-up of a child whose `exec` failed (it waits
//! for that pid itself) never races with the reaper.
//!
//! Nothing else in the process may wait for children: the agent never uses
//! `tokio::process` or `std::process::Child::wait`.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use hearth_protocol::ExitStatus;
use nix::errno::Errno;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// The process's reaper, started on first use.
pub fn global() -> &'static Reaper {
    static REAPER: OnceLock<&'static Reaper> = OnceLock::new();
    REAPER.get_or_init(|| {
        let reaper: &'static Reaper = Box::leak(Box::new(Reaper {
            state: Mutex::new(State::default()),
            spawned: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("reaper".to_owned())
            .spawn(move || reaper.run())
            .expect("the reaper thread starts before any child exists");
        reaper
    })
}

/// Waits for children and dispatches their exit statuses.
pub struct Reaper {
    state: Mutex<State>,
    spawned: Condvar,
}

#[derive(Default)]
struct State {
    waiters: HashMap<i32, oneshot::Sender<ExitStatus>>,
    generation: u64,
}

/// A spawned child and the receiver of its exit status.
pub struct Spawned {
    /// The child, with whatever pipes it was given; never wait on it.
    pub child: Child,
    /// Its exit status, once the reaper has collected it.
    pub exit: oneshot::Receiver<ExitStatus>,
}

impl Reaper {
    /// Spawns `cmd` and registers for its exit status.
    ///
    /// # Errors
    ///
    /// Fails when the command cannot be started (fork, setup or exec).
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Spawned> {
        let mut state = self.lock();
        let child = cmd.spawn()?;

        let (tx, exit) = oneshot::channel();
        state.waiters.insert(child.id() as i32, tx);
        state.generation += 1;
        self.spawned.notify_all();
        Ok(Spawned { child, exit })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the reaper's lock is never held across a panic")
    }

    fn run(&self) {
        loop {
            let generation = self.lock().generation;

            // Learn which child ended, leaving it a zombie for now.
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
            let pid = match waitid(Id::All, flags) {
                Ok(status) => status.pid(),
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => {
                    // No children: sleep until the next spawn.
                    let state = self.lock();
                    let _unused = self
                        .spawned
                        .wait_while(state, |s| s.generation == generation)
                        .expect("the reaper's lock is never held across a panic");
                    continue;
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let Some(pid) = pid else { continue };

            // Under the lock, a spawn in progress has either registered this
            // pid or already collected it itself.
            let mut state = self.lock();
            let Ok(status) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) else {
                continue;
            };
            let Some(exit) = exit_status(status) else {
                continue;
            };
            if let Some(waiter) = state.waiters.remove(&pid.as_raw()) {
                let _ = waiter.send(exit);
            }
        }
    }
}

/// The protocol's view of a wait status; `None` for a child that has not
/// ended.
pub fn exit_status(status: WaitStatus) -> Option<ExitStatus> {
    match status {
        WaitStatus::Exited(_, code) => Some(ExitStatus {
            code: Some(code),
            signal: None,
        }),
        WaitStatus::Signaled(_, signal, _) => Some(ExitStatus {
            code: None,
            signal: Some(signal as i32),
        }),
        _ => None,
    }
}

/// Sends `signal` to a process (or, negative, a process group); an unknown
/// signal number or a process that is gone is not an error worth reporting.
pub fn kill(pid: i32, signal: i32) {
    if let Ok(signal) = nix::sys::signal::Signal::try_from(signal) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_codes_and_signals_reach_the_spawner() {
        let reaper = global();
        let mut ok = Command::new("/bin/sh");
        ok.args(["-c", "exit 3"]);
        let mut killed = Command::new("/bin/sh");
        killed.args(["-c", "kill -TERM $$"]);

        let a = reaper.spawn(&mut ok).expect("spawn");
        let b = reaper.spawn(&mut killed).expect("spawn");
        assert_eq!(a.exit.await.expect("status").code, Some(3));
        assert_eq!(b.exit.await.expect("status").signal, Some(15));
    }

    #[tokio::test]
    async fn a_failed_exec_is_an_error_not_a_lost_child() {
        let reaper = global();
        let mut cmd = Command::new("/nonexistent/program");
        let err = reaper.spawn(&mut cmd).err().expect("spawn fails");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);

        // The reaper still serves the next child.
        let mut cmd = Command::new("/bin/true");
        let child = reaper.spawn(&mut cmd).expect("spawn");
        assert_eq!(child.exit.await.expect("status").code, Some(0));
    }
}
