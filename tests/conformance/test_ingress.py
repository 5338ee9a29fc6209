"""MicroVM endpoints through `hearth serve`'s ingress proxy, driven as users
drive them: curl and plain HTTP clients with tokens from
CreateMicrovmAuthToken, against real microVMs running tests/conformance/
ingress_app (busybox nc answering one request per connection)."""

import base64
import concurrent.futures
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.parse

import pytest

from conftest import (
    INGRESS_IMAGE, HERE, REPO, app_config, upload, wait_for, wait_image, wait_microvm, zip_dir,
)

IMAGE = INGRESS_IMAGE
MIB = 1024 * 1024


def run(client, **kwargs):
    microvm_id = client.run_microvm(imageIdentifier=IMAGE, **kwargs)["microvmId"]
    wait_microvm(client, microvm_id)
    return microvm_id


@pytest.fixture(scope="module")
def awake(client, ingress_image):
    """A running microVM that resumes on traffic."""
    microvm_id = run(client, idlePolicy={"maxIdleDurationSeconds": 3600,
                                         "suspendedDurationSeconds": 3600,
                                         "autoResumeEnabled": True})
    yield microvm_id
    client.terminate_microvm(microvmIdentifier=microvm_id)


def token(client, microvm_id, ports=({"allPorts": {}},)):
    got = client.create_microvm_auth_token(microvmIdentifier=microvm_id, expirationInMinutes=10,
                                          allowedPorts=list(ports))
    return got["authToken"]["X-aws-proxy-auth"]


def host(server, microvm_id):
    return f"{microvm_id}.localhost:{urllib.parse.urlsplit(server.ingress).port}"


