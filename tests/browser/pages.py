"""What every browser test does on each page it reaches: axe-core at WCAG 2.2 AA in light and
dark, and screenshots in light and dark at desktop and phone widths.

The axe-core script is the one selenium-axe-python ships inside its wheel: nothing is fetched
at test time. It is run through WebDriver, which a page's Content-Security-Policy does not
govern, so the pages keep their policy while they are checked.
"""

import base64
import os

from selenium.webdriver.common.by import By
from selenium_axe_python import Axe

ARTIFACTS = os.environ["ARTIFACTS"]
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
SIZES = {"desktop": (1024, 720, False), "phone": (390, 760, True)}
SCHEMES = ("light", "dark")
CHECKED = []


def options():
    """Chromium's options for the browser tests."""
    from selenium import webdriver

    o = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1024,720",
                "--hide-scrollbars", "--font-render-hinting=none"):
        o.add_argument(arg)
    o.binary_location = "/usr/bin/chromium"
    return o


def scheme(driver, name):
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "media": "screen", "features": [{"name": "prefers-color-scheme", "value": name}]})


def size(driver, width, height, mobile):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def run_axe(driver):
    checker = Axe(driver)
    checker.inject()
    result = checker.run(options={"runOnly": {"type": "tag", "values": TAGS},
                                  "resultTypes": ["violations"]})
    assert result["testEngine"]["version"].startswith("4."), result["testEngine"]
    return checker, result["violations"]


def axe_finds(driver):
    """The checker itself works: a page with an unlabelled field, grey-on-white text and no
    language has exactly those violations."""
    url = driver.current_url
    driver.get("data:text/html,<title>x</title><p style='color:%23bbb'>faint</p><input>")
    _, violations = run_axe(driver)
    found = {v["id"] for v in violations}
    assert {"label", "color-contrast", "html-has-lang"} <= found, found
    driver.get(url)


def axe(driver, name):
    """Zero axe-core violations at WCAG 2.2 AA, in light and in dark."""
    for s in SCHEMES:
        scheme(driver, s)
        checker, violations = run_axe(driver)
        assert not violations, f"{name} ({s}): {checker.report(violations)}"
    CHECKED.append(name)


def screenshots(driver, name):
    """`name`-{light,dark}-{desktop,phone}.png, each the whole page at that width."""
    for s in SCHEMES:
        scheme(driver, s)
        for label, (width, height, mobile) in SIZES.items():
            size(driver, width, height, mobile)
            full = driver.execute_script("return document.documentElement.scrollHeight")
            size(driver, width, max(height, full), mobile)
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
            with open(f"{ARTIFACTS}/{name}-{s}-{label}.png", "wb") as f:
                f.write(base64.b64decode(shot["data"]))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    scheme(driver, "light")


def check(driver, name, shoot=True):
    """axe, then screenshots: every page a flow reaches."""
    axe(driver, name)
    if shoot:
        screenshots(driver, name)


def alert(driver):
    """The page's announced error (`role="alert"`), which must exist."""
    found = driver.find_elements(By.CSS_SELECTOR, "[role=alert]")
    assert found, driver.page_source
    return found[0].text


def focused(driver):
    return driver.switch_to.active_element.get_attribute("id")
