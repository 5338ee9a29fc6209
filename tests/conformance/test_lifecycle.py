"""Suspend and resume as a user sees them: what the app held in memory and
wrote to disk is there after two cycles in a row and the microVM answers
after each; open streams end with a reason at a suspend; hooks that fail
or hang are bounded by their timeouts and leave a `stateReason`.

A failing or hanging `suspend` hook does not stop the suspend: the hook is
the app's notice, and losing the microVM over it would lose the work the
suspend exists to keep, so the microVM is SUSPENDED with `stateReason`
SUSPEND_HOOK_FAILED. A failing `resume` hook is a failed step, and the
microVM ends TERMINATED with RESUME_HOOK_FAILED."""

import subprocess

import pytest

from conftest import HERE, wait_microvm


def counter(server, microvm_id):
    """The next number of the counter the app keeps in memory."""
    return int(server.vm_exec(microvm_id, "wget -qO- http://127.0.0.1:8081/"))


def answers(server, microvm_id):
    """Whether the app serves its page."""
    page = (HERE / "app" / "www" / "index.html").read_text()
    return server.vm_exec(microvm_id, "wget -qO- http://127.0.0.1:8080/") == page


def suspend(client, microvm_id):
    client.suspend_microvm(microvmIdentifier=microvm_id)
    return wait_microvm(client, microvm_id, states=("SUSPENDED",), timeout=120)


def resume(client, microvm_id):
    client.resume_microvm(microvmIdentifier=microvm_id)
    return wait_microvm(client, microvm_id, timeout=120)


@pytest.fixture
def microvm(client, app_image):
    run = client.run_microvm(imageIdentifier="conformance-app")
    microvm_id = run["microvmId"]
    wait_microvm(client, microvm_id)
    yield microvm_id
    client.terminate_microvm(microvmIdentifier=microvm_id)
    wait_microvm(client, microvm_id, states=("TERMINATED",))


def test_memory_and_files_survive_two_suspend_resume_cycles(client, server, microvm):
    assert [counter(server, microvm) for _ in range(3)] == [1, 2, 3]
    server.vm_exec(microvm, "echo kept-on-disk > /app/kept.txt && sync")

    for cycle, expected in ((1, 4), (2, 5)):
        got = suspend(client, microvm)
        assert "stateReason" not in got, got
        assert not (server.data_dir / "vms" / microvm).exists(), f"cycle {cycle}: a VM remains"
        resume(client, microvm)

        assert counter(server, microvm) == expected, f"cycle {cycle}"
        assert server.vm_exec(microvm, "cat /app/kept.txt").strip() == "kept-on-disk"
        assert answers(server, microvm), f"cycle {cycle}: the app does not answer"
    hooks = server.vm_exec(microvm, "cat /tmp/hooks.log").split()
    assert hooks.count("suspend") == 2 and hooks.count("resume") == 2, hooks
    assert not list((server.data_dir / "suspended").glob(f"{microvm}*"))


def test_an_open_exec_stream_ends_with_a_reason_at_suspend(client, server, microvm):
    stream = subprocess.Popen(
        [server.binary, "vm", "exec", microvm, "--", "sleep", "300"],
        env={"HEARTH_DATA": str(server.data_dir), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        server.vm_exec(microvm, "pidof sleep")
        suspend(client, microvm)
        _, stderr = stream.communicate(timeout=60)
    finally:
        stream.kill()
    assert stream.returncode != 0
    print("exec stderr:", stderr)
    assert "snapshotted" in stderr, stderr
    resume(client, microvm)
    assert answers(server, microvm)


def test_a_failing_suspend_hook_still_suspends_with_a_reason(client, server, microvm):
    counter(server, microvm)
    server.vm_exec(microvm, "echo 500 > /tmp/hook-suspend-status")
    got = suspend(client, microvm)
    assert got["stateReason"] == "SUSPEND_HOOK_FAILED"
    resume(client, microvm)
    assert counter(server, microvm) == 2
    # The reason belonged to the suspend; the running microVM has none.
    assert "stateReason" not in client.get_microvm(microvmIdentifier=microvm)


def test_a_suspend_hook_that_hangs_is_cut_at_its_timeout(client, server, microvm):
    # The hook's timeout is 10 s; a hook that took its 600 s would outlast
    # the wait below.
    server.vm_exec(microvm, "echo 600 > /tmp/hook-suspend-delay")
    client.suspend_microvm(microvmIdentifier=microvm)
    got = wait_microvm(client, microvm, states=("SUSPENDED",), timeout=90)
    assert got["stateReason"] == "SUSPEND_HOOK_FAILED"
    assert not (server.data_dir / "vms" / microvm).exists()
    resume(client, microvm)
    assert answers(server, microvm)


def test_a_failing_resume_hook_terminates_with_a_reason(client, server, app_image):
    run = client.run_microvm(imageIdentifier="conformance-app")
    microvm_id = run["microvmId"]
    wait_microvm(client, microvm_id)
    server.vm_exec(microvm_id, "echo 500 > /tmp/hook-resume-status")
    suspend(client, microvm_id)
    client.resume_microvm(microvmIdentifier=microvm_id)
    got = wait_microvm(client, microvm_id, states=("TERMINATED",), timeout=120)
    assert got["stateReason"] == "RESUME_HOOK_FAILED"
    assert not (server.data_dir / "vms" / microvm_id).exists()
    assert not (server.data_dir / "suspended" / microvm_id).exists()


def test_a_resume_hook_that_hangs_is_cut_at_its_timeout(client, server, app_image):
    run = client.run_microvm(imageIdentifier="conformance-app")
    microvm_id = run["microvmId"]
    wait_microvm(client, microvm_id)
    server.vm_exec(microvm_id, "echo 600 > /tmp/hook-resume-delay")
    suspend(client, microvm_id)
    client.resume_microvm(microvmIdentifier=microvm_id)
    got = wait_microvm(client, microvm_id, states=("TERMINATED",), timeout=90)
    assert got["stateReason"] == "RESUME_HOOK_FAILED"


def test_an_idle_microvm_suspends_and_then_terminates_after_its_suspended_time(
        client, app_image):
    # No ingress traffic reaches it: after 60 s idle it suspends, and with
    # `suspendedDurationSeconds` 0 it terminates as soon as it is suspended.
    run = client.run_microvm(
        imageIdentifier="conformance-app",
        idlePolicy={"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 0,
                    "autoResumeEnabled": True},
    )
    microvm_id = run["microvmId"]
    wait_microvm(client, microvm_id)
    got = wait_microvm(client, microvm_id, states=("TERMINATED",), timeout=240)
    assert got["stateReason"] == "SUSPENDED_DURATION_REACHED"
