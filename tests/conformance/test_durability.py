"""`hearth serve` SIGKILLed in the middle of a suspend, a resume, a run, a
terminate and a build, each at a moment that a hook which waits (or, once
the snapshot is saved, the `HEARTH_TEST_PAUSE` point) makes certain, then
started again on the same data directory: every microVM ends usable (it
answers, with its memory and files) or TERMINATED with a reason, every
image CREATED or CREATE_FAILED with a reason, and no QEMU, shim or file is
left that no record owns. A RUNNING and a SUSPENDED microVM both survive a SIGKILL."""

import json
import os
import shutil
import signal
import subprocess
import pytest

from clients import make_client
from conftest import HERE, app_config, build_example_app, upload, wait_for, wait_microvm, zip_dir
from test_lifecycle import answers, counter

# The hooks' timeout is 10 s; a hook that takes 6 s gives the test a window
# in which the server is surely waiting for it, and still succeeds when the
# restarted server calls it again.
HOOK_DELAY = 6


@pytest.fixture(scope="module")
def dur(make_server, server, app_zip):
    durable = make_server("dur", keys_from=server)
    return build_example_app(durable, app_zip, "dur")


def crash_and_restart(server):
    server.kill()
    server.start()
    return make_client(server.endpoint)


def settled(server, client):
    """Waits until no microVM is between states and nothing is orphaned:
    VM directories and processes belong to RUNNING microVMs, suspended
    snapshots to SUSPENDED ones, and no half-written snapshot or build
    scratch directory remains (a task may still be removing its files for a
    moment after its state is recorded). Returns the microVM ids by state."""
    items = wait_for(
        lambda: client.list_microvms()["items"],
        lambda items: all(i["state"] in ("RUNNING", "SUSPENDED", "TERMINATED") for i in items),
        180, "microvms settling",
    )
    by_state = {}
    for item in items:
        by_state.setdefault(item["state"], set()).add(item["microvmId"])
        if item["state"] == "TERMINATED":
            got = client.get_microvm(microvmIdentifier=item["microvmId"])
            assert got.get("stateReason"), got
    wait_for(lambda: orphans(server, by_state), lambda found: found == {}, 15, "orphans")
    return by_state


def orphans(server, by_state):
    """What is on disk or running that the microVMs' states do not explain."""
    running = by_state.get("RUNNING", set())
    suspended = by_state.get("SUSPENDED", set())
    data = server.data_dir
    found = {}

    vm_dirs = {p.name for p in (data / "vms").glob("*")}
    if vm_dirs != running:
        found["vm directories"] = vm_dirs ^ running
    kept = {p.name for p in (data / "suspended").glob("*")}
    if kept != suspended:
        found["suspended snapshots"] = kept ^ suspended
    partial = [str(p) for p in data.rglob("*.tmp-*")]
    if partial:
        found["half-written"] = partial
    scratch = [str(p) for p in (data / "builds").glob("*")]
    if scratch:
        found["build scratch"] = scratch

    expected = set()
    for microvm_id in running:
        state = server.vm_state(microvm_id)
        expected |= {state["shim_pid"], state["qemu_pid"]}
    processes = server.processes()
    if processes != expected:
        found["processes"] = processes ^ expected
    return found


def run(client, **kwargs):
    microvm_id = client.run_microvm(imageIdentifier="dur-app", **kwargs)["microvmId"]
    wait_microvm(client, microvm_id)
    return microvm_id


def test_a_crash_mid_suspend_finishes_the_suspend(dur):
    client = make_client(dur.endpoint)
    microvm_id = run(client)
    assert counter(dur, microvm_id) == 1
    dur.vm_exec(microvm_id, f"echo {HOOK_DELAY} > /tmp/hook-suspend-delay; echo kept > /app/f")

    client.suspend_microvm(microvmIdentifier=microvm_id)
    dur.wait_log("calling hook", microvm_id, "hook=\"suspend\"")
    client = crash_and_restart(dur)

    assert settled(dur, client).get("SUSPENDED") == {microvm_id}
    client.resume_microvm(microvmIdentifier=microvm_id)
    wait_microvm(client, microvm_id, timeout=120)
    assert counter(dur, microvm_id) == 2
    assert dur.vm_exec(microvm_id, "cat /app/f").strip() == "kept"
    client.terminate_microvm(microvmIdentifier=microvm_id)
    settled(dur, client)


def test_a_crash_after_the_snapshot_is_saved_keeps_it(dur):
    client = make_client(dur.endpoint)
    microvm_id = run(client)
    assert counter(dur, microvm_id) == 1
    # A restart with the pause point set; the microVM is found again.
    dur.extra_env = {"HEARTH_TEST_PAUSE": "suspend-saved"}
    client = crash_and_restart(dur)
    dur.extra_env = {}

    client.suspend_microvm(microvmIdentifier=microvm_id)
    dur.wait_log("paused for a test", "suspend-saved")
    assert client.get_microvm(microvmIdentifier=microvm_id)["state"] == "SUSPENDING"
    client = crash_and_restart(dur)

    assert settled(dur, client).get("SUSPENDED") == {microvm_id}
    client.resume_microvm(microvmIdentifier=microvm_id)
    wait_microvm(client, microvm_id, timeout=120)
    assert counter(dur, microvm_id) == 2
    client.terminate_microvm(microvmIdentifier=microvm_id)
    settled(dur, client)


