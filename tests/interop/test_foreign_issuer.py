"""A `baton run` sidecar in front of an issuer nobody here wrote. The issuer is a
Python http.server (discovery + JWKS); its keys come from `cryptography`, its tokens from PyJWT.
Valid tokens reach the app with the claims header; every forged or misaddressed one is a 401
`invalid_token` challenge and the app sees nothing."""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import Echo, _public_jwk, start_sidecar

AUDIENCE = "orders"
CLAIMS_HEADER = "x-baton-claims"


class ForeignIssuer:
    """Discovery and JWKS for one EC and one RSA key; `mint` signs access tokens with PyJWT."""

    def __init__(self):
        self.keys = {
            "ES256": ("ec-1", ec.generate_private_key(ec.SECP256R1())),
            "RS256": ("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        }
        jwks = json.dumps(
            {"keys": [_public_jwk(k, kid, alg) for alg, (kid, k) in self.keys.items()]}
        ).encode()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps(
                        {
                            "issuer": issuer.issuer,
                            "jwks_uri": f"{issuer.issuer}/jwks",
                            "token_endpoint": f"{issuer.issuer}/token",
                            "authorization_endpoint": f"{issuer.issuer}/authorize",
                            "response_types_supported": ["code"],
                            "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
                        }
                    ).encode()
                elif self.path == "/jwks":
                    body = jwks
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def claims(self, **over):
        now = int(time.time())
        c = {
            "iss": self.issuer,
            "sub": "user-42",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
            "client_id": "python-client",
            "scope": "read",
        }
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def mint(self, alg="ES256", typ="at+jwt", key=None, kid=None, **over):
        own_kid, own_key = self.keys[alg]
        return pyjwt.encode(
            self.claims(**over),
            key or own_key,
            algorithm=alg,
            headers={"typ": typ, "kid": kid or own_kid},
        )

    def public_pem(self, alg="RS256"):
        return (
            self.keys[alg][1]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header, claims, signature=b""):
    """A JWT assembled by hand, for shapes PyJWT refuses to produce (alg none, HMAC with a PEM)."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


@pytest.fixture(scope="module")
def foreign():
    f = ForeignIssuer()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def app():
    e = Echo()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def module_sidecar(foreign, app, tmp_path_factory):
    s = start_sidecar(tmp_path_factory.mktemp("sidecar"), foreign.issuer, AUDIENCE, app.port)
    yield s
    s.process.stop()


@pytest.fixture
def echo(app):
    """The module's app with an empty record, so each test sees only its own requests."""
    app.seen.clear()
    return app


@pytest.fixture
def sidecar(module_sidecar, echo):
    # One sidecar per module (start-up dominates the suite's time); refusals leave no state.
    return module_sidecar


def call(sidecar, token):
    return requests.get(
        f"{sidecar.url}/orders/7", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


@pytest.mark.parametrize(
    "alg, typ, aud",
    [
        ("ES256", "at+jwt", AUDIENCE),
        ("RS256", "at+jwt", AUDIENCE),
        ("ES256", "application/at+jwt", AUDIENCE),
        ("ES256", "at+jwt", ["billing", AUDIENCE]),
    ],
    ids=["es256", "rs256", "application-at+jwt", "aud-array"],
)
def test_valid_foreign_token_reaches_app_with_claims(foreign, sidecar, echo, alg, typ, aud):
    resp = call(sidecar, foreign.mint(alg=alg, typ=typ, aud=aud))
    assert resp.status_code == 200, resp.text
    assert resp.text == "hello from the app"
    assert len(echo.seen) == 1
    headers = {k.lower(): v for k, v in echo.seen[0]["headers"].items()}
    raw = headers[CLAIMS_HEADER]
    claims = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    assert claims["sub"] == "user-42"
    assert claims["iss"] == foreign.issuer
    # A client-supplied copy of the header never reaches the app.
    echo.seen.clear()
    forged = b64(json.dumps({"sub": "admin"}).encode())
    resp = requests.get(
        f"{sidecar.url}/orders/7",
        headers={"Authorization": f"Bearer {foreign.mint(alg=alg)}", CLAIMS_HEADER: forged},
        timeout=10,
    )
    assert resp.status_code == 200
    headers = {k.lower(): v for k, v in echo.seen[0]["headers"].items()}
    assert headers[CLAIMS_HEADER] != forged


def tamper(token):
    """Same signature, payload with a different subject."""
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    return f"{header}.{b64(json.dumps(claims).encode())}.{sig}"


def bad_tokens(f):
    now = int(time.time())
    hs_secret = f.public_pem("RS256")
    hs_header = {"alg": "HS256", "typ": "at+jwt", "kid": f.keys["RS256"][0]}
    hs_claims = f.claims()
    signing_input = f"{b64(json.dumps(hs_header).encode())}.{b64(json.dumps(hs_claims).encode())}"
    hs_sig = hmac.new(hs_secret, signing_input.encode(), hashlib.sha256).digest()
    return {
        "expired": f.mint(iat=now - 900, exp=now - 600),
        "wrong-aud": f.mint(aud="someone-else"),
        "wrong-iss": f.mint(iss=f.issuer + "/evil"),
        "alg-none": handmade({"alg": "none", "typ": "at+jwt", "kid": f.keys["ES256"][0]}, f.claims()),
        "hs256-public-key-as-secret": f"{signing_input}.{b64(hs_sig)}",
        "unknown-kid": f.mint(kid="nobody-knows-me"),
        "typ-jwt": f.mint(typ="JWT"),
        "typ-absent": f.mint(typ=None),
        "not-yet-valid": f.mint(nbf=now + 600),
        "no-exp": f.mint(exp=None),
        "issued-in-future": f.mint(iat=now + 600, exp=now + 900),
        "crit-header": pyjwt.encode(
            f.claims(), f.keys["ES256"][1], algorithm="ES256",
            headers={"typ": "at+jwt", "kid": f.keys["ES256"][0], "crit": ["exp"], "exp": now + 60},
        ),
        "aud-array-without-us": f.mint(aud=["billing", "shipping"]),
        "tampered-payload": tamper(f.mint()),
        "other-key-same-kid": f.mint(key=ec.generate_private_key(ec.SECP256R1())),
        "rsa-signed-as-es256-kid": f.mint(
            alg="RS256", key=f.keys["RS256"][1], kid=f.keys["ES256"][0]
        ),
    }


BAD = [
    "expired",
    "wrong-aud",
    "wrong-iss",
    "alg-none",
    "hs256-public-key-as-secret",
    "unknown-kid",
    "typ-jwt",
    "typ-absent",
    "not-yet-valid",
    "no-exp",
    "issued-in-future",
    "crit-header",
    "aud-array-without-us",
    "tampered-payload",
    "other-key-same-kid",
    "rsa-signed-as-es256-kid",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_foreign_token_is_401_invalid_token(foreign, sidecar, echo, case):
    token = bad_tokens(foreign)[case]
    resp = call(sidecar, token)
    assert resp.status_code == 401, resp.text
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert 'error="invalid_token"' in challenge
    assert token not in resp.text and token not in challenge
    assert echo.seen == []


def test_sidecar_log_never_contains_refused_tokens(foreign, sidecar, echo):
    tokens = bad_tokens(foreign)
    for token in tokens.values():
        assert call(sidecar, token).status_code == 401
    log = sidecar.process.log.read_text()
    assert log, "the sidecar log is empty: nothing was checked"
    for token in tokens.values():
        assert token not in log
        assert token.split(".")[2] not in log or not token.split(".")[2]


# --- two issuers at one sidecar, and a foreign user token exchanged at baton-idp ----------


@pytest.fixture(scope="module")
def second():
    f = ForeignIssuer()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def two_issuer_sidecar(foreign, second, app, tmp_path_factory):
    """`foreign` is the primary issuer; `second` (Keycloak-like: typ JWT, nested roles) is
    accepted on GET next to it, and nowhere else."""
    # Appended to the default route (path /): GET takes both issuers, another method goes on to
    # a route that names none (the primary's only).
    extra = (
        "    methods: [GET]\n"
        "    issuers: [primary, corp]\n"
        "  - name: writes\n"
        "    path: /\n"
        "issuers:\n"
        "  - name: corp\n"
        f"    issuer: {second.issuer}\n"
        f"    audiences: [{AUDIENCE}]\n"
        "    typ: jwt\n"
        "    claims: {roles: realm_access.roles}\n"
    )
    s = start_sidecar(tmp_path_factory.mktemp("two"), foreign.issuer, AUDIENCE, app.port, extra)
    yield s
    s.process.stop()


def seen_claims(echo):
    header = echo.seen[-1]["headers"][CLAIMS_HEADER]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))


def test_two_issuers_each_accepted_where_the_route_names_it(foreign, second, two_issuer_sidecar, echo):
    url = two_issuer_sidecar.url
    primary = foreign.mint()
    corp = second.mint(typ="JWT", realm_access={"roles": ["admin"]})
    def get(path, t, method="GET"):
        auth = {"Authorization": f"Bearer {t}"}
        return requests.request(method, f"{url}{path}", headers=auth, timeout=10)

    assert get("/orders/1", primary).status_code == 200
    r = get("/orders/1", corp)
    assert r.status_code == 200, r.text
    assert seen_claims(echo)["roles"] == ["admin"]
    assert seen_claims(echo)["iss"] == second.issuer
    # The route that names no issuer: the primary's only.
    # The app (GET only) answers 501: the request passed the sidecar.
    assert get("/orders/1", primary, "DELETE").status_code == 501
    r = get("/orders/1", corp, "DELETE")
    assert r.status_code == 401 and "not accepted on this route" in r.text
    # A token claiming one issuer signed with the other's key (its own kid, then the other's).
    es_kid, es_key = second.keys["ES256"]
    for kid in (es_kid, foreign.keys["ES256"][0]):
        forged = foreign.mint(key=es_key, kid=kid)
        assert get("/orders/1", forged).status_code == 401
    own_kid, own_key = foreign.keys["ES256"]
    forged = second.mint(typ="JWT", key=own_key, kid=es_kid)
    assert get("/orders/1", forged).status_code == 401
    # The primary's issuer spelt with a trailing slash is nobody's.
    assert get("/orders/1", foreign.mint(iss=foreign.issuer + "/")).status_code == 401


def exchange_at(idp, subject):
    return requests.post(
        f"{idp.issuer}/token",
        auth=("service-b", "demo-secret-service-b"),
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "audience": "service-c",
        },
        timeout=10,
    )


def corp_token(key, kid="corp-1", **over):
    from conftest import CORP_ISSUER

    now = int(time.time())
    claims = {
        "iss": CORP_ISSUER, "aud": "service-b", "sub": "dana", "typ": "Bearer",
        "iat": now, "exp": now + 300, "realm_access": {"roles": ["auditor"]},
        "act": {"sub": "forged"}, "grants": ["service-z"],
    }
    claims.update(over)
    return pyjwt.encode(claims, key, algorithm="ES256", headers={"typ": "JWT", "kid": kid})


def test_foreign_user_token_exchanged_at_baton_idp(idp):
    r = exchange_at(idp, corp_token(idp.corp_key))
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    keys = pyjwt.PyJWKClient(f"{idp.issuer}/jwks")
    claims = pyjwt.decode(
        token,
        keys.get_signing_key_from_jwt(token).key,
        algorithms=["ES256", "RS256"],
        audience="service-c",
        issuer=idp.issuer,
    )
    assert claims["sub"] == "corp:dana"
    assert claims["roles"] == ["auditor"]
    assert claims["act"] == {"sub": "service-b"}
    assert claims["grants"] == ["service-c"]
    # Untrusted: another key, another issuer, a trailing slash, another audience.
    from conftest import CORP_ISSUER

    other = ec.generate_private_key(ec.SECP256R1())
    for subject in (
        corp_token(other),
        corp_token(idp.corp_key, iss="https://elsewhere.example"),
        corp_token(idp.corp_key, iss=CORP_ISSUER + "/"),
        corp_token(idp.corp_key, aud="service-c"),
    ):
        r = exchange_at(idp, subject)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_request"
        assert subject not in r.text
