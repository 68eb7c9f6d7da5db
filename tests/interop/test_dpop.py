"""DPoP (RFC 9449) with outside libraries: proofs built with PyJWT (ES256, RS256, EdDSA keys
from `cryptography`) and jwcrypto (EdDSA) accepted at baton-idp's token endpoint and at an edge sidecar; the bound
token verified with PyJWT and jwcrypto, its `cnf.jkt` the RFC 7638 thumbprint jwcrypto
computes for the proof key."""

import base64
import hashlib
import json
import time
import uuid

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto import jwk as jc_jwk
from jwcrypto import jwt as jc_jwt
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from conftest import CC_AUDIENCE, CC_CLIENT, start_sidecar

KEYS = {
    "ES256": (lambda: ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
    "RS256": (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
    "EdDSA": (lambda: ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm),
}


class Client:
    """A DPoP client: one key pair, a PyJWT-signed proof per request."""

    def __init__(self, alg):
        make, algo = KEYS[alg]
        self.alg = alg
        self.key = make()
        self.jwk = json.loads(algo.to_jwk(self.key.public_key()))

    def proof(self, method, url, token=None, iat=None):
        claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": iat or int(time.time())}
        if token is not None:
            digest = hashlib.sha256(token.encode()).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        headers = {"typ": "dpop+jwt", "jwk": self.jwk}
        return pyjwt.encode(claims, self.key, algorithm=self.alg, headers=headers)

    def thumbprint(self):
        return jc_jwk.JWK(**self.jwk).thumbprint()


def bound_token(idp, client):
    rsp = requests.post(
        idp.token_endpoint,
        auth=(CC_CLIENT, idp.cc_secret),
        data={"grant_type": "client_credentials"},
        headers={"DPoP": client.proof("POST", idp.token_endpoint)},
        timeout=10,
    )
    assert rsp.status_code == 200, rsp.text
    body = rsp.json()
    assert body["token_type"] == "DPoP"
    return body["access_token"]


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_pyjwt_proofs_get_bound_tokens_verified_by_pyjwt_and_jwcrypto(idp, alg):
    client = Client(alg)
    token = bound_token(idp, client)
    jwks_uri = idp.discovery["jwks_uri"]
    signing_key = pyjwt.PyJWKClient(jwks_uri).get_signing_key_from_jwt(token)
    claims = pyjwt.decode(token, signing_key.key, algorithms=["ES256", "RS256"], audience=CC_AUDIENCE, issuer=idp.issuer)
    assert claims["cnf"]["jkt"] == client.thumbprint()
    keyset = jc_jwk.JWKSet.from_json(requests.get(jwks_uri, timeout=5).text)
    verified = json.loads(jc_jwt.JWT(jwt=token, key=keyset).claims)
    assert verified["cnf"]["jkt"] == client.thumbprint()
    assert alg in idp.discovery["dpop_signing_alg_values_supported"]


def test_replayed_or_misdirected_pyjwt_proofs_are_invalid_dpop_proof(idp):
    client = Client("ES256")
    proof = client.proof("POST", idp.token_endpoint)
    for attempt in range(2):
        rsp = requests.post(
            idp.token_endpoint,
            auth=(CC_CLIENT, idp.cc_secret),
            data={"grant_type": "client_credentials"},
            headers={"DPoP": proof},
            timeout=10,
        )
        assert rsp.status_code == (200 if attempt == 0 else 400), rsp.text
    assert rsp.json()["error"] == "invalid_dpop_proof"
    for method, url in [("GET", idp.token_endpoint), ("POST", idp.issuer + "/introspect")]:
        rsp = requests.post(
            idp.token_endpoint,
            auth=(CC_CLIENT, idp.cc_secret),
            data={"grant_type": "client_credentials"},
            headers={"DPoP": client.proof(method, url)},
            timeout=10,
        )
        assert (rsp.status_code, rsp.json()["error"]) == (400, "invalid_dpop_proof")


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_the_edge_sidecar_takes_a_pyjwt_proof_once(idp, echo, tmp_path, alg):
    extra = "dpop:\n  mode: required\n  external_url: {url}\n"
    sidecar = start_sidecar(tmp_path, idp.issuer, CC_AUDIENCE, echo.port, extra)
    try:
        client = Client(alg)
        token = bound_token(idp, client)
        url = sidecar.url + "/hello"
        proof = client.proof("GET", url, token)
        auth = {"Authorization": f"DPoP {token}", "DPoP": proof}
        rsp = requests.get(url + "?q=1", headers=auth, timeout=10)
        assert rsp.status_code == 200, rsp.text
        assert "dpop" not in {k.lower() for k in echo.seen[-1]["headers"]}
        # Replayed, as a bearer token, from another key, for another path.
        rsp = requests.get(url, headers=auth, timeout=10)
        assert rsp.status_code == 401
        assert rsp.headers["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"')
        rsp = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert rsp.status_code == 401
        assert rsp.headers["WWW-Authenticate"].startswith('DPoP error="invalid_token"')
        other = Client(alg).proof("GET", url, token)
        rsp = requests.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": other}, timeout=10)
        assert rsp.status_code == 401
        elsewhere = client.proof("GET", sidecar.url + "/other", token)
        rsp = requests.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": elsewhere}, timeout=10)
        assert rsp.status_code == 401
        assert len(echo.seen) == 1
    finally:
        sidecar.process.stop()


class JwcryptoClient:
    """A DPoP client whose Ed25519 key and proofs are jwcrypto's."""

    def __init__(self):
        self.key = jc_jwk.JWK.generate(kty="OKP", crv="Ed25519")
        self.jwk = json.loads(self.key.export_public())
        assert "d" not in self.jwk

    def proof(self, method, url, token=None):
        claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time())}
        if token is not None:
            digest = hashlib.sha256(token.encode()).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        proof = jc_jwt.JWT(header={"typ": "dpop+jwt", "alg": "EdDSA", "jwk": self.jwk}, claims=claims)
        proof.make_signed_token(self.key)
        return proof.serialize()

    def thumbprint(self):
        return self.key.thumbprint()


def test_a_jwcrypto_eddsa_proof_binds_at_the_idp_and_passes_the_edge_once(idp, echo, tmp_path):
    extra = "dpop:\n  mode: required\n  external_url: {url}\n"
    sidecar = start_sidecar(tmp_path, idp.issuer, CC_AUDIENCE, echo.port, extra)
    try:
        client = JwcryptoClient()
        token = bound_token(idp, client)
        assert pyjwt.decode(token, options={"verify_signature": False})["cnf"]["jkt"] == client.thumbprint()
        url = sidecar.url + "/hello"
        auth = {"Authorization": f"DPoP {token}", "DPoP": client.proof("GET", url, token)}
        rsp = requests.get(url, headers=auth, timeout=10)
        assert rsp.status_code == 200, rsp.text
        rsp = requests.get(url, headers=auth, timeout=10)
        assert rsp.status_code == 401
        assert rsp.headers["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"')
        assert len(echo.seen) == 1
    finally:
        sidecar.process.stop()
