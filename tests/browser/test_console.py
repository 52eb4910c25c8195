"""The console in a real browser: headless Chromium from Debian, driven by Playwright (no
browser downloaded), against the local server (`scripts/browser-tests.sh` starts it and sets
CONSOLE_BASE). One walk through the product as a new team would take it, then the lock
notice, then an accessibility check (axe-core) of every main page.

Screenshots of the main pages go to CONSOLE_SCREENSHOTS when it is set (`make screenshots`
writes them to docs/console/)."""

import json
import os
import re
import time
import urllib.error
import urllib.request

import pyotp
import pytest
from playwright.sync_api import Page, expect, sync_playwright

BASE = os.environ["CONSOLE_BASE"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
AXE = os.path.join(os.path.dirname(__file__), "node_modules", "axe-core", "axe.min.js")
SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")

OWNER = "owner@acme.example"
PASSWORD = "correct horse battery staple 42"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 860}, locale="en-US", timezone_id="UTC")
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # Answers with an error status are part of using an API; anything else logged as an
    # error (an exception, a CSP violation) fails the test.
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    pg.console_errors = errors
    yield pg
    context.close()
    assert not errors, f"the console logged errors: {errors}"


def api(method, path, body=None, token=None):
    req = urllib.request.Request(BASE + path, method=method)
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def mailed_link(to, kind):
    """The newest link to {APP_URL}/{kind}?token=… mailed to `to`."""
    _, body = api("GET", "/_local/mail")
    for m in reversed(body["messages"]):
        if m["to"] == to:
            found = re.search(rf"(http\S+/console/{kind}\?token=[A-Za-z0-9_-]+)", m["text"])
            if found:
                return found.group(1)
    raise AssertionError(f"no {kind} link mailed to {to}")


