"""Fixtures for the interop suite: the real baton binaries on free loopback ports.

Everything waits on readiness (discovery document for baton-idp, admin /readyz for a sidecar)
with a bounded deadline; nothing sleeps to synchronise.
"""

import json
import os
import secrets
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("BATON_BIN_DIR", ROOT / "target" / "debug"))
READY_DEADLINE = 20.0
# The foreign issuer the session's baton-idp trusts (`trusted_issuers:`); its key is `corp_key`.
CORP_ISSUER = "https://corp.interop.example/realms/staff"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, log):
    """Poll `url` until it answers 200; fail with the process log if it exits or times out."""
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)  # poll interval, not synchronisation
    pytest.fail(f"{url} not ready after {READY_DEADLINE}s:\n{log.read_text()}")


class Process:
    def __init__(self, argv, log, env=None):
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, env=env)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._out.close()


# --- baton-idp -----------------------------------------------------------------------------

# A client for test 3 (private_key_jwt): its key pair is made here with `cryptography`.
PKJ_CLIENT = "python-pkj"
# A client_credentials client with a default audience; its secret is a generated file.
CC_CLIENT, CC_AUDIENCE = "python-cc", "service-b"


def _pkj_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _public_jwk(private_key, kid, alg):
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    algo = ECAlgorithm if alg == "ES256" else RSAAlgorithm
    jwk = json.loads(algo.to_jwk(private_key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


class Idp:
    def __init__(self, issuer, process, pkj_key, pkj_kid, cc_secret):
        self.issuer = issuer
        self.process = process
        self.pkj_key = pkj_key
        self.pkj_kid = pkj_kid
        self.cc_secret = cc_secret
        self.discovery = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()

    @property
    def token_endpoint(self):
        return self.discovery["token_endpoint"]


@pytest.fixture(scope="session")
def idp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("idp")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    text = (ROOT / "deploy" / "idp.yaml").read_text()
    text = text.replace("issuer: http://127.0.0.1:9000", f"issuer: {issuer}")
    text = text.replace("listen: 127.0.0.1:9000", f"listen: 127.0.0.1:{port}")
    text = text.replace("dir: idp-keys", f"dir: {tmp / 'keys'}")
    text = text.replace("admin_listen: 127.0.0.1:9001", "admin_listen: 127.0.0.1:0")
    assert issuer in text and str(tmp / "keys") in text, "deploy/idp.yaml changed shape"
    assert "admin_listen: 127.0.0.1:0" in text, "deploy/idp.yaml changed shape"
    key, kid = _pkj_key(), "pkj-1"
    jwks = json.dumps({"keys": [_public_jwk(key, kid, "ES256")]})
    cc_secret = secrets.token_urlsafe(24)
    (tmp / "cc.secret").write_text(cc_secret + "\n")
    client = (
        f"  - id: {PKJ_CLIENT}\n"
        f"    jwks: {jwks}\n"
        f"    grant_types: [client_credentials]\n"
        f"  - id: {CC_CLIENT}\n"
        f"    secret_file: {tmp / 'cc.secret'}\n"
        f"    grant_types: [client_credentials]\n"
        f"    default_audience: {CC_AUDIENCE}\n"
    )
    assert text.count("\nclients:\n") == 1, "deploy/idp.yaml changed shape"
    text = text.replace("\nclients:\n", "\nclients:\n" + client)
    assert text.count("\ngrants:\n") == 1, "deploy/idp.yaml changed shape"
    edge = (
        f"  - client: {PKJ_CLIENT}\n    target: service-b\n    scopes: []\n"
        f"  - client: {CC_CLIENT}\n    target: {CC_AUDIENCE}\n    scopes: []\n"
    )
    text = text.replace("\ngrants:\n", "\ngrants:\n" + edge)
    # A foreign issuer baton-idp trusts for tokens service-b exchanges; its key is the test's.
    corp_key = _pkj_key()
    (tmp / "corp-jwks.json").write_text(
        json.dumps({"keys": [_public_jwk(corp_key, "corp-1", "ES256")]})
    )
    text += (
        "\ntrusted_issuers:\n"
        f"  - name: corp\n"
        f"    issuer: {CORP_ISSUER}\n"
        f"    jwks_file: {tmp / 'corp-jwks.json'}\n"
        f"    audiences: [service-b]\n"
        f"    clients: [service-b]\n"
        f"    typ: jwt\n"
        f"    claims: {{roles: realm_access.roles}}\n"
    )
    cfg = tmp / "idp.yaml"
    cfg.write_text(text)
    # The demo clients fall back to their inline secrets only when `secret_env` is unset, and
    # baton-idp takes inline secrets only when asked.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SECRET")}
    argv = [str(BIN / "baton-idp"), "--allow-inline-secrets", "-c", str(cfg)]
    proc = Process(argv, tmp / "idp.log", env)
    try:
        wait_ready(f"{issuer}/.well-known/openid-configuration", proc.proc, proc.log)
        idp = Idp(issuer, proc, key, kid, cc_secret)
        idp.corp_key = corp_key
        yield idp
    finally:
        proc.stop()


# --- echo app ------------------------------------------------------------------------------


class Echo:
    """A tiny app that records each request's path and headers and answers 200."""

    def __init__(self):
        self.seen = []
        echo = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                echo.seen.append({"path": self.path, "headers": dict(self.headers)})
                body = b"hello from the app"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo():
    e = Echo()
    yield e
    e.stop()


# --- baton run (sidecar) -------------------------------------------------------------------


class Sidecar:
    def __init__(self, inbound, admin, process):
        self.url = f"http://127.0.0.1:{inbound}"
        self.admin = f"http://127.0.0.1:{admin}"
        self.process = process


def start_sidecar(tmp, issuer, audience, app_port, extra=""):
    """`extra` is appended to sidecar.yaml, with `{url}` replaced by the inbound listener's URL."""
    inbound, outbound, admin = free_port(), free_port(), free_port()
    cfg = tmp / "sidecar.yaml"
    cfg.write_text(
        f"issuer: {issuer}\n"
        f"audience: {audience}\n"
        f"listeners:\n"
        f'  inbound: "127.0.0.1:{inbound}"\n'
        f'  outbound: "127.0.0.1:{outbound}"\n'
        f'  admin: "127.0.0.1:{admin}"\n'
        f'app: "127.0.0.1:{app_port}"\n'
        f"routes:\n"
        f"  - name: default\n"
        f"    path: /\n"
        + extra.replace("{url}", f"http://127.0.0.1:{inbound}")
    )
    proc = Process([str(BIN / "baton"), "run", "-c", str(cfg)], tmp / "sidecar.log")
    wait_ready(f"http://127.0.0.1:{admin}/readyz", proc.proc, proc.log)
    return Sidecar(inbound, admin, proc)