def test_a_crash_mid_terminate_finishes_the_termination(dur):
    client = make_client(dur.endpoint)
    microvm_id = run(client)
    # The terminate hook's timeout is 5 s.
    dur.vm_exec(microvm_id, "echo 3 > /tmp/hook-terminate-delay")
    client.terminate_microvm(microvmIdentifier=microvm_id)
    dur.wait_log("calling hook", microvm_id, "hook=\"terminate\"")
    client = crash_and_restart(dur)

    by_state = settled(dur, client)
    assert microvm_id in by_state.get("TERMINATED", set())
    got = client.get_microvm(microvmIdentifier=microvm_id)
    assert got["stateReason"] == "USER_INITIATED"


def test_a_crash_mid_resume_resumes_again_from_the_snapshot(dur):
    client = make_client(dur.endpoint)
    microvm_id = run(client)
    assert counter(dur, microvm_id) == 1
    dur.vm_exec(microvm_id, f"echo {HOOK_DELAY} > /tmp/hook-resume-delay; echo kept > /app/f")
    client.suspend_microvm(microvmIdentifier=microvm_id)
    wait_microvm(client, microvm_id, states=("SUSPENDED",), timeout=120)

    client.resume_microvm(microvmIdentifier=microvm_id)
    dur.wait_log("calling hook", microvm_id, "hook=\"resume\"")
    client = crash_and_restart(dur)

    assert settled(dur, client).get("RUNNING") == {microvm_id}
    assert counter(dur, microvm_id) == 2
    assert dur.vm_exec(microvm_id, "cat /app/f").strip() == "kept"
    assert answers(dur, microvm_id)
    client.terminate_microvm(microvmIdentifier=microvm_id)
    settled(dur, client)


def test_a_crash_mid_run_starts_the_microvm_again(dur):
    client = make_client(dur.endpoint)
    payload = json.dumps({"hookDelaySeconds": HOOK_DELAY})
    microvm_id = client.run_microvm(imageIdentifier="dur-app", runHookPayload=payload)["microvmId"]
    dur.wait_log("calling hook", microvm_id, "hook=\"run\"")
    first = dur.vm_state(microvm_id)
    client = crash_and_restart(dur)

    assert settled(dur, client).get("RUNNING") == {microvm_id}
    assert dur.vm_state(microvm_id)["qemu_pid"] != first["qemu_pid"]
    # The VM that is kept got its run hook once.
    assert dur.vm_exec(microvm_id, "grep -c '^run$' /tmp/hooks.log").strip() == "1"
    assert dur.vm_exec(microvm_id, "cat /tmp/run-payload") == payload
    assert answers(dur, microvm_id)
    client.terminate_microvm(microvmIdentifier=microvm_id)
    settled(dur, client)


def test_a_crash_mid_build_fails_the_image_with_a_reason(dur, tmp_path):
    # The app of the image, with a ready hook that answers after 10 minutes.
    src = tmp_path / "slow"
    shutil.copytree(HERE / "app", src)
    (src / "hook-ready-delay").write_text("600\n")
    dockerfile = (src / "Dockerfile").read_text()
    (src / "Dockerfile").write_text(dockerfile.replace(
        "COPY start.sh", "COPY hook-ready-delay ./\nCOPY start.sh"))
    upload(dur, zip_dir(src, tmp_path / "slow.zip"), "s3://dur/slow.zip")
    client = make_client(dur.endpoint)
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    config = app_config(base, "s3://dur/slow.zip")
    config["hooks"] = json.loads(json.dumps(config["hooks"]))
    config["hooks"]["microvmImageHooks"]["readyTimeoutInSeconds"] = 900
    client.create_microvm_image(name="dur-slow", **config)

    def build_vm_waits():
        for state in (dur.data_dir / "vms").glob("vm-*/state.json"):
            if json.loads(state.read_text())["status"] == "running":
                return True
        return False
    wait_for(build_vm_waits, bool, 180, "the build VM waiting for its ready hook")
    client = crash_and_restart(dur)

    got = client.get_microvm_image(imageIdentifier="dur-slow")
    assert got["state"] == "CREATE_FAILED", got
    version = client.get_microvm_image_version(imageIdentifier="dur-slow", imageVersion="1")
    assert version["state"] == "FAILED" and version.get("stateReason"), version
    settled(dur, client)
    assert not list((dur.data_dir / "vms").glob("vm-*"))


