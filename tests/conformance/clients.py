"""boto3 clients for the test server, with the raw wire responses recorded."""

import json

import boto3
from botocore.config import Config

REGION = "us-east-1"
SERVICE = "lambda-microvms"
PROFILE = "hearth"


class Recorder:
    """Keeps the last raw HTTP response a client received."""

    def __init__(self):
        self.last = None

    def __call__(self, operation_model, response_dict, **_):
        self.last = {
            "operation": operation_model.name,
            "status": response_dict["status_code"],
            "headers": {k.lower(): v for k, v in response_dict["headers"].items()},
            "body": response_dict["body"],
        }


def make_client(endpoint, parameter_validation=True, profile=PROFILE, region=REGION,
                access_key=None, secret_key=None, signature_version=None):
    """A client for `endpoint`, signing with the `hearth` profile unless keys
    are given; retries are off so that every refusal is seen once."""
    if access_key is not None:
        session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region,
        )
    else:
        session = boto3.session.Session(profile_name=profile, region_name=region)

    options = {"retries": {"total_max_attempts": 1}, "parameter_validation": parameter_validation}
    if signature_version is not None:
        options["signature_version"] = signature_version
    client = session.client(SERVICE, endpoint_url=endpoint, config=Config(**options))

    recorder = Recorder()
    client.meta.events.register(f"before-parse.{SERVICE}", recorder)
    client.recorder = recorder
    return client


def call(client, model, operation, **params):
    """Calls `operation`, then checks the raw response against the model:
    the success status, and the body against the output shape."""
    from botocore import xform_name

    import shape_check

    result = getattr(client, xform_name(operation))(**params)
    raw = client.recorder.last
    op = model.operation_model(operation)
    assert raw["operation"] == operation
    assert raw["status"] == op.http["responseCode"], raw
    if op.output_shape is None or not op.output_shape.members:
        if op.output_shape is None:
            assert raw["body"] == b"", raw
        else:
            assert json.loads(raw["body"]) == {}, raw
    else:
        problems = shape_check.check(op.output_shape, json.loads(raw["body"]))
        assert not problems, f"{operation} response breaks {op.output_shape.name}: {problems}"
    assert raw["headers"].get("x-amzn-requestid"), raw["headers"]
    CALLED.add(operation)
    return result


CALLED = set()
