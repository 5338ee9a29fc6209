"""Images built by `hearth serve` through the full pipeline: a Dockerfile's
RUN steps run in build microVMs, their effect is in every microVM of the
image, their output is in the build log, and a failing step fails the build
with a stateReason naming its line."""

import pathlib

import pytest

from conftest import ROLE_ARN, upload, wait_image, wait_microvm, zip_dir

RUN_DOCKERFILE = """\
FROM busybox
RUN mkdir -p /srv && echo "made by RUN $((6 * 7))" > /srv/made.txt && echo step-output-marker
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]
"""

FAILING_DOCKERFILE = """\
FROM busybox
RUN true
RUN echo about to fail && exit 3
CMD ["httpd", "-f", "-p", "8080"]
"""


def create(client, server, tmp_path, name, dockerfile):
    src = tmp_path / name
    src.mkdir()
    (src / "Dockerfile").write_text(dockerfile)
    uri = upload(server, zip_dir(src, tmp_path / f"{name}.zip"), f"s3://pipeline/{name}.zip")
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    client.create_microvm_image(
        name=name, baseImageArn=base, buildRoleArn=ROLE_ARN, codeArtifact={"uri": uri},
        resources=[{"minimumMemoryInMiB": 512}],
    )
    return wait_image(client, name, timeout=600)


def build_log(server, name):
    """The build log the server keeps for the image's first version."""
    logs = list(server.data_dir.glob("images/*/1/*.log"))
    texts = [p.read_text() for p in logs]
    return "\n".join(t for t in texts if name in t)


@pytest.fixture(scope="module")
def run_image(client, server, tmp_path_factory):
    got = create(client, server, tmp_path_factory.mktemp("run"), "pipeline-run", RUN_DOCKERFILE)
    assert got["state"] == "CREATED", client.get_microvm_image_version(
        imageIdentifier="pipeline-run", imageVersion="1")
    return got


def test_a_run_step_is_in_the_running_microvm(client, server, run_image):
    run = client.run_microvm(imageIdentifier="pipeline-run")
    try:
        wait_microvm(client, run["microvmId"])
        served = server.vm_exec(run["microvmId"], "wget -qO- http://127.0.0.1:8080/made.txt")
        assert served == "made by RUN 42\n"
    finally:
        client.terminate_microvm(microvmIdentifier=run["microvmId"])


def test_a_run_steps_output_is_in_the_build_log(server, run_image):
    log = build_log(server, "pipeline-run")
    assert "step-output-marker" in log
    assert "build successful" in log


def test_a_failing_run_step_names_its_line(client, server, tmp_path):
    got = create(client, server, tmp_path, "pipeline-fail", FAILING_DOCKERFILE)
    assert got["state"] == "CREATE_FAILED"
    version = client.get_microvm_image_version(imageIdentifier="pipeline-fail", imageVersion="1")
    assert version["state"] == "FAILED"
    assert "line 3" in version["stateReason"], version["stateReason"]
    assert "about to fail" in build_log(server, "pipeline-fail")
