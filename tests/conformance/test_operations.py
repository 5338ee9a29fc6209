"""All 24 operations through boto3, each response checked against its output
shape in the installed botocore model (status, members, types, enums)."""

import datetime

import pytest
from botocore.exceptions import ClientError

from clients import CALLED, call
from inputs import ROLE_ARN, image_config


@pytest.fixture(scope="module")
def base_image_arn(client, model):
    listed = call(client, model, "ListManagedMicrovmImages")
    assert listed["items"], "the server lists no managed base image"
    return listed["items"][0]["imageArn"]


def full_config(base_image_arn):
    return {**image_config(), "baseImageArn": base_image_arn}


@pytest.fixture(scope="module")
def image(client, model, base_image_arn):
    created = call(
        client, model, "CreateMicrovmImage",
        name="conformance-app", tags={"team": "hearth"}, **full_config(base_image_arn),
    )
    return created


@pytest.fixture()
def microvm(client, model, image):
    run = call(
        client, model, "RunMicrovm",
        imageIdentifier=image["imageArn"],
        ingressNetworkConnectors=["ALL_INGRESS", "SHELL_INGRESS"],
        idlePolicy={"maxIdleDurationSeconds": 300, "suspendedDurationSeconds": 60, "autoResumeEnabled": True},
        maximumDurationInSeconds=3600,
        runHookPayload='{"tenant": "t1"}',
        executionRoleArn=ROLE_ARN,
    )
    return run["microvmId"]


def test_managed_base_images_and_their_versions(client, model, base_image_arn):
    versions = call(client, model, "ListManagedMicrovmImageVersions", imageIdentifier=base_image_arn)
    assert versions["items"][0]["status"] == "AVAILABLE"


def test_create_microvm_image_echoes_the_configuration(image, base_image_arn):
    assert image["name"] == "conformance-app"
    assert image["imageArn"].endswith(":microvm-image:conformance-app")
    assert image["state"] == "CREATING"
    assert image["imageVersion"] == "1"
    assert image["hooks"]["port"] == 9000
    assert image["resources"] == [{"minimumMemoryInMiB": 2048}]
    assert image["codeArtifact"] == {"uri": "s3://hearth-artifacts/app.zip"}
    assert isinstance(image["createdAt"], datetime.datetime)


def test_get_and_list_microvm_images(client, model, image, base_image_arn):
    got = call(client, model, "GetMicrovmImage", imageIdentifier="conformance-app")
    assert got["state"] == "CREATED"
    assert got["latestActiveImageVersion"] == "1"
    assert got["tags"] == {"team": "hearth"}

    for name in ("paged-a", "paged-b"):
        call(client, model, "CreateMicrovmImage", name=name, **full_config(base_image_arn))
    pages = client.get_paginator("list_microvm_images").paginate(PaginationConfig={"PageSize": 1})
    names = [item["name"] for page in pages for item in page["items"]]
    assert names == sorted(names) and {"conformance-app", "paged-a", "paged-b"} <= set(names)

    filtered = call(client, model, "ListMicrovmImages", nameFilter="paged", maxResults=1)
    assert [i["name"] for i in filtered["items"]] == ["paged-a"] and filtered["nextToken"]


def test_update_microvm_image_builds_a_new_version(client, model, base_image_arn):
    call(client, model, "CreateMicrovmImage", name="updated-app", **full_config(base_image_arn))
    config = full_config(base_image_arn)
    config["description"] = "second"
    updated = call(client, model, "UpdateMicrovmImage", imageIdentifier="updated-app", **config)
    assert updated["imageVersion"] == "2"
    assert updated["description"] == "second"

    versions = call(client, model, "ListMicrovmImageVersions", imageIdentifier="updated-app")
    assert [v["imageVersion"] for v in versions["items"]] == ["1", "2"]


def test_image_versions_can_be_read_deactivated_and_deleted(client, model, base_image_arn):
    call(client, model, "CreateMicrovmImage", name="versioned-app", **full_config(base_image_arn))
    got = call(client, model, "GetMicrovmImageVersion", imageIdentifier="versioned-app", imageVersion="1")
    assert (got["state"], got["status"]) == ("SUCCESSFUL", "ACTIVE")

    updated = call(
        client, model, "UpdateMicrovmImageVersion",
        imageIdentifier="versioned-app", imageVersion="1", status="INACTIVE",
    )
    assert updated["status"] == "INACTIVE"

    deleted = call(client, model, "DeleteMicrovmImageVersion", imageIdentifier="versioned-app", imageVersion="1")
    assert deleted["state"] == "DELETED"
    again = call(client, model, "DeleteMicrovmImageVersion", imageIdentifier="versioned-app", imageVersion="1")
    assert again["state"] == "DELETED"