def shot(page: Page, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def serious_violations(page: Page):
    """axe-core's violations of impact serious or critical on the current page. The script is
    evaluated through the DevTools protocol, which the page's CSP does not govern."""
    with open(AXE, encoding="utf-8") as f:
        page.evaluate(f.read())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def wrong_code(totp):
    """Six digits that no time step around now accepts."""
    near = {totp.at(time.time() + d) for d in (-60, -30, 0, 30, 60)}
    return next(c for c in ("000000", "111111", "222222") if c not in near)


def nav(page: Page, label):
    page.get_by_role("navigation").get_by_role("link", name=label, exact=True).click()
    expect(page.locator("main h1")).to_be_visible()
    expect(page.locator("main h1")).not_to_have_text("Something went wrong")
    stray = re.compile(r"\bnull\b|\bundefined\b|\bNaN\b|\[object ")
    expect(page.locator("main")).not_to_contain_text(stray)


def sign_in(page: Page, email, password):
    page.goto(BASE + "/console/signin")
    expect(page.locator("main")).not_to_contain_text(re.compile(r"\bnull\b"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_a_team_walks_from_sign_up_to_the_audit_trail(page: Page):
    """Sign-up → verify → MFA enrollment (codes computed from the shown key) → sign-out →
    sign-in with MFA → a token created and rotated → an allowlist saved after a bad line is
    fixed → the events found in the audit trail; axe-core checks each main page on the way."""
    # Sign up: the org and its owner.
    page.goto(BASE + "/console/signup")
    shot(page, "signup")
    page.get_by_label("Organization name").fill("Acme")
    page.get_by_label("Your email").fill(OWNER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create the organization").click()
    expect(page.get_by_text("Almost there")).to_be_visible()

    # The mailed link opens the console, which takes the token out of the address bar.
    page.goto(mailed_link(OWNER, "verify-email"))
    expect(page.get_by_role("heading", name="Confirm your email address")).to_be_visible()
    assert "token" not in page.url
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.get_by_text("Your address is confirmed")).to_be_visible()

    sign_in(page, OWNER, PASSWORD)
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    shot(page, "account")

    # MFA enrollment: QR code, manual key; a wrong code shows the clock help; the code
    # computed from the shown key turns it on and shows ten recovery codes.
    nav(page, "Two-step verification")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Set it up").click()
    secret = page.get_by_test_id("manual-secret").inner_text().replace(" ", "")
    qr = page.get_by_role("img", name=re.compile("QR code"))
    expect(qr).to_be_visible()
    assert qr.get_attribute("src").startswith("data:image/png;base64,")
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code shown by the app").fill(wrong_code(totp))
    page.get_by_role("button", name="Turn it on").click()
    expect(page.get_by_test_id("clock-help")).to_be_visible()
    expect(page.get_by_test_id("clock-help")).to_contain_text("automatic date and time")
    shot(page, "mfa-enrollment")
    page.get_by_label("Code shown by the app").fill(totp.now())
    page.get_by_role("button", name="Turn it on").click()
    codes = page.get_by_test_id("recovery-codes").locator("li")
    expect(codes).to_have_count(10)
    shot(page, "recovery-codes")

    # Sign out, and back in with the second step. A code is accepted once per time step and
    # one step either side: the next step's code has not been used.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    sign_in(page, OWNER, PASSWORD)
    expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
    page.get_by_label("Code from your authenticator app").fill(wrong_code(totp))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_test_id("clock-help")).to_be_visible()
    shot(page, "signin-mfa")
    assert serious_violations(page) == [], "the MFA step"
    page.get_by_label("Code from your authenticator app").fill(totp.at(time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()

    # Sessions and own sign-in history.
    nav(page, "Sessions")
    expect(page.get_by_text("this device")).to_be_visible()
    shot(page, "sessions")
    nav(page, "Sign-in history")
    expect(page.locator("tbody tr").first).to_be_visible()
    expect(page.get_by_text("failed").first).to_be_visible()
    shot(page, "login-history")

    # An API token: secret shown once, masked until asked, copied; it works.
    nav(page, "API tokens")
    page.get_by_label("Name").fill("CI deploy")
    page.get_by_label("audit:read").check()
    page.get_by_role("button", name=re.compile("^Create")).click()
    panel = page.get_by_test_id("new-secret")
    expect(panel).to_be_visible()
    value = page.get_by_test_id("secret-value")
    hidden = value.inner_text()
    panel.get_by_role("button", name=re.compile("Show")).click()
    secret1 = value.inner_text().strip()
    assert re.fullmatch(r"gth_[0-9A-Za-z]+", secret1), secret1
    assert secret1[8:-4] not in hidden, "masked until shown"
    shot(page, "token-created")
    status, _ = api("GET", "/v1/audit?limit=1", token=secret1)
    assert status == 200
    # Listed masked, never in full.
    navigate_away_and_back(page, "API tokens")
    expect(page.get_by_role("cell", name="CI deploy", exact=True)).to_be_visible()
    assert secret1 not in page.content()
    masked = "gth_" + secret1[4:8]
    expect(page.get_by_text(re.compile(re.escape(masked)))).to_be_visible()

    # Rotate with a grace period: both secrets work until it ends.
    row = page.get_by_role("row").filter(has_text="CI deploy")
    row.get_by_label(re.compile("[Gg]race")).select_option(label="1 hour")
    row.get_by_role("button", name=re.compile("Generate new token")).click()
    expect(page.get_by_test_id("new-secret")).to_be_visible()
    page.get_by_test_id("new-secret").get_by_role("button", name=re.compile("Show")).click()
    secret2 = page.get_by_test_id("secret-value").inner_text().strip()
    assert secret2.startswith("gth_") and secret2 != secret1
    assert api("GET", "/v1/audit?limit=1", token=secret2)[0] == 200
    assert api("GET", "/v1/audit?limit=1", token=secret1)[0] == 200
    shot(page, "tokens")
    page.get_by_test_id("new-secret").get_by_role("button", name="Done").click()
    expect(page.get_by_test_id("new-secret")).to_have_count(0)
    assert secret2 not in page.content()

    # The allowlist: a bad line is marked with the server's message; fixed, previewed, saved.
    nav(page, "IP allowlist")
    box = page.get_by_label(re.compile("Allowed IP addresses"))
    box.fill("127.0.0.1 this machine\n10.0.0.01/8 office")
    page.get_by_label(re.compile("Enforce")).check()
    page.get_by_role("button", name="Save").click()
    bad = page.get_by_test_id("bad-lines")
    expect(bad).to_contain_text("Line 2")
    expect(bad).to_contain_text("leading zero")
    shot(page, "allowlist-bad-line")
    box.fill("127.0.0.1 this machine\n10.0.0.0/8 office")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("dry-run")).to_contain_text("Nobody")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text(re.compile("Saved"))).to_be_visible()
    # A list that leaves out this machine asks again before saving, and Cancel keeps it.
    box.fill("10.0.0.0/8 office")
    page.get_by_role("button", name="Save").click()
    warning = page.get_by_role("alert")
    expect(warning).to_contain_text(re.compile("your own", re.I))
    expect(warning.get_by_role("button", name="Save anyway")).to_be_visible()
    shot(page, "allowlist-self-lockout")
    warning.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("alert")).to_have_count(0)
    navigate_away_and_back(page, "IP allowlist")
    expect(page.get_by_label(re.compile("Allowed IP addresses"))).to_have_value(re.compile("127.0.0.1"))

    # Users: invite a member.
    nav(page, "Users")
    page.get_by_label("Email address").fill("new.member@acme.example")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text(re.compile("Invitation sent"))).to_be_visible()
    navigate_away_and_back(page, "Users")
    expect(page.get_by_role("cell", name="new.member@acme.example", exact=True)).to_be_visible()
    shot(page, "users")

    nav(page, "Security settings")
    expect(page.get_by_label(re.compile("Password size"))).to_have_value("12")
    shot(page, "settings")

    # The audit trail has all of it.
    nav(page, "Audit trail")
    for kind in ["org.created", "mfa.enabled", "login.succeeded", "mfa.failed", "token.created", "token.rotated", "org.allowlist_updated", "user.invited"]:
        expect(page.locator("main").get_by_text(kind, exact=True).first).to_be_visible()
    shot(page, "audit")
    for label in ["Account", "Two-step verification", "Sessions", "Sign-in history", "Users", "Security settings", "API tokens", "IP allowlist", "Audit trail"]:
        nav(page, label)
        assert serious_violations(page) == [], label
    page.get_by_label(re.compile("^Type")).fill("token.")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("main").get_by_text("token.rotated", exact=True).first).to_be_visible()
    expect(page.locator("main").get_by_text("login.succeeded", exact=True)).to_have_count(0)


