"""The AWS CLI itself, run against a server with the `hearth` profile."""

import json
import os
import pathlib
import shutil
import subprocess
import sys


def aws_executable():
    beside = pathlib.Path(sys.executable).parent / "aws"
    return str(beside) if beside.exists() else shutil.which("aws")


def run(endpoint, *args):
    cmd = [aws_executable(), *args, "--endpoint-url", endpoint, "--profile", "hearth",
           "--output", "json"]
    return subprocess.run(cmd, env=dict(os.environ), capture_output=True, text=True, timeout=120)


def aws(server, *args):
    """`aws lambda-microvms …` against the server's API."""
    return run(server.endpoint, "lambda-microvms", *args)


def aws_s3(server, *args, check=True):
    """`aws s3 …` against the server's artifact store."""
    result = run(server.s3_endpoint, "s3", *args)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def ok(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None
