"""Every input constraint of the model, broken one at a time with botocore's
own client-side validation off, comes back as a ValidationException that
names the field and the constraint."""

import botocore.session
import pytest
from botocore import xform_name
from botocore.exceptions import ClientError

from inputs import baselines
from violations import all_walks

MODEL = botocore.session.get_session().get_service_model("lambda-microvms")
WALKS = all_walks(MODEL, baselines())
CASES = [case for walk in WALKS for case in walk.cases]


def test_every_constraint_site_has_a_case():
    for walk in WALKS:
        covered = {case.site for case in walk.cases}
        missing = walk.expected_sites - covered
        assert not missing, f"{walk.operation}: no baseline value to break at {sorted(missing)}"


def test_the_baselines_are_valid(raw_client):
    """Each unbroken baseline passes validation (and then finds nothing)."""
    for name, params in baselines().items():
        try:
            getattr(raw_client, xform_name(name))(**params)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            assert code != "ValidationException", f"{name}: {error}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_a_broken_constraint_is_refused_naming_the_field(raw_client, case):
    with pytest.raises(ClientError) as caught:
        getattr(raw_client, xform_name(case.operation))(**case.params)

    response = caught.value.response
    assert response["Error"]["Code"] == "ValidationException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    message = response["Error"]["Message"]
    for text in case.expected():
        assert text in message, f"expected {text!r} in {message!r}"


@pytest.mark.parametrize(
    "operation, params, path, phrase",
    [
        ("RunMicrovm", {"imageIdentifier": "app", "maximumDurationInSeconds": "long"},
         "maximumDurationInSeconds", "Member must be an integer"),
        ("RunMicrovm",
         {"imageIdentifier": "app",
          "idlePolicy": {"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 0, "autoResumeEnabled": "yes"}},
         "idlePolicy.autoResumeEnabled", "Member must be a boolean"),
        ("RunMicrovm", {"imageIdentifier": ["app"]}, "imageIdentifier", "Member must be a string"),
        ("RunMicrovm", {"imageIdentifier": "app", "maximumDurationInSeconds": 1.5},
         "maximumDurationInSeconds", "Member must be an integer"),
        ("ListMicrovms", {"maxResults": "ten"}, "maxResults", "Member must be an integer"),
        ("CreateMicrovmAuthToken",
         {"microvmIdentifier": "m", "expirationInMinutes": 5, "allowedPorts": [{"port": 80, "allPorts": {}}]},
         "allowedPorts.1.member", "Member must have exactly one of its members set"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(raw_client, operation, params, path, phrase):
    with pytest.raises(ClientError) as caught:
        getattr(raw_client, xform_name(operation))(**params)
    message = caught.value.response["Error"]["Message"]
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert f"Value at '{path}' failed to satisfy constraint: {phrase}" in message, message


@pytest.mark.parametrize(
    "operation, params, path",
    [
        ("CreateMicrovmAuthToken",
         {"microvmIdentifier": "m", "expirationInMinutes": 61, "allowedPorts": [{"allPorts": {}}]},
         "expirationInMinutes"),
        ("CreateMicrovmAuthToken",
         {"microvmIdentifier": "m", "expirationInMinutes": 5,
          "allowedPorts": [{"range": {"startPort": 9000, "endPort": 8000}}]},
         "allowedPorts.1.member.range"),
        ("ListMicrovms", {"nextToken": "not-a-token-we-made"}, "nextToken"),
    ],
)
def test_service_rules_beyond_the_model_name_the_field(raw_client, operation, params, path):
    with pytest.raises(ClientError) as caught:
        getattr(raw_client, xform_name(operation))(**params)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert f"Value at '{path}'" in caught.value.response["Error"]["Message"]


def test_hooks_need_a_port(raw_client):
    params = dict(baselines()["CreateMicrovmImage"])
    params["hooks"] = {"microvmHooks": {"run": "ENABLED"}}
    with pytest.raises(ClientError) as caught:
        raw_client.create_microvm_image(**params)
    assert "Value at 'hooks.port'" in caught.value.response["Error"]["Message"]


@pytest.mark.parametrize("connector", [
    "BOGUS",
    "arn:aws:lambda:us-east-1:aws:network-connector:aws-network-connector:BOGUS",
])
def test_an_unknown_ingress_connector_is_refused_naming_the_field(raw_client, connector):
    with pytest.raises(ClientError) as caught:
        raw_client.run_microvm(imageIdentifier="app",
                               ingressNetworkConnectors=["SHELL_INGRESS", connector])
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "Value at 'ingressNetworkConnectors.2.member'" in error["Message"], error
    assert connector in error["Message"]
