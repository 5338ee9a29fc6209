"""A server of its own, restarted on the same data directory: microVMs that
still run are found again, `clientToken` retries still get the first
response, a microVM whose VM died while the server was down is terminated
with a reason, and a run that the memory budget cannot hold is refused while the microVM
that holds the room keeps answering."""

import json
import os
import signal

import pytest
from botocore.exceptions import ClientError

from clients import make_client
from conftest import build_example_app, wait_for, wait_microvm
from test_lifecycle import answers
from test_microvms import alive


@pytest.fixture(scope="module")
def restartable(make_server, server, app_zip):
    # Room for one 256 MiB guest only.
    restart = make_server("restart", extra_args=["--memory-budget-mib", "300"], keys_from=server)
    return build_example_app(restart, app_zip, "restart")


@pytest.fixture(scope="module")
def kept(restartable):
    """A running microVM, run with a `clientToken`; the budget has no room
    for another."""
    client = make_client(restartable.endpoint)
    run = client.run_microvm(imageIdentifier="restart-app", clientToken="kept")
    wait_microvm(client, run["microvmId"])
    return run["microvmId"]


def test_a_run_the_budget_cannot_hold_is_refused(restartable, kept):
    client = make_client(restartable.endpoint)
    with pytest.raises(ClientError) as caught:
        client.run_microvm(imageIdentifier="restart-app")
    error = caught.value.response
    assert error["Error"]["Code"] == "InsufficientCapacityException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
    # The microVM that holds the room is undisturbed.
    assert client.get_microvm(microvmIdentifier=kept)["state"] == "RUNNING"
    assert answers(restartable, kept)
    assert len([m for m in client.list_microvms()["items"] if m["state"] != "TERMINATED"]) == 1


def test_a_restarted_server_finds_its_microvms_and_tokens(restartable, kept):
    restartable.restart()
    client = make_client(restartable.endpoint)
    assert client.get_microvm(microvmIdentifier=kept)["state"] == "RUNNING"
    again = client.run_microvm(imageIdentifier="restart-app", clientToken="kept")
    assert again["microvmId"] == kept
    assert restartable.vm_exec(kept, "hostname").strip() == kept


def test_a_microvm_whose_vm_died_while_the_server_was_down_is_terminated(restartable, kept):
    state = json.loads((restartable.data_dir / "vms" / kept / "state.json").read_text())

    restartable.stop()
    for pid in (state["qemu_pid"], state["shim_pid"]):
        os.kill(pid, signal.SIGKILL)
    for pid in (state["qemu_pid"], state["shim_pid"]):
        wait_for(lambda: alive(pid), lambda running: not running, 10, f"pid {pid}")
    restartable.start()

    client = make_client(restartable.endpoint)
    got = client.get_microvm(microvmIdentifier=kept)
    assert (got["state"], got["stateReason"]) == ("TERMINATED", "VM_EXITED")
    assert not (restartable.data_dir / "vms" / kept).exists()
