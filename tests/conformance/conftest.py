"""Fixtures for the conformance suite.

The suite builds the `hearth` binary and starts `hearth serve` on 127.0.0.1
(free ports) with a fresh data directory and small TCG guests, lets it
install the `hearth` profile into temporary AWS config files, and drives it
with the real boto3 and AWS CLI. Operations that need a VM get real ones:
images are built by the image pipeline (RUN steps in build microVMs, FROM
from the data directory's base-image store) from tests/conformance/app,
uploaded with `aws s3 cp` to the server's own S3 API.

The user's own ~/.aws is never read or written: the environment points every
AWS client at the temporary files before any of them starts. Every server
started here stops at the end (SIGTERM, then SIGKILL), exits by itself when
the suite's end of its stdin closes, and the VMs it left are ended by the
pids their shims recorded.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
REGION = "us-east-1"
SERVICE = "lambda-microvms"
ROLE_ARN = "arn:aws:iam::123456789012:role/hearth-build"
ALIAS_BASE_IMAGE = f"arn:aws:lambda:{REGION}:aws:microvm-image:al2023-1"

# Guests small enough for TCG on a shared 2-core machine.
GUEST_MEMORY_CAP_MIB = 256

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


def cargo_executable(args, name):
    """Builds with cargo and returns the path of executable `name`."""
    cmd = ["cargo", "build", *args, "--message-format=json-render-diagnostics"]
    out = subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.PIPE, timeout=1800).stdout
    for line in out.decode().splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == name:
            if msg.get("executable"):
                return msg["executable"]
    raise RuntimeError(f"cargo built no {name} executable")


def guest_assets():
    """The guest assets directory, or a failure that says how to make it."""
    assets = pathlib.Path(os.environ.get("HEARTH_ASSETS") or REPO / "target/hearth-test/assets")
    missing = [f for f in ("vmlinuz", "initramfs.cpio.gz") if not (assets / f).is_file()]
    if missing:
        pytest.fail(
            f"guest assets missing: {', '.join(missing)} not in {assets}; run scripts/setup.sh "
            "(scripts/test.sh exports HEARTH_ASSETS) or set HEARTH_ASSETS",
            pytrace=False,
        )
    return assets


class Server:
    """A `hearth serve` process on a data directory of its own."""

    def __init__(self, binary, data_dir, log_path, extra_args=()):
        self.binary = binary
        self.data_dir = pathlib.Path(data_dir)
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.proc = None
        self.endpoint = None
        self.s3_endpoint = None
        # Variables added to the server's environment at its next start.
        self.extra_env = {}
        self.ingress = None
        self.ingress_tls = None

    def start(self):
        args = [
            self.binary, "serve", "--data", str(self.data_dir),
            "--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0", "--region", REGION,
            "--guest-memory-cap-mib", str(GUEST_MEMORY_CAP_MIB), "--exit-on-stdin-eof",
            "--ingress-listen", "127.0.0.1:0", "--ingress-tls-listen", "127.0.0.1:0",
            *self.extra_args,
        ]
        env = dict(os.environ, HEARTH_ACCEL="tcg", HEARTH_ASSETS=str(guest_assets()),
                   HEARTH_LOG="info,hearth_api=debug", **self.extra_env)
        env.pop("HEARTH_DATA", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
            )
        lines = {}
        deadline = time.monotonic() + 60
        while len(lines) < 4 and time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode().strip()
            if not line and self.proc.poll() is not None:
                break
            if " " in line:
                kind, url = line.split(" ", 1)
                lines[kind] = url
        if len(lines) < 4:
            self.stop()
            raise RuntimeError(f"hearth serve did not start; see {self.log_path}")
        self.endpoint, self.s3_endpoint = lines["api"], lines["s3"]
        self.ingress, self.ingress_tls = lines["ingress"], lines["ingress-tls"]
        return self

    def stop(self):
        """SIGTERM (a graceful stop), then SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self):
        """SIGKILL, as a crash would: nothing is settled on the way out."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def log_text(self):
        """The server's log, without its colours."""
        text = pathlib.Path(self.log_path).read_text(errors="replace")
        return re.sub(r"\x1b\[[0-9;]*m", "", text)

    def wait_log(self, *needles, timeout=120):
        """Waits until one line of the server's log holds every needle."""
        def found():
            return any(all(n in line for n in needles) for line in self.log_text().splitlines())
        wait_for(found, bool, timeout, f"log line with {needles}")

    def processes(self):
        """The pids of processes (shims, QEMUs) whose command line names this
        server's data directory, the server itself aside."""
        mine = {self.proc.pid} if self.proc is not None else set()
        found = set()
        for entry in pathlib.Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in mine:
                if owned_by(int(entry.name), self.data_dir) and alive_pid(int(entry.name)):
                    found.add(int(entry.name))
        return found

    def restart(self):
        self.stop()
        return self.start()

    def vm_exec(self, microvm_id, command):
        """Runs a shell command in a microVM with `hearth vm exec` (the
        microVM's VM directory has its id); returns its stdout."""
        result = subprocess.run(
            [self.binary, "vm", "exec", microvm_id, "--", "sh", "-c", command],
            env=dict(os.environ, HEARTH_DATA=str(self.data_dir)),
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def vm_state(self, microvm_id):
        path = self.data_dir / "vms" / microvm_id / "state.json"
        return json.loads(path.read_text())

    def end_vms(self):
        """Ends every QEMU and shim this server's VMs recorded, and removes
        the data directory."""
        for state_file in self.data_dir.glob("vms/*/state.json"):
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):
                continue
            for pid in (state.get("qemu_pid"), state.get("shim_pid")):
                if pid and owned_by(pid, self.data_dir):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        shutil.rmtree(self.data_dir, ignore_errors=True)


