"""The AWS CLI itself, with the `hearth` profile the server installed: the
documented flow from `aws s3 cp` to a terminated microVM, and how the CLI
shows refusals."""

import time

import pytest

from cli import aws, aws_s3, ok
from conftest import ALIAS_BASE_IMAGE, ROLE_ARN, upload


def poll(server, what, args, query, until, timeout):
    """Runs a CLI command until its `--query` result is in `until`."""
    deadline = time.monotonic() + timeout
    while True:
        value = ok(aws(server, *args, "--query", query))
        if value in until:
            return value
        assert time.monotonic() < deadline, f"{what}: still {value} after {timeout}s"
        time.sleep(2)


@pytest.fixture(scope="module")
def cli_microvm(server, app_zip):
    """The documented flow: upload, create the image, wait, run, wait."""
    aws_s3(server, "mb", "s3://cli-bucket")
    aws_s3(server, "cp", str(app_zip), "s3://cli-bucket/deployments/app.zip")

    created = ok(aws(
        server, "create-microvm-image", "--name", "cli-app",
        "--code-artifact", "uri=s3://cli-bucket/deployments/app.zip",
        "--base-image-arn", ALIAS_BASE_IMAGE, "--build-role-arn", ROLE_ARN,
        "--resources", "minimumMemoryInMiB=2048",
        "--hooks", '{"port":9000,"microvmHooks":{"run":"ENABLED","runTimeoutInSeconds":10},'
                   '"microvmImageHooks":{"ready":"ENABLED","readyTimeoutInSeconds":60}}',
    ))
    assert created["state"] == "CREATING"
    state = poll(server, "image", ["get-microvm-image", "--image-identifier", "cli-app"],
                 "state", {"CREATED", "CREATE_FAILED"}, 300)
    assert state == "CREATED"

    run = ok(aws(server, "run-microvm", "--image-identifier", created["imageArn"],
                 "--maximum-duration-in-seconds", "600", "--run-hook-payload", "from-the-cli"))
    assert run["state"] == "PENDING"
    state = poll(server, "microvm", ["get-microvm", "--microvm-identifier", run["microvmId"]],
                 "state", {"RUNNING", "TERMINATED"}, 180)
    assert state == "RUNNING"
    yield run
    aws(server, "terminate-microvm", "--microvm-identifier", run["microvmId"])


def test_the_cli_shows_a_conflict(server, cli_microvm):
    result = aws(server, "resume-microvm", "--microvm-identifier", cli_microvm["microvmId"])
    assert result.returncode != 0
    assert "(ConflictException)" in result.stderr


def test_the_cli_shows_a_missing_microvm(server):
    result = aws(server, "get-microvm", "--microvm-identifier", "microvm-00000000000000000000000000000000")
    assert result.returncode != 0
    assert "(ResourceNotFoundException)" in result.stderr


def test_the_cli_creates_a_token(server, cli_microvm):
    token = ok(aws(
        server, "create-microvm-auth-token", "--microvm-identifier", cli_microvm["microvmId"],
        "--expiration-in-minutes", "15", "--allowed-ports", "port=8080",
    ))
    assert token["authToken"]["X-aws-proxy-auth"].count(".") == 1


def test_s3_uploads_land_in_the_artifact_store(server, app_zip):
    upload(server, app_zip, "s3://store-check/nested/app.zip")
    stored = server.data_dir / "artifacts" / "store-check" / "nested" / "app.zip"
    assert stored.read_bytes() == app_zip.read_bytes()
    listing = aws_s3(server, "ls", "s3://store-check/nested/")
    assert "app.zip" in listing.stdout


def test_the_documented_flow_ends_in_a_terminated_microvm(server, cli_microvm):
    microvm_id = cli_microvm["microvmId"]
    got = ok(aws(server, "get-microvm", "--microvm-identifier", microvm_id))
    assert got["maximumDurationInSeconds"] == 600 and got["startedAt"]
    assert microvm_id in got["endpoint"]
    assert server.vm_exec(microvm_id, "cat /tmp/run-payload") == "from-the-cli"

    listed = ok(aws(server, "list-microvms", "--image-identifier", "cli-app"))
    assert [m["microvmId"] for m in listed["items"]] == [microvm_id]

    ok(aws(server, "terminate-microvm", "--microvm-identifier", microvm_id))
    poll(server, "microvm", ["get-microvm", "--microvm-identifier", microvm_id],
         "state", {"TERMINATED"}, 60)
    got = ok(aws(server, "get-microvm", "--microvm-identifier", microvm_id))
    assert got["stateReason"] == "USER_INITIATED" and got["terminatedAt"]
    assert not (server.data_dir / "vms" / microvm_id).exists()
