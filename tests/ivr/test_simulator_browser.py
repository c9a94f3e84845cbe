"""The phone simulator page in a real browser (Chromium via Playwright) against the live test server."""

from __future__ import annotations

import shutil

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from triage.models import Case, CaseState

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chromium_path() -> str:
    if not shutil.which(CHROMIUM):
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return CHROMIUM


async def test_a_call_from_the_browser_reaches_the_queue_and_hangs_up(personas, fhir, live_server, chromium_path):
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=["--no-sandbox", "--disable-background-networking"]
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{live_server.url}/simulator/")
            await page.select_option("#sim-from", "+15550009999")  # not in any EHR: no FHIR needed
            await page.click("#sim-call")
            await page.wait_for_selector("#sim-state[data-state='in-call']")
            assert "dial 911" in await page.inner_text("#sim-log")
            await page.keyboard.press("1")  # keyboard digits work like the keypad
            # Selectors, not string predicates: the Content-Security-Policy (no 'unsafe-eval') refuses those.
            await page.wait_for_selector("#sim-log:has-text('To speak with a nurse, press 0.')")
            await page.click("[data-digit='0']")
            await page.wait_for_selector("#sim-state[data-state='on-hold']")
            await page.wait_for_selector("#sim-log:has-text('number 1 in line')")
            await page.click("#sim-hangup")
            await page.wait_for_selector("#sim-state[data-state='ended']")
        finally:
            await browser.close()

    case = await sync_to_async(Case.objects.get)()
    await sync_to_async(connections.close_all)()  # the ORM thread's connection, before the test DB is dropped
    assert case.state == CaseState.QUEUED
    assert case.contact_preference == Case.ContactPreference.CALLBACK  # hung up while holding
