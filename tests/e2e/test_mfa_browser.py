"""MFA in a real browser (issue 6): first sign-in enrolment with the inline SVG QR code under the strict CSP
(no violation), then the console; signing out in one tab closes the console's live feed in another."""

from __future__ import annotations

import re

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from clinics.services import staff_create
from tests.conftest import PASSWORD
from tests.e2e.conftest import sign_in
from tests.e2e.test_csp import LISTENER, _violations

pytestmark = [pytest.mark.e2e, pytest.mark.fhir, pytest.mark.django_db(transaction=True)]


def test_first_sign_in_enrols_under_the_csp_then_opens_the_console(personas, live_server_url, browser_page):
    page = browser_page
    page.add_init_script(LISTENER)
    nina = staff_create(clinic=personas.north, role="nurse", username="nina", password=PASSWORD).user
    page.goto("/console/")
    page.get_by_label("Username").fill("nina")
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("#sign-in").click()
    expect(page).to_have_url(re.compile(r"/accounts/otp/enrol/"))
    expect(page.locator("figure.otp-qr svg")).to_be_visible()
    box = page.locator("figure.otp-qr svg").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100  # drawn, not blocked
    device = TOTPDevice.objects.get(user=nina, confirmed=False)
    code = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()
    page.get_by_label("Code from the app").fill(f"{code:06d}")
    page.locator("#enrol").click()
    expect(page.locator("#backup-codes li")).to_have_count(10)
    page.locator("#continue").click()
    expect(page).to_have_url(re.compile(r"/console/$"))
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live")
    assert _violations(page) == []


def test_signing_out_in_another_tab_signs_the_console_out(personas, live_server_url, browser_page):
    page = browser_page
    sign_in(page, personas.alice)
    expect(page).to_have_url(re.compile(r"/console/$"))
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live")
    other = page.context.new_page()
    other.goto("/console/")
    other.locator("form[action='/accounts/logout/'] button").click()
    # The server closes the first tab's socket (4401); the console reloads and lands on the sign-in page.
    expect(page).to_have_url(re.compile(r"/accounts/login/"), timeout=10_000)
