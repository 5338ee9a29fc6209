"""A gRPC server of raw bytes on port 8080 (service `hearth.Test`):

- Echo (unary): `<hostname> echo <request>`, then ` proxy-metadata=<n>`,
  the number of `x-aws-proxy-*` metadata keys that reached the app.
- Count (server streaming): the request is a number N; answers `item 0`
  to `item N-1`, one message each.
- Fail (unary): ends with NOT_FOUND and the details `no <request>`.
"""

import socket
from concurrent import futures

import grpc


def echo(request, context):
    seen = sum(1 for key, _ in context.invocation_metadata() if key.startswith("x-aws-proxy"))
    return f"{socket.gethostname()} echo ".encode() + request + f" proxy-metadata={seen}".encode()


def count(request, context):
    for i in range(int(request)):
        yield f"item {i}".encode()


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no " + request.decode())


def main():
    handler = grpc.method_handlers_generic_handler("hearth.Test", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("0.0.0.0:8080")
    server.start()
    print("gRPC on 8080", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