def netns_names():
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def test_a_crash_mid_run_step_ends_the_build_vm_and_its_namespace(dur, tmp_path):
    # A RUN step that holds its build VM (QEMU run by the server itself, in
    # a namespace of its own) for longer than the test takes.
    src = tmp_path / "runstep"
    shutil.copytree(HERE / "app", src)
    dockerfile = (src / "Dockerfile").read_text()
    (src / "Dockerfile").write_text(dockerfile.replace(
        "COPY start.sh", "RUN sleep 600\nCOPY start.sh"))
    upload(dur, zip_dir(src, tmp_path / "runstep.zip"), "s3://dur/runstep.zip")
    client = make_client(dur.endpoint)
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    client.create_microvm_image(name="dur-runstep", **app_config(base, "s3://dur/runstep.zip"))

    # The step's VM records its namespace before QEMU starts; the step runs
    # once a QEMU names the build's scratch space.
    def build_vm_runs():
        recorded = list((dur.data_dir / "builds").rglob("netns"))
        qemus = [pid for pid in dur.processes() if "qemu" in proc_name(pid)]
        return recorded[0].read_text().strip() if recorded and qemus else None
    netns = wait_for(build_vm_runs, bool, 180, "the build VM running its RUN step")
    assert netns in netns_names()

    client = crash_and_restart(dur)

    got = client.get_microvm_image(imageIdentifier="dur-runstep")
    assert got["state"] == "CREATE_FAILED", got
    version = client.get_microvm_image_version(imageIdentifier="dur-runstep", imageVersion="1")
    assert version["state"] == "FAILED" and version.get("stateReason"), version
    settled(dur, client)
    assert netns not in netns_names()


def proc_name(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return ""


@pytest.mark.parametrize("victim", ["qemu_pid", "shim_pid"])
def test_a_microvm_whose_vm_dies_is_terminated_with_vm_exited(dur, victim):
    client = make_client(dur.endpoint)
    microvm_id = run(client)
    state = dur.vm_state(microvm_id)
    pid = state[victim]
    # Only a process of this server's data directory is killed.
    assert pid in dur.processes(), (victim, state)
    netns = f"hvm-{microvm_id}"
    assert netns in netns_names()
    os.kill(pid, signal.SIGKILL)

    got = wait_microvm(client, microvm_id, states=("TERMINATED",), timeout=30)
    assert got.get("stateReason") == "VM_EXITED", got
    settled(dur, client)
    gone = {state["qemu_pid"], state["shim_pid"]} & dur.processes()
    assert not gone, gone
    assert netns not in netns_names()


def test_a_running_and_a_suspended_microvm_survive_a_crash(dur):
    client = make_client(dur.endpoint)
    running, suspended = run(client), run(client)
    for microvm_id in (running, suspended):
        assert counter(dur, microvm_id) == 1
    client.suspend_microvm(microvmIdentifier=suspended)
    wait_microvm(client, suspended, states=("SUSPENDED",), timeout=120)

    client = crash_and_restart(dur)

    by_state = settled(dur, client)
    assert (by_state.get("RUNNING"), by_state.get("SUSPENDED")) == ({running}, {suspended})
    assert counter(dur, running) == 2
    client.resume_microvm(microvmIdentifier=suspended)
    wait_microvm(client, suspended, timeout=120)
    assert counter(dur, suspended) == 2
    for microvm_id in (running, suspended):
        assert answers(dur, microvm_id)
        client.terminate_microvm(microvmIdentifier=microvm_id)
    wait_microvm(client, running, states=("TERMINATED",))
    wait_microvm(client, suspended, states=("TERMINATED",))
    settled(dur, client)


def test_drain_suspends_every_running_microvm_and_each_resumes(dur):
    client = make_client(dur.endpoint)
    ids = [run(client), run(client)]
    for microvm_id in ids:
        assert counter(dur, microvm_id) == 1
        dur.vm_exec(microvm_id, f"echo {microvm_id} > /app/f")

    drained = subprocess.run(
        [dur.binary, "drain", "--endpoint-url", dur.endpoint, "--data", str(dur.data_dir)],
        capture_output=True, text=True, timeout=300,
    )
    assert drained.returncode == 0, drained.stderr
    assert set(drained.stdout.split()) == set(ids)
    by_state = settled(dur, client)
    assert by_state.get("SUSPENDED") == set(ids) and not by_state.get("RUNNING")

    for microvm_id in ids:
        client.resume_microvm(microvmIdentifier=microvm_id)
    for microvm_id in ids:
        wait_microvm(client, microvm_id, timeout=120)
        assert counter(dur, microvm_id) == 2
        assert dur.vm_exec(microvm_id, "cat /app/f").strip() == microvm_id
        client.terminate_microvm(microvmIdentifier=microvm_id)
    for microvm_id in ids:
        wait_microvm(client, microvm_id, states=("TERMINATED",))
    settled(dur, client)
