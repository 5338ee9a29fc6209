"""Benchmark of microVM endpoints (not part of CI): starts `hearth serve`,
builds tests/conformance/ingress_app, runs a microVM, then prints

- `hearth bench ingress`: latency and download throughput through the
  endpoint against a direct tunnel to the same port;
- the time to first byte of a request to a SUSPENDED microVM (auto-resume),
  beside the plain resume time (ResumeMicrovm until RUNNING), medians of
  several runs.

Run: tests/conformance/.venv/bin/python tests/conformance/bench_ingress.py [runs]
(with HEARTH_ASSETS set as for the conformance suite)."""

import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

import conftest
from clients import make_client
from conftest import HERE, Server, app_config, upload, wait_image, zip_dir


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    binary = os.environ.get("HEARTH_BIN") or conftest.cargo_executable(["-p", "hearth"], "hearth")
    data = conftest.short_data_dir("bench")
    conftest.seed_base_images(binary, data)
    log = tempfile.NamedTemporaryFile(prefix="hearth-bench-", suffix=".log", delete=False).name
    server = Server(binary, data, log).start()
    try:
        bench(server, binary, runs)
    finally:
        conftest.terminate_all(server)
        server.stop()
        server.end_vms()


def bench(server, binary, runs):
    client = make_client(server.endpoint)
    archive = zip_dir(HERE / "ingress_app", pathlib_tmp() / "app.zip")
    uri = upload(server, archive, "s3://bench/ingress-app.zip")
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    config = app_config(base, uri)
    del config["hooks"], config["environmentVariables"]
    client.create_microvm_image(name="bench", **config)
    assert wait_image(client, "bench")["state"] == "CREATED"
    policy = {"maxIdleDurationSeconds": 3600, "suspendedDurationSeconds": 3600,
              "autoResumeEnabled": True}
    microvm_id = client.run_microvm(imageIdentifier="bench", idlePolicy=policy)["microvmId"]
    conftest.wait_microvm(client, microvm_id)
    token = client.create_microvm_auth_token(
        microvmIdentifier=microvm_id, expirationInMinutes=60,
        allowedPorts=[{"allPorts": {}}])["authToken"]["X-aws-proxy-auth"]
    ingress = urllib.parse.urlsplit(server.ingress)

    subprocess.run([binary, "bench", "ingress", microvm_id, "--token", token,
                    "--ingress", ingress.netloc, "--download-path", f"/download/{64 << 20}"],
                   env=dict(os.environ, HEARTH_DATA=str(server.data_dir)), check=True)

    first_bytes, resumes = [], []
    for _ in range(runs):
        suspend(client, microvm_id)
        started = time.monotonic()
        conn = http.client.HTTPConnection(ingress.hostname, ingress.port, timeout=120)
        conn.request("GET", "/", headers={"Host": f"{microvm_id}.localhost:{ingress.port}",
                                          "X-aws-proxy-auth": token})
        resp = conn.getresponse()
        resp.read(1)
        first_bytes.append(time.monotonic() - started)
        assert resp.status == 200
        conn.close()

        suspend(client, microvm_id)
        started = time.monotonic()
        client.resume_microvm(microvmIdentifier=microvm_id)
        while client.get_microvm(microvmIdentifier=microvm_id)["state"] != "RUNNING":
            time.sleep(0.02)
        resumes.append(time.monotonic() - started)

    ratio = statistics.median(f / r for f, r in zip(first_bytes, resumes))
    print(f"suspended microVM: {runs} runs, medians")
    print(f"  first byte of a request    {statistics.median(first_bytes) * 1e3:8.0f} ms")
    print(f"  ResumeMicrovm to RUNNING   {statistics.median(resumes) * 1e3:8.0f} ms")
    print(f"  first byte / resume        {ratio:8.2f}")


def suspend(client, microvm_id):
    client.suspend_microvm(microvmIdentifier=microvm_id)
    while client.get_microvm(microvmIdentifier=microvm_id)["state"] != "SUSPENDED":
        time.sleep(0.1)


def pathlib_tmp():
    import pathlib
    return pathlib.Path(tempfile.mkdtemp(prefix="hearth-bench-app-"))


if __name__ == "__main__":
    main()
