"""baton-idp login sessions driven by third-party clients: authlib builds the authorization
requests and redeems the codes, `requests` plays the browser (its cookie jar carries the IdP
session after it posts the login form), PyJWT verifies the tokens. Covers prompt=none with and
without a session, RFC 8707 `resource` at /authorize, and RP-initiated logout."""

import re
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import jwt as pyjwt
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

A, SECRET_A = "service-a", "demo-secret-service-a"
REDIRECT = "http://127.0.0.1:8080/callback"
SIGNED_OUT = "http://127.0.0.1:8080/signed-out"
CALENDAR, BUILDS = "https://calendar.example/api", "https://builds.example/api"


def client():
    return OAuth2Session(
        A,
        SECRET_A,
        scope="openid profile",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )


def verify(idp, token, audience, typ="at+jwt"):
    assert pyjwt.get_unverified_header(token)["typ"] == typ
    key = pyjwt.PyJWKClient(idp.discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    return pyjwt.decode(
        token,
        key.key,
        algorithms=["ES256", "RS256"],
        issuer=idp.issuer,
        audience=audience,
        options={"require": ["exp", "iat", "iss", "sub", "aud"]},
    )


class Flow:
    """One authorization request built by authlib (PKCE S256, state, nonce)."""

    def __init__(self, idp, oauth, extra=(), **kw):
        self.verifier = generate_token(64)
        self.state = generate_token(20)
        url, _ = oauth.create_authorization_url(
            idp.discovery["authorization_endpoint"],
            code_verifier=self.verifier,
            nonce=generate_token(20),
            state=self.state,
            **kw,
        )
        # Repeated parameters (RFC 8707 `resource`) are appended as such.
        self.url = url + ("&" + urlencode(list(extra)) if extra else "")


def back_at_client(resp, state):
    """The query of a redirect to the client, after checking state and RFC 9207 iss."""
    assert resp.status_code in (302, 303), resp.text
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT), location
    query = parse_qs(urlparse(location).query)
    assert query["state"] == [state]
    return location, query


def login(idp, browser, flow):
    """Shows the login page in `browser`, posts alice's password; returns the redirect."""
    page = browser.get(flow.url, timeout=5)
    assert page.status_code == 200, page.text
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    resp = browser.post(
        urljoin(idp.issuer, action),
        data={**hidden, "username": "alice", "password": "wonderland-demo"},
        allow_redirects=False,
        timeout=10,
    )
    return back_at_client(resp, flow.state)


def redeem(idp, oauth, flow, location):
    return oauth.fetch_token(
        idp.token_endpoint,
        authorization_response=location,
        code_verifier=flow.verifier,
        state=flow.state,
    )


def test_prompt_none_is_silent_with_a_session_and_login_required_without(idp):
    browser = requests.Session()
    oauth = client()

    # No session yet: no page, login_required back at the redirect URI.
    flow = Flow(idp, oauth, prompt="none")
    resp = browser.get(flow.url, allow_redirects=False, timeout=5)
    _, query = back_at_client(resp, flow.state)
    assert query["error"] == ["login_required"]
    assert query["iss"] == [idp.issuer]

    # Sign in once through the form; the cookie jar now holds the IdP session.
    flow = Flow(idp, oauth)
    location, _ = login(idp, browser, flow)
    first = redeem(idp, oauth, flow, location)
    assert browser.cookies.get("baton-idp")

    # prompt=none with the session (and the ID token as hint): a code, no page.
    oauth = client()
    flow = Flow(idp, oauth, prompt="none", id_token_hint=first["id_token"])
    resp = browser.get(flow.url, allow_redirects=False, timeout=5)
    location, query = back_at_client(resp, flow.state)
    assert "code" in query and "error" not in query
    silent = redeem(idp, oauth, flow, location)
    claims = verify(idp, silent["access_token"], A)
    assert claims["sub"] == "alice" and claims["acr"] == "pwd"
    assert verify(idp, silent["id_token"], A, typ="JWT")["sid"] == verify(
        idp, first["id_token"], A, typ="JWT"
    )["sid"], "same IdP session"

    # Then a refresh of the silently obtained grant, as authlib does it.
    fresh = oauth.refresh_token(idp.token_endpoint, refresh_token=silent["refresh_token"])
    assert verify(idp, fresh["access_token"], A)["sub"] == "alice"


def test_resource_at_authorize_gives_an_aud_array_pyjwt_accepts(idp):
    browser = requests.Session()
    oauth = client()
    flow = Flow(idp, oauth, extra=[("resource", CALENDAR), ("resource", BUILDS)])
    location, _ = login(idp, browser, flow)
    token = redeem(idp, oauth, flow, location)
    for audience in ("resource-api", "builds-api"):
        claims = verify(idp, token["access_token"], audience)
        assert claims["aud"] == ["resource-api", "builds-api"]
    # Not for the client itself any more: PyJWT refuses it for service-a.
    try:
        verify(idp, token["access_token"], A)
        raise AssertionError("aud must not include service-a")
    except pyjwt.InvalidAudienceError:
        pass
    # A refresh narrowed to one resource: aud is a plain string.
    narrowed = oauth.refresh_token(
        idp.token_endpoint, refresh_token=token["refresh_token"], resource=BUILDS
    )
    assert verify(idp, narrowed["access_token"], "builds-api")["aud"] == "builds-api"

    # A resource service-a may not ask for goes back as invalid_target.
    flow = Flow(idp, client(), extra=[("resource", "https://unknown.example/")])
    resp = browser.get(flow.url, allow_redirects=False, timeout=5)
    _, query = back_at_client(resp, flow.state)
    assert query["error"] == ["invalid_target"]


def test_end_session_redirects_with_state_and_ends_the_session(idp):
    assert idp.discovery["end_session_endpoint"] == f"{idp.issuer}/end_session"
    browser = requests.Session()
    oauth = client()
    flow = Flow(idp, oauth)
    location, _ = login(idp, browser, flow)
    token = redeem(idp, oauth, flow, location)

    resp = browser.get(
        idp.discovery["end_session_endpoint"],
        params={
            "id_token_hint": token["id_token"],
            "client_id": A,
            "post_logout_redirect_uri": SIGNED_OUT,
            "state": "after-logout",
        },
        allow_redirects=False,
        timeout=5,
    )
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"{SIGNED_OUT}?state=after-logout"
    assert not browser.cookies.get("baton-idp"), "the cookie is cleared"

    # The session is gone and the refresh token with it.
    flow = Flow(idp, client(), prompt="none")
    resp = browser.get(flow.url, allow_redirects=False, timeout=5)
    assert back_at_client(resp, flow.state)[1]["error"] == ["login_required"]
    refused = requests.post(
        idp.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(A, SECRET_A),
        timeout=5,
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
