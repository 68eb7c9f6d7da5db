"""gRPC through baton with a real third-party gRPC stack on both ends (grpcio from PyPI): a
grpcio server as the app behind the inbound sidecar (`app_protocol: http2`), grpcio clients
calling it through the sidecar, and the app's own calls going out through a per-upstream port.

The app's methods take and return raw bytes (no generated code): a proxy sees frames, not
messages. The standard health service comes from grpcio-health-checking.
"""

import base64
import json
import time
from concurrent import futures

import grpc
import pytest
import requests
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from conftest import BIN, Process, free_port, wait_ready

A, SECRET_A = "service-a", "demo-secret-service-a"
B = "service-b"
CHUNK = 1 << 20  # 1 MiB per message
BIG = 100  # messages in the large streams: 100 MiB each way
TRAILER = ("x-custom-trailer", "kept-as-sent")


def cc_token(idp, audience=B):
    rsp = requests.post(
        idp.token_endpoint,
        data={"grant_type": "client_credentials", "audience": audience},
        auth=(A, SECRET_A),
        timeout=5,
    )
    assert rsp.status_code == 200, rsp.text
    return rsp.json()["access_token"]


def claims_of(metadata):
    """The claims the sidecar put in x-baton-claims (base64url JSON), or None."""
    value = dict(metadata).get("x-baton-claims")
    if value is None:
        return None
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


class App:
    """A grpcio server: health, and raw-bytes methods under /demo.Echo/."""

    def __init__(self, upstream_port=None):
        self.seen = []  # (method, metadata) of each call
        self.upstream_port = upstream_port
        app = self

        def record(method, context):
            app.seen.append((method, dict(context.invocation_metadata())))

        def unary(request, context):
            record("Unary", context)
            context.set_trailing_metadata([TRAILER])
            claims = claims_of(context.invocation_metadata())
            return json.dumps({"echo": request.decode(), "claims": claims}).encode()

        def count(request, context):
            record("Count", context)
            context.set_trailing_metadata([TRAILER])
            for i in range(int(request.decode())):
                yield str(i).encode()

        def chat(requests_iter, context):
            record("Chat", context)
            context.set_trailing_metadata([TRAILER])
            for message in requests_iter:
                yield b"re:" + message

        def sink(requests_iter, context):
            record("Sink", context)
            total = sum(len(m) for m in requests_iter)
            return str(total).encode()

        def source(request, context):
            record("Source", context)
            chunk = b"x" * CHUNK
            for _ in range(int(request.decode())):
                yield chunk

        def claims_count(request, context):
            """Server streaming: the caller's claims as seen here, then the numbers 0..n-1."""
            record("ClaimsCount", context)
            context.set_trailing_metadata([TRAILER])
            yield json.dumps(claims_of(context.invocation_metadata())).encode()
            for i in range(int(request.decode())):
                yield str(i).encode()

        def claims_chat(requests_iter, context):
            """Bidirectional: each message back with the claims as seen here."""
            record("ClaimsChat", context)
            context.set_trailing_metadata([TRAILER])
            claims = claims_of(context.invocation_metadata())
            for message in requests_iter:
                yield json.dumps({"echo": message.decode(), "claims": claims}).encode()

        def slow(request, context):
            """Server streaming at a walk: n messages, 0.2 s apart."""
            record("Slow", context)
            context.set_trailing_metadata([TRAILER])
            for i in range(int(request.decode())):
                time.sleep(0.2)
                yield str(i).encode()

        def upstream_md(context):
            token = dict(context.invocation_metadata()).get("authorization")
            return [("authorization", token)] if token else []

        def relay_count(request, context):
            """Server streaming relayed from the upstream's ClaimsCount through the sidecar."""
            record("RelayCount", context)
            with grpc.insecure_channel(f"127.0.0.1:{app.upstream_port}") as ch:
                call = ch.unary_stream("/demo.Echo/ClaimsCount")(
                    request, metadata=upstream_md(context), timeout=10
                )
                for message in call:
                    yield message
                context.set_trailing_metadata(call.trailing_metadata())

        def relay_chat(requests_iter, context):
            """Bidirectional, each message relayed to the upstream's ClaimsChat and back."""
            record("RelayChat", context)
            with grpc.insecure_channel(f"127.0.0.1:{app.upstream_port}") as ch:
                call = ch.stream_stream("/demo.Echo/ClaimsChat")(
                    requests_iter, metadata=upstream_md(context), timeout=10
                )
                for message in call:
                    yield message
                context.set_trailing_metadata(call.trailing_metadata())

        def call_out(request, context):
            """Calls the upstream through the sidecar's outbound port, propagating the token."""
            record("CallOut", context)
            token = dict(context.invocation_metadata()).get("authorization")
            md = [("authorization", token)] if token else []
            with grpc.insecure_channel(f"127.0.0.1:{app.upstream_port}") as ch:
                out, call = ch.unary_unary("/demo.Echo/Unary").with_call(
                    request, metadata=md, timeout=10
                )
            # C's trailing metadata, passed on to B's caller.
            context.set_trailing_metadata(call.trailing_metadata())
            return out

        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Admin": grpc.unary_unary_rpc_method_handler(unary),
            "Count": grpc.unary_stream_rpc_method_handler(count),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
            "Sink": grpc.stream_unary_rpc_method_handler(sink),
            "Source": grpc.unary_stream_rpc_method_handler(source),
            "CallOut": grpc.unary_unary_rpc_method_handler(call_out),
            "ClaimsCount": grpc.unary_stream_rpc_method_handler(claims_count),
            "ClaimsChat": grpc.stream_stream_rpc_method_handler(claims_chat),
            "Slow": grpc.unary_stream_rpc_method_handler(slow),
            "RelayCount": grpc.unary_stream_rpc_method_handler(relay_count),
            "RelayChat": grpc.stream_stream_rpc_method_handler(relay_chat),
        }
        opts = [("grpc.max_receive_message_length", 4 * CHUNK)]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=opts)
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("demo.Echo", handlers),)
        )
        self.health = health.HealthServicer()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self):
        self.server.stop(grace=None)


