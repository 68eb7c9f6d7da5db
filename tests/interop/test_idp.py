"""baton-idp driven by third-party clients: authlib (OAuth 2.0 flows), PyJWT and jwcrypto
(two independent JOSE implementations verifying what it issues)."""

import json
import re
import time
import uuid
from urllib.parse import parse_qs, urljoin, urlparse

import jwt as pyjwt
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.requests_client.oauth2_session import OAuth2ClientAuth
from jwcrypto import jwk as jc_jwk
from jwcrypto import jwt as jc_jwt

from conftest import PKJ_CLIENT

A, B = "service-a", "service-b"
SECRET_A, SECRET_B = "demo-secret-service-a", "demo-secret-service-b"
REDIRECT = "http://127.0.0.1:8080/callback"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def verify_pyjwt(idp, token, audience, typ="at+jwt"):
    """Verify with PyJWT against the JWKS from discovery; returns the claims."""
    header = pyjwt.get_unverified_header(token)
    assert header.get("typ", "JWT") == typ
    assert header.get("kid")
    key = pyjwt.PyJWKClient(idp.discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    return pyjwt.decode(
        token,
        key.key,
        algorithms=["ES256", "RS256"],
        issuer=idp.issuer,
        audience=audience,
        options={"require": ["exp", "iat", "iss", "sub", "aud"]},
    )


def verify_jwcrypto(idp, token, audience):
    """Verify with jwcrypto (an independent JOSE library); returns the claims."""
    keys = jc_jwk.JWKSet.from_json(requests.get(idp.discovery["jwks_uri"], timeout=5).text)
    t = jc_jwt.JWT(
        jwt=token,
        key=keys,
        algs=["ES256", "RS256"],
        check_claims={"iss": idp.issuer, "aud": audience, "exp": None},
    )
    return json.loads(t.claims)


def new_session(scope="openid profile"):
    return OAuth2Session(
        A,
        SECRET_A,
        scope=scope,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )


def authorize(idp, session, username="alice", password="wonderland-demo"):
    """Drive the login form; returns (redirect Location, code_verifier, nonce, state)."""
    verifier = generate_token(64)
    nonce, state = generate_token(20), generate_token(20)
    url, got_state = session.create_authorization_url(
        idp.discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce, state=state
    )
    assert got_state == state
    # A fresh browser: the form is taken only with the pre-login cookie its page set.
    browser = requests.Session()
    page = browser.get(url, timeout=5)
    assert page.status_code == 200, page.text
    assert browser.cookies.get("baton-idp-login")
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    resp = browser.post(
        urljoin(idp.issuer, action),
        data={**hidden, "username": username, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    assert resp.status_code in (302, 303), resp.text
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT)
    query = parse_qs(urlparse(location).query)
    assert query["state"] == [state]
    return location, verifier, nonce, state


def sign_in(idp, **kw):
    """Authorization code + PKCE S256 through the real login form; returns (session, token, nonce)."""
    session = new_session()
    location, verifier, nonce, state = authorize(idp, session, **kw)
    token = session.fetch_token(
        idp.token_endpoint,
        authorization_response=location,
        code_verifier=verifier,
        state=state,
    )
    return session, token, nonce


def test_authlib_client_credentials_verified_by_pyjwt_and_jwcrypto(idp):
    session = OAuth2Session(A, SECRET_A, token_endpoint_auth_method="client_secret_basic")
    token = session.fetch_token(idp.token_endpoint, grant_type="client_credentials", audience=B)
    assert token["token_type"].lower() == "bearer"
    assert "refresh_token" not in token
    claims = verify_pyjwt(idp, token["access_token"], B)
    assert claims["sub"] == A and claims["client_id"] == A
    assert verify_jwcrypto(idp, token["access_token"], B)["sub"] == A


def test_authlib_code_flow_pkce_refresh_and_id_token(idp):
    session, token, nonce = sign_in(idp)
    assert token["token_type"].lower() == "bearer"
    access = verify_pyjwt(idp, token["access_token"], A)
    assert access["sub"]
    assert verify_jwcrypto(idp, token["access_token"], A)["sub"] == access["sub"]
    id_claims = verify_pyjwt(idp, token["id_token"], A, typ="JWT")
    assert id_claims["nonce"] == nonce
    assert id_claims["aud"] == A or A in id_claims["aud"]
    assert verify_jwcrypto(idp, token["id_token"], A)["nonce"] == nonce

    # Refresh with rotation: the new refresh token works, the old one is refused.
    old = token["refresh_token"]
    fresh = session.refresh_token(idp.token_endpoint, refresh_token=old)
    assert fresh["access_token"] != token["access_token"]
    assert verify_pyjwt(idp, fresh["access_token"], A)["sub"] == access["sub"]
    replay = requests.post(
        idp.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": old},
        auth=(A, SECRET_A),
        timeout=5,
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # Reuse detection (RFC 9700 §4.14.2): the replay revoked the whole family, so the token
    # authlib just received is dead too.
    dead = requests.post(
        idp.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]},
        auth=(A, SECRET_A),
        timeout=5,
    )
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"


def test_token_exchange_a_to_b_with_authlib_client_auth(idp):
    _, token, _ = sign_in(idp)
    user = verify_pyjwt(idp, token["access_token"], A)
    resp = requests.post(
        idp.token_endpoint,
        data={
            "grant_type": EXCHANGE,
            "subject_token": token["access_token"],
            "subject_token_type": ACCESS_TYPE,
            "audience": B,
        },
        auth=OAuth2ClientAuth(A, SECRET_A, auth_method="client_secret_basic"),
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    assert "no-store" in resp.headers.get("Cache-Control", "")
    body = resp.json()
    assert body["issued_token_type"] == ACCESS_TYPE
    assert body["token_type"].lower() == "bearer"
    assert "refresh_token" not in body
    for claims in (
        verify_pyjwt(idp, body["access_token"], B),
        verify_jwcrypto(idp, body["access_token"], B),
    ):
        assert claims["sub"] == user["sub"]
        assert claims["aud"] == B or claims["aud"] == [B]
        assert claims["act"]["sub"] == A
        assert B in claims["grants"]


def assertion(idp, jti, aud=None):
    now = int(time.time())
    claims = {
        "iss": PKJ_CLIENT,
        "sub": PKJ_CLIENT,
        "aud": aud or idp.issuer,
        "iat": now,
        "exp": now + 60,
        "jti": jti,
    }
    return pyjwt.encode(claims, idp.pkj_key, algorithm="ES256", headers={"kid": idp.pkj_kid})


def test_private_key_jwt_assertion_from_pyjwt_and_replay_refused(idp):
    form = {
        "grant_type": "client_credentials",
        "audience": B,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion(idp, str(uuid.uuid4())),
    }
    ok = requests.post(idp.token_endpoint, data=form, timeout=5)
    assert ok.status_code == 200, ok.text
    assert verify_pyjwt(idp, ok.json()["access_token"], B)["sub"] == PKJ_CLIENT
    replay = requests.post(idp.token_endpoint, data=form, timeout=5)
    assert replay.status_code == 401, replay.text
    assert replay.json()["error"] == "invalid_client"
    # A fresh jti but signed by a key the IdP does not know for this client.
    from cryptography.hazmat.primitives.asymmetric import ec

    stranger = pyjwt.encode(
        pyjwt.decode(form["client_assertion"], options={"verify_signature": False}) | {"jti": "x1"},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": idp.pkj_kid},
    )
    bad = requests.post(idp.token_endpoint, data=form | {"client_assertion": stranger}, timeout=5)
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "data, auth, status, error",
    [
        ({"grant_type": "client_credentials", "audience": B}, (A, "wrong-secret"), 401, "invalid_client"),
        ({"grant_type": "password", "username": "alice"}, (A, SECRET_A), 400, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT,
          "code_verifier": "a" * 43}, (A, SECRET_A), 400, "invalid_grant"),
        ({"grant_type": "client_credentials", "audience": "service-c"}, (A, SECRET_A), 400, "invalid_target"),
        ({"grant_type": EXCHANGE, "subject_token": "not.a.jwt", "subject_token_type": ACCESS_TYPE,
          "audience": B}, (A, SECRET_A), 400, "invalid_request"),
        ({}, (A, SECRET_A), 400, "invalid_request"),
    ],
    ids=["bad-secret", "unsupported-grant", "unknown-code", "no-edge", "garbage-subject", "no-grant-type"],
)
def test_errors_are_rfc6749_json(idp, data, auth, status, error):
    resp = requests.post(idp.token_endpoint, data=data, auth=auth, timeout=5)
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["error"] == error
    assert "no-store" in resp.headers.get("Cache-Control", "")


