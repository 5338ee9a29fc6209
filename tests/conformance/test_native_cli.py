"""The native CLI over the API: `hearth image create`, `run`, `ps`, `logs`,
`suspend`, `resume` and `rm`, run as a user runs them against a real
`hearth serve`, and their refusals of bad input."""

import json
import os
import subprocess

import pytest

from cli import aws_s3

APP_DOCKERFILE = """\
FROM busybox
RUN mkdir -p /srv && echo "built by RUN" > /srv/index.html
EXPOSE 8080
CMD ["sh", "-c", "echo app-stdout-marker; echo app-stderr-marker >&2; exec httpd -f -p 8080 -h /srv"]
"""


def hearth(server, binary, *args, timeout=900):
    """Runs the `hearth` CLI against the server; returns the completed process."""
    env = dict(
        os.environ,
        HEARTH_ENDPOINT_URL=server.endpoint,
        HEARTH_S3_ENDPOINT_URL=server.s3_endpoint,
        HEARTH_DATA=str(server.data_dir),
    )
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def cli_image(server, hearth_binary, tmp_path_factory):
    src = tmp_path_factory.mktemp("cli") / "app"
    src.mkdir()
    (src / "Dockerfile").write_text(APP_DOCKERFILE)
    result = hearth(server, hearth_binary, "image", "create", str(src), "--name", "native-app",
                    "--memory", "512")
    assert ok(result).strip() == "native-app:1"
    return result


def test_image_create_follows_the_build_to_its_end(cli_image):
    assert "version 1: SUCCESSFUL" in cli_image.stderr
    # The build's log, RUN steps included, is shown as it grows.
    assert "RUN mkdir -p /srv" in cli_image.stderr


def test_a_microvm_runs_lists_logs_and_is_removed(server, hearth_binary, cli_image):
    microvm_id = ok(hearth(server, hearth_binary, "run", "native-app")).strip()
    assert microvm_id.startswith("microvm-")
    try:
        table = ok(hearth(server, hearth_binary, "ps"))
        row = next(line for line in table.splitlines() if line.startswith(microvm_id))
        assert row.split()[1:4] == ["native-app", "1", "RUNNING"]

        listed = json.loads(ok(hearth(server, hearth_binary, "ps", "--json")))
        mine = next(m for m in listed if m["microvmId"] == microvm_id)
        assert mine["state"] == "RUNNING" and mine["endpoint"]

        logs = hearth(server, hearth_binary, "logs", microvm_id)
        assert "app-stdout-marker" in ok(logs)
        assert "app-stderr-marker" in logs.stderr

        # --json: one object per line of output, both streams on stdout.
        logs = ok(hearth(server, hearth_binary, "logs", microvm_id, "--json"))
        records = [json.loads(line) for line in logs.splitlines()]
        assert {"stream": "stdout", "line": "app-stdout-marker"} in records
        assert {"stream": "stderr", "line": "app-stderr-marker"} in records

        served = server.vm_exec(microvm_id, "wget -qO- http://127.0.0.1:8080/")
        assert served == "built by RUN\n"
    finally:
        assert ok(hearth(server, hearth_binary, "rm", microvm_id)).strip() == microvm_id

    assert microvm_id not in ok(hearth(server, hearth_binary, "ps"))
    everything = ok(hearth(server, hearth_binary, "ps", "-a"))
    row = next(line for line in everything.splitlines() if line.startswith(microvm_id))
    assert "TERMINATED" in row.split()


def test_a_microvm_suspends_and_resumes_with_its_memory(server, hearth_binary, cli_image):
    microvm_id = ok(hearth(server, hearth_binary, "run", "native-app", "--payload", "p")).strip()
    try:
        server.vm_exec(microvm_id, "echo kept > /tmp/kept")
        assert ok(hearth(server, hearth_binary, "suspend", microvm_id)).strip() == microvm_id
        got = json.loads(ok(hearth(server, hearth_binary, "ps", "--json")))
        assert next(m for m in got if m["microvmId"] == microvm_id)["state"] == "SUSPENDED"
        # Commands that reach its VM say it is suspended, not missing.
        for command in (["cp", f"{microvm_id}:/tmp/kept", "./kept"],
                        ["vm", "exec", microvm_id, "--", "true"]):
            refused = hearth(server, hearth_binary, *command, timeout=60)
            assert refused.returncode != 0, command
            assert "SUSPENDED" in refused.stderr and "resume" in refused.stderr, refused.stderr
        assert ok(hearth(server, hearth_binary, "resume", microvm_id)).strip() == microvm_id
        assert server.vm_exec(microvm_id, "cat /tmp/kept") == "kept\n"
    finally:
        hearth(server, hearth_binary, "rm", microvm_id)