def test_builds_of_a_version(client, model, base_image_arn):
    config = full_config(base_image_arn)
    config["cpuConfigurations"] = [{"architecture": "X86_64"}, {"architecture": "ARM_64"}]
    call(client, model, "CreateMicrovmImage", name="built-app", **config)

    builds = call(client, model, "ListMicrovmImageBuilds", imageIdentifier="built-app", imageVersion="1")
    assert {b["architecture"] for b in builds["items"]} == {"X86_64", "ARM_64"}
    arm = call(
        client, model, "ListMicrovmImageBuilds",
        imageIdentifier="built-app", imageVersion="1", architecture="ARM_64",
    )
    assert [b["chipset"] for b in arm["items"]] == ["GRAVITON"]

    build = call(
        client, model, "GetMicrovmImageBuild",
        imageIdentifier="built-app", imageVersion="1", buildId=arm["items"][0]["buildId"],
    )
    assert build["buildState"] == "SUCCESSFUL"
    assert build["snapshotBuild"]["memorySnapshotSizeInBytes"] > 0


def test_run_get_and_list_microvms(client, model, image, microvm):
    got = call(client, model, "GetMicrovm", microvmIdentifier=microvm)
    assert got["state"] == "RUNNING"
    assert got["imageArn"] == image["imageArn"]
    assert got["maximumDurationInSeconds"] == 3600
    assert got["idlePolicy"]["autoResumeEnabled"] is True
    assert microvm in got["endpoint"]

    listed = call(client, model, "ListMicrovms", imageIdentifier=image["imageArn"])
    assert microvm in [m["microvmId"] for m in listed["items"]]


def test_suspend_resume_and_terminate(client, model, microvm):
    call(client, model, "SuspendMicrovm", microvmIdentifier=microvm)
    assert call(client, model, "GetMicrovm", microvmIdentifier=microvm)["state"] == "SUSPENDED"
    call(client, model, "ResumeMicrovm", microvmIdentifier=microvm)
    call(client, model, "TerminateMicrovm", microvmIdentifier=microvm)
    call(client, model, "TerminateMicrovm", microvmIdentifier=microvm)

    got = call(client, model, "GetMicrovm", microvmIdentifier=microvm)
    assert got["state"] == "TERMINATED"
    assert got["stateReason"] and isinstance(got["terminatedAt"], datetime.datetime)


def test_auth_tokens(client, model, microvm):
    token = call(
        client, model, "CreateMicrovmAuthToken",
        microvmIdentifier=microvm, expirationInMinutes=60,
        allowedPorts=[{"port": 8080}, {"range": {"startPort": 9000, "endPort": 9010}}, {"allPorts": {}}],
    )
    assert token["authToken"]["X-aws-proxy-auth"]

    shell = call(client, model, "CreateMicrovmShellAuthToken", microvmIdentifier=microvm, expirationInMinutes=5)
    assert shell["authToken"]["X-aws-proxy-auth"]


def test_tags(client, model, image):
    arn = image["imageArn"]
    call(client, model, "TagResource", Resource=arn, Tags={"env": "dev", "owner": "ops"})
    call(client, model, "UntagResource", Resource=arn, TagKeys=["owner"])
    listed = call(client, model, "ListTags", Resource=arn)
    assert listed["Tags"] == {"team": "hearth", "env": "dev"}


def test_delete_microvm_image_is_idempotent(client, model, base_image_arn):
    call(client, model, "CreateMicrovmImage", name="doomed-app", **full_config(base_image_arn))
    assert call(client, model, "DeleteMicrovmImage", imageIdentifier="doomed-app")["state"] == "DELETED"
    assert call(client, model, "DeleteMicrovmImage", imageIdentifier="doomed-app")["state"] == "DELETED"
    with pytest.raises(ClientError) as caught:
        client.get_microvm_image(imageIdentifier="doomed-app")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_retried_run_with_the_same_client_token_returns_the_same_microvm(client, model, image):
    first = call(client, model, "RunMicrovm", imageIdentifier="conformance-app", clientToken="retry-1")
    second = call(client, model, "RunMicrovm", imageIdentifier="conformance-app", clientToken="retry-1")
    assert first["microvmId"] == second["microvmId"]


def test_every_operation_was_called(model):
    assert CALLED == set(model.operation_names)
