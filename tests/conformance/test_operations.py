"""All 24 operations through boto3 against a real server, each response
checked against its output shape in the installed botocore model (status,
members, types, enums). Images are built by the image pipeline and
microVMs are real VMs."""

import datetime
import zipfile

import pytest
from botocore.exceptions import ClientError

from clients import CALLED, call
from conftest import app_config, upload, wait_image, wait_microvm
from inputs import ROLE_ARN

MISSING_ARTIFACT = "s3://conformance/missing.zip"


@pytest.fixture(scope="module")
def base_image_arn(client, model):
    listed = call(client, model, "ListManagedMicrovmImages")
    assert listed["items"], "the server lists no managed base image"
    return listed["items"][0]["imageArn"]


def failing_config(base_image_arn):
    """A configuration whose build fails at once: its artifact is missing."""
    return app_config(base_image_arn, MISSING_ARTIFACT)


@pytest.fixture()
def microvm(client, model, app_image):
    run = call(
        client, model, "RunMicrovm",
        imageIdentifier=app_image["imageArn"],
        ingressNetworkConnectors=["ALL_INGRESS", "SHELL_INGRESS"],
        idlePolicy={"maxIdleDurationSeconds": 300, "suspendedDurationSeconds": 600, "autoResumeEnabled": True},
        maximumDurationInSeconds=3600,
        runHookPayload='{"tenant": "t1"}',
        executionRoleArn=ROLE_ARN,
    )
    assert run["state"] == "PENDING"
    wait_microvm(client, run["microvmId"])
    yield run["microvmId"]
    client.terminate_microvm(microvmIdentifier=run["microvmId"])


def test_managed_base_images_and_their_versions(client, model, base_image_arn):
    assert base_image_arn.startswith("arn:aws:lambda:us-east-1:aws:microvm-image:hearth-")
    versions = call(client, model, "ListManagedMicrovmImageVersions", imageIdentifier=base_image_arn)
    assert versions["items"][0]["status"] == "AVAILABLE"
    assert versions["items"][0]["supportedCpuConfigurations"] == [{"architecture": "X86_64"}]
    alias = "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1"
    assert call(client, model, "ListManagedMicrovmImageVersions", imageIdentifier=alias)["items"]


def test_create_microvm_image_echoes_the_configuration(app_image):
    assert app_image["name"] == "conformance-app"
    assert app_image["imageArn"] == "arn:aws:lambda:us-east-1:000000000000:microvm-image:conformance-app"
    assert app_image["state"] == "CREATING"
    assert app_image["imageVersion"] == "1"
    assert app_image["hooks"]["port"] == 9000
    assert app_image["resources"] == [{"minimumMemoryInMiB": 2048}]
    assert app_image["codeArtifact"] == {"uri": "s3://conformance/app.zip"}
    assert isinstance(app_image["createdAt"], datetime.datetime)


def test_a_built_image_is_created_with_an_active_version(client, model, app_image):
    got = call(client, model, "GetMicrovmImage", imageIdentifier="conformance-app")
    assert got["state"] == "CREATED"
    assert got["latestActiveImageVersion"] == "1"
    assert got["tags"] == {"team": "hearth"}

    version = call(client, model, "GetMicrovmImageVersion", imageIdentifier="conformance-app", imageVersion="1")
    assert (version["state"], version["status"]) == ("SUCCESSFUL", "ACTIVE")
    assert version["hooks"]["microvmHooks"]["run"] == "ENABLED"


def test_a_build_validates_its_snapshot_in_a_test_vm(server, app_image):
    logs = [p.read_text() for p in server.data_dir.glob("images/*/1/build-*.log")]
    [log] = [text for text in logs if "building conformance-app" in text]
    assert "waiting for the validate hook on port 9000 to answer 200" in log
    assert "done validating the snapshot in a test microVM" in log
    assert log.rstrip().endswith("build successful")


def test_builds_report_their_snapshot_sizes(client, model, app_image):
    builds = call(client, model, "ListMicrovmImageBuilds", imageIdentifier="conformance-app", imageVersion="1")
    [build] = builds["items"]
    assert (build["architecture"], build["chipset"], build["buildState"]) == ("X86_64", "INTEL", "SUCCESSFUL")

    got = call(
        client, model, "GetMicrovmImageBuild",
        imageIdentifier="conformance-app", imageVersion="1", buildId=build["buildId"],
    )
    sizes = got["snapshotBuild"]
    assert sizes["memorySnapshotSizeInBytes"] > 1_000_000
    assert sizes["diskSnapshotSizeInBytes"] > 0
    assert sizes["codeInstallSizeInBytes"] > 0
    arm = call(
        client, model, "ListMicrovmImageBuilds",
        imageIdentifier="conformance-app", imageVersion="1", architecture="ARM_64",
    )
    assert arm["items"] == []


