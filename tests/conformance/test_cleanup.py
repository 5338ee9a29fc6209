"""Nothing accumulates: a server that runs, calls, suspends, resumes and
terminates microVM after microVM, and builds and deletes images, comes back
to the same number of files in its data directory, the same open file
descriptors and no child processes.

The number of microVMs is `HEARTH_CLEANUP_RUNS` (default 6, small enough
for CI; `HEARTH_CLEANUP_RUNS=1000` for the long run)."""

import os

import pytest

from clients import make_client
from conftest import app_config, build_example_app, wait_for, wait_image, wait_microvm
from test_lifecycle import answers, counter

RUNS = int(os.environ.get("HEARTH_CLEANUP_RUNS", "6"))


@pytest.fixture(scope="module")
def churn(make_server, server, app_zip):
    churning = make_server("churn", keys_from=server)
    return build_example_app(churning, app_zip, "churn")


def footprint(server):
    """Files under the data directory (the database's journal aside, which
    SQLite makes and drops as it likes), the server's open descriptors, and
    the processes that name the data directory."""
    files = {str(p.relative_to(server.data_dir)) for p in server.data_dir.rglob("*")
             if "hearth.db" not in p.name}
    fds = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
    return {"files": files, "fds": fds, "processes": len(server.processes())}


def one_microvm(server, client, index):
    microvm_id = client.run_microvm(imageIdentifier="churn-app")["microvmId"]
    wait_microvm(client, microvm_id)
    assert answers(server, microvm_id)
    if index % 3 == 0:
        counter(server, microvm_id)
        client.suspend_microvm(microvmIdentifier=microvm_id)
        wait_microvm(client, microvm_id, states=("SUSPENDED",), timeout=120)
        client.resume_microvm(microvmIdentifier=microvm_id)
        wait_microvm(client, microvm_id, timeout=120)
        assert counter(server, microvm_id) == 2
    client.terminate_microvm(microvmIdentifier=microvm_id)
    wait_microvm(client, microvm_id, states=("TERMINATED",))


def test_many_microvms_leave_nothing_behind(churn):
    client = make_client(churn.endpoint)
    # One round with a suspend first, so that what is made once
    # (the directory of suspended snapshots) is in the baseline.
    one_microvm(churn, client, 0)
    baseline = footprint(churn)
    assert baseline["processes"] == 0

    for index in range(RUNS):
        one_microvm(churn, client, index)

    wait_for(lambda: footprint(churn), lambda now: now == baseline, 15, f"back to {baseline}")


def test_deleting_images_and_versions_frees_their_files(churn, app_zip):
    client = make_client(churn.endpoint)
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    before = footprint(churn)

    client.create_microvm_image(name="churn-gone", **app_config(base, "s3://churn/app.zip"))
    assert wait_image(client, "churn-gone")["state"] == "CREATED"
    microvm_id = client.run_microvm(imageIdentifier="churn-gone")["microvmId"]
    wait_microvm(client, microvm_id)
    client.terminate_microvm(microvmIdentifier=microvm_id)
    wait_microvm(client, microvm_id, states=("TERMINATED",))
    client.delete_microvm_image_version(imageIdentifier="churn-gone", imageVersion="1")
    client.delete_microvm_image(imageIdentifier="churn-gone")

    wait_for(lambda: footprint(churn), lambda now: now == before, 15, f"back to {before}")