def request(server, microvm_id, path="/", headers=None, method="GET", body=None, timeout=120):
    """(status, body) of one request to the plain HTTP listener."""
    url = urllib.parse.urlsplit(server.ingress)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request(method, path, body=body,
                     headers={"Host": host(server, microvm_id), **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def curl(server, microvm_id, tok, path="/", *args, tls=False):
    """curl on the endpoint's own name (resolved to the listener)."""
    url = urllib.parse.urlsplit(server.ingress_tls if tls else server.ingress)
    name = f"{microvm_id}.localhost"
    scheme = "https" if tls else "http"
    cmd = ["curl", "-sS", "--max-time", "600", "--resolve", f"{name}:{url.port}:127.0.0.1",
           "-H", f"X-aws-proxy-auth: {tok}", *args, f"{scheme}://{name}:{url.port}{path}"]
    return subprocess.run(cmd, capture_output=True, check=True, timeout=700).stdout


def state(client, microvm_id):
    return client.get_microvm(microvmIdentifier=microvm_id)["state"]


def suspend(client, microvm_id):
    client.suspend_microvm(microvmIdentifier=microvm_id)
    wait_microvm(client, microvm_id, states=("SUSPENDED",))


def resumes_logged(server, microvm_id):
    lines = open(server.log_path, errors="replace").read().splitlines()
    return sum(1 for line in lines
               if "hearth::lifecycle" in line and "resumed" in line and microvm_id in line)


def test_curl_with_a_token_gets_the_apps_answer(client, server, awake):
    tok = token(client, awake)
    assert curl(server, awake, tok).decode() == f"hello from {awake}"
    assert curl(server, awake, tok, "/", "-k", tls=True).decode() == f"hello from {awake}"


def test_hearth_token_prints_a_token_that_opens_only_its_ports(server, hearth_binary, awake):
    def hearth_token(*args):
        env = dict(os.environ, HEARTH_ENDPOINT_URL=server.endpoint, HEARTH_DATA=str(server.data_dir))
        got = subprocess.run([hearth_binary, "token", awake, *args], env=env,
                             capture_output=True, text=True, timeout=120)
        assert got.returncode == 0, got.stderr
        return got.stdout.strip()

    assert curl(server, awake, hearth_token("--port", "8080")).decode() == f"hello from {awake}"
    status, _ = request(server, awake, "/", headers={"X-aws-proxy-auth": hearth_token("--port", "9000")})
    assert status == 403


def test_the_endpoint_is_reported_by_the_api(client, server, awake):
    got = client.get_microvm(microvmIdentifier=awake)
    assert got["endpoint"] == f"http://{host(server, awake)}"


def test_http2_from_clients_is_served(client, server, awake):
    tok = token(client, awake)
    out = curl(server, awake, tok, "/", "--http2-prior-knowledge", "-w", " %{http_version}")
    assert out.decode() == f"hello from {awake} 2"
    out = curl(server, awake, tok, "/", "-k", "--http2", "-w", " %{http_version}", tls=True)
    assert out.decode() == f"hello from {awake} 2"


def test_proxy_headers_never_reach_the_app(client, server, awake):
    status, body = request(server, awake, "/headers", headers={
        "X-aws-proxy-auth": token(client, awake), "X-aws-proxy-port": "8080",
        "X-aws-proxy-anything": "secret", "X-Kept": "yes",
    })
    assert status == 200
    assert "x-kept: yes" in body.lower()
    assert "x-aws-proxy" not in body.lower()


def test_100_mib_each_way_arrives_byte_exact(client, server, awake, tmp_path):
    tok = token(client, awake)
    upload_file = tmp_path / "up"
    upload_file.write_bytes(os.urandom(100 * MIB))
    expected = hashlib.sha256(upload_file.read_bytes()).hexdigest()
    got = curl(server, awake, tok, "/upload", "--data-binary", f"@{upload_file}",
               "-H", "Content-Type: application/octet-stream")
    assert got.decode() == expected

    downloaded = tmp_path / "down"
    curl(server, awake, tok, f"/download/{100 * MIB}", "-o", str(downloaded))
    assert downloaded.stat().st_size == 100 * MIB
    _, guest_sum = request(server, awake, "/download-sha", headers={"X-aws-proxy-auth": tok})
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == guest_sum

    # Metering: the bytes are counted for this microVM (flushed by the timers).
    def counted():
        with sqlite3.connect(server.data_dir / "hearth.db") as db:
            row = db.execute("SELECT bytes_in, bytes_out FROM microvm_traffic "
                             "WHERE microvm_id = ?", (awake,)).fetchone()
        return row or (0, 0)
    got = wait_for(counted, lambda c: c[0] >= 100 * MIB and c[1] >= 100 * MIB, 30, "traffic")
    assert got[0] < 110 * MIB


def test_websocket_upgrade_is_spliced_and_subprotocols_stripped(client, server, awake):
    tok = token(client, awake)
    url = urllib.parse.urlsplit(server.ingress)
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall((
            f"GET /ws HTTP/1.1\r\nHost: {host(server, awake)}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: lambda-microvms, lambda-microvms.authentication.{tok}, "
            "lambda-microvms.port.8080, chat\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        assert lines[0].split()[1] == "101", lines
        headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        assert headers["sec-websocket-accept"] == accept
        assert headers["x-seen-protocols"] == "chat"

        # A masked text frame, echoed back byte for byte by the app.
        mask = os.urandom(4)
        payload = b"hello through the endpoint"
        frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
            b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(frame)
        got = rest
        while len(got) < len(frame):
            chunk = sock.recv(4096)
            assert chunk
            got += chunk
        assert got == frame


def test_nothing_listening_is_502(client, server, awake):
    status, _ = request(server, awake, "/", headers={
        "X-aws-proxy-auth": token(client, awake), "X-aws-proxy-port": "7999"})
    assert status == 502


def test_token_failures_are_refused_and_a_suspended_microvm_stays_suspended(
        client, server, ingress_image):
    policy = {"maxIdleDurationSeconds": 3600, "suspendedDurationSeconds": 3600,
              "autoResumeEnabled": True}
    target = run(client, idlePolicy=policy)
    other = run(client)
    try:
        good = token(client, target, ports=({"port": 8080},))
        other_token = token(client, other)
        suspend(client, target)

        claims = token_claims(good)
        mac = good.split(".")[1]

        def signed(**changes):
            return sign(server, {**claims, **changes})

        cases = [
            (401, {}),
            (403, {"X-aws-proxy-auth": "not-a-token"}),
            (403, {"X-aws-proxy-auth": signed(exp=claims["exp"] + 60).split(".")[0] + "." + mac}),
            (403, {"X-aws-proxy-auth": signed(exp=int(time.time()) - 5)}),
            (403, {"X-aws-proxy-auth": other_token}),
            (403, {"X-aws-proxy-auth": good, "X-aws-proxy-port": "9000"}),
        ]
        for status, headers in cases:
            got, body = request(server, target, "/", headers=headers)
            assert got == status, (headers, body)
        assert state(client, target) == "SUSPENDED"
        assert resumes_logged(server, target) == 0

        # The good token wakes it, with the memory it had.
        status, body = request(server, target, "/", headers={"X-aws-proxy-auth": good})
        assert (status, body) == (200, f"hello from {target}")
        assert state(client, target) == "RUNNING"
    finally:
        for microvm_id in (target, other):
            client.terminate_microvm(microvmIdentifier=microvm_id)


def token_claims(tok):
    payload = tok.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def sign(server, claims):
    """A token signed with the server's own key (to make ones the API would
    not issue: expired, or a shell token for a microVM without SHELL_INGRESS)."""
    key = (server.data_dir / "token-key").read_bytes()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return body + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


WEBSOCKET = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_suspended_microvm_resumes_on_request_with_memory_intact(client, server, awake):
    tok = token(client, awake)
    seconds = str(random.randint(100000, 999999))
    assert request(server, awake, f"/keep/{seconds}", headers={"X-aws-proxy-auth": tok})[0] == 200
    suspend(client, awake)
    before = resumes_logged(server, awake)
    status, body = request(server, awake, "/ps", headers={"X-aws-proxy-auth": tok})
    assert status == 200
    assert f"sleep {seconds}" in body
    assert state(client, awake) == "RUNNING"
    assert resumes_logged(server, awake) == before + 1


def test_twenty_concurrent_requests_cause_one_resume(client, server, awake):
    tok = token(client, awake)
    suspend(client, awake)
    before = resumes_logged(server, awake)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(
            lambda _: request(server, awake, "/", headers={"X-aws-proxy-auth": tok}),
            range(20)))
    assert answers == [(200, f"hello from {awake}")] * 20
    assert resumes_logged(server, awake) == before + 1


def test_a_request_during_suspending_is_served_after_it(client, server, awake):
    tok = token(client, awake)
    client.suspend_microvm(microvmIdentifier=awake)
    status, body = request(server, awake, "/", headers={"X-aws-proxy-auth": tok})
    assert (status, body) == (200, f"hello from {awake}")
    states = [e for e in open(server.log_path, errors="replace").read().splitlines()
              if "hearth::lifecycle" in e and awake in e]
    assert "suspended" in states[-2] and "resumed" in states[-1]


def test_statuses_follow_the_microvms_state_and_connectors(client, server, ingress_image):
    no_resume = run(client, idlePolicy={"maxIdleDurationSeconds": 3600,
                                        "suspendedDurationSeconds": 3600,
                                        "autoResumeEnabled": False})
    closed = run(client, ingressNetworkConnectors=["NO_INGRESS"])
    shell_only = run(client, ingressNetworkConnectors=["SHELL_INGRESS"])
    try:
        tokens = {m: token(client, m) for m in (no_resume, closed, shell_only)}
        suspend(client, no_resume)
        assert request(server, no_resume, "/", headers={"X-aws-proxy-auth": tokens[no_resume]})[0] == 409
        assert state(client, no_resume) == "SUSPENDED"
        assert request(server, closed, "/", headers={"X-aws-proxy-auth": tokens[closed]})[0] == 403
        assert request(server, shell_only, "/", headers={"X-aws-proxy-auth": tokens[shell_only]})[0] == 403

        # The shell: its own token, SHELL_INGRESS, port 8022.
        shell = client.create_microvm_shell_auth_token(
            microvmIdentifier=shell_only, expirationInMinutes=10)["authToken"]["X-aws-proxy-auth"]
        assert request(server, shell_only, "/", headers={"X-aws-proxy-auth": shell})[0] == 403
        assert request(server, shell_only, "/shell",
                       headers={"X-aws-proxy-auth": tokens[shell_only], **WEBSOCKET})[0] == 403
        no_shell = sign(server, {**token_claims(shell), "microvm": no_resume})
        assert request(server, no_resume, "/shell",
                       headers={"X-aws-proxy-auth": no_shell, **WEBSOCKET})[0] == 403
        assert state(client, no_resume) == "SUSPENDED"
        # Admitted: the shell's WebSocket opens (test_shell.py drives it).
        assert request(server, shell_only, "/shell",
                       headers={"X-aws-proxy-auth": shell, **WEBSOCKET})[0] == 101

        client.terminate_microvm(microvmIdentifier=closed)
        wait_microvm(client, closed, states=("TERMINATED",))
        assert request(server, closed, "/", headers={"X-aws-proxy-auth": tokens[closed]})[0] == 410
    finally:
        for microvm_id in (no_resume, closed, shell_only):
            client.terminate_microvm(microvmIdentifier=microvm_id)


def open_websocket(server, microvm_id, tok):
    """A socket past a WebSocket handshake with the app's /ws echo."""
    url = urllib.parse.urlsplit(server.ingress)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((
        f"GET /ws HTTP/1.1\r\nHost: {host(server, microvm_id)}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: lambda-microvms, lambda-microvms.authentication.{tok}\r\n"
        "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.split(b" ")[1] == b"101", head
    return sock


def echo(sock, payload):
    """Sends one masked frame and reads it back from the echoing app."""
    mask = os.urandom(4)
    frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(frame)
    got = b""
    while len(got) < len(frame):
        chunk = sock.recv(4096)
        assert chunk
        got += chunk
    assert got == frame


def test_idle_microvms_suspend_then_terminate_while_busy_ones_run(client, server, ingress_image):
    """Three microVMs with a 60 s idle time: one left alone, one sent a
    request every 10 s, one holding a WebSocket that carries a frame every
    10 s. Only the first suspends, then terminates after 5 s suspended."""
    policy = {"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 5,
              "autoResumeEnabled": False}
    idle = run(client, idlePolicy=policy)
    busy = run(client, idlePolicy=policy)
    chatty = run(client, idlePolicy=policy)
    try:
        tok = token(client, busy)
        sock = open_websocket(server, chatty, token(client, chatty))
        started = time.monotonic()
        with sock:
            while time.monotonic() - started < 100:
                assert request(server, busy, "/", headers={"X-aws-proxy-auth": tok})[0] == 200
                echo(sock, b"still here")
                time.sleep(10)
        assert state(client, busy) == "RUNNING"
        assert state(client, chatty) == "RUNNING"
        wait_microvm(client, idle, states=("TERMINATED",), timeout=60)
        events = [line for line in open(server.log_path, errors="replace").read().splitlines()
                  if "hearth::lifecycle" in line and idle in line]
        assert any("suspended" in line for line in events), events
        got = client.get_microvm(microvmIdentifier=idle)
        assert got["stateReason"] == "SUSPENDED_DURATION_REACHED", got
    finally:
        for microvm_id in (idle, busy, chatty):
            client.terminate_microvm(microvmIdentifier=microvm_id)


@pytest.fixture(scope="module")
def h2_microvm(client, server, tmp_path_factory):
    """A microVM whose app speaks only HTTP/2 cleartext (tests/h2c-app)."""
    target = REPO / "target" / "h2c-app"
    subprocess.run(
        ["cargo", "build", "--release", "--target", "x86_64-unknown-linux-gnu",
         "--target-dir", str(target)],
        cwd=REPO / "tests" / "h2c-app", check=True, timeout=1800,
        env=dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static"),
    )
    app = tmp_path_factory.mktemp("h2app")
    shutil.copy(HERE / "h2_app" / "Dockerfile", app / "Dockerfile")
    shutil.copy(target / "x86_64-unknown-linux-gnu" / "release" / "h2c-app", app / "h2c-app")
    archive = zip_dir(app, tmp_path_factory.mktemp("h2zip") / "app.zip")
    uri = upload(server, archive, "s3://conformance/h2-app.zip")
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    config = app_config(base, uri)
    del config["hooks"], config["environmentVariables"]
    client.create_microvm_image(name="ingress-h2", **config)
    assert wait_image(client, "ingress-h2")["state"] == "CREATED"
    microvm_id = client.run_microvm(imageIdentifier="ingress-h2")["microvmId"]
    wait_microvm(client, microvm_id)
    yield microvm_id
    client.terminate_microvm(microvmIdentifier=microvm_id)


def test_force_h2_speaks_http2_to_the_app(client, server, h2_microvm):
    tok = token(client, h2_microvm)
    force = ("-H", "X-aws-proxy-force-h2: true")
    assert curl(server, h2_microvm, tok, "/hi", *force).decode() == "h2 GET /hi"
    assert curl(server, h2_microvm, tok, "/hi", *force, "--http2-prior-knowledge").decode() \
        == "h2 GET /hi"
    # Without it the proxy speaks HTTP/1.1, which this app refuses.
    assert request(server, h2_microvm, "/hi", headers={"X-aws-proxy-auth": tok})[0] == 502


def test_a_streamed_http2_answer_arrives_with_its_trailers(client, server, h2_microvm):
    tok = token(client, h2_microvm)
    url = urllib.parse.urlsplit(server.ingress)
    name = f"{h2_microvm}.localhost"
    out = subprocess.run(
        ["curl", "-sS", "-v", "--http2-prior-knowledge", "--resolve",
         f"{name}:{url.port}:127.0.0.1", "-H", f"X-aws-proxy-auth: {tok}",
         "-H", "X-aws-proxy-force-h2: 1", "-H", "TE: trailers",
         f"http://{name}:{url.port}/stream"],
        capture_output=True, check=True, timeout=120)
    assert out.stdout.decode() == "".join(f"chunk {i}\n" for i in range(5))
    assert "x-stream-status: done" in out.stderr.decode()
