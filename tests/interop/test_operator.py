"""What a standard OAuth client meets first: authlib's plain client_credentials call (no
`audience`, no `resource`) against a client with a `default_audience`, and the error that says
what to send when the client has none."""

import pytest
from authlib.integrations.requests_client import OAuth2Session

from conftest import CC_AUDIENCE, CC_CLIENT
from test_idp import verify_jwcrypto, verify_pyjwt


def test_authlib_plain_client_credentials_gets_a_token_for_the_default_audience(idp):
    session = OAuth2Session(CC_CLIENT, idp.cc_secret, token_endpoint_auth_method="client_secret_basic")
    token = session.fetch_token(idp.token_endpoint, grant_type="client_credentials")
    assert token["token_type"].lower() == "bearer"
    claims = verify_pyjwt(idp, token["access_token"], CC_AUDIENCE)
    assert claims["aud"] == CC_AUDIENCE
    assert claims["sub"] == CC_CLIENT and claims["client_id"] == CC_CLIENT
    assert verify_jwcrypto(idp, token["access_token"], CC_AUDIENCE)["sub"] == CC_CLIENT
    # The same call with client_secret_post.
    post = OAuth2Session(CC_CLIENT, idp.cc_secret, token_endpoint_auth_method="client_secret_post")
    token = post.fetch_token(idp.token_endpoint, grant_type="client_credentials")
    assert verify_pyjwt(idp, token["access_token"], CC_AUDIENCE)["sub"] == CC_CLIENT
    assert idp.cc_secret not in idp.process.log.read_text()


def test_without_a_default_audience_the_error_names_the_parameters(idp):
    # service-b has no default_audience in deploy/idp.yaml.
    session = OAuth2Session("service-b", "demo-secret-service-b", token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(Exception) as raised:
        session.fetch_token(idp.token_endpoint, grant_type="client_credentials")
    assert getattr(raised.value, "error", None) == "invalid_target", raised.value
    description = getattr(raised.value, "description", "") or ""
    assert "send audience" in description and "resource" in description, description
