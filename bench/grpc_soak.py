"""The gRPC soak's app and load (bench/grpc-soak.sh): a grpcio server with a server-streaming and a
bidirectional method (raw bytes, no generated code), and a client that calls them through the
sidecar at a fixed pace until the time is up.

  python grpc_soak.py serve PORT
  python grpc_soak.py load SIDECAR_PORT TOKEN SECONDS CALLS_PER_S

The load alternates a server stream (STREAM_MSGS messages of MSG_BYTES) and a bidirectional
stream (the same count each way), one call at a time, paced to CALLS_PER_S, and prints a line
per 60 s and a summary; any failed call is counted and printed once per kind.
"""

import sys
import time
from concurrent import futures

import grpc

STREAM_MSGS = 50
MSG_BYTES = 16 * 1024


def serve(port):
    chunk = b"s" * MSG_BYTES

    def source(request, context):
        for _ in range(int(request.decode())):
            yield chunk

    def echo(requests_iter, context):
        for message in requests_iter:
            yield message

    handlers = {
        "Source": grpc.unary_stream_rpc_method_handler(source),
        "Echo": grpc.stream_stream_rpc_method_handler(echo),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("soak.Svc", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def load(port, token, seconds, rate):
    md = [("authorization", f"Bearer {token}")]
    chunk = b"c" * MSG_BYTES
    ok = failed = 0
    errors = set()
    start = time.monotonic()
    next_report = start + 60
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        source = ch.unary_stream("/soak.Svc/Source")
        echo = ch.stream_stream("/soak.Svc/Echo")
        i = 0
        while time.monotonic() - start < seconds:
            due = start + i / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            try:
                if i % 2 == 0:
                    got = sum(len(m) for m in source(str(STREAM_MSGS).encode(), metadata=md, timeout=30))
                else:
                    got = sum(len(m) for m in echo(iter([chunk] * STREAM_MSGS), metadata=md, timeout=30))
                if got != STREAM_MSGS * MSG_BYTES:
                    raise RuntimeError(f"short stream: {got} bytes")
                ok += 1
            except (grpc.RpcError, RuntimeError) as e:
                failed += 1
                kind = e.code().name if isinstance(e, grpc.RpcError) else str(e)
                if kind not in errors:
                    errors.add(kind)
                    print(f"call {i} failed: {kind}", flush=True)
            i += 1
            if time.monotonic() >= next_report:
                print(f"{int(time.monotonic() - start)} s: {ok} calls ok, {failed} failed", flush=True)
                next_report += 60
    mib = ok * STREAM_MSGS * MSG_BYTES / (1 << 20)
    print(f"done: {ok} streaming calls ok ({mib:.0f} MiB through the sidecar), {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        sys.exit(load(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])))
