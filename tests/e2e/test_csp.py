"""The console works under the Content-Security-Policy (issue 6, Edges): queue, case page, simulator, dashboard.

Real daphne, Redis channel layer and headless Chromium. Every page must carry the policy, the browser must
report no violation (a `securitypolicyviolation` listener injected before any page script, and Chromium's own
console messages), and the page must still work: the WebSocket status turns live, an htmx partial refresh
shows a new case, the simulator places a call. The control at the end shows the listener does see a
violation (an inline <style> added by script is blocked), so "no violation" is a real observation.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import complete_otp_step
from triage.services import case_enqueue

pytestmark = [pytest.mark.e2e, pytest.mark.fhir, pytest.mark.django_db(transaction=True)]

LISTENER = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def _violations(page: Any) -> list[str]:
    return list(page.evaluate("() => window.__csp || []"))


def _goto(page: Any, path: str) -> Any:
    response = page.goto(path)
    assert response is not None and response.status == 200, path
    policy = response.headers.get("content-security-policy", "")
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    return response


def test_console_pages_work_under_the_policy_with_no_violation(personas, live_server_url, browser_page):
    page = browser_page
    page.add_init_script(LISTENER)
    console_messages: list[str] = []
    page.on("console", lambda message: console_messages.append(message.text))

    # Sign in as the supervisor (queue, case page and dashboard are all open to her).
    _goto(page, "/accounts/login/")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("#sign-in").click()
    complete_otp_step(page, personas.bob)
    expect(page).to_have_url(re.compile(r"/console/$"))

    # Queue: live feed, and a new case arrives through the htmx partial refresh.
    _goto(page, "/console/")
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live")
    case = case_enqueue(clinic=personas.north, acuity=2, callback_number="+15555550100")
    expect(page.locator(f'#queue-table tr[data-case-id="{case.pk}"]')).to_be_visible(timeout=10_000)
    assert _violations(page) == []

    # Case page.
    _goto(page, f"/console/cases/{case.pk}/")
    expect(page.locator("#case-state")).to_be_visible()
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live")
    assert _violations(page) == []

    # Dashboard.
    _goto(page, "/console/dashboard/")
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live")
    assert _violations(page) == []

    # Simulator: its stylesheet (moved out of the template) applies and a call goes through.
    _goto(page, "/simulator/")
    assert page.evaluate("() => getComputedStyle(document.querySelector('header')).backgroundColor") == (
        "rgb(31, 78, 121)"
    )
    page.locator("#sim-to").select_option(personas.north.twilio_number)
    page.locator("#sim-call").click()
    expect(page.locator("#sim-log")).to_contain_text("911")
    assert _violations(page) == []
    assert [m for m in console_messages if "Content Security Policy" in m] == []

    # Control: an inline <style> injected by script is blocked and reported by the same listener.
    page.evaluate(
        "() => { const s = document.createElement('style'); s.textContent = 'body{}'; document.head.append(s); }"
    )
    page.wait_for_function("() => window.__csp.length > 0")
    assert any(v.startswith("style-src") for v in _violations(page))
    assert any("Content Security Policy" in m for m in console_messages)