def owned_by(pid, data_dir):
    """Whether process `pid` runs on `data_dir` (so a reused pid is left alone)."""
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(data_dir) in cmdline


def seed_base_images(binary, data_dir):
    """Gives a data directory the base images Dockerfiles start FROM: the
    store that scripts/test.sh seeded ($HEARTH_TEST_SEED_DATA), linked, else
    busybox seeded from the host's static busybox."""
    shared = pathlib.Path(os.environ.get("HEARTH_TEST_SEED_DATA", "/nonexistent")) / "base-images"
    if shared.is_dir():
        os.symlink(shared, data_dir / "base-images")
        return
    subprocess.run(
        [binary, "image", "seed", "--no-debian"],
        env=dict(os.environ, HEARTH_DATA=str(data_dir)),
        check=True, capture_output=True, timeout=300,
    )


def alive_pid(pid):
    """Whether `pid` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def short_data_dir(tag):
    # Unix socket paths are limited to 108 bytes: keep data directories short.
    return pathlib.Path(tempfile.mkdtemp(prefix=f"hd-{tag}-", dir="/tmp"))


@pytest.fixture(scope="session")
def hearth_binary():
    return os.environ.get("HEARTH_BIN") or cargo_executable(["-p", "hearth"], "hearth")


@pytest.fixture(scope="session")
def test_server_binary():
    """The wire layer's own test server, for its --dump-model tables."""
    override = os.environ.get("HEARTH_TEST_SERVER")
    if override:
        return override
    return cargo_executable(["-p", "hearth-api", "--example", "test-server"], "test-server")


@pytest.fixture(scope="session")
def make_server(hearth_binary, tmp_path_factory):
    """Starts servers that the session stops and cleans up."""
    started = []

    def factory(tag, extra_args=(), keys_from=None):
        log = tmp_path_factory.mktemp("logs") / f"hearth-{tag}.log"
        data_dir = short_data_dir(tag)
        if keys_from is not None:
            # The same key pair, so the one `hearth` profile signs for both.
            shutil.copy2(keys_from.data_dir / "api-credentials.json", data_dir)
        seed_base_images(hearth_binary, data_dir)
        server = Server(hearth_binary, data_dir, log, extra_args).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        terminate_all(server)
        server.stop()
        server.end_vms()