class GrpcSidecar:
    def __init__(self, tmp, idp, audience, app_port, outbound_ports="", grace="30s"):
        inbound, outbound, admin = free_port(), free_port(), free_port()
        self.inbound, self.admin = inbound, admin
        cfg = tmp / f"sidecar-{audience}.yaml"
        cfg.write_text(
            f"issuer: {idp.issuer}\n"
            f"audience: {audience}\n"
            f"listeners:\n"
            f'  inbound: "127.0.0.1:{inbound}"\n'
            f'  outbound: "127.0.0.1:{outbound}"\n'
            f'  admin: "127.0.0.1:{admin}"\n'
            f"inbound:\n"
            f"  app_protocol: http2\n"
            f'app: "127.0.0.1:{app_port}"\n'
            f"limits:\n"
            f"  max_body_bytes: {2 * CHUNK}\n"
            f"  shutdown_grace: {grace}\n"
            f"routes:\n"
            f"  - name: admin\n"
            f"    path: /demo.Echo/Admin\n"
            f"    scopes: [admin.write]\n"
            f"  - name: stepup\n"
            f"    path: /demo.Echo/StepUp\n"
            f"    acr: [mfa]\n"
            f"  - name: default\n"
            f"    path: /\n" + outbound_ports
        )
        self.process = Process([str(BIN / "baton"), "run", "-c", str(cfg)], tmp / f"{audience}.log")
        wait_ready(f"http://127.0.0.1:{admin}/readyz", self.process.proc, self.process.log)
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{inbound}", options=[("grpc.max_receive_message_length", 4 * CHUNK)]
        )

    def rss_peak_kib(self):
        status = open(f"/proc/{self.process.proc.pid}/status").read()
        return int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])

    def stop(self):
        self.channel.close()
        self.process.stop()


