"""gRPC through a microVM's endpoint with `X-aws-proxy-force-h2`: the real
grpcio client (cleartext HTTP/2 to `hearth serve`'s ingress proxy, the token
and force-h2 as call metadata) against a real gRPC server in the guest
(tests/conformance/grpc_app: Debian's python3-grpcio, raw-bytes methods)."""

import time
import urllib.parse

import grpc
import pytest

from conftest import HERE, app_config, upload, wait_image, wait_microvm, zip_dir

IMAGE = "grpc-app"


@pytest.fixture(scope="module")
def grpc_microvm(client, server, tmp_path_factory):
    archive = zip_dir(HERE / "grpc_app", tmp_path_factory.mktemp("grpc") / "app.zip")
    uri = upload(server, archive, "s3://conformance/grpc-app.zip")
    base = client.list_managed_microvm_images()["items"][0]["imageArn"]
    config = app_config(base, uri)
    del config["hooks"], config["environmentVariables"]
    started = time.monotonic()
    client.create_microvm_image(name=IMAGE, **config)
    got = wait_image(client, IMAGE, timeout=1800)
    # The Debian build (apt-get in a TCG build microVM) is the slow part.
    print(f"grpc-app image built in {time.monotonic() - started:.0f} s")
    assert got["state"] == "CREATED", got
    microvm_id = client.run_microvm(imageIdentifier=IMAGE)["microvmId"]
    wait_microvm(client, microvm_id)
    yield microvm_id
    client.terminate_microvm(microvmIdentifier=microvm_id)


def token(client, microvm_id):
    got = client.create_microvm_auth_token(microvmIdentifier=microvm_id, expirationInMinutes=10,
                                          allowedPorts=[{"port": 8080}])
    return got["authToken"]["X-aws-proxy-auth"]


@pytest.fixture
def channel(server, grpc_microvm):
    """A cleartext HTTP/2 channel to the ingress listener, naming the
    microVM's endpoint as its authority."""
    port = urllib.parse.urlsplit(server.ingress).port
    options = [("grpc.default_authority", f"{grpc_microvm}.localhost:{port}"),
               ("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as chan:
        yield chan


def metadata(tok):
    return (("x-aws-proxy-auth", tok), ("x-aws-proxy-force-h2", "true"))


def test_a_unary_call_is_answered_by_the_guests_grpc_server(client, channel, grpc_microvm):
    echo = channel.unary_unary("/hearth.Test/Echo")
    answer = echo(b"ping", metadata=metadata(token(client, grpc_microvm)), timeout=120)
    # The guest's hostname is the microVM's id; no proxy metadata reached it.
    assert answer == f"{grpc_microvm} echo ping proxy-metadata=0".encode()


def test_a_server_streaming_call_delivers_every_message(client, channel, grpc_microvm):
    count = channel.unary_stream("/hearth.Test/Count")
    answers = list(count(b"20", metadata=metadata(token(client, grpc_microvm)), timeout=120))
    assert answers == [f"item {i}".encode() for i in range(20)]


def test_the_apps_grpc_status_reaches_the_client(client, channel, grpc_microvm):
    fail = channel.unary_unary("/hearth.Test/Fail")
    with pytest.raises(grpc.RpcError) as raised:
        fail(b"such thing", metadata=metadata(token(client, grpc_microvm)), timeout=120)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "no such thing"


def test_a_call_without_a_valid_token_is_refused(client, channel, grpc_microvm):
    echo = channel.unary_unary("/hearth.Test/Echo")
    with pytest.raises(grpc.RpcError) as raised:
        echo(b"ping", metadata=(("x-aws-proxy-force-h2", "true"),), timeout=120)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as raised:
        echo(b"ping", metadata=metadata("forged.token"), timeout=120)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