def test_an_arm_build_fails_saying_why(client, model, base_image_arn, artifact):
    config = app_config(base_image_arn, artifact)
    config["cpuConfigurations"] = [{"architecture": "X86_64"}, {"architecture": "ARM_64"}]
    call(client, model, "CreateMicrovmImage", name="multiarch-app", **config)
    assert wait_image(client, "multiarch-app")["state"] == "CREATED"

    builds = call(client, model, "ListMicrovmImageBuilds", imageIdentifier="multiarch-app", imageVersion="1")
    states = {b["architecture"]: (b["buildState"], b.get("stateReason")) for b in builds["items"]}
    assert states["X86_64"] == ("SUCCESSFUL", None)
    assert states["ARM_64"][0] == "FAILED" and "X86_64 guests only" in states["ARM_64"][1]
    version = call(client, model, "GetMicrovmImageVersion", imageIdentifier="multiarch-app", imageVersion="1")
    assert version["state"] == "SUCCESSFUL" and "ARM_64" in version["stateReason"]


def test_a_missing_artifact_fails_the_build_with_a_reason(client, model, base_image_arn):
    call(client, model, "CreateMicrovmImage", name="broken-app", **failing_config(base_image_arn))
    got = wait_image(client, "broken-app")
    assert got["state"] == "CREATE_FAILED"
    assert got["latestFailedImageVersion"] == "1" and "latestActiveImageVersion" not in got

    version = call(client, model, "GetMicrovmImageVersion", imageIdentifier="broken-app", imageVersion="1")
    assert version["state"] == "FAILED"
    assert f"{MISSING_ARTIFACT} does not exist" in version["stateReason"]


def test_a_dockerfile_with_run_fails_the_build_naming_the_line(
    client, model, server, base_image_arn, tmp_path
):
    archive = tmp_path / "run.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("Dockerfile", "FROM busybox\nRUN echo hi && exit 3\nCMD [\"true\"]\n")
    uri = upload(server, archive, "s3://conformance/run.zip")
    call(client, model, "CreateMicrovmImage", name="run-app", **app_config(base_image_arn, uri))
    assert wait_image(client, "run-app")["state"] == "CREATE_FAILED"
    builds = call(client, model, "ListMicrovmImageBuilds", imageIdentifier="run-app", imageVersion="1")
    reason = builds["items"][0]["stateReason"]
    assert "line 2: RUN" in reason and "exited with code 3" in reason, reason


def test_images_are_listed_by_page(client, model, base_image_arn, app_image):
    for name in ("paged-a", "paged-b"):
        call(client, model, "CreateMicrovmImage", name=name, **failing_config(base_image_arn))
    pages = client.get_paginator("list_microvm_images").paginate(PaginationConfig={"PageSize": 1})
    names = [item["name"] for page in pages for item in page["items"]]
    assert names == sorted(names) and {"conformance-app", "paged-a", "paged-b"} <= set(names)

    filtered = call(client, model, "ListMicrovmImages", nameFilter="paged", maxResults=1)
    assert [i["name"] for i in filtered["items"]] == ["paged-a"] and filtered["nextToken"]


def test_update_microvm_image_builds_a_new_version(client, model, base_image_arn):
    call(client, model, "CreateMicrovmImage", name="updated-app", **failing_config(base_image_arn))
    wait_image(client, "updated-app")
    config = failing_config(base_image_arn)
    config["description"] = "second"
    updated = call(client, model, "UpdateMicrovmImage", imageIdentifier="updated-app", **config)
    assert (updated["imageVersion"], updated["state"]) == ("2", "UPDATING")
    assert updated["description"] == "second"
    assert wait_image(client, "updated-app")["state"] == "UPDATE_FAILED"

    versions = call(client, model, "ListMicrovmImageVersions", imageIdentifier="updated-app")
    assert [v["imageVersion"] for v in versions["items"]] == ["1", "2"]


