//! Stopping the guest's processes around a snapshot.
//!
//! A VM restored from a snapshot resumes with the snapshot's kernel random
//! state and clock. Until the host's `Identity` has reseeded the kernel
//! CRNG, nothing but the agent may run, or two VMs restored from one
//! snapshot could produce the same "random" bytes. So before a snapshot
//! every other process is stopped with SIGSTOP, and the next `Identity`
//! continues them once the guest is reseeded. A stop is asynchronous: a
//! process inside a system call (a read of `/dev/urandom`, say) takes it
//! only on its way out, so the snapshot waits until each one is seen
//! stopped; otherwise the call would finish after the restore, before the
//! reseed.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a snapshot waits for its stopped processes to be seen stopped
/// (one in uninterruptible I/O stops when the I/O ends).
const SETTLE: Duration = Duration::from_secs(3);

/// The processes this module stopped, to continue later.
static STOPPED: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Stops every user process but the agent; returns how many. Does nothing
/// unless the agent is the guest's PID 1.
pub fn stop_all() -> usize {
    if std::process::id() != 1 {
        return 0;
    }
    let mut stopped = STOPPED
        .lock()
        .expect("the stopped list lock is never poisoned");

    // A process may fork between the listing and its stop: list again until
    // a pass finds nobody new (stopped parents fork no more).
    for _ in 0..20 {
        let fresh: Vec<i32> = candidates(Path::new("/proc"), 1)
            .into_iter()
            .filter(|pid| !stopped.contains(pid))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            if kill(Pid::from_raw(pid), Signal::SIGSTOP).is_ok() {
                stopped.push(pid);
            }
        }
    }

    let deadline = Instant::now() + SETTLE;
    let proc_root = Path::new("/proc");
    while !stopped.iter().all(|pid| settled(proc_root, *pid)) {
        if Instant::now() >= deadline {
            eprintln!("hearth-agent: some processes did not stop before the snapshot");
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    stopped.len()
}

/// Whether process `pid` is stopped, gone or a zombie: it runs no code and
/// is inside no system call.
fn settled(proc_root: &Path, pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) else {
        return true;
    };
    // The state follows the command name, which may itself hold `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some("T" | "t" | "Z" | "X" | "x") | None)
}

/// Continues every process [`stop_all`] stopped.
pub fn continue_all() {
    let pids = std::mem::take(
        &mut *STOPPED
            .lock()
            .expect("the stopped list lock is never poisoned"),
    );
    for pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    }
}

/// The user processes under `proc_root` other than `own`: kernel threads
/// (whose command line is empty) are left alone, and so are zombies.
fn candidates(proc_root: &Path, own: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            let cmdline = std::fs::read(proc_root.join(pid.to_string()).join("cmdline"));
            cmdline.is_ok_and(|c| !c.is_empty())
        })
        .collect();
    pids.sort_unstable();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_threads_zombies_and_the_agent_are_left_alone() {
        let root = tempfile::tempdir().expect("temp dir");
        for (pid, cmdline) in [
            (1, "init"),
            (2, ""),
            (40, "sh\0-c\0loop"),
            (41, "app"),
            (7, ""),
        ] {
            let dir = root.path().join(pid.to_string());
            std::fs::create_dir(&dir).expect("pid dir");
            std::fs::write(dir.join("cmdline"), cmdline).expect("cmdline");
        }
        std::fs::create_dir(root.path().join("self")).expect("self");
        assert_eq!(candidates(root.path(), 1), vec![40, 41]);
    }

    #[test]
    fn only_stopped_gone_or_dead_processes_are_settled() {
        let root = tempfile::tempdir().expect("temp dir");
        for (pid, stat) in [
            (40, "40 (sh) T 1 40"),
            (41, "41 (a (b)) R 1 41"),
            (42, "42 (head) D 40 40"),
            (43, "43 (old) Z 1 43"),
            (44, "44 (sleep) S 1 44"),
        ] {
            let dir = root.path().join(pid.to_string());
            std::fs::create_dir(&dir).expect("pid dir");
            std::fs::write(dir.join("stat"), stat).expect("stat");
        }
        let settled: Vec<i32> = (40..=45).filter(|pid| settled(root.path(), *pid)).collect();
        assert_eq!(settled, vec![40, 43, 45]);
    }

    #[test]
    fn outside_a_guest_nothing_is_stopped() {
        assert_eq!(stop_all(), 0);
        continue_all();
    }
}
