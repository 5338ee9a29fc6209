"""Fixtures for the conformance suite.

The suite builds the `test-server` example of crates/hearth-api (the wire
API over an in-memory test double of the control plane), starts it on
127.0.0.1 with a fresh data directory, lets it install the `hearth` profile
into temporary AWS config files, and drives it with the real boto3 and AWS
CLI. The user's own ~/.aws is never read or written: the environment points
every AWS client at the temporary files before any of them starts.
"""

import json
import os
import pathlib
import select
import shutil
import subprocess
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
REGION = "us-east-1"
SERVICE = "lambda-microvms"

# Before any botocore session exists: temporary config files only, no
# instance-metadata lookups, nothing inherited from the caller's shell.
AWS_HOME = pathlib.Path(tempfile.mkdtemp(prefix="hearth-conformance-aws-"))
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(AWS_HOME / "credentials")
os.environ["AWS_CONFIG_FILE"] = str(AWS_HOME / "config")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
for _var in (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_CA_BUNDLE",
):
    os.environ.pop(_var, None)

# Profiles that exist before the server starts and must survive it.
OTHER_CREDENTIALS = (
    "# kept by hearth\n"
    "[default]\naws_access_key_id = AKIADEFAULTDEFAULT00\naws_secret_access_key = default-secret\n\n"
    "[other]\naws_access_key_id = AKIAOTHEROTHEROTHER0\naws_secret_access_key = other-secret\n"
)
OTHER_CONFIG = "[default]\nregion = eu-west-1\n\n[profile other]\nregion = ap-south-1\n"


def build_test_server():
    """Builds the example and returns its path (or $HEARTH_TEST_SERVER)."""
    override = os.environ.get("HEARTH_TEST_SERVER")
    if override:
        return override
    cmd = [
        "cargo", "build", "-p", "hearth-api", "--example", "test-server",
        "--message-format=json-render-diagnostics",
    ]
    out = subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.PIPE, timeout=1800).stdout
    for line in out.decode().splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "test-server":
            if msg.get("executable"):
                return msg["executable"]
    raise RuntimeError("cargo built no test-server executable")


class Server:
    """A running test server."""

    def __init__(self, proc, port, data_dir, log_path):
        self.proc = proc
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.log_path = log_path


@pytest.fixture(scope="session")
def test_server_binary():
    return build_test_server()


@pytest.fixture(scope="session")
def server(test_server_binary, tmp_path_factory):
    (AWS_HOME / "credentials").write_text(OTHER_CREDENTIALS)
    (AWS_HOME / "config").write_text(OTHER_CONFIG)
    data_dir = tmp_path_factory.mktemp("hearth-data")
    log_path = tmp_path_factory.mktemp("logs") / "test-server.log"

    args = [
        test_server_binary, "--data-dir", str(data_dir), "--port", "0", "--print-port",
        "--install-profile", "--exit-on-stdin-eof", "--region", REGION,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            env=dict(os.environ, RUST_LOG="hearth_api=debug,info"),
        )
    try:
        port = read_port(proc, timeout=60)
        yield Server(proc, port, data_dir, log_path)
    finally:
        stop(proc)
        shutil.rmtree(AWS_HOME, ignore_errors=True)


def read_port(proc, timeout):
    """Waits for the `PORT=<n>` line the server prints once it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline().decode().strip()
            if line.startswith("PORT="):
                return int(line.split("=", 1)[1])
            if not line and proc.poll() is not None:
                break
    stop(proc)
    raise RuntimeError(f"test server did not start (exit code {proc.poll()})")


def stop(proc):
    """Closes the server's stdin (it exits on EOF), then makes sure."""
    if proc.poll() is not None:
        return
    try:
        proc.stdin.close()
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def model():
    """The lambda-microvms service model of the installed botocore."""
    import botocore.session

    return botocore.session.get_session().get_service_model(SERVICE)


@pytest.fixture(scope="session")
def raw_model():
    """The same model as plain JSON."""
    import botocore.loaders

    return botocore.loaders.create_loader().load_service_model(SERVICE, "service-2")


@pytest.fixture(scope="session")
def make_client(server):
    """Makes clients for the server; `parameter_validation=False` lets bad
    input through to the server."""
    from clients import make_client as build

    def factory(**kwargs):
        return build(server.endpoint, **kwargs)

    return factory


@pytest.fixture(scope="session")
def client(make_client):
    return make_client()


@pytest.fixture(scope="session")
def raw_client(make_client):
    return make_client(parameter_validation=False)


def pytest_sessionfinish(session, exitstatus):
    """The temporary AWS config files go, whatever ran."""
    shutil.rmtree(AWS_HOME, ignore_errors=True)
