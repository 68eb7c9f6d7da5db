"""Headless Chromium signs alice in at the IdP, then steps up to mfa with a TOTP code, then
visits another site whose page posts a login form with the attacker's credentials (login CSRF):
the IdP refuses it and alice stays signed in as herself; last she signs out at the IdP through
its confirmation page.

Run through tests/browser/run.sh, which starts baton-idp and sets ISSUER, CALLBACK_PORT,
TOTP_SECRET and ARTIFACTS.
"""

import base64
import hashlib
import html
import re
import http.server
import json
import os
import secrets
import threading
import urllib.parse
import urllib.request

import pyotp
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ISSUER = os.environ["ISSUER"]
REDIRECT = f"http://127.0.0.1:{os.environ['CALLBACK_PORT']}/callback"
ARTIFACTS = os.environ["ARTIFACTS"]
CLIENT, CLIENT_SECRET = "service-a", "demo-secret-service-a"


ATTACK = {}


class Callback(http.server.BaseHTTPRequestHandler):
    """The client's redirect URI: a plain page; the test reads the code from the URL. On
    `/attack` the same server plays another site (another origin) with a self-posting form."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.end_headers()
        if self.path == "/attack":
            fields = "".join(
                f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in ATTACK.items()
            )
            page = (
                f'<!doctype html><title>cute cats</title><body onload="document.forms[0].submit()">'
                f'<form method="post" action="{ISSUER}/login">{fields}</form>'
            )
            self.wfile.write(page.encode())
            return
        self.wfile.write(b"<!doctype html><title>back at the app</title><p>back at the app</p>")

    def log_message(self, *args):
        pass


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def authorize(driver, **extra):
    verifier = b64(secrets.token_bytes(32))
    query = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": b64(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
        **extra,
    }
    driver.get(f"{ISSUER}/authorize?{urllib.parse.urlencode(query)}")
    return verifier, query["state"]


def back_at_app(driver, verifier, state):
    WebDriverWait(driver, 20).until(lambda d: d.current_url.startswith(REDIRECT))
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(driver.current_url).query))
    assert q.get("state") == state, q
    assert "code" in q, q
    form = urllib.parse.urlencode({
        "grant_type": "authorization_code",
        "code": q["code"],
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }).encode()
    req = urllib.request.Request(f"{ISSUER}/token", data=form)
    basic = base64.b64encode(f"{CLIENT}:{CLIENT_SECRET}".encode()).decode()
    req.add_header("authorization", f"Basic {basic}")
    with urllib.request.urlopen(req, timeout=10) as rsp:
        tokens = json.load(rsp)
    at, idt = claims(tokens["access_token"]), claims(tokens["id_token"])
    assert (at["acr"], at["amr"]) == (idt["acr"], idt["amr"]), (at, idt)
    return at


def main():
    server = http.server.HTTPServer(("127.0.0.1", int(os.environ["CALLBACK_PORT"])), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=800,700"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(20)
    try:
        # 1. Password sign-in.
        verifier, state = authorize(driver)
        driver.find_element(By.ID, "username").send_keys("alice")
        driver.save_screenshot(f"{ARTIFACTS}/login-page.png")
        driver.find_element(By.ID, "password").send_keys("wonderland-demo")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        at = back_at_app(driver, verifier, state)
        assert (at["acr"], at["amr"]) == ("pwd", ["pwd"]), at
        print("signed in: acr", at["acr"], "amr", at["amr"])

        # 2. Step-up to mfa: only the one-time-code page, never the password again.
        verifier, state = authorize(driver, acr_values="mfa")
        assert driver.find_elements(By.ID, "code"), driver.page_source
        assert not driver.find_elements(By.ID, "password"), "password asked again"
        driver.save_screenshot(f"{ARTIFACTS}/code-page.png")
        driver.find_element(By.ID, "code").send_keys(pyotp.TOTP(os.environ["TOTP_SECRET"]).now())
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        at = back_at_app(driver, verifier, state)
        assert (at["acr"], at["amr"]) == ("mfa", ["pwd", "otp"]), at
        assert isinstance(at["auth_time"], int), at
        print("stepped up: acr", at["acr"], "amr", at["amr"])

        # 3. Login CSRF: the attacker gets a login form of their own and has alice's browser
        #    post it, with their credentials, from their page.
        with urllib.request.urlopen(f"{ISSUER}/authorize?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": CLIENT, "redirect_uri": REDIRECT,
            "code_challenge": b64(hashlib.sha256(b"attacker").digest()),
            "code_challenge_method": "S256",
        }), timeout=10) as rsp:
            sealed = re.search(r'name="request" value="([^"]+)"', rsp.read().decode()).group(1)
        ATTACK.update({"request": html.unescape(sealed), "username": "bob",
                       "password": "looking-glass-demo"})
        driver.get(REDIRECT.replace("/callback", "/attack"))
        WebDriverWait(driver, 20).until(lambda d: d.current_url.startswith(f"{ISSUER}/login"))
        assert "refused" in driver.page_source, driver.page_source
        driver.save_screenshot(f"{ARTIFACTS}/csrf-refused.png")
        verifier, state = authorize(driver)
        at = back_at_app(driver, verifier, state)
        assert at["sub"] == "alice", at
        print("cross-site login post refused; still signed in as", at["sub"])

        # 4. Sign-out without a hint: the IdP asks; the button's POST (Origin, Sec-Fetch-Site and
        # the SameSite=Strict confirmation cookie as a real browser sends them) ends the session.
        driver.get(f"{ISSUER}/end_session")
        assert driver.find_elements(By.NAME, "logout_request"), driver.page_source
        assert driver.get_cookie("baton-idp-logout"), driver.get_cookies()
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 20).until(lambda d: "You are signed out." in d.page_source)
        assert driver.get_cookie("baton-idp") is None, driver.get_cookies()
        authorize(driver)
        assert driver.find_elements(By.ID, "password"), "the session was not ended"
        print("signed out at the IdP after confirming")
    finally:
        driver.quit()
        server.shutdown()
    print("browser step-up: ok")


if __name__ == "__main__":
    main()