def test_idp_log_never_contains_tokens_codes_or_secrets(idp):
    session, token, _ = sign_in(idp)
    session.refresh_token(idp.token_endpoint, refresh_token=token["refresh_token"])
    requests.post(
        idp.token_endpoint,
        data={"grant_type": "client_credentials", "audience": B},
        auth=(A, "wrong-secret-guess"),
        timeout=5,
    )
    log = idp.process.log.read_text()
    assert "user signed in" in log or "signed in" in log, "the IdP log is not where we think"
    for value in (token["access_token"], token["refresh_token"], token["id_token"], SECRET_A,
                  "wrong-secret-guess", "wonderland-demo"):
        assert value not in log
    # No JWT-shaped string (three base64url segments starting with eyJ) anywhere in the log.
    assert not re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+", log)


def introspect(idp, token):
    resp = requests.post(
        idp.discovery["introspection_endpoint"], data={"token": token}, auth=(A, SECRET_A), timeout=5
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_discovery_and_jwks_publish_only_public_signing_keys(idp):
    d = idp.discovery
    assert d["issuer"] == idp.issuer
    assert "S256" in d["code_challenge_methods_supported"]
    assert EXCHANGE in d["grant_types_supported"]
    keys = jc_jwk.JWKSet.from_json(requests.get(d["jwks_uri"], timeout=5).text)
    assert len(keys["keys"]) >= 1
    for key in keys["keys"]:
        assert not key.has_private, "the JWKS exposes private key material"
        exported = json.loads(key.export_public())
        assert exported["kid"] and exported["kty"] in ("EC", "RSA")
        raw = json.loads(key.export(private_key=False))
        assert raw.get("use", "sig") == "sig"
        assert raw.get("alg") in ("ES256", "RS256")


def test_authorization_response_carries_iss_rfc9207(idp):
    location, *_ = authorize(idp, new_session())
    assert parse_qs(urlparse(location).query)["iss"] == [idp.issuer]


def test_request_uri_is_refused_and_discovery_says_so(idp):
    """OIDC Core §6: an authlib-built request with request_uri gets request_uri_not_supported."""
    assert idp.discovery["request_parameter_supported"] is False
    assert idp.discovery["request_uri_parameter_supported"] is False
    session = new_session()
    url, state = session.create_authorization_url(
        idp.discovery["authorization_endpoint"],
        code_verifier=generate_token(64),
        prompt="none",
        request_uri="https://evil.example/req.jwt",
    )
    resp = requests.get(url, allow_redirects=False, timeout=5)
    assert resp.status_code in (302, 303), resp.text
    query = parse_qs(urlparse(resp.headers["Location"]).query)
    assert query["error"] == ["request_uri_not_supported"]
    assert query["state"] == [state]
    assert "code" not in query


def test_login_form_posted_from_another_site_is_refused(idp):
    """Login CSRF: the same form, from the same browser, refused when another site sent it."""
    session = new_session()
    url, _ = session.create_authorization_url(
        idp.discovery["authorization_endpoint"], code_verifier=generate_token(64)
    )
    browser = requests.Session()
    page = browser.get(url, timeout=5)
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
    form = {**hidden, "username": "alice", "password": "wonderland-demo"}
    login = urljoin(idp.issuer, "/login")
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        refused = browser.post(login, data=form, headers=headers, allow_redirects=False, timeout=10)
        assert refused.status_code == 403, headers
        assert "Set-Cookie" not in refused.headers
    stranger = requests.post(login, data=form, allow_redirects=False, timeout=10)
    assert stranger.status_code == 400, "without the browser's pre-login cookie"
    ok = browser.post(login, data=form, headers={"Origin": idp.issuer}, allow_redirects=False, timeout=10)
    assert ok.status_code in (302, 303), ok.text


def test_userinfo_and_introspection_with_authlib_session(idp):
    session, token, _ = sign_in(idp)
    info = session.get(idp.discovery["userinfo_endpoint"], timeout=5)
    assert info.status_code == 200, info.text
    sub = verify_pyjwt(idp, token["access_token"], A)["sub"]
    assert info.json()["sub"] == sub
    seen = introspect(idp, token["access_token"])
    assert seen["active"] is True and seen["sub"] == sub
    assert introspect(idp, "not-a-token") == {"active": False}
    anonymous = requests.get(idp.discovery["userinfo_endpoint"], timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")


def test_code_replay_refused_and_revokes_what_it_issued(idp):
    session = new_session()
    location, verifier, _, state = authorize(idp, session)
    first = session.fetch_token(
        idp.token_endpoint, authorization_response=location, code_verifier=verifier, state=state
    )
    assert introspect(idp, first["access_token"])["active"] is True
    code = parse_qs(urlparse(location).query)["code"][0]
    replay = requests.post(
        idp.token_endpoint,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
              "code_verifier": verifier},
        auth=(A, SECRET_A),
        timeout=5,
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert introspect(idp, first["access_token"])["active"] is False


def test_pkce_wrong_verifier_refused(idp):
    session = new_session()
    location, _, _, state = authorize(idp, session)
    code = parse_qs(urlparse(location).query)["code"][0]
    resp = requests.post(
        idp.token_endpoint,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
              "code_verifier": generate_token(64)},
        auth=(A, SECRET_A),
        timeout=5,
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"


def test_exchanged_token_accepted_by_service_b_sidecar_user_token_refused(idp, echo, tmp_path):
    from conftest import start_sidecar

    _, token, _ = sign_in(idp)
    resp = requests.post(
        idp.token_endpoint,
        data={"grant_type": EXCHANGE, "subject_token": token["access_token"],
              "subject_token_type": ACCESS_TYPE, "audience": B},
        auth=OAuth2ClientAuth(A, SECRET_A, auth_method="client_secret_basic"),
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    sidecar = start_sidecar(tmp_path, idp.issuer, B, echo.port)
    try:
        url = f"{sidecar.url}/hello"
        refused = requests.get(url, headers={"Authorization": f"Bearer {token['access_token']}"},
                               timeout=10)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
        assert echo.seen == []
        ok = requests.get(url, headers={"Authorization": f"Bearer {resp.json()['access_token']}"},
                          timeout=10)
        assert ok.status_code == 200, ok.text
        assert len(echo.seen) == 1
    finally:
        sidecar.process.stop()
