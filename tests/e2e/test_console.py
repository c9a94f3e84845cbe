"""The nurse's whole loop in a real browser: sign in, see a call arrive live, take it, read the chart,
document the disposition, and find the outcome filed in the EHR.

Real peers: daphne (ASGI: pages, WebSocket), PostgreSQL, Redis (channel layer, cache), sekmet-fhir (chart
and write-back), headless Chromium. The case is enqueued with `triage.services.case_enqueue` in a committed
transaction (the lead will switch this to a simulated phone call).
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
from triage.models import Case, CaseState
from triage.services import case_enqueue

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
    expect(page).to_have_url(re.compile(r"/console/$"))
    expect(page.locator("#queue-empty")).to_be_visible()
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live")

    # A call is triaged and queued (committed): it appears without a reload. The queue polls only every
    # 30 s, so showing up within 10 s proves the WebSocket event triggered the resync.
    case = case_enqueue(
        clinic=personas.north,
        callback_number="+15555550123",
        acuity=2,
        protocol_code="chest-pain",
        protocol_version="2026.11.0",
        answers=[
            {"question": "cp-collapse", "text": "Is the person unconscious?", "answer": False},
            {"question": "cp-crushing", "text": "Is the pain crushing?", "answer": False},
            {"question": "cp-ongoing", "text": "Has the pain lasted more than five minutes?", "answer": True},
        ],
        suggested_disposition="ed-now",
        patient_fhir_id=patient["server_id"],
        patient_display="Elodia Skiles",
    )
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
