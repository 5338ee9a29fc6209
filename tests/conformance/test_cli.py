"""The AWS CLI itself, with the `hearth` profile the server installed."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from inputs import ROLE_ARN


def aws_executable():
    beside = pathlib.Path(sys.executable).parent / "aws"
    return str(beside) if beside.exists() else shutil.which("aws")


def aws(server, *args):
    cmd = [aws_executable(), "lambda-microvms", *args, "--endpoint-url", server.endpoint,
           "--profile", "hearth", "--output", "json"]
    return subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=120)


def ok(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


@pytest.fixture(scope="module")
def cli_microvm(server):
    base = ok(aws(server, "list-managed-microvm-images"))["items"][0]["imageArn"]
    created = ok(aws(
        server, "create-microvm-image", "--name", "cli-app", "--base-image-arn", base,
        "--build-role-arn", ROLE_ARN, "--code-artifact", "uri=s3://hearth-artifacts/app.zip",
        "--resources", "minimumMemoryInMiB=2048",
    ))
    assert created["state"] == "CREATING"
    return ok(aws(server, "run-microvm", "--image-identifier", "cli-app", "--maximum-duration-in-seconds", "600"))


def test_the_cli_runs_and_describes_a_microvm(server, cli_microvm):
    got = ok(aws(server, "get-microvm", "--microvm-identifier", cli_microvm["microvmId"]))
    assert got["state"] == "RUNNING"
    assert got["maximumDurationInSeconds"] == 600
    assert got["startedAt"]

    listed = ok(aws(server, "list-microvms"))
    assert cli_microvm["microvmId"] in [m["microvmId"] for m in listed["items"]]


def test_the_cli_shows_a_conflict(server, cli_microvm):
    ok(aws(server, "suspend-microvm", "--microvm-identifier", cli_microvm["microvmId"]))
    again = aws(server, "suspend-microvm", "--microvm-identifier", cli_microvm["microvmId"])
    assert again.returncode != 0
    assert "(ConflictException)" in again.stderr


def test_the_cli_shows_a_missing_microvm(server):
    result = aws(server, "get-microvm", "--microvm-identifier", "microvm-00000000000000000000000000000000")
    assert result.returncode != 0
    assert "(ResourceNotFoundException)" in result.stderr


def test_the_cli_creates_a_token(server, cli_microvm):
    token = ok(aws(
        server, "create-microvm-auth-token", "--microvm-identifier", cli_microvm["microvmId"],
        "--expiration-in-minutes", "15", "--allowed-ports", "port=8080",
    ))
    assert token["authToken"]["X-aws-proxy-auth"]