def test_image_versions_can_be_deactivated_and_deleted(client, model, base_image_arn):
    call(client, model, "CreateMicrovmImage", name="versioned-app", **failing_config(base_image_arn))
    wait_image(client, "versioned-app")
    updated = call(
        client, model, "UpdateMicrovmImageVersion",
        imageIdentifier="versioned-app", imageVersion="1", status="INACTIVE",
    )
    assert updated["status"] == "INACTIVE"

    deleted = call(client, model, "DeleteMicrovmImageVersion", imageIdentifier="versioned-app", imageVersion="1")
    assert deleted["state"] == "DELETED"
    again = call(client, model, "DeleteMicrovmImageVersion", imageIdentifier="versioned-app", imageVersion="1")
    assert again["state"] == "DELETED"
    with pytest.raises(ClientError) as caught:
        client.get_microvm_image_version(imageIdentifier="versioned-app", imageVersion="1")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_run_get_and_list_microvms(client, model, server, app_image, microvm):
    got = call(client, model, "GetMicrovm", microvmIdentifier=microvm)
    assert got["state"] == "RUNNING"
    assert got["imageArn"] == app_image["imageArn"] and got["imageVersion"] == "1"
    assert got["maximumDurationInSeconds"] == 3600
    assert got["idlePolicy"]["autoResumeEnabled"] is True
    ingress_port = server.ingress.rsplit(":", 1)[1]
    assert got["endpoint"] == f"http://{microvm}.localhost:{ingress_port}"

    listed = call(client, model, "ListMicrovms", imageIdentifier=app_image["imageArn"])
    assert microvm in [m["microvmId"] for m in listed["items"]]
    by_version = call(client, model, "ListMicrovms", imageIdentifier="conformance-app", imageVersion="2")
    assert microvm not in [m["microvmId"] for m in by_version["items"]]


def test_suspend_resume_and_terminate(client, model, server, microvm):
    server.vm_exec(microvm, "echo kept-on-disk > /root/note")
    app_pids = server.vm_exec(microvm, "pidof httpd nc")
    call(client, model, "SuspendMicrovm", microvmIdentifier=microvm)
    wait_microvm(client, microvm, states=("SUSPENDED",))
    assert not (server.data_dir / "vms" / microvm).exists()

    call(client, model, "ResumeMicrovm", microvmIdentifier=microvm)
    wait_microvm(client, microvm)
    assert server.vm_exec(microvm, "cat /root/note") == "kept-on-disk\n"
    # The same processes: memory came back, not a fresh boot.
    assert server.vm_exec(microvm, "pidof httpd nc") == app_pids
    assert server.vm_exec(microvm, "cat /tmp/hooks.log").split() == ["ready", "run", "suspend", "resume"]

    call(client, model, "TerminateMicrovm", microvmIdentifier=microvm)
    call(client, model, "TerminateMicrovm", microvmIdentifier=microvm)
    got = wait_microvm(client, microvm, states=("TERMINATED",))
    assert got["stateReason"] == "USER_INITIATED" and isinstance(got["terminatedAt"], datetime.datetime)
    assert not (server.data_dir / "vms" / microvm).exists()


def test_auth_tokens(client, model, microvm):
    token = call(
        client, model, "CreateMicrovmAuthToken",
        microvmIdentifier=microvm, expirationInMinutes=60,
        allowedPorts=[{"port": 8080}, {"range": {"startPort": 9000, "endPort": 9010}}, {"allPorts": {}}],
    )
    assert token["authToken"]["X-aws-proxy-auth"].count(".") == 1

    shell = call(client, model, "CreateMicrovmShellAuthToken", microvmIdentifier=microvm, expirationInMinutes=5)
    assert shell["authToken"]["X-aws-proxy-auth"] != token["authToken"]["X-aws-proxy-auth"]


def test_tags(client, model, app_image):
    arn = app_image["imageArn"]
    call(client, model, "TagResource", Resource=arn, Tags={"env": "dev", "owner": "ops"})
    call(client, model, "UntagResource", Resource=arn, TagKeys=["owner"])
    listed = call(client, model, "ListTags", Resource=arn)
    assert listed["Tags"] == {"team": "hearth", "env": "dev"}


def test_delete_microvm_image_is_idempotent(client, model, base_image_arn):
    call(client, model, "CreateMicrovmImage", name="doomed-app", **failing_config(base_image_arn))
    wait_image(client, "doomed-app")
    assert call(client, model, "DeleteMicrovmImage", imageIdentifier="doomed-app")["state"] == "DELETED"
    assert call(client, model, "DeleteMicrovmImage", imageIdentifier="doomed-app")["state"] == "DELETED"
    with pytest.raises(ClientError) as caught:
        client.get_microvm_image(imageIdentifier="doomed-app")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_retried_run_with_the_same_client_token_returns_the_same_microvm(client, model, app_image):
    first = call(client, model, "RunMicrovm", imageIdentifier="conformance-app", clientToken="retry-1")
    second = call(client, model, "RunMicrovm", imageIdentifier="conformance-app", clientToken="retry-1")
    assert first["microvmId"] == second["microvmId"]
    wait_microvm(client, first["microvmId"])
    client.terminate_microvm(microvmIdentifier=first["microvmId"])


def test_every_operation_was_called(model):
    assert CALLED == set(model.operation_names)
