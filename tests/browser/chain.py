"""Headless Chromium through the demo chain: sign in at service-a's sidecar (edge login), see
service-c's answer, step up to mfa when C demands it (only the one-time code), sign out at A
and at the IdP (the password is asked again). Every page is checked with axe-core and
photographed (pages.py): the IdP's pages in the demo's default look, the echo page, the
sidecar's sign-out page.

Run through tests/browser/run.sh, which starts `baton demo --serve` and sets EDGE (service-a's
inbound URL), TOTP_SECRET and ARTIFACTS.
"""

import json
import os

import pyotp
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import pages

EDGE = os.environ["EDGE"].rstrip("/")
ARTIFACTS = os.environ["ARTIFACTS"]


def page_json(driver):
    """The echo page shows the answer's JSON in #json (inside a closed <details>)."""
    return json.loads(driver.find_element(By.ID, "json").get_attribute("textContent"))


def hop(body, depth):
    for _ in range(depth):
        body = body["next"]
    return body


def wait_back_at(driver, url):
    WebDriverWait(driver, 20).until(
        lambda d: d.current_url == url and d.find_elements(By.ID, "json"))


def main():
    driver = webdriver.Chrome(options=pages.options(), service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(20)
    try:
        # 1. Open A: the sidecar sends the browser to the IdP's login page.
        driver.get(f"{EDGE}/")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "password"))
        assert not driver.current_url.startswith(EDGE), driver.current_url
        assert "to continue to Service A" in driver.find_element(By.TAG_NAME, "main").text
        pages.check(driver, "chain-sign-in")
        driver.find_element(By.ID, "username").send_keys("alice")
        driver.find_element(By.ID, "password").send_keys("wonderland-demo")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_back_at(driver, f"{EDGE}/")
        body = page_json(driver)
        c = hop(body, 2)
        assert c["service"] == "service-c", body
        assert c["claims"]["grants"] == ["service-a", "service-b", "service-c"], c
        assert c["claims"]["account_id"] == "acct-1001", c
        assert c["claims"]["act"] == {"sub": "service-b", "act": {"sub": "service-a"}}, c
        assert c["claims"]["acr"] == "pwd", c
        assert [h.text for h in driver.find_elements(By.TAG_NAME, "h2")] == [
            "service-a", "service-b", "service-c"]
        pages.check(driver, "demo-echo")
        print("signed in at A; C sees grants", c["claims"]["grants"], "acr", c["claims"]["acr"])

        # 2. A page C guards with acr mfa: the IdP asks only for the one-time code.
        target = f"{EDGE}/mfa/report?from=browser"
        driver.get(target)
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "code"))
        assert not driver.find_elements(By.ID, "password"), "password asked again"
        pages.check(driver, "chain-one-time-code", shoot=False)
        driver.find_element(By.ID, "code").send_keys(pyotp.TOTP(os.environ["TOTP_SECRET"]).now())
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_back_at(driver, target)
        c = hop(page_json(driver), 2)
        assert c["claims"]["acr"] == "mfa", c
        assert c["claims"]["amr"] == ["pwd", "otp"], c
        print("stepped up through the chain: C sees acr", c["claims"]["acr"], "amr", c["claims"]["amr"])

        # 3. Sign out at A: the GET shows a button (logout is POST-only, CSRF-protected); the
        # POST ends A's session and sends the browser to the IdP's end_session_endpoint with
        # id_token_hint, which ends the IdP session and returns to A's `/`; A then sends the
        # browser to sign in, and the IdP asks for the password again.
        assert driver.get_cookie("baton-session"), driver.get_cookies()
        driver.get(f"{EDGE}/_baton/logout")
        assert driver.get_cookie("baton-session"), "a GET alone must not sign out"
        pages.check(driver, "app-sign-out")
        driver.find_element(By.ID, "sign-out").click()
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "password"))
        assert not driver.current_url.startswith(EDGE), driver.current_url
        assert driver.get_cookie("baton-session") is None, driver.get_cookies()
        print("signed out at A and at the IdP: the password is asked again")
        print("axe-core, WCAG 2.2 AA, light and dark: no violations on", ", ".join(pages.CHECKED))
    finally:
        driver.quit()
    print("browser sign-in through the chain: ok")


if __name__ == "__main__":
    main()