def navigate_away_and_back(page: Page, label):
    nav(page, "Account")
    nav(page, label)


def test_a_locked_sign_in_counts_down_from_retry_after(page: Page):
    # Lockout counts unknown addresses too: five wrong passwords lock this one.
    email = "nobody.here@acme.example"
    for _ in range(5):
        api("POST", "/v1/auth/login", {"email": email, "password": "wrong password 1234"})
    status, locked = api("POST", "/v1/auth/login", {"email": email, "password": "wrong password 1234"})
    assert status == 423 and locked["retry_after"] > 60, locked
    sign_in(page, email, "wrong password 1234")
    expect(page.locator("form .status")).to_contain_text("locked")
    wait = page.get_by_test_id("countdown")
    expect(wait).to_contain_text(re.compile(r"Try again in \d+:\d\d"))

    def left():
        m = re.search(r"(\d+):(\d\d)", wait.inner_text())
        return int(m.group(1)) * 60 + int(m.group(2))

    first = left()
    assert locked["retry_after"] - 10 <= first <= locked["retry_after"], (first, locked["retry_after"])
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_disabled()
    # The clock is not a live region: a screen reader hears the notice once, not every tick.
    assert wait.get_attribute("aria-live") is None
    assert page.locator("[aria-live] [data-testid=countdown]").count() == 0
    shot(page, "signin-locked")
    page.wait_for_timeout(2100)
    assert left() < first


def verified_owner(org, email):
    """An org whose owner's address is verified (through the API), and that owner's session."""
    assert api("POST", "/v1/orgs", {"org_name": org, "email": email, "password": PASSWORD})[0] == 201
    token = re.search(r"token=([A-Za-z0-9_-]+)", mailed_link(email, "verify-email")).group(1)
    assert api("POST", "/v1/auth/email/verify", {"token": token})[0] == 204


def signed_in_owner(page: Page, org, email):
    """A new org's verified owner, signed in to the console."""
    verified_owner(org, email)
    sign_in(page, email, PASSWORD)
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()


