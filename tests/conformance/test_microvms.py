"""What a microVM is, seen from inside: each microVM restored from one
snapshot has its own random output, its own hostname (its id) and the run
hook payload it was given."""

import pytest

from conftest import wait_microvm


@pytest.fixture(scope="module")
def twins(client, app_image):
    """Two microVMs of the same version, each with its own payload."""
    ids = []
    for payload in ('{"tenant": "a"}', '{"tenant": "b"}'):
        run = client.run_microvm(imageIdentifier="conformance-app", imageVersion="1",
                                 runHookPayload=payload)
        ids.append((run["microvmId"], payload))
    for microvm_id, _ in ids:
        wait_microvm(client, microvm_id)
    yield ids
    for microvm_id, _ in ids:
        client.terminate_microvm(microvmIdentifier=microvm_id)


def test_microvms_from_one_snapshot_see_different_random_bytes(server, twins):
    seen = [server.vm_exec(i, "head -c 16 /dev/urandom | od -An -tx1") for i, _ in twins]
    assert len(seen[0].split()) == 16
    assert seen[0] != seen[1]


def test_each_microvm_is_named_by_its_id(server, twins):
    for microvm_id, _ in twins:
        assert server.vm_exec(microvm_id, "hostname").strip() == microvm_id


def test_each_microvm_got_its_own_run_payload_once(server, twins):
    for microvm_id, payload in twins:
        assert server.vm_exec(microvm_id, "cat /tmp/run-payload") == payload
        assert server.vm_exec(microvm_id, "grep -c '^run$' /tmp/hooks.log").strip() == "1"


def test_the_app_environment_comes_from_the_image(server, twins):
    microvm_id, _ = twins[0]
    pid = server.vm_exec(microvm_id, "pidof httpd").split()[0]
    environ = server.vm_exec(microvm_id, f"tr '\\0' '\\n' < /proc/{pid}/environ")
    assert "GREETING=hello" in environ.split()


def test_terminated_microvms_leave_no_vm_behind(client, server, app_image):
    run = client.run_microvm(imageIdentifier="conformance-app")
    microvm_id = run["microvmId"]
    wait_microvm(client, microvm_id)
    state = server.vm_state(microvm_id)
    client.terminate_microvm(microvmIdentifier=microvm_id)
    wait_microvm(client, microvm_id, states=("TERMINATED",))
    assert not (server.data_dir / "vms" / microvm_id).exists()
    for pid in (state["qemu_pid"], state["shim_pid"]):
        assert not alive(pid), f"pid {pid} still runs"


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
