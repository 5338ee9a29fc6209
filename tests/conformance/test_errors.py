"""Errors come back in the rest-json error shape that botocore reads: the
code in `x-amzn-errortype`, the model's HTTP status for that error, and a
body that fits the error's shape."""

import json

import botocore.session
import pytest
from botocore import xform_name
from botocore.exceptions import ClientError

import shape_check
from inputs import baselines

MODEL = botocore.session.get_session().get_service_model("lambda-microvms")


def error_shape(model, code):
    return next(s for s in model.error_shapes if s.name == code)


def assert_error(client, model, caught, code):
    """The refusal has `code`, the model's status for it, and a fitting body."""
    response = caught.value.response
    assert response["Error"]["Code"] == code
    shape = error_shape(model, code)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == shape.metadata["error"]["httpStatusCode"]
    raw = client.recorder.last
    assert raw["headers"]["x-amzn-errortype"] == code
    body = json.loads(raw["body"])
    # `__type` repeats the code for clients that read it from the body.
    assert body.pop("__type") == code
    assert not shape_check.check(shape, body)
    assert response["Error"]["Message"]
    return response


def ops_with_identifiers():
    """Operations that name a resource in their path and may not find it."""
    for name in MODEL.operation_names:
        op = MODEL.operation_model(name)
        has_label = any(m.serialization.get("location") == "uri" for m in op.input_shape.members.values())
        if has_label and any(e.name == "ResourceNotFoundException" for e in op.error_shapes):
            yield name


@pytest.mark.parametrize("operation", sorted(ops_with_identifiers()))
def test_an_unknown_identifier_is_resource_not_found(client, model, operation):
    params = baselines()[operation]
    with pytest.raises(ClientError) as caught:
        getattr(client, xform_name(operation))(**params)
    assert_error(client, model, caught, "ResourceNotFoundException")


def test_not_found_names_the_resource(client, model):
    with pytest.raises(ClientError) as caught:
        client.get_microvm(microvmIdentifier="microvm-ffffffffffffffffffffffffffffffff")
    response = assert_error(client, model, caught, "ResourceNotFoundException")
    assert response["resourceId"] == "microvm-ffffffffffffffffffffffffffffffff"
    assert response["resourceType"] == "microvm"


@pytest.fixture(scope="module")
def running(client, app_image):
    from conftest import wait_microvm

    microvm_id = client.run_microvm(imageIdentifier="conformance-app")["microvmId"]
    wait_microvm(client, microvm_id)
    yield microvm_id
    client.terminate_microvm(microvmIdentifier=microvm_id)


def test_suspending_a_suspended_microvm_is_a_conflict(client, model, running):
    from conftest import wait_microvm

    client.suspend_microvm(microvmIdentifier=running)
    with pytest.raises(ClientError) as caught:
        client.suspend_microvm(microvmIdentifier=running)
    response = assert_error(client, model, caught, "ConflictException")
    assert response["resourceId"] == running
    wait_microvm(client, running, states=("SUSPENDED",))
    client.resume_microvm(microvmIdentifier=running)
    wait_microvm(client, running)


def test_resuming_a_running_microvm_is_a_conflict(client, model, running):
    with pytest.raises(ClientError) as caught:
        client.resume_microvm(microvmIdentifier=running)
    assert_error(client, model, caught, "ConflictException")


def test_a_second_image_with_the_same_name_is_a_conflict(client, model, running):
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    config = dict(baselines()["CreateMicrovmImage"], name="conformance-app", baseImageArn=base)
    config.pop("clientToken")
    with pytest.raises(ClientError) as caught:
        client.create_microvm_image(**config)
    assert_error(client, model, caught, "ConflictException")


def test_a_client_token_reused_with_other_parameters_is_a_conflict(client, model, running):
    first = client.run_microvm(imageIdentifier="conformance-app", clientToken="reused",
                               maximumDurationInSeconds=60)
    with pytest.raises(ClientError) as caught:
        client.run_microvm(imageIdentifier="conformance-app", clientToken="reused",
                           maximumDurationInSeconds=61)
    assert_error(client, model, caught, "ConflictException")
    client.terminate_microvm(microvmIdentifier=first["microvmId"])


def test_an_inactive_version_is_not_run(client, model, running):
    client.update_microvm_image_version(
        imageIdentifier="conformance-app", imageVersion="1", status="INACTIVE")
    try:
        with pytest.raises(ClientError) as caught:
            client.run_microvm(imageIdentifier="conformance-app")
        assert_error(client, model, caught, "ConflictException")
    finally:
        client.update_microvm_image_version(
            imageIdentifier="conformance-app", imageVersion="1", status="ACTIVE")


def test_an_image_with_live_microvms_is_not_deleted(client, model, running):
    with pytest.raises(ClientError) as caught:
        client.delete_microvm_image(imageIdentifier="conformance-app")
    assert_error(client, model, caught, "ConflictException")


def test_validation_errors_have_the_modeled_status(raw_client, model):
    with pytest.raises(ClientError) as caught:
        raw_client.run_microvm(imageIdentifier="")
    assert_error(raw_client, model, caught, "ValidationException")


def test_the_server_knows_every_modeled_error(test_server_binary, model):
    """The server's error table has every error shape, with its status."""
    import subprocess

    dump = json.loads(subprocess.run([test_server_binary, "--dump-model"], check=True,
                                     capture_output=True, timeout=60).stdout)
    modeled = {s.name: s.metadata["error"]["httpStatusCode"] for s in model.error_shapes}
    assert dump["errors"] == modeled