def fulfill_problem(route, status, code, detail=None):
    """Answers an intercepted request with a problem+json of `status` and `code`."""
    body = {"type": "about:blank", "title": code, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    route.fulfill(status=status, content_type="application/problem+json", body=json.dumps(body))


def test_a_step_up_asks_for_the_password_and_sends_the_action_again(page: Page):
    # The server asks for a step-up only 5 minutes after sign-in, so the browser is shown
    # that answer (and then a wrong-password one) by intercepting the first two requests;
    # the third goes to the server. What is checked is the console: the dialog, the error
    # staying in it, and the action sent again with the password.
    email = "owner@delta.example"
    signed_in_owner(page, "Delta", email)
    nav(page, "API tokens")
    sent = []

    def answer(route, request):
        if request.method != "POST":
            route.continue_()
            return
        sent.append(request.post_data_json)
        if len(sent) == 1:
            fulfill_problem(route, 403, "step_up_required", "Confirm your password: you signed in more than 5 minutes ago.")
        elif len(sent) == 2:
            fulfill_problem(route, 400, "invalid_credentials", "The password is wrong.")
        else:
            route.continue_()

    page.route("**/v1/tokens", answer)
    page.get_by_label("Name").fill("nightly export")
    page.get_by_label("audit:read").check()
    page.get_by_role("button", name=re.compile("^Create")).click()
    dialog = page.get_by_role("dialog", name="Confirm it is you")
    expect(dialog).to_be_visible()
    assert serious_violations(page) == [], "the step-up dialog"
    dialog.get_by_label("Your password").fill("not my password")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_contain_text("The password is wrong.")
    dialog.get_by_label("Your password").fill(PASSWORD)
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.get_by_test_id("new-secret")).to_be_visible()
    expect(dialog).to_have_count(0)
    assert "password" not in sent[0]
    assert sent[1]["password"] == "not my password" and sent[2]["password"] == PASSWORD
    assert sent[2]["name"] == "nightly export" and sent[2]["scopes"] == ["audit:read"]


def test_an_owner_manages_a_member_from_the_users_page(page: Page):
    owner, member = "owner@epsilon.example", "member@epsilon.example"
    member_password = "copper kettle morning 31"
    verified_owner("Epsilon", owner)
    _, login = api("POST", "/v1/auth/login", {"email": owner, "password": PASSWORD})
    owner_token = login["access_token"]
    assert api("POST", "/v1/users", {"email": member, "role": "member"}, token=owner_token)[0] == 201
    token = re.search(r"token=([A-Za-z0-9_-]+)", mailed_link(member, "accept-invite")).group(1)
    status, accepted = api("POST", "/v1/invitations/accept", {"token": token, "password": member_password})
    assert status == 200, accepted
    member_id = accepted["user"]["id"]
    # The member turns MFA on, then five wrong passwords lock the account.
    _, m = api("POST", "/v1/auth/login", {"email": member, "password": member_password})
    _, enrolled = api("POST", "/v1/mfa/totp/enroll", {"password": member_password}, token=m["access_token"])
    code = pyotp.TOTP(enrolled["secret"]).now()
    assert api("POST", "/v1/mfa/totp/confirm", {"code": code}, token=m["access_token"])[0] == 200
    for _ in range(5):
        api("POST", "/v1/auth/login", {"email": member, "password": "not the password 1"})
    assert api("POST", "/v1/auth/login", {"email": member, "password": member_password})[0] == 423

    def user():
        return api("GET", f"/v1/users/{member_id}", token=owner_token)[1]

    sign_in(page, owner, PASSWORD)
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    nav(page, "Users")
    row = page.get_by_role("row").filter(has_text=member)
    expect(row).to_contain_text(re.compile("locked", re.I))

    row.get_by_label(f"New role for {member}").select_option("auditor")
    row.get_by_role("button", name="Change role").click()
    expect(page.get_by_text(f"{member} is now auditor.")).to_be_visible()
    assert user()["role"] == "auditor"

    row = page.get_by_role("row").filter(has_text=member)
    row.get_by_role("button", name="Unlock").click()
    expect(page.get_by_text(f"Unlocked {member}")).to_be_visible()
    status, body = api("POST", "/v1/auth/login", {"email": member, "password": member_password})
    assert status == 200 and body["mfa_required"] is True

    row = page.get_by_role("row").filter(has_text=member)
    row.get_by_role("button", name="Reset MFA").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Reason").fill("lost phone; identity checked on a call")
    dialog.get_by_role("button", name="Reset MFA").click()
    expect(page.get_by_text(f"Reset the MFA of {member}; they were mailed.")).to_be_visible()
    assert user()["mfa_enabled"] is False

    page.once("dialog", lambda d: d.accept())
    row = page.get_by_role("row").filter(has_text=member)
    row.get_by_role("button", name="Deactivate").click()
    expect(page.get_by_text(f"Deactivated {member}")).to_be_visible()
    assert user()["status"] == "deactivated"
    assert api("POST", "/v1/auth/login", {"email": member, "password": member_password})[0] == 401

    row = page.get_by_role("row").filter(has_text=member)
    row.get_by_role("button", name="Reactivate").click()
    expect(page.get_by_text(f"Reactivated {member}")).to_be_visible()
    assert user()["status"] == "active"
    # Nobody acts on themselves: the owner's own row has no actions.
    own = page.get_by_role("row").filter(has_text=owner)
    expect(own.get_by_role("button")).to_have_count(0)