def terminate_all(server):
    """Terminates what a server still runs, through its own API."""
    if server.proc is None:
        return
    from clients import make_client

    try:
        client = make_client(server.endpoint)
        for page in client.get_paginator("list_microvms").paginate():
            for item in page["items"]:
                if item["state"] not in ("TERMINATED", "TERMINATING"):
                    client.terminate_microvm(microvmIdentifier=item["microvmId"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            items = client.list_microvms()["items"]
            if all(i["state"] == "TERMINATED" for i in items):
                break
            time.sleep(1)
    except Exception as error:  # the server may be gone; end_vms still runs
        print(f"cannot terminate microvms: {error}")


@pytest.fixture(scope="session")
def server(make_server):
    (AWS_HOME / "credentials").write_text(OTHER_CREDENTIALS)
    (AWS_HOME / "config").write_text(OTHER_CONFIG)
    return make_server("main")


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


def zip_dir(src, dest):
    """Zips a directory with its files' modes, as `zip -r` would."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(pathlib.Path(src).rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(str(path.relative_to(src)))
                info.external_attr = (path.stat().st_mode & 0o7777) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    return dest


def upload(server, local, uri):
    """`aws s3 mb` (if needed) and `aws s3 cp` to the server's S3 API."""
    from cli import aws_s3

    bucket = uri.split("/")[2]
    aws_s3(server, "mb", f"s3://{bucket}", check=False)
    aws_s3(server, "cp", str(local), uri)
    return uri


@pytest.fixture(scope="session")
def app_zip(tmp_path_factory):
    return zip_dir(HERE / "app", tmp_path_factory.mktemp("app") / "app.zip")


@pytest.fixture(scope="session")
def artifact(server, app_zip):
    """The example app in the server's artifact store."""
    return upload(server, app_zip, "s3://conformance/app.zip")


# Every hook the example app serves, so that each is exercised.
APP_HOOKS = {
    "port": 9000,
    "microvmHooks": {
        "run": "ENABLED", "runTimeoutInSeconds": 10,
        "resume": "ENABLED", "resumeTimeoutInSeconds": 10,
        "suspend": "ENABLED", "suspendTimeoutInSeconds": 10,
        "terminate": "ENABLED", "terminateTimeoutInSeconds": 5,
    },
    "microvmImageHooks": {
        "ready": "ENABLED", "readyTimeoutInSeconds": 60,
        "validate": "ENABLED", "validateTimeoutInSeconds": 60,
    },
}


def app_config(base_image_arn, artifact_uri):
    return {
        "baseImageArn": base_image_arn,
        "buildRoleArn": ROLE_ARN,
        "codeArtifact": {"uri": artifact_uri},
        "resources": [{"minimumMemoryInMiB": 2048}],
        "hooks": APP_HOOKS,
        "environmentVariables": {"GREETING": "hello"},
    }


def wait_for(read, done, timeout, what):
    """Calls `read` until `done(value)`; returns the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout}s")
        time.sleep(1)


def wait_image(client, name, timeout=300):
    return wait_for(
        lambda: client.get_microvm_image(imageIdentifier=name),
        lambda got: got["state"] not in ("CREATING", "UPDATING"),
        timeout, f"image {name}",
    )


def wait_microvm(client, microvm_id, states=("RUNNING",), timeout=180):
    got = wait_for(
        lambda: client.get_microvm(microvmIdentifier=microvm_id),
        lambda got: got["state"] in states or got["state"] == "TERMINATED",
        timeout, f"microvm {microvm_id}",
    )
    assert got["state"] in states, got
    return got


def build_example_app(server, app_zip, tag):
    """Builds the example app as image `<tag>-app` on `server` (a server of
    a module's own), from `s3://<tag>/app.zip`; returns the server."""
    from clients import make_client

    upload(server, app_zip, f"s3://{tag}/app.zip")
    client = make_client(server.endpoint)
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    client.create_microvm_image(name=f"{tag}-app", **app_config(base, f"s3://{tag}/app.zip"))
    assert wait_image(client, f"{tag}-app")["state"] == "CREATED"
    return server


INGRESS_IMAGE = "ingress-app"


@pytest.fixture(scope="session")
def ingress_image(client, server, tmp_path_factory):
    """The image of `ingress_app` (busybox `nc` serving HTTP, WebSockets and
    streams, without hooks), built once for the endpoint and shell tests."""
    archive = zip_dir(HERE / "ingress_app", tmp_path_factory.mktemp("ingress") / "app.zip")
    uri = upload(server, archive, "s3://conformance/ingress-app.zip")
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    config = app_config(base, uri)
    del config["hooks"], config["environmentVariables"]
    client.create_microvm_image(name=INGRESS_IMAGE, **config)
    got = wait_image(client, INGRESS_IMAGE)
    assert got["state"] == "CREATED", got
    return INGRESS_IMAGE


@pytest.fixture(scope="session")
def app_image(client, artifact):
    """The example app built into an image (its create response)."""
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    created = client.create_microvm_image(
        name="conformance-app", tags={"team": "hearth"}, **app_config(base, artifact),
    )
    got = wait_image(client, "conformance-app")
    assert got["state"] == "CREATED", client.get_microvm_image_version(
        imageIdentifier="conformance-app", imageVersion="1")
    return created


def pytest_sessionfinish(session, exitstatus):
    """The temporary AWS config files go, whatever ran."""
    shutil.rmtree(AWS_HOME, ignore_errors=True)
