//! `hearth shell` driven as a person drives it: in a real terminal (a tmux
//! pane on a tmux server of the test's own), keys typed, the screen read,
//! the window resized.
//!
//! [`Terminal::start`] takes the command line to run, so the same test
//! points at a microVM's endpoint by running `hearth shell ID --token …`
//! instead of `--local`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Hearth;

/// How long typed input may take to show on the screen under TCG.
const SCREEN_WAIT: Duration = Duration::from_secs(60);

/// A tmux server of this test's own, with one pane running a command.
struct Terminal {
    socket: PathBuf,
}

impl Terminal {
    /// Starts `command` (a shell command line) in a `cols`×`rows` pane.
    fn start(socket: PathBuf, command: &str, cols: u16, rows: u16) -> Terminal {
        let terminal = Terminal { socket };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        terminal.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &cols,
            "-y",
            &rows,
            command,
        ]);
        terminal
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `line` and Enter.
    fn type_line(&self, line: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", line]);
        self.tmux(&["send-keys", "-t", "t", "Enter"]);
    }

    /// The pane's screen and history.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t", "-S", "-"])
    }

    /// Waits until a line of the screen is exactly `line` (trailing blanks
    /// aside), so that a typed command is not mistaken for its output.
    fn wait_for_line(&self, line: &str) {
        if !self.has_line_within(line, SCREEN_WAIT) {
            panic!("no line {line:?} on the screen:\n{}", self.screen());
        }
    }

    /// Whether a line of the screen is exactly `line` within `wait`.
    fn has_line_within(&self, line: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.screen().lines().any(|l| l.trim_end() == line) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn resize(&self, cols: u16, rows: u16) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        self.tmux(&["resize-window", "-t", "t", "-x", &cols, "-y", &rows]);
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// Quotes a string for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[test]
fn a_person_in_a_terminal_types_resizes_and_exits() {
    let hearth = Hearth::new();
    let id = hearth.boot(Some("echo hello > /tmp/app-file; exec sleep 4343"));

    // The pane runs `hearth shell`, then reports its exit code and stays.
    let hearth_bin = env!("CARGO_BIN_EXE_hearth");
    let command = format!(
        "env HEARTH_DATA={} HEARTH_ASSETS={} {} shell --local {id}; echo hearth-exit=$?; sleep 600",
        quote(&hearth.data.path().display().to_string()),
        quote(&hearth.assets.display().to_string()),
        quote(hearth_bin),
    );
    let terminal = Terminal::start(hearth.path("tmux.sock"), &command, 100, 30);

    terminal.type_line("stty size");
    terminal.wait_for_line("30 100");

    terminal.type_line("cat /tmp/app-file");
    terminal.wait_for_line("hello");
    terminal.type_line("ps -o pid,args | grep [s]leep");
    let app_line = {
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let screen = terminal.screen();
            let found = screen
                .lines()
                .find(|l| l.trim_end().ends_with("sleep 4343"));
            if let Some(line) = found {
                break line.to_owned();
            }
            assert!(Instant::now() < deadline, "no app in ps:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert!(!app_line.contains("grep"), "{app_line}");

    // The window change reaches `hearth shell` as SIGWINCH, and the guest's
    // terminal through a resize message, which may land after the next
    // command is typed: ask until the new size shows.
    terminal.resize(120, 40);
    let deadline = Instant::now() + SCREEN_WAIT;
    loop {
        terminal.type_line("stty size");
        if terminal.has_line_within("40 120", Duration::from_secs(5)) {
            break;
        }
        assert!(Instant::now() < deadline, "the resize never showed");
    }

    terminal.type_line("exit 3");
    terminal.wait_for_line("hearth-exit=3");
}