def test_the_audit_trail_pages_back_to_the_first_event(page: Page):
    owner = "owner@zeta.example"
    verified_owner("Zeta", owner)
    _, login = api("POST", "/v1/auth/login", {"email": owner, "password": PASSWORD})
    for i in range(30):  # 60 events: a page (50) and part of the next
        status, created = api("POST", "/v1/tokens", {"name": f"batch {i}", "scopes": ["audit:read"]}, token=login["access_token"])
        assert status == 201, created
        assert api("DELETE", f"/v1/tokens/{created['token']['id']}", token=login["access_token"])[0] == 204
    sign_in(page, owner, PASSWORD)
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    nav(page, "Audit trail")
    rows = page.locator("main tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator("main").get_by_text("org.created", exact=True)).to_have_count(0)
    page.get_by_role("button", name="Older events").click()
    expect(page.locator("main").get_by_text("org.created", exact=True)).to_have_count(1)
    count = rows.count()
    assert 60 < count < 100, count
    times = [t.get_attribute("datetime") for t in page.locator("main tbody tr time").all()]
    assert times == sorted(times, reverse=True), "newest first, across pages"
    expect(page.get_by_role("button", name="Older events")).to_be_hidden()


def test_an_expired_access_token_is_refreshed_and_a_dead_session_signs_out(page: Page):
    email = "owner@theta.example"
    signed_in_owner(page, "Theta", email)
    # The server says the access token expired: the console refreshes (once, with the real
    # server) and repeats the call.
    expired = {"n": 0}

    def once_expired(route, request):
        if request.method == "GET" and expired["n"] == 0:
            expired["n"] = 1
            fulfill_problem(route, 401, "unauthenticated")
        else:
            route.continue_()

    page.route("**/v1/sessions", once_expired)
    with page.expect_request(lambda r: r.url.endswith("/v1/auth/refresh")) as refreshed:
        nav(page, "Sessions")
    assert refreshed.value.method == "POST"
    expect(page.get_by_text("this device")).to_be_visible()
    # A 503 at refresh keeps the session: the call fails, the user stays signed in.
    page.route("**/v1/auth/refresh", lambda route: fulfill_problem(route, 503, "unavailable"))
    expired["n"] = 0
    nav(page, "Account")
    nav(page, "Sessions")
    expect(page.get_by_role("heading", name="Where you are signed in")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    # The refresh token comes back reused: the session is over, and the sign-in page says why.
    page.unroute("**/v1/auth/refresh")
    page.route("**/v1/auth/refresh", lambda route: fulfill_problem(route, 401, "refresh_token_reused"))
    expired["n"] = 0
    page.get_by_role("navigation").get_by_role("link", name="Account", exact=True).click()
    page.get_by_role("navigation").get_by_role("link", name="Sessions", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("an old copy of it was used again")).to_be_visible()
    expect(page.get_by_role("navigation").get_by_role("link", name="Sessions")).to_have_count(0)


def test_the_session_refreshes_before_the_access_token_expires(page: Page):
    # The page's clock is Playwright's: 14 minutes pass in an instant.
    page.clock.install()
    signed_in_owner(page, "Lambda", "owner@lambda.example")
    with page.expect_request(lambda r: r.url.endswith("/v1/auth/refresh")):
        page.clock.run_for("14:30")
    nav(page, "Sessions")
    expect(page.get_by_text("this device")).to_be_visible()
    # A 503 at the next refresh keeps the session and tries again in 30 seconds; a refused
    # token then ends it.
    page.route("**/v1/auth/refresh", lambda route: fulfill_problem(route, 503, "unavailable"))
    with page.expect_request(lambda r: r.url.endswith("/v1/auth/refresh")):
        page.clock.run_for("14:30")
    expect(page.get_by_role("heading", name="Where you are signed in")).to_be_visible()
    page.unroute("**/v1/auth/refresh")
    page.route("**/v1/auth/refresh", lambda route: fulfill_problem(route, 401, "unauthenticated"))
    with page.expect_request(lambda r: r.url.endswith("/v1/auth/refresh")):
        page.clock.run_for("00:31")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("Your session expired. Sign in again.")).to_be_visible()


def test_escape_closes_the_step_up_dialog_and_nothing_is_sent(page: Page):
    email = "owner@iota.example"
    signed_in_owner(page, "Iota", email)
    nav(page, "API tokens")
    sent = []

    def answer(route, request):
        if request.method != "POST":
            route.continue_()
            return
        sent.append(request.post_data_json)
        fulfill_problem(route, 403, "step_up_required")

    page.route("**/v1/tokens", answer)
    page.get_by_label("Name").fill("never made")
    page.get_by_label("audit:read").check()
    create = page.get_by_role("button", name=re.compile("^Create"))
    create.click()
    dialog = page.get_by_role("dialog", name="Confirm it is you")
    dialog.get_by_label("Your password").fill("typed then abandoned")
    page.keyboard.press("Escape")
    expect(page.locator("dialog")).to_have_count(0)
    expect(page.get_by_text("Cancelled: nothing was changed.")).to_be_visible()
    expect(create).to_be_enabled()
    assert "typed then abandoned" not in page.content()
    assert len(sent) == 1 and "password" not in sent[0]


def test_an_org_that_requires_mfa_sends_its_users_to_enrollment(page: Page):
    email = "owner@kappa.example"
    signed_in_owner(page, "Kappa", email)
    nav(page, "Security settings")
    # Settings round-trip: minutes in the form, seconds on the wire, the version kept.
    page.get_by_label(re.compile("Password size")).fill("14")
    page.get_by_label(re.compile("Lock duration")).fill("20")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text(re.compile("Saved"))).to_be_visible()
    navigate_away_and_back(page, "Security settings")
    expect(page.get_by_label(re.compile("Password size"))).to_have_value("14")
    expect(page.get_by_label(re.compile("Lock duration"))).to_have_value("20")
    # The owner has no MFA: requiring it leaves their session good for enrollment only.
    page.get_by_label(re.compile("Require MFA")).check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
    expect(page.get_by_text("requires two-step verification")).to_be_visible()
    navigation = page.get_by_role("navigation")
    expect(navigation.get_by_role("link", name="Users")).to_have_count(0)
    expect(navigation.get_by_role("link", name="Sessions")).to_have_count(0)
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Set it up").click()
    secret = page.get_by_test_id("manual-secret").inner_text().replace(" ", "")
    page.get_by_label("Code shown by the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn it on").click()
    expect(page.get_by_test_id("recovery-codes").locator("li")).to_have_count(10)
    # Confirming upgrades the session: everything is back.
    nav(page, "Users")
    expect(page.get_by_role("cell", name=re.compile(re.escape(email)))).to_be_visible()


