"""Headless Chromium signs alice in at the IdP, then steps up to mfa with a TOTP code, both with
the keyboard alone (a wrong password and a wrong code first: each announced), then visits another
site whose page posts a login form with the attacker's credentials (login CSRF): the IdP refuses
it and alice stays signed in as herself; last she signs out at the IdP through its confirmation
page. Every page is checked with axe-core and photographed (pages.py).

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
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

import pages

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
        try:
            self.wfile.write(b"<!doctype html><title>back at the app</title><p>back at the app</p>")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the test moved on as soon as the URL showed the code

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


def keys(driver, *typed):
    """Types into whatever has the focus: no element is clicked or addressed."""
    ActionChains(driver).send_keys(*typed).perform()


def focus_first_field(driver, field):
    """The page puts the focus in its first field; a Tab gets there too when it does not."""
    if pages.focused(driver) != field:
        keys(driver, Keys.TAB)
    assert pages.focused(driver) == field, pages.focused(driver)


def main():
    server = http.server.HTTPServer(("127.0.0.1", int(os.environ["CALLBACK_PORT"])), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = webdriver.Chrome(options=pages.options(), service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(20)
    try:
        # 0. The accessibility checker finds what it should.
        pages.axe_finds(driver)

        # 1. Password sign-in with the keyboard alone: a wrong password first, announced.
        verifier, state = authorize(driver)
        assert "to continue to Service A" in driver.find_element(By.TAG_NAME, "main").text
        pages.check(driver, "sign-in")
        focus_first_field(driver, "username")
        keys(driver, "alice", Keys.TAB)
        assert pages.focused(driver) == "password"
        keys(driver, "not-her-password", Keys.ENTER)
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[role=alert]"))
        assert "Wrong username or password" in pages.alert(driver)
        assert driver.find_element(By.ID, "username").get_attribute("aria-describedby") == "alert"
        pages.check(driver, "sign-in-error")
        focus_first_field(driver, "username")
        keys(driver, "alice", Keys.TAB, "wonderland-demo", Keys.ENTER)
        at = back_at_app(driver, verifier, state)
        assert (at["acr"], at["amr"]) == ("pwd", ["pwd"]), at
        print("signed in: acr", at["acr"], "amr", at["amr"])

        # 2. Step-up to mfa: only the one-time-code page, never the password again; the page
        #    says which application asks and for what. Keyboard alone, a wrong code first.
        verifier, state = authorize(driver, acr_values="mfa")
        assert driver.find_elements(By.ID, "code"), driver.page_source
        assert not driver.find_elements(By.ID, "password"), "password asked again"
        lead = driver.find_element(By.CSS_SELECTOR, ".lead").text
        assert "Service A needs a one-time code" in lead and "alice" in lead, lead
        pages.check(driver, "one-time-code")
        focus_first_field(driver, "code")
        totp = pyotp.TOTP(os.environ["TOTP_SECRET"])
        wrong = f"{(int(totp.now()) + 500000) % 1000000:06d}"
        keys(driver, wrong, Keys.ENTER)
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[role=alert]"))
        assert "wrong or was already used" in pages.alert(driver)
        assert driver.find_element(By.ID, "code").get_attribute("aria-invalid") == "true"
        pages.check(driver, "one-time-code-error")
        focus_first_field(driver, "code")
        keys(driver, totp.now(), Keys.ENTER)
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
        assert "Sign-in refused" in driver.page_source, driver.page_source
        assert "another site" in pages.alert(driver)
        pages.check(driver, "error-other-site")
        verifier, state = authorize(driver)
        at = back_at_app(driver, verifier, state)
        assert at["sub"] == "alice", at
        print("cross-site login post refused; still signed in as", at["sub"])

        # 4. A sign-in link that does not work: an error page in words, a reference, no echo.
        driver.get(f"{ISSUER}/authorize?client_id=service-a&redirect_uri=https%3A%2F%2Fevil.example%2F")
        assert "This sign-in link does not work" in driver.page_source
        assert "evil.example" not in driver.page_source
        assert "Reference" in driver.find_element(By.TAG_NAME, "main").text
        pages.check(driver, "error-bad-link")

        # 5. Sign-out, asked by service-a with client_id: the IdP says who asks; the button's
        # POST (Origin, Sec-Fetch-Site and the SameSite=Strict confirmation cookie as a real
        # browser sends them) ends the session.
        driver.get(f"{ISSUER}/end_session?client_id={CLIENT}")
        assert driver.find_elements(By.NAME, "logout_request"), driver.page_source
        assert driver.get_cookie("baton-idp-logout"), driver.get_cookies()
        assert "Service A asked to sign you out" in driver.find_element(By.CSS_SELECTOR, ".lead").text
        pages.check(driver, "sign-out")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 20).until(lambda d: "You are signed out." in d.page_source)
        pages.check(driver, "signed-out")
        assert driver.get_cookie("baton-idp") is None, driver.get_cookies()
        authorize(driver)
        assert driver.find_elements(By.ID, "password"), "the session was not ended"
        print("signed out at the IdP after confirming")
        print("axe-core, WCAG 2.2 AA, light and dark: no violations on", ", ".join(pages.CHECKED))
    finally:
        driver.quit()
        server.shutdown()
    print("browser step-up: ok")


if __name__ == "__main__":
    main()
