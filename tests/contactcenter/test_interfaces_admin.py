"""The interface analyst's page (/console/admin/interfaces/): counts per destination and state, rows with
their errors, Retry and Skip with a reason and an audit row; admins only, scoped to the clinic. The rows are
made by the real outbox against a real MLLP peer (tests/fixtures/mllp.py)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from clinics.models import AuditEvent
from clinics.services import staff_create
from ehr.models import WriteBack
from ehr.services import writeback_enqueue
from tests.conftest import PASSWORD
from tests.ehr.conftest import make_outcome  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

URL = "/console/admin/interfaces/"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admins(personas):
    """`erin` admin of North, `frank` admin of South."""
    erin = staff_create(clinic=personas.north, role="admin", username="erin", password=PASSWORD).user
    frank = staff_create(clinic=personas.south, role="admin", username="frank", password=PASSWORD).user
    return erin, frank


@pytest.fixture
def outbox(settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks):  # noqa: F811
    """North: one case sent over HL7 (FHIR skipped: caller unidentified) and one refused with AR (dead),
    both on ORU^R01 and MDM^T02; the fixture returns the dead ORU row."""
    settings.HL7_MLLP_HOST, settings.HL7_MLLP_PORT, settings.HL7_TIMEOUT_SECONDS = mllp_peer.host, mllp_peer.port, 3
    personas.north.hl7_outbound_types = ["ORU^R01", "MDM^T02"]
    personas.north.save(update_fields=["hl7_outbound_types"])
    with django_capture_on_commit_callbacks(execute=True):
        writeback_enqueue(clinic=personas.north, outcome=make_outcome("", case_id=1))
    mllp_peer.ack_code = "AR"
    with django_capture_on_commit_callbacks(execute=True):
        writeback_enqueue(clinic=personas.north, outcome=make_outcome("", case_id=2))
    mllp_peer.ack_code = "AA"
    return WriteBack.objects.get(source_id=2, message_type="ORU^R01")


def _counts(content: bytes, destination: str) -> dict[str, int]:
    row = re.search(rf'<tr data-destination="{re.escape(destination)}">(.*?)</tr>', content.decode(), re.S)
    assert row, destination
    return {s: int(n) for s, n in re.findall(r'data-state="(\w+)"><a [^>]*>(\d+)</a>', row.group(1))}


def test_admin_sees_counts_per_destination_and_the_rows(personas, admins, outbox):
    erin, _ = admins
    page = logged_in(erin).get(URL)
    assert page.status_code == 200
    assert _counts(page.content, "fhir")["skipped"] == 2
    assert _counts(page.content, "hl7v2 ORU^R01") | {} == {
        "pending": 0, "retrying": 0, "held": 0, "sent": 1, "failed": 0, "dead": 1, "skipped": 0,
    }  # fmt: skip
    assert (_counts(page.content, "hl7v2 MDM^T02")["sent"], _counts(page.content, "hl7v2 MDM^T02")["dead"]) == (1, 1)
    assert f'data-writeback-id="{outbox.pk}" data-state="dead"'.encode() in page.content
    assert b"HL7 ACK AR" in page.content

    dead_only = logged_in(erin).get(URL, {"destination": "hl7v2 ORU^R01", "state": "dead"})
    assert re.findall(rb'data-writeback-id="(\d+)"', dead_only.content) == [str(outbox.pk).encode()]


def test_nurses_supervisors_and_other_clinics_are_denied(personas, admins, outbox):
    _, frank = admins
    for user in (personas.alice, personas.bob):
        assert logged_in(user).get(URL).status_code == 403
        assert logged_in(user).post(f"{URL}{outbox.pk}/retry/", {"reason": "x"}).status_code == 403
    south_page = logged_in(frank).get(URL)
    assert south_page.status_code == 200 and b"data-writeback-id" not in south_page.content
    assert logged_in(frank).post(f"{URL}{outbox.pk}/skip/", {"reason": "x"}).status_code == 404
    assert Client().get(URL).status_code == 302  # login first
    assert WriteBack.objects.get(pk=outbox.pk).state == "dead"
    assert not AuditEvent.objects.filter(action__startswith="writeback.").exists()


def test_retry_sends_the_dead_message_now_and_is_audited(
    personas, admins, outbox, mllp_peer, django_capture_on_commit_callbacks
):
    erin, _ = admins
    before = len(mllp_peer.messages)

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(erin).post(f"{URL}{outbox.pk}/retry/", {"reason": "receiver mapping fixed (INC-42)"})

    assert response.status_code == 302
    row = WriteBack.objects.get(pk=outbox.pk)
    assert (row.state, row.operator_note) == ("sent", "receiver mapping fixed (INC-42)")
    assert len(mllp_peer.messages) == before + 1
    audit = AuditEvent.objects.get(action="writeback.retry")
    assert (audit.clinic, audit.actor, audit.object_type, audit.object_id) == (
        personas.north, erin, "writeback", str(outbox.pk),
    )  # fmt: skip
    assert audit.reason == "receiver mapping fixed (INC-42)"  # the audit row says why, not only who


def test_skip_never_sends_and_needs_a_reason(personas, admins, outbox, mllp_peer, django_capture_on_commit_callbacks):
    erin, _ = admins
    before = len(mllp_peer.messages)

    refused = logged_in(erin).post(f"{URL}{outbox.pk}/skip/", {"reason": "  "}, follow=True)
    assert b"Give a reason" in refused.content
    assert WriteBack.objects.get(pk=outbox.pk).state == "dead"

    with django_capture_on_commit_callbacks(execute=True):
        logged_in(erin).post(f"{URL}{outbox.pk}/skip/", {"reason": "sent by hand to HIM"})

    row = WriteBack.objects.get(pk=outbox.pk)
    assert (row.state, row.operator_note) == ("skipped", "sent by hand to HIM")
    assert len(mllp_peer.messages) == before
    assert AuditEvent.objects.filter(action="writeback.skip", object_id=str(outbox.pk), actor=erin).count() == 1
    # A sent message can be neither retried nor skipped.
    sent = WriteBack.objects.filter(clinic=personas.north, state="sent").first()
    page = logged_in(erin).post(f"{URL}{sent.pk}/retry/", {"reason": "again"}, follow=True)
    assert b"cannot be changed" in page.content
    assert WriteBack.objects.get(pk=sent.pk).state == "sent"
