"""The console in a real browser (DESIGN §14): `vapi-router serve` and headless Chromium (Debian's
chromium + chromium-driver, driven by Selenium; no browser download, no network).

Logs in, loads every page, submits the simulate form and checks the decision against
/v1/explain, checks scripts in a CRM field and a call id stay text, a POST without its CSRF
token and a lost session; on a policy with flags and a pool (in-process state), switches a
flag through its form and reads it back from /v1/flags, and shows the pool's gauge. A
screenshot of each page goes to tests/artifacts/console/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import ADMIN_TOKEN, Subprocess
from test_console import STATE_POLICY

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ARTIFACTS = Path(__file__).parent / "artifacts" / "console"
POLICY = Path("policies/main.yaml").read_text(encoding="utf-8")
CRM = Path("policies/crm.csv").read_text(encoding="utf-8")
SCRIPT = "<script>window.pwned=1;alert(1)</script>"
DRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subprocess]:
    with Subprocess(tmp_path_factory.mktemp("browser"), POLICY, files={"crm.csv": CRM}) as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if not Path(DRIVER).exists():
        pytest.skip("chromedriver is not installed: `make system-deps` installs Debian's chromium-driver")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must never go to the network
    options = Options()
    options.binary_location = str(chromium_bin)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(20)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(700, min(int(height) + 40, 2400)))
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def no_script_ran(driver: WebDriver) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.dismiss()
    assert driver.execute_script("return window.pwned === undefined")
    # console.js itself runs (script-src 'self' admits it): it marks the page
    assert driver.execute_script("return document.documentElement.classList.contains('js')")


def wait(driver: WebDriver, seconds: float = 10) -> WebDriverWait[WebDriver]:
    """A wait that retries while the page navigates: an element found on the old page goes
    stale when the new one replaces it, which is a retry, not a failure."""
    return WebDriverWait(
        driver, seconds, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    )


def find(driver: WebDriver, element_id: str) -> WebElement:
    """The element, once the page that has it has loaded (a click returns before the navigation)."""
    return wait(driver).until(lambda drv: drv.find_element(By.ID, element_id))


def log_in(driver: WebDriver, srv: Subprocess, token: str) -> None:
    driver.get(f"{srv.base_url}/-/console/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()


def test_the_console_in_chromium(browser: WebDriver, srv: Subprocess) -> None:
    d = browser
    with srv.client() as client:
        calls = (("+14155550142", "vip-call"), ("+15550000001", SCRIPT), ("+14155550143", "c3"))
        for caller, call_id in calls:
            message = {
                "type": "assistant-request",
                "timestamp": "2026-11-23T15:30:00Z",
                "call": {"id": call_id, "customer": {"number": caller}},
                "phoneNumber": {"number": "+16505550117"},
            }
            assert srv.post_webhook(client, {"message": message}).status_code == 200

        # not logged in: the login page; a wrong token is refused
        d.get(f"{srv.base_url}/-/console")
        assert d.current_url.endswith("/-/console/login")
        shot(d, "login")
        log_in(d, srv, "wrong-token")
        assert "That is not the admin token." in find(d, "login-error").text
        shot(d, "login-wrong-token")
        log_in(d, srv, ADMIN_TOKEN)
        wait(d).until(lambda drv: drv.current_url.endswith("/-/console"))
        assert find(d, "reload-state").text == "ok"
        no_script_ran(d)
        shot(d, "overview")

        for page in ("routes", "decisions", "shadow", "flags", "capacity"):
            d.find_element(By.ID, f"nav-{page}").click()

            def on_page(drv: WebDriver, p: str = page) -> bool:
                return bool(drv.current_url.endswith(f"/-/console/{p}"))

            wait(d).until(on_page)
            no_script_ran(d)
            shot(d, page)
        d.get(f"{srv.base_url}/-/console/decisions")
        assert SCRIPT in find(d, "decisions").text  # shown as text, not run
        assert "+15550000001" not in d.page_source and "+1555*****01" in d.page_source
        Select(d.find_element(By.ID, "route")).select_by_visible_text("block-spam")  # console.js submits
        wait(d, 5).until(lambda drv: "route=block-spam" in drv.current_url)
        assert "vip-call" not in find(d, "decisions").text
        shot(d, "decisions-filtered")

        d.find_element(By.ID, "nav-calendar").click()
        find(d, "calendar-form")
        d.find_element(By.ID, "dialled").send_keys("+1 650 555 0117")
        d.execute_script("document.getElementById('from').value = '2026-12-21'")
        d.find_element(By.ID, "show-calendar").click()
        assert "+1650*****17" in find(d, "calendar-title").text
        assert len(d.find_elements(By.CSS_SELECTOR, "#calendar-map svg rect")) > 7
        assert "Christmas Day" in d.find_element(By.ID, "calendar-notes").text
        shot(d, "calendar")

        # simulate: the decision and trace /v1/explain gives for the same facts
        d.find_element(By.ID, "nav-simulate").click()
        find(d, "simulate-form")
        d.find_element(By.ID, "caller").send_keys("+1 415 555 0142")
        d.find_element(By.ID, "dialled").send_keys("+1 650 555 0117")
        d.find_element(By.ID, "at").send_keys("2026-11-28T09:00")
        d.find_element(By.ID, "crm").send_keys(f"name={SCRIPT}")
        d.find_element(By.ID, "simulate").click()
        explained = client.post(
            "/v1/explain",
            headers=srv.admin(),
            json={
                "caller": "+14155550142",
                "dialled": "+16505550117",
                "at": "2026-11-28T09:00:00-05:00",
                "crm": {"name": SCRIPT},
            },
        ).json()
        assert find(d, "result-route").text == (explained["route"] or "default")
        assert d.find_element(By.ID, "result-target").text == explained["target"]
        steps = d.find_elements(By.CSS_SELECTOR, "#result-trace li")
        assert [(s.get_attribute("data-route"), s.get_attribute("data-matched")) for s in steps] == [
            (t["route"], "true" if t["matched"] else "false") for t in explained["trace"]
        ]
        assert "+14155550142" not in d.page_source and "+1415*****42" in d.page_source
        no_script_ran(d)
        shot(d, "simulate")

        # a POST without its CSRF token is refused
        d.execute_script("document.querySelector('#simulate-form input[name=csrf]').remove()")
        d.find_element(By.ID, "dialled").send_keys("+16505550117")
        d.find_element(By.ID, "simulate").click()
        assert "CSRF" in find(d, "refused").text
        shot(d, "csrf-refused")

        # a session that is gone (expired or deleted) leads back to the login page
        d.delete_cookie("vr_console")
        d.get(f"{srv.base_url}/-/console/routes")
        find(d, "login-form")
        assert "/-/console/login" in d.current_url
        shot(d, "session-gone")

    assert sorted(p.stem for p in ARTIFACTS.glob("*.png")) == sorted(
        [
            "login",
            "login-wrong-token",
            "overview",
            "routes",
            "decisions",
            "shadow",
            "flags",
            "capacity",
            "decisions-filtered",
            "calendar",
            "simulate",
            "csrf-refused",
            "session-gone",
        ]
    )


def test_a_flag_switched_and_the_pools_in_chromium(
    browser: WebDriver, tmp_path_factory: pytest.TempPathFactory
) -> None:
    d = browser
    with Subprocess(tmp_path_factory.mktemp("browser-state"), STATE_POLICY) as srv, srv.client() as c:

        def route_of(call_id: str) -> str:
            message = {
                "type": "assistant-request",
                "call": {"id": call_id, "customer": {"number": "+14155550142"}},
                "phoneNumber": {"number": "+16505550117"},
            }
            assert srv.post_webhook(c, {"message": message}).status_code == 200
            lines = srv.wait_log(lambda r: r.get("call_id") == call_id)
            return str(next(r["route"] for r in lines if r.get("call_id") == call_id))

        assert [route_of("sales-1"), route_of("sales-2"), route_of("sales-3")] == [
            "sales",
            "sales",
            "overflow",
        ]
        log_in(d, srv, ADMIN_TOKEN)
        wait(d).until(lambda drv: drv.current_url.endswith("/-/console"))

        d.find_element(By.ID, "nav-capacity").click()
        row = find(d, "pools").find_element(By.CSS_SELECTOR, 'tr[data-pool="sales"]')
        assert row.find_element(By.CSS_SELECTOR, ".in-use").text == "2 / 2"
        assert (
            row.find_element(By.CSS_SELECTOR, "svg.gauge-full .gauge-fill").get_attribute("width") == "100.0"
        )
        no_script_ran(d)
        shot(d, "capacity-pools")

        d.find_element(By.ID, "nav-flags").click()
        storm = 'article[data-flag="storm"]'
        form = wait(d).until(lambda drv: drv.find_element(By.CSS_SELECTOR, f"{storm} form"))
        assert d.find_element(By.CSS_SELECTOR, f"{storm} .state").text == "off"
        shot(d, "flags-policy")
        # the server's own check, past the browser's `required`: a reason is needed
        d.execute_script(
            "document.querySelectorAll('input[name=reason]').forEach(e => e.removeAttribute('required'))"
        )
        form.find_element(By.CSS_SELECTOR, "button.switch-on").click()
        assert "reason must be a non-empty text" in find(d, "flag-error").text
        shot(d, "flags-reason-missing")

        form = d.find_element(By.CSS_SELECTOR, f"{storm} form")
        form.find_element(By.NAME, "reason").send_keys(f"storm closure {SCRIPT}")
        form.find_element(By.NAME, "ttl").send_keys("30m")
        form.find_element(By.CSS_SELECTOR, "button.switch-on").click()
        assert "storm" in find(d, "switched").text
        assert d.current_url.endswith("/-/console/flags?switched=storm")
        assert d.find_element(By.CSS_SELECTOR, f"{storm} .state").text == "on"
        assert SCRIPT in d.find_element(By.CSS_SELECTOR, f"{storm} .reason").text
        no_script_ran(d)
        shot(d, "flags-switched")
        flags = c.get("/v1/flags", headers=srv.admin()).json()["flags"]
        assert [(f["name"], f["on"], f["reason"]) for f in flags] == [
            ("storm", True, f"storm closure {SCRIPT}")
        ]
        assert route_of("in-the-storm") == "storm"

        form = d.find_element(By.CSS_SELECTOR, f"{storm} form")
        form.find_element(By.NAME, "reason").send_keys("the storm is over")
        form.find_element(By.CSS_SELECTOR, "button.switch-off").click()
        wait(d).until(lambda drv: drv.find_element(By.CSS_SELECTOR, f"{storm} .state").text == "off")
        assert c.get("/v1/flags", headers=srv.admin()).json()["flags"][0]["on"] is False
        audit = [
            r
            for r in srv.wait_log(lambda r: r.get("reason") == "the storm is over")
            if r.get("type") == "flag"
        ]
        assert [(r["on"], r["by"]) for r in audit] == [(True, "console"), (False, "console")]