def test_a_forgotten_password_is_reset_from_the_mailed_link(page: Page):
    email = "forgetful@beta.example"
    assert api("POST", "/v1/orgs", {"org_name": "Beta", "email": email, "password": PASSWORD})[0] == 201
    page.goto(mailed_link(email, "verify-email"))
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.get_by_text("Your address is confirmed")).to_be_visible()

    page.goto(BASE + "/console/signin")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Mail me a link").click()
    expect(page.get_by_text("a link is on its way")).to_be_visible()
    page.goto(mailed_link(email, "reset-password"))
    assert "token" not in page.url
    # A breached password is refused with the server's rule, beside the field.
    page.get_by_role("textbox", name="New password").fill("password1234")
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_role("status").filter(has_text=re.compile("password", re.I)).first).to_be_visible()
    expect(page.get_by_role("textbox", name="New password")).to_have_attribute("aria-invalid", "true")
    page.get_by_role("textbox", name="New password").fill("a brand new passphrase 77")
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_text("Your password is set")).to_be_visible()
    # The link works once.
    link = mailed_link(email, "reset-password")
    page.goto(link)
    page.get_by_role("textbox", name="New password").fill("yet another passphrase 88")
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_text("no longer valid")).to_be_visible()
    sign_in(page, email, "a brand new passphrase 77")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()

    # Signed in: the password change, and the email change (nothing changes until the link).
    page.get_by_label("Current password").fill("a brand new passphrase 77")
    page.get_by_role("textbox", name="New password").fill("the third passphrase 99")
    page.get_by_role("button", name="Change the password").click()
    expect(page.get_by_text("Your password is changed")).to_be_visible()
    page.get_by_label("New email").fill("renamed@beta.example")
    page.get_by_role("textbox", name="Your password").fill("the third passphrase 99")
    page.get_by_role("button", name="Send a link to the new address").click()
    expect(page.get_by_text("nothing changes until it is opened")).to_be_visible()
    page.goto(mailed_link("renamed@beta.example", "verify-email"))
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.get_by_text("Your address is confirmed")).to_be_visible()
    sign_in(page, "renamed@beta.example", "the third passphrase 99")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("renamed@beta.example")


