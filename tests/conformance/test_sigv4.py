"""Requests that do not carry a valid SigV4 signature are refused the way
AWS refuses them: no signature, an unknown key, a wrong secret, a body
changed after signing, a clock 20 minutes off, another region."""

import datetime
from unittest import mock

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from clients import make_client


def refusal(call):
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def keys(server):
    import json

    return json.loads((server.data_dir / "api-credentials.json").read_text())


def test_a_signed_request_is_accepted(client):
    assert "items" in client.list_microvms()


def test_an_unsigned_request_is_refused(server):
    unsigned = make_client(server.endpoint, signature_version=UNSIGNED)
    code, status, _ = refusal(unsigned.list_microvms)
    assert (code, status) == ("MissingAuthenticationTokenException", 403)


def test_an_unknown_access_key_is_refused(server):
    stranger = make_client(server.endpoint, access_key="AKIAUNKNOWNUNKNOWN00", secret_key="x" * 40)
    code, status, _ = refusal(stranger.list_microvms)
    assert (code, status) == ("UnrecognizedClientException", 403)


def test_a_wrong_secret_is_refused(server):
    wrong = make_client(server.endpoint, access_key=keys(server)["accessKeyId"], secret_key="w" * 40)
    code, status, message = refusal(wrong.list_microvms)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert "signature we calculated does not match" in message


def test_a_body_changed_after_signing_is_refused(server):
    signed = make_client(server.endpoint)

    def tamper(request, **_):
        # Same length, so Content-Length still fits: only the signature can tell.
        request.body = request.body.replace(b'"maximumDurationInSeconds": 100', b'"maximumDurationInSeconds": 900')

    signed.meta.events.register("before-send.lambda-microvms.RunMicrovm", tamper)
    code, status, _ = refusal(lambda: signed.run_microvm(imageIdentifier="x", maximumDurationInSeconds=100))
    assert (code, status) == ("InvalidSignatureException", 403)


def signed_at(offset):
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + offset
    return mock.patch("botocore.auth.get_current_datetime", return_value=now)


def test_a_request_signed_twenty_minutes_ago_is_refused(server):
    stale = make_client(server.endpoint)
    with signed_at(datetime.timedelta(minutes=-20)):
        code, status, message = refusal(stale.list_microvms)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("Signature expired: ")


def test_a_request_signed_twenty_minutes_ahead_is_refused(server):
    early = make_client(server.endpoint)
    with signed_at(datetime.timedelta(minutes=20)):
        code, status, message = refusal(early.list_microvms)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("Signature not yet current: ")


def test_a_request_signed_a_little_off_is_accepted(server):
    skewed = make_client(server.endpoint)
    with signed_at(datetime.timedelta(minutes=-10)):
        assert "items" in skewed.list_microvms()


def test_a_request_signed_for_another_region_is_refused(server):
    elsewhere = make_client(server.endpoint, region="eu-west-1")
    code, status, message = refusal(elsewhere.list_microvms)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert "region" in message


def test_labels_with_reserved_characters_are_signed_like_botocore(client):
    """ARNs in the path are percent-encoded twice in the canonical request."""
    code, status, _ = refusal(lambda: client.list_tags(
        Resource="arn:aws:lambda:us-east-1:000000000000:microvm-image:missing"))
    assert (code, status) == ("ResourceNotFoundException", 404)