@pytest.fixture
def app():
    a = App()
    yield a
    a.stop()


@pytest.fixture
def sidecar(tmp_path, idp, app):
    s = GrpcSidecar(tmp_path, idp, B, app.port)
    yield s
    s.stop()


def test_health_check_is_serving_through_the_inbound_sidecar(idp, sidecar):
    stub = health_pb2_grpc.HealthStub(sidecar.channel)
    md = [("authorization", f"Bearer {cc_token(idp)}")]
    answer = stub.Check(health_pb2.HealthCheckRequest(service=""), metadata=md, timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_unary_server_streaming_and_bidi_pass_with_claims_and_trailers(idp, app, sidecar):
    md = [("authorization", f"Bearer {cc_token(idp)}"), ("x-baton-claims", "c3Bvb2Y")]
    answer, call = sidecar.channel.unary_unary("/demo.Echo/Unary").with_call(
        b"hello", metadata=md, timeout=10
    )
    body = json.loads(answer)
    assert body["echo"] == "hello"
    assert body["claims"]["sub"] == A and B in body["claims"]["aud"]
    assert TRAILER in call.trailing_metadata()
    assert call.code() == grpc.StatusCode.OK

    stream = sidecar.channel.unary_stream("/demo.Echo/Count")(b"5", metadata=md, timeout=10)
    assert [m for m in stream] == [b"0", b"1", b"2", b"3", b"4"]
    assert TRAILER in stream.trailing_metadata()

    sent = [b"a", b"bb", b"ccc"]
    chat = sidecar.channel.stream_stream("/demo.Echo/Chat")(iter(sent), metadata=md, timeout=10)
    assert list(chat) == [b"re:a", b"re:bb", b"re:ccc"]
    assert TRAILER in chat.trailing_metadata()
    # The app saw the sidecar's claims, never the client's spoofed copy, and the token.
    for method, seen in app.seen:
        assert claims_of(seen)["sub"] == A, method
        assert seen["authorization"].startswith("Bearer ")


def test_missing_or_bad_token_is_unauthenticated(idp, app, sidecar):
    call = sidecar.channel.unary_unary("/demo.Echo/Unary")
    with pytest.raises(grpc.RpcError) as missing:
        call(b"x", timeout=10)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    challenge = dict(missing.value.initial_metadata() or []).get("www-authenticate", "")
    challenge = challenge or dict(missing.value.trailing_metadata()).get("www-authenticate", "")
    assert challenge.startswith("Bearer realm=")
    with pytest.raises(grpc.RpcError) as bad:
        call(b"x", metadata=[("authorization", "Bearer not.a.token")], timeout=10)
    assert bad.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A token for another audience is as bad.
    with pytest.raises(grpc.RpcError) as other:
        call(b"x", metadata=[("authorization", f"Bearer {cc_token(idp, 'resource-api')}")],
             timeout=10)
    assert other.value.code() == grpc.StatusCode.UNAUTHENTICATED
    health_stub = health_pb2_grpc.HealthStub(sidecar.channel)
    with pytest.raises(grpc.RpcError) as probe:
        health_stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert probe.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert app.seen == []


def test_missing_scope_is_permission_denied_and_step_up_unauthenticated(idp, app, sidecar):
    md = [("authorization", f"Bearer {cc_token(idp)}")]
    with pytest.raises(grpc.RpcError) as denied:
        sidecar.channel.unary_unary("/demo.Echo/Admin")(b"x", metadata=md, timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    meta = dict(denied.value.trailing_metadata())
    assert 'scope="admin.write"' in meta.get("www-authenticate", ""), meta
    # Other spellings of the same method reach the same route.
    for path in ["/demo.Echo//Admin", "/demo.Echo/./Admin", "/demo.Echo/%41dmin"]:
        with pytest.raises(grpc.RpcError) as again:
            sidecar.channel.unary_unary(path)(b"x", metadata=md, timeout=10)
        assert again.value.code() in (
            grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT
        ), path
    with pytest.raises(grpc.RpcError) as step_up:
        sidecar.channel.unary_unary("/demo.Echo/StepUp")(b"x", metadata=md, timeout=10)
    assert step_up.value.code() == grpc.StatusCode.UNAUTHENTICATED
    meta = dict(step_up.value.trailing_metadata())
    assert 'error="insufficient_user_authentication"' in meta["www-authenticate"]
    assert 'acr_values="mfa"' in meta["www-authenticate"]
    assert app.seen == []


def test_a_message_over_max_body_bytes_ends_the_call_though_the_stream_may_be_longer(
    idp, sidecar
):
    md = [("authorization", f"Bearer {cc_token(idp)}")]
    sink = sidecar.channel.stream_unary("/demo.Echo/Sink")
    # Five messages at 1 MiB: 5 MiB in all, over max_body_bytes (2 MiB) as a whole, is fine.
    assert int(sink(iter([b"z" * CHUNK] * 5), metadata=md, timeout=30)) == 5 * CHUNK
    # One message of 3 MiB (the app itself takes up to 4 MiB) is refused by the sidecar.
    with pytest.raises(grpc.RpcError) as refused:
        sink(iter([b"z" * (3 * CHUNK)]), metadata=md, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value


def test_100_mib_each_way_with_bounded_sidecar_memory(idp, sidecar):
    md = [("authorization", f"Bearer {cc_token(idp)}")]
    # Warm up: the first call's allocations are not the stream's.
    sidecar.channel.unary_unary("/demo.Echo/Unary")(b"w", metadata=md, timeout=10)
    before = sidecar.rss_peak_kib()
    chunk = b"y" * CHUNK
    total = sidecar.channel.stream_unary("/demo.Echo/Sink")(
        (chunk for _ in range(BIG)), metadata=md, timeout=120
    )
    assert int(total) == BIG * CHUNK
    got = 0
    for message in sidecar.channel.unary_stream("/demo.Echo/Source")(
        str(BIG).encode(), metadata=md, timeout=120
    ):
        got += len(message)
    assert got == BIG * CHUNK
    after = sidecar.rss_peak_kib()
    print(f"sidecar peak RSS: {before} KiB before, {after} KiB after 2 x {BIG} MiB")
    # Flow-control windows bound what a stream holds (a few MiB), not the stream's size.
    assert after - before < 32 * 1024, (before, after)


def user_token_for_b(idp):
    """alice signs in to service-a (code + PKCE), and service-a exchanges her token for B."""
    from test_idp import ACCESS_TYPE, EXCHANGE, sign_in

    _, token, _ = sign_in(idp)
    rsp = requests.post(
        idp.token_endpoint,
        data={"grant_type": EXCHANGE, "subject_token": token["access_token"],
              "subject_token_type": ACCESS_TYPE, "audience": B},
        auth=(A, SECRET_A),
        timeout=5,
    )
    assert rsp.status_code == 200, rsp.text
    return rsp.json()["access_token"]


def test_chain_a_b_c_over_grpc_exchanges_on_each_hop(tmp_path, idp):
    """A (this client) → sidecar B → app B → B's outbound port → sidecar C → app C, all gRPC:
    unary, server-streaming and bidirectional calls; C sees alice with the `grants` and `act` of
    both hops; B's token never reaches C."""
    app_c = App()
    sidecar_c = GrpcSidecar(tmp_path, idp, "service-c", app_c.port)
    port = free_port()
    secret = tmp_path / "b.secret"
    secret.write_text("demo-secret-service-b\n")
    c = f"127.0.0.1:{sidecar_c.inbound}"
    outbound = (
        f"outbound:\n"
        f"  client: {{client_id: service-b, secret_file: {secret}}}\n"
        f"  routes:\n"
        f"    - {{name: c, host: \"{c}\", audience: service-c}}\n"
        f"  ports:\n"
        f"    - {{listen: \"127.0.0.1:{port}\", upstream: \"{c}\", route: c}}\n"
    )
    app_b = App(upstream_port=port)
    sidecar_b = GrpcSidecar(tmp_path, idp, B, app_b.port, outbound)
    try:
        token = user_token_for_b(idp)
        md = [("authorization", f"Bearer {token}")]
        for _ in range(2):  # the second call's exchange comes from the cache
            answer, call = sidecar_b.channel.unary_unary("/demo.Echo/CallOut").with_call(
                b"through the chain", metadata=md, timeout=20
            )
            assert TRAILER in call.trailing_metadata()
            body = json.loads(answer)
            assert body["echo"] == "through the chain"
            claims = body["claims"]
            assert claims["aud"] == "service-c" or claims["aud"] == ["service-c"], claims
            assert claims["account_id"] == "acct-1001", claims
            assert claims["act"]["sub"] == "service-b", claims
            assert claims["act"]["act"]["sub"] == A, claims
            assert "service-b" in claims["grants"] and "service-c" in claims["grants"], claims
        # Server streaming and bidirectional streaming through the same chain: C's first
        # message (or every message) carries the claims C's sidecar verified.
        def at_c(claims):
            assert claims["aud"] in ("service-c", ["service-c"]), claims
            assert claims["sub"] == "alice" and claims["account_id"] == "acct-1001", claims
            assert claims["act"] == {"sub": "service-b", "act": {"sub": A}}, claims
            assert {"service-b", "service-c"} <= set(claims["grants"]), claims

        stream = sidecar_b.channel.unary_stream("/demo.Echo/RelayCount")(
            b"3", metadata=md, timeout=20
        )
        messages = list(stream)
        at_c(json.loads(messages[0]))
        assert messages[1:] == [b"0", b"1", b"2"]
        assert TRAILER in stream.trailing_metadata()
        assert stream.code() == grpc.StatusCode.OK
        chat = sidecar_b.channel.stream_stream("/demo.Echo/RelayChat")(
            iter([b"one", b"two", b"three"]), metadata=md, timeout=20
        )
        answers = [json.loads(m) for m in chat]
        assert [a["echo"] for a in answers] == ["one", "two", "three"]
        for a in answers:
            at_c(a["claims"])
        assert TRAILER in chat.trailing_metadata()
        seen_at_c = [m for name, m in app_c.seen if name in ("Unary",)]
        assert all(m["authorization"] != f"Bearer {token}" for _, m in app_c.seen)
        assert len(seen_at_c) == 2
        # A call to B's outbound port without the caller's token is refused as gRPC reads it.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.RpcError) as refused:
                ch.unary_unary("/demo.Echo/Unary")(b"x", timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert len(app_c.seen) == 4
    finally:
        sidecar_b.stop()
        sidecar_c.stop()
        app_b.stop()
        app_c.stop()


def test_sigterm_during_a_stream_lets_it_finish_within_the_grace(tmp_path, idp, app):
    """SIGTERM while a server stream is mid-way: the stream runs to its end with its trailers,
    new calls are refused, and the sidecar exits within shutdown_grace."""
    sidecar = GrpcSidecar(tmp_path, idp, B, app.port, grace="10s")
    try:
        md = [("authorization", f"Bearer {cc_token(idp)}")]
        stream = sidecar.channel.unary_stream("/demo.Echo/Slow")(b"15", metadata=md, timeout=30)
        assert next(stream) == b"0"
        sidecar.process.proc.terminate()
        rest = list(stream)
        assert rest == [str(i).encode() for i in range(1, 15)]
        assert stream.code() == grpc.StatusCode.OK
        assert TRAILER in stream.trailing_metadata()
        # The stream took about 3 s; the sidecar is gone well within the 10 s grace after it.
        assert sidecar.process.proc.wait(timeout=10) == 0
        with pytest.raises(grpc.RpcError) as after:
            sidecar.channel.unary_unary("/demo.Echo/Unary")(b"x", metadata=md, timeout=5)
        assert after.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        sidecar.stop()
