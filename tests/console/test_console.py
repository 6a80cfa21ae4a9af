"""The web console in a real headless Chromium, against a real keygate.

Run by .ci/console.sh (which installs selenium in a virtual environment
and starts the server); it needs Debian's chromium and chromium-driver.
Each step waits for what a person would see. On a failure the browser's
screenshot is saved beside the log (KEYGATE_CONSOLE_ARTIFACTS).
"""

import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = os.environ["KEYGATE_URL"]
OWNER_KEY = os.environ["KEYGATE_KEY"]
ARTIFACTS = os.environ.get("KEYGATE_CONSOLE_ARTIFACTS", "target/console")
SCREENSHOT = os.environ.get("KEYGATE_CONSOLE_SCREENSHOT")


def api(method, path, key=None, body=None):
    """A call to the API: (status, JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    if key:
        request.add_header("authorization", key)
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(0)
    return driver


def wait(driver, condition, seconds=10):
    # The console re-renders its table as data arrives: an element read a
    # moment ago may be gone; asking again finds the new one.
    return WebDriverWait(driver, seconds, ignored_exceptions=[StaleElementReferenceException]).until(condition)


def visible(driver, element_id):
    return wait(driver, EC.visibility_of_element_located((By.ID, element_id)))


def status(driver):
    return driver.find_element(By.ID, "status").text


def read_secret_and_close(driver):
    """The show-once dialog: its secret, after ticking "I have saved it"."""
    secret = visible(driver, "secret").text
    close = driver.find_element(By.ID, "close-secret")
    assert not close.is_enabled(), "the dialog closes only once the secret is saved"
    driver.find_element(By.ID, "secret-saved").click()
    close.click()
    wait(driver, lambda d: not d.find_element(By.ID, "secret-dialog").is_displayed())
    return secret


def key_row(driver, name):
    """The table's row of the key named `name`, or None."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#keys-table tbody tr')]"
        ".find(r => r.cells.length > 1 && r.cells[0].textContent === arguments[0]) || null",
        name,
    )


def click_link(driver, text):
    """Clicks the link `text` once it is shown (views appear as the URL's fragment changes)."""
    wait(driver, EC.element_to_be_clickable((By.LINK_TEXT, text))).click()


def click(driver, selector):
    """Clicks what `selector` finds once it is there, asking again if the table was re-rendered."""
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, selector).click() or True)


def sign_in(driver):
    driver.get(BASE + "/console")
    visible(driver, "sign-in-key").send_keys(OWNER_KEY)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    visible(driver, "keys-table")
    wait(driver, lambda d: key_row(d, "Bootstrap Key") is not None)
    stored = driver.execute_script("return sessionStorage.getItem('keygate.key')")
    assert stored == OWNER_KEY, "the key is kept in sessionStorage"
    assert OWNER_KEY not in driver.current_url, "never in the URL"
    assert not driver.get_cookies(), "never in a cookie"


def create_key(driver):
    click_link(driver, "New key")
    visible(driver, "new-name").send_keys("ci-bot")
    driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="write"]').click()
    wait(driver, lambda d: len(Select(d.find_element(By.ID, "new-expiry")).options) > 0)
    Select(driver.find_element(By.ID, "new-expiry")).select_by_visible_text("in 30 days")
    driver.find_element(By.CSS_SELECTOR, "#new-key-form button[type=submit]").click()
    secret = read_secret_and_close(driver)
    assert secret.startswith("ak_"), secret
    status_code, orgs = api("GET", "/organization", secret)
    assert status_code == 200, (status_code, orgs)
    wait(driver, lambda d: key_row(d, "ci-bot") is not None)
    cells = wait(driver, lambda d: [c.text for c in key_row(d, "ci-bot").find_elements(By.TAG_NAME, "td")])
    assert cells[2] == "write" and cells[5] in ("in 30 days", "in 29 days"), cells
    return secret


def rotate(driver, old_secret):
    click(driver, 'button[aria-label="Rotate ci-bot"]')
    visible(driver, "rotate-grace")
    Select(driver.find_element(By.ID, "rotate-grace")).select_by_value("0")
    driver.find_element(By.CSS_SELECTOR, '#rotate-form button[value="rotate"]').click()
    new_secret = read_secret_and_close(driver)
    assert new_secret != old_secret
    assert api("GET", "/organization", old_secret)[0] == 401, "the old secret is refused after its grace (none)"
    assert api("GET", "/organization", new_secret)[0] == 200
    return new_secret