def test_a_directory_without_a_dockerfile_is_refused(server, hearth_binary, tmp_path):
    (tmp_path / "app.py").write_text("print('hi')\n")
    result = hearth(server, hearth_binary, "image", "create", str(tmp_path), "--name", "nodf")
    assert result.returncode != 0
    assert "has no Dockerfile at its root" in result.stderr


def test_a_failing_build_exits_non_zero_with_its_reason(server, hearth_binary, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN exit 7\nCMD [\"true\"]\n")
    result = hearth(server, hearth_binary, "image", "create", str(tmp_path), "--name", "cli-bad")
    assert result.returncode == 1
    assert "line 2" in result.stderr and "failed" in result.stderr


def test_an_unknown_image_is_refused(server, hearth_binary):
    result = hearth(server, hearth_binary, "run", "no-such-image", timeout=60)
    assert result.returncode != 0
    assert "ResourceNotFoundException" in result.stderr


def test_an_unknown_microvm_is_refused(server, hearth_binary):
    missing = "microvm-" + "0" * 32
    for command in (["rm", missing], ["logs", missing], ["suspend", missing]):
        result = hearth(server, hearth_binary, *command, timeout=60)
        assert result.returncode != 0, command
        assert "ResourceNotFoundException" in result.stderr, command


def test_image_create_again_makes_a_new_version(server, hearth_binary, cli_image, tmp_path):
    (tmp_path / "Dockerfile").write_text(APP_DOCKERFILE.replace("built by RUN", "second"))
    result = hearth(server, hearth_binary, "image", "create", str(tmp_path), "--name",
                    "native-app", "--memory", "512")
    assert ok(result).strip() == "native-app:2"
    table = ok(hearth(server, hearth_binary, "image", "versions", "native-app"))
    rows = [line.split() for line in table.splitlines()[1:]]
    assert [row[0] for row in rows] == ["1", "2"]
    assert [row[1:3] for row in rows] == [["SUCCESSFUL", "ACTIVE"]] * 2
    listed = json.loads(ok(hearth(server, hearth_binary, "image", "versions", "native-app",
                                  "--json")))
    assert [v["imageVersion"] for v in listed] == ["1", "2"]


def artifacts(server):
    """The keys in the bucket `hearth image create` uploads to."""
    listed = aws_s3(server, "ls", "--recursive", "s3://hearth-images/", check=False)
    return {line.split()[-1] for line in listed.stdout.splitlines() if line.strip()}


def test_a_bad_image_name_is_refused_before_anything_is_uploaded(server, hearth_binary, tmp_path):
    (tmp_path / "Dockerfile").write_text(APP_DOCKERFILE)
    before = artifacts(server)
    result = hearth(server, hearth_binary, "image", "create", str(tmp_path), "--name", "bad name!")
    assert result.returncode != 0
    assert "--name" in result.stderr and "uploaded" not in result.stderr, result.stderr
    assert artifacts(server) == before


def test_a_refused_image_create_leaves_no_artifact(server, hearth_binary, tmp_path):
    (tmp_path / "Dockerfile").write_text(APP_DOCKERFILE)
    result = hearth(server, hearth_binary, "image", "create", str(tmp_path), "--name",
                    "cli-refused", "--build-role-arn", "not-a-role")
    assert result.returncode != 0
    assert "ValidationException" in result.stderr, result.stderr
    # It was uploaded, then deleted when CreateMicrovmImage refused it.
    assert "uploaded" in result.stderr
    assert not [key for key in artifacts(server) if key.startswith("cli-refused/")]


def test_cp_of_a_missing_file_leaves_nothing_behind(server, hearth_binary, cli_image, tmp_path):
    microvm_id = ok(hearth(server, hearth_binary, "run", "native-app")).strip()
    try:
        out = tmp_path / "out"
        failed = hearth(server, hearth_binary, "cp", f"{microvm_id}:/missing", str(out), timeout=60)
        assert failed.returncode != 0
        assert list(tmp_path.iterdir()) == []

        server.vm_exec(microvm_id, "echo copied-out > /tmp/there")
        ok(hearth(server, hearth_binary, "cp", f"{microvm_id}:/tmp/there", str(out), timeout=60))
        assert out.read_text() == "copied-out\n"
        assert [p.name for p in tmp_path.iterdir()] == ["out"]
    finally:
        hearth(server, hearth_binary, "rm", microvm_id)


def test_cp_to_a_mistyped_id_says_it_is_unknown(server, hearth_binary, tmp_path):
    (tmp_path / "f").write_text("x")
    result = hearth(server, hearth_binary, "cp", str(tmp_path / "f"), "bogus-id:/x", timeout=60)
    assert result.returncode != 0
    assert "unknown microvm or vm: bogus-id" in result.stderr, result.stderr