def test_an_invited_member_joins_and_sees_no_admin_page(page: Page):
    owner = "owner@gamma.example"
    member = "member@gamma.example"
    verified_owner("Gamma", owner)
    _, login = api("POST", "/v1/auth/login", {"email": owner, "password": PASSWORD})
    assert api("POST", "/v1/users", {"email": member, "role": "member"}, token=login["access_token"])[0] == 201

    page.goto(mailed_link(member, "accept-invite"))
    expect(page.get_by_role("heading", name="Join your organization")).to_be_visible()
    page.get_by_label("Choose a password").fill("silver lantern harbor 2026")
    page.get_by_role("button", name="Join").click()
    expect(page.get_by_text("Welcome!")).to_be_visible()
    sign_in(page, member, "silver lantern harbor 2026")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    navigation = page.get_by_role("navigation")
    expect(navigation.get_by_role("link", name="Sessions")).to_be_visible()
    for admin_page in ["Users", "Security settings", "API tokens", "IP allowlist", "Audit trail"]:
        expect(navigation.get_by_role("link", name=admin_page)).to_have_count(0)
    # Typed in by hand, an admin page is refused by the console, and its API by the server.
    page.goto(BASE + "/console/tokens")
    expect(page.locator("main h1")).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()  # a reload signs out
    sign_in(page, member, "silver lantern harbor 2026")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    page.evaluate("() => { history.pushState({}, '', '/console/audit'); dispatchEvent(new PopStateEvent('popstate')); }")
    expect(page.get_by_role("heading", name="Not for your role")).to_be_visible()
    # And the server refuses the member whatever the console shows.
    _, m = api("POST", "/v1/auth/login", {"email": member, "password": "silver lantern harbor 2026"})
    for path in ["/v1/tokens", "/v1/audit", "/v1/users", "/v1/org/allowlist"]:
        assert api("GET", path, token=m["access_token"])[0] == 403, path


def test_the_public_pages_have_no_serious_accessibility_violation(page: Page):
    for public in ["signin", "signup", "forgot-password", "reset-password?token=x", "accept-invite?token=x", "verify-email?token=x"]:
        page.goto(f"{BASE}/console/{public}")
        expect(page.locator("main h1")).to_be_visible()
        assert serious_violations(page) == [], public


def test_the_console_refuses_framing_and_inline_script(page: Page):
    resp = page.goto(BASE + "/console/signin")
    csp = resp.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    # An inline script injected into the page does not run.
    page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.__ran = true'; document.body.append(s); }""")
    assert page.evaluate("() => window.__ran === true") is False
    assert any("Content Security Policy" in e for e in page.console_errors)
    page.console_errors.clear()
