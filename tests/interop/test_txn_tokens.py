"""Transaction Tokens from baton-idp, driven by authlib's client and verified by PyJWT and
jwcrypto: the draft's header and claims, `token_type` N_A, and replacement through authlib."""

import json

import jwt as pyjwt
import requests
from authlib.integrations.requests_client import OAuth2Session
from jwcrypto import jwk as jc_jwk
from jwcrypto import jwt as jc_jwt

from test_idp import A, B, SECRET_A, SECRET_B, sign_in

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TXN_TYPE = "urn:ietf:params:oauth:token-type:txn_token"
TRUST_DOMAIN = "https://baton.example/trust-domain"


def ask(idp, client, secret, subject, subject_type, **extra):
    """A Txn-Token request through authlib's OAuth2Session (client_secret_basic)."""
    session = OAuth2Session(client, secret, token_endpoint_auth_method="client_secret_basic")
    return session.fetch_token(
        idp.token_endpoint,
        grant_type=EXCHANGE,
        requested_token_type=TXN_TYPE,
        audience=TRUST_DOMAIN,
        subject_token=subject,
        subject_token_type=subject_type,
        **extra,
    )


def verify_both(idp, token):
    """The token verified by PyJWT and by jwcrypto; both must agree on the claims."""
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "txntoken+jwt" and header["kid"]
    key = pyjwt.PyJWKClient(idp.discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    a = pyjwt.decode(
        token,
        key.key,
        algorithms=["ES256", "RS256"],
        issuer=idp.issuer,
        audience=TRUST_DOMAIN,
        options={"require": ["exp", "iat", "aud", "sub", "txn", "scope"]},
    )
    keys = jc_jwk.JWKSet.from_json(requests.get(idp.discovery["jwks_uri"], timeout=5).text)
    t = jc_jwt.JWT(
        jwt=token,
        key=keys,
        algs=["ES256", "RS256"],
        check_claims={"iss": idp.issuer, "aud": TRUST_DOMAIN, "exp": None},
    )
    b = json.loads(t.claims)
    assert a == b
    return a


def test_authlib_gets_a_txn_token_that_pyjwt_and_jwcrypto_verify(idp):
    _, user, _ = sign_in(idp)
    body = ask(
        idp,
        A,
        SECRET_A,
        user["access_token"],
        ACCESS_TYPE,
        scope="profile",
        request_details=json.dumps({"action": "checkout"}),
        request_context=json.dumps({"req_ip": "192.0.2.1"}),
    )
    assert body["token_type"] == "N_A"
    assert body["issued_token_type"] == TXN_TYPE
    assert "refresh_token" not in body
    claims = verify_both(idp, body["access_token"])
    assert claims["sub"] == "alice"
    assert claims["scope"] == "profile"
    assert claims["req_wl"] == A
    assert claims["tctx"] == {"action": "checkout"}
    assert claims["rctx"] == {"req_ip": "192.0.2.1"}
    assert claims["exp"] - claims["iat"] <= 300
    # service-b replaces it through authlib: same txn and sub, narrower scope, chained req_wl.
    replaced = ask(idp, B, SECRET_B, body["access_token"], TXN_TYPE, scope="profile")
    again = verify_both(idp, replaced["access_token"])
    assert (again["txn"], again["sub"], again["aud"]) == (claims["txn"], "alice", TRUST_DOMAIN)
    assert again["req_wl"] == f"{A},{B}"


def test_widening_a_replacement_or_an_unlisted_client_is_refused(idp):
    _, user, _ = sign_in(idp)
    body = ask(idp, A, SECRET_A, user["access_token"], ACCESS_TYPE, scope="profile")
    auth = (B, SECRET_B)
    resp = requests.post(
        idp.token_endpoint,
        data={
            "grant_type": EXCHANGE,
            "requested_token_type": TXN_TYPE,
            "audience": TRUST_DOMAIN,
            "subject_token": body["access_token"],
            "subject_token_type": TXN_TYPE,
            "scope": "openid profile",
        },
        auth=auth,
        timeout=5,
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope", resp.text
    resp = requests.post(
        idp.token_endpoint,
        data={
            "grant_type": EXCHANGE,
            "requested_token_type": TXN_TYPE,
            "audience": TRUST_DOMAIN,
            "subject_token": user["access_token"],
            "subject_token_type": ACCESS_TYPE,
            "scope": "profile",
        },
        auth=("builds-api", "demo-secret-builds-api"),
        timeout=5,
    )
    assert resp.status_code in (400, 401) and resp.json()["error"] == "unauthorized_client", resp.text
