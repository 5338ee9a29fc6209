"""`hearth shell ID` through a microVM's endpoint, driven as a person drives
it: in a real terminal (a tmux pane on a tmux server of the test's own) the
command asks the API for a shell token, opens the `/shell` WebSocket on the
ingress proxy of a real `hearth serve`, and joins the pane to a shell in the
app's container of a real microVM (tests/conformance/ingress_app, run with
the SHELL_INGRESS connector)."""

import os
import pathlib
import shlex
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from conftest import INGRESS_IMAGE, wait_for, wait_microvm

IMAGE = INGRESS_IMAGE
SHELL_CONNECTOR = "arn:aws:lambda:us-east-1:aws:network-connector:aws-network-connector:SHELL_INGRESS"

# How long typed input may take to show on the screen under TCG.
SCREEN_WAIT = 90


class Terminal:
    """A tmux server of the test's own with one pane running a command line."""

    def __init__(self, command, cols, rows):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="h-tmux-", dir="/tmp"))
        self.socket = self.dir / "tmux.sock"
        self.tmux("new-session", "-d", "-s", "t", "-x", str(cols), "-y", str(rows), command)

    def tmux(self, *args):
        out = subprocess.run(["tmux", "-S", str(self.socket), "-f", "/dev/null", *args],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"tmux {args}: {out.stderr}"
        return out.stdout

    def type_line(self, line):
        self.tmux("send-keys", "-t", "t", "-l", line)
        self.tmux("send-keys", "-t", "t", "Enter")

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "t", "-S", "-")

    def lines(self):
        return [line.rstrip() for line in self.screen().splitlines()]

    def wait_line(self, predicate, what, timeout=SCREEN_WAIT):
        """Waits for a line of the screen that `predicate` accepts; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines() if predicate(line)]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, f"no {what} on the screen:\n{self.screen()}"
            time.sleep(0.3)

    def wait_for_line(self, text, timeout=SCREEN_WAIT):
        """Waits until a line is exactly `text`, so that a typed command is
        not mistaken for its output."""
        return self.wait_line(lambda line: line == text, repr(text), timeout)

    def resize(self, cols, rows):
        self.tmux("resize-window", "-t", "t", "-x", str(cols), "-y", str(rows))

    def close(self):
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"],
                       capture_output=True, timeout=30)
        self.socket.unlink(missing_ok=True)
        self.dir.rmdir()


def run_with_shell(client, **kwargs):
    microvm_id = client.run_microvm(imageIdentifier=IMAGE,
                                    ingressNetworkConnectors=[SHELL_CONNECTOR],
                                    **kwargs)["microvmId"]
    wait_microvm(client, microvm_id)
    return microvm_id


def shell_command(server, hearth_binary, microvm_id):
    """The pane's command line: `hearth shell ID` (through the endpoint, with
    a token it asks the API for), then its exit code, then a pause that
    keeps the pane open to be read."""
    env = {
        "HEARTH_ENDPOINT_URL": server.endpoint,
        "HEARTH_DATA": str(server.data_dir),
        "HEARTH_INGRESS_ADDR": urllib.parse.urlsplit(server.ingress).netloc,
    }
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return (f"env {assignments} {shlex.quote(hearth_binary)} shell {microvm_id}; "
            "echo hearth-exit=$?; sleep 900")


def traffic(server, microvm_id):
    with sqlite3.connect(server.data_dir / "hearth.db") as db:
        row = db.execute("SELECT bytes_in, bytes_out FROM microvm_traffic WHERE microvm_id = ?",
                         (microvm_id,)).fetchone()
    return row or (0, 0)


def test_a_person_types_sees_the_app_resizes_and_exits_through_the_endpoint(
        client, server, hearth_binary, ingress_image):
    """The shell's bytes are the microVM's traffic and keep it from idling:
    with a 60 s idle time, a shell used every 10 s for 90 s keeps it RUNNING."""
    policy = {"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 3600,
              "autoResumeEnabled": False}
    microvm_id = run_with_shell(client, idlePolicy=policy)
    terminal = Terminal(shell_command(server, hearth_binary, microvm_id), 100, 30)
    try:
        terminal.type_line("stty size")
        terminal.wait_for_line("30 100")

        # The app's files: its working directory and its script.
        terminal.type_line("pwd; ls /app")
        terminal.wait_for_line("/app")
        terminal.wait_for_line("http.sh")
        # The app's processes: its nc server, in the same process table.
        terminal.type_line("ps -o args | grep '[n]c -ll'")
        terminal.wait_line(lambda l: l.startswith("nc -ll -p 8080"), "the app's nc in ps")

        terminal.resize(120, 40)
        terminal.type_line("stty size")
        terminal.wait_for_line("40 120")

        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 90:
            n += 1
            terminal.type_line(f"echo still-$((1000 + {n}))")
            terminal.wait_for_line(f"still-{1000 + n}")
            time.sleep(10)
        assert client.get_microvm(microvmIdentifier=microvm_id)["state"] == "RUNNING"

        # Counted for metering, both ways (flushed by the timers).
        wait_for(lambda: traffic(server, microvm_id), lambda t: t[0] > 0 and t[1] > 0, 30,
                 "shell traffic")

        terminal.type_line("exit 7")
        terminal.wait_for_line("hearth-exit=7")
    finally:
        terminal.close()
        client.terminate_microvm(microvmIdentifier=microvm_id)


def test_a_shell_open_when_the_microvm_is_suspended_closes_with_a_reason(
        client, server, hearth_binary, ingress_image):
    microvm_id = run_with_shell(client)
    terminal = Terminal(shell_command(server, hearth_binary, microvm_id), 80, 24)
    try:
        terminal.type_line("echo $((6 * 7))")
        terminal.wait_for_line("42")

        client.suspend_microvm(microvmIdentifier=microvm_id)
        wait_microvm(client, microvm_id, states=("SUSPENDED",))
        ended = terminal.wait_line(lambda l: "the shell ended without an exit:" in l,
                                   "the shell's end")
        reason = ended.split("the shell ended without an exit:", 1)[1].strip()
        assert reason and reason != "the connection ended", ended
        terminal.wait_for_line("hearth-exit=1")
    finally:
        terminal.close()
        client.terminate_microvm(microvmIdentifier=microvm_id)


def test_hearth_run_with_shell_ingress_then_hearth_shell_finds_the_endpoint(
        server, hearth_binary, ingress_image):
    """README's flow: `hearth run --ingress SHELL_INGRESS`, then `hearth shell
    ID` with no ingress address given: the endpoint comes from GetMicrovm."""
    env = dict(os.environ, HEARTH_ENDPOINT_URL=server.endpoint, HEARTH_DATA=str(server.data_dir))
    env.pop("HEARTH_INGRESS_ADDR", None)

    def hearth(*args, **kwargs):
        return subprocess.run([hearth_binary, *args], env=env, capture_output=True, text=True,
                              timeout=900, **kwargs)

    ran = hearth("run", ingress_image, "--ingress", "SHELL_INGRESS", "--ingress", "ALL_INGRESS")
    assert ran.returncode == 0, ran.stderr
    microvm_id = ran.stdout.strip()
    try:
        shell = hearth("shell", microvm_id, input="echo shell-says-$((40 + 2))\nexit 3\n")
        assert shell.returncode == 3, shell.stderr
        assert "shell-says-42" in shell.stdout, shell.stdout
    finally:
        hearth("rm", microvm_id)


def test_hearth_run_refuses_an_unknown_ingress_connector(server, hearth_binary):
    refused = subprocess.run([hearth_binary, "run", IMAGE, "--ingress", "BOGUS"],
                             env=dict(os.environ, HEARTH_ENDPOINT_URL=server.endpoint),
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "--ingress" in refused.stderr and "SHELL_INGRESS" in refused.stderr, refused.stderr
