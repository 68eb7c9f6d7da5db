"""SPIFFE JWT-SVID client authentication (`jwt-spiffe`) at baton-idp, the SVIDs built by PyJWT
with keys made here by `cryptography`, the trust bundle written as a SPIRE server publishes it."""

import json
import os
import time

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from conftest import BIN, ROOT, Process, free_port, wait_ready

SPIFFE_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
TD, OTHER_TD = "interop.test", "elsewhere.test"
CLIENT = "python-spiffe"
SPIFFE_ID = f"spiffe://{TD}/ns/interop/sa/python"


def _jwk(key, kid, use):
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": use})
    return jwk


class SpiffeIdp:
    def __init__(self, issuer, key, other_key):
        self.issuer = issuer
        self.token_endpoint = f"{issuer}/token"
        self.key = key
        self.other_key = other_key


@pytest.fixture(scope="module")
def spiffe_idp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spiffe-idp")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    x509_key = ec.generate_private_key(ec.SECP256R1())
    bundle = {
        "keys": [_jwk(key, "td-1", "jwt-svid"), _jwk(x509_key, "x509-1", "x509-svid")],
        "spiffe_sequence": 1,
    }
    (tmp / "bundle.json").write_text(json.dumps(bundle))
    (tmp / "other.json").write_text(json.dumps({"keys": [_jwk(other_key, "o-1", "jwt-svid")]}))
    text = (ROOT / "deploy" / "idp.yaml").read_text()
    text = text.replace("issuer: http://127.0.0.1:9000", f"issuer: {issuer}")
    text = text.replace("listen: 127.0.0.1:9000", f"listen: 127.0.0.1:{port}")
    text = text.replace("dir: idp-keys", f"dir: {tmp / 'keys'}")
    text = text.replace("admin_listen: 127.0.0.1:9001", "admin_listen: 127.0.0.1:0")
    assert text.count("\nclients:\n") == 1 and text.count("\ngrants:\n") == 1, "deploy/idp.yaml changed shape"
    client = (
        f"  - id: {CLIENT}\n"
        f"    spiffe_id: {SPIFFE_ID}\n"
        f"    grant_types: [client_credentials]\n"
        f"    default_audience: service-b\n"
    )
    text = text.replace("\nclients:\n", "\nclients:\n" + client)
    text = text.replace("\ngrants:\n", f"\ngrants:\n  - client: {CLIENT}\n    target: service-b\n    scopes: []\n")
    text += (
        "\nspiffe:\n  trust_domains:\n"
        f"    - {{name: {TD}, bundle_file: {tmp / 'bundle.json'}}}\n"
        f"    - {{name: {OTHER_TD}, bundle_file: {tmp / 'other.json'}}}\n"
    )
    cfg = tmp / "idp.yaml"
    cfg.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SECRET")}
    proc = Process([str(BIN / "baton-idp"), "--allow-inline-secrets", "-c", str(cfg)], tmp / "idp.log", env)
    try:
        wait_ready(f"{issuer}/.well-known/openid-configuration", proc.proc, proc.log)
        yield SpiffeIdp(issuer, key, other_key)
    finally:
        proc.stop()


def svid(key, kid, sub=SPIFFE_ID, aud=None, lifetime=300, age=0, aud_of=None):
    now = int(time.time()) - age
    claims = {"sub": sub, "aud": aud if aud is not None else [aud_of], "iat": now, "exp": now + lifetime}
    return pyjwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "typ": "JWT"})


def post(idp, assertion):
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": SPIFFE_TYPE,
        "client_assertion": assertion,
    }
    return requests.post(idp.token_endpoint, data=form, timeout=5)


def test_a_pyjwt_jwt_svid_authenticates_and_may_be_presented_again(spiffe_idp):
    good = svid(spiffe_idp.key, "td-1", aud_of=spiffe_idp.issuer)
    for _ in range(2):  # an agent's cached SVID: no jti, no replay refusal
        ok = post(spiffe_idp, good)
        assert ok.status_code == 200, ok.text
        claims = pyjwt.decode(ok.json()["access_token"], options={"verify_signature": False})
        assert claims["sub"] == CLIENT and claims["aud"] == "service-b"


@pytest.mark.parametrize(
    "case",
    ["other trust domain key", "expired", "wrong aud", "too long", "other workload", "upper-case sub"],
)
def test_bad_svids_get_invalid_client(spiffe_idp, case):
    iss = spiffe_idp.issuer
    key = spiffe_idp.key
    assertion = {
        "other trust domain key": lambda: svid(spiffe_idp.other_key, "td-1", aud_of=iss),
        "expired": lambda: svid(key, "td-1", aud_of=iss, lifetime=60, age=600),
        "wrong aud": lambda: svid(key, "td-1", aud="https://elsewhere.example"),
        "too long": lambda: svid(key, "td-1", aud_of=iss, lifetime=86400),
        "other workload": lambda: svid(key, "td-1", sub=f"spiffe://{TD}/ns/interop/sa/other", aud_of=iss),
        "upper-case sub": lambda: svid(key, "td-1", sub=SPIFFE_ID.upper(), aud_of=iss),
    }[case]()
    rsp = post(spiffe_idp, assertion)
    assert rsp.status_code == 401, rsp.text
    body = rsp.json()
    assert body["error"] == "invalid_client"
    assert body.get("error_description") == "client authentication failed"  # nothing about why
