"""The nurse's whole loop in a real browser: sign in, see a call arrive live, take it, read the chart,
document the disposition, and find the outcome filed in the EHR.

Real peers: daphne (ASGI: pages, WebSocket, Twilio webhooks), PostgreSQL, Redis (channel layer, cache),
sekmet-fhir (caller identification, chart and write-back), headless Chromium. The case comes from a call
placed in the phone simulator page, which signs each webhook exactly as Twilio would and posts it over
HTTP to the same server.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ehr.models import WriteBack
from tests.conftest import PASSWORD
from tests.e2e.conftest import complete_otp_step
from triage.models import Case, CaseState
from triage.protocols import get_protocol

pytestmark = [pytest.mark.e2e, pytest.mark.fhir, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def snapshot(page, name: str) -> None:
    """Save a screenshot when CARELINE_E2E_ARTIFACTS names a folder (for looking at the pages)."""
    folder = os.environ.get("CARELINE_E2E_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_nurse_takes_a_live_call_reads_the_chart_and_documents_it(personas, fhir, live_server_url, browser_page):
    page = browser_page
    patient = fhir.patient("skiles-elodia")

    # Sign in; the queue is empty and the live feed is connected.
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("#sign-in").click()
    complete_otp_step(page, personas.alice)
    expect(page).to_have_url(re.compile(r"/console/$"))
    expect(page.locator("#queue-empty")).to_be_visible()
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live")

    # A patient calls from the simulator (second tab): English, birth date on the keypad, adult, chest pain,
    # "no, no, yes" -> acuity 2 (go to the ED now), then chooses a callback and hangs up.
    sim = page.context.new_page()
    sim.goto("/simulator/")
    sim.locator("#sim-from").select_option("+15556437275")  # Elodia Skiles, 555-643-7275 in the EHR
    sim.locator("#sim-to").select_option(personas.north.twilio_number)
    sim.locator("#sim-call").click()
    expect(sim.locator("#sim-log")).to_contain_text("911")
    log = sim.locator("#sim-log")

    def press(digits: str, then_hear: str) -> None:
        for digit in digits:
            sim.locator(f'.sim-key[data-digit="{digit}"]').click()
        expect(log).to_contain_text(then_hear)

    chest_pain = get_protocol("chest-pain")
    press("1", "date of birth")
    press("04082002", "about an adult")
    press("1", "chest pain")  # adult
    press("1", chest_pain.questions[0].en)
    press("2", chest_pain.questions[1].en)
    press("2", chest_pain.questions[2].en)
    # Yes: pain for more than five minutes. The case is queued before the caller hears the hold-or-callback
    # menu; press 2 only once that menu (its <Gather>) has reached the simulator, as a caller would.
    press("1", "To get a call back and keep your place in line, press 2.")
    wait_for(lambda: Case.objects.filter(clinic=personas.north, state=CaseState.QUEUED).exists())
    sim.locator('.sim-key[data-digit="2"]').click()  # callback rather than hold
    expect(sim.locator("#sim-state")).to_have_attribute("data-state", "ended")
    case = Case.objects.get(clinic=personas.north)
    assert case.patient_fhir_id == patient["server_id"]
    assert case.acuity == 2 and case.suggested_disposition == "ed-now"
    assert case.contact_preference == Case.ContactPreference.CALLBACK
    page.bring_to_front()

    row = page.locator(f'#queue-table tr[data-case-id="{case.pk}"]')
    expect(row).to_be_visible(timeout=10_000)
    expect(row).to_contain_text("2 · Emergent")
    expect(page.locator("#queue-summary")).to_have_text("1 open case")
    snapshot(page, "1-queue")

    # N takes the next case and opens it; the chart shows the patient's allergies from the EHR.
    page.keyboard.press("n")
    expect(page).to_have_url(re.compile(rf"/console/cases/{case.pk}/$"))
    expect(page.locator("#case-state")).to_have_attribute("data-state", "reserved")
    expect(page.locator("#chart-allergies li")).to_have_count(9)
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live")
    snapshot(page, "2-case-reserved")

    # A accepts the reservation.
    page.keyboard.press("a")
    expect(page.locator("#case-state")).to_have_attribute("data-state", "in_progress")

    # The disposition form defaults to the protocol's suggestion; the nurse changes it and writes a note.
    expect(page.locator("#disposition-select")).to_have_value("ed-now")
    page.locator("#disposition-select").select_option("ed-ucc-hours")
    page.locator("#disposition-note").fill("Pain on breathing, no red flags. Urgent care within 4 h.")
    page.locator("#complete-case").click()

    expect(page).to_have_url(re.compile(r"/console/$"))
    expect(page.locator(".messages")).to_contain_text(f"Case {case.pk} closed")
    expect(page.locator("#queue-empty")).to_be_visible()

    case.refresh_from_db()
    assert case.state == CaseState.CLOSED
    assert case.disposition == "ed-ucc-hours"
    assert case.reserved_by == personas.alice

    # The outcome reaches the EHR (outbox -> eager Celery task in the server process -> FHIR).
    wait_for(lambda: WriteBack.objects.filter(source_id=case.pk, target="fhir", state="sent").exists())
    bundle = fhir.search(f"Encounter?identifier=urn:careline:triage-case|{case.uuid}")
    assert bundle["total"] == 1

    # The case page shows the closed state and the write-back as sent.
    page.goto(f"/console/cases/{case.pk}/")
    expect(page.locator("#case-state")).to_have_attribute("data-state", "closed")
    expect(page.locator('#writeback-state [data-target="fhir"]')).to_have_attribute("data-state", "sent")
    snapshot(page, "3-case-closed")
    assert Case.objects.get(pk=case.pk).state == CaseState.CLOSED