def key_page_and_settings(driver):
    click(driver, "#keys-table a[href^='#/keys/']:not([href='#/keys/new'])")
    visible(driver, "key-details")
    wait(driver, lambda d: "Mode" in d.find_element(By.ID, "key-details").text)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#key-usage svg rect"))
    # The owner's key is unscoped; a scoped key's page lists its audit entries.
    driver.get(BASE + "/console#/keys")
    click(driver, "#keys-table tbody tr:nth-child(2) a")
    wait(driver, lambda d: "apikey.create" in d.find_element(By.ID, "key-audit").text)

    click_link(driver, "Organization")
    visible(driver, "policy-require")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr"))
    if not driver.find_element(By.ID, "policy-require").is_selected():
        driver.find_element(By.ID, "policy-require").click()
    maximum = driver.find_element(By.ID, "policy-max")
    maximum.clear()
    maximum.send_keys("60")
    driver.find_element(By.CSS_SELECTOR, "#policy-form button").click()
    wait(driver, lambda d: "policy saved" in status(d))
    orgs = api("GET", "/organization", OWNER_KEY)[1]["data"]
    assert orgs[0]["require_apikey_expiration"] is True and orgs[0]["max_apikey_expiration_days"] == 60, orgs
    click_link(driver, "Keys")
    click_link(driver, "New key")
    wait(driver, lambda d: len(Select(d.find_element(By.ID, "new-expiry")).options) > 0)
    offered = [o.text for o in Select(driver.find_element(By.ID, "new-expiry")).options]
    assert "never" not in offered and "in 90 days" not in offered and "in 30 days" in offered, offered
    click_link(driver, "Cancel")
    visible(driver, "keys-table")


def delete(driver, secret):
    wait(driver, lambda d: key_row(d, "ci-bot") is not None)
    click(driver, 'button[aria-label="Delete ci-bot"]')
    confirm = visible(driver, "delete-confirm")
    submit = driver.find_element(By.ID, "delete-submit")
    confirm.send_keys("ci-bo")
    assert not submit.is_enabled(), "deleting needs the whole name"
    confirm.send_keys("t")
    submit.click()
    wait(driver, lambda d: key_row(d, "ci-bot") is None)
    assert "deleted" in status(driver)
    assert api("GET", "/organization", secret)[0] == 401


def invite_and_redeem(driver):
    click_link(driver, "Organization")
    visible(driver, "invite-email").send_keys("teammate@example.com")
    Select(driver.find_element(By.ID, "invite-role")).select_by_visible_text("read")
    driver.find_element(By.CSS_SELECTOR, "#invite-form button").click()
    code = read_secret_and_close(driver)
    assert code.startswith("kgi_"), code
    wait(driver, lambda d: "teammate@example.com" in d.find_element(By.ID, "invites").text)

    teammate = browser()
    try:
        teammate.get(BASE + "/console")
        visible(teammate, "redeem-code").send_keys(code)
        teammate.find_element(By.CSS_SELECTOR, "#redeem-form button").click()
        their_key = read_secret_and_close(teammate)
        assert their_key.startswith("ak_")
        assert "redeemed" in status(teammate)
        # Their key works, within a read member's limits.
        code_, orgs = api("GET", "/organization", their_key)
        assert code_ == 200 and orgs["data"][0]["role"] == "read", orgs
        org = orgs["data"][0]["id"]
        denied = api("POST", "/app", their_key, {"app_id": "com.example.theirs", "name": "x", "org_id": org})
        assert denied[0] == 403, denied
        visible(teammate, "members")
        wait(teammate, lambda d: "teammate@example.com: read" in d.find_element(By.ID, "members").text)
    except Exception:
        teammate.save_screenshot(os.path.join(ARTIFACTS, "teammate-failure.png"))
        raise
    finally:
        teammate.quit()


def nothing_from_elsewhere(driver):
    loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(BASE) for url in loaded), loaded
    request = urllib.request.Request(BASE + "/console")
    with urllib.request.urlopen(request) as response:
        policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy, policy


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    driver = browser()
    step = "start"
    try:
        for step, run in [
            ("sign in with the bootstrap key", lambda: sign_in(driver)),
            ("nothing loaded from elsewhere", lambda: nothing_from_elsewhere(driver)),
        ]:
            run()
        step = "create a key and use its secret"
        secret = create_key(driver)
        step = "rotate it"
        secret = rotate(driver, secret)
        if SCREENSHOT:
            api("POST", "/apikey", OWNER_KEY, {"org_id": api("GET", "/organization", OWNER_KEY)[1]["data"][0]["id"], "mode": "read", "name": "dashboards"})
            driver.get(BASE + "/console#/keys")
            driver.refresh()
            wait(driver, lambda d: key_row(d, "dashboards") is not None)
            time.sleep(0.5)
            driver.save_screenshot(SCREENSHOT)
        step = "a key's page, the organization's policy and audit log"
        key_page_and_settings(driver)
        step = "delete it"
        delete(driver, secret)
        step = "invite a teammate who redeems in a second browser"
        invite_and_redeem(driver)
    except Exception:
        path = os.path.join(ARTIFACTS, "failure.png")
        driver.save_screenshot(path)
        traceback.print_exc()
        print(f"FAILED at: {step}; screenshot: {path}", file=sys.stderr)
        return 1
    finally:
        driver.quit()
    print("console: every step passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
