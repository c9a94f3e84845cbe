"""Every refused mutating path on a case is audited as `access.denied`, like a refused case look-up.

Console (session) and REST API (token): accept, release, disposition, callback attempt, acuity change and
co-sign, by carol (South) on North's case and on an unknown id (404, one row each in South's log, no North
data), and by dave on the case alice holds (409, reason "not reserved by you"). Control from the same set-up:
alice's own accept writes no `access.denied`.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from clinics.models import AuditEvent
from triage.models import Case
from triage.services import case_claim_next, case_enqueue

pytestmark = pytest.mark.django_db

UNKNOWN_ID = 987654321

CONSOLE_POSTS = {
    "accept": ("/console/cases/{id}/accept/", {}),
    "release": ("/console/cases/{id}/release/", {}),
    "disposition": ("/console/cases/{id}/disposition/", {"disposition": "home-care", "note": "x"}),
    "callback": ("/console/cases/{id}/callback-attempt/", {"result": "no_answer"}),
    "acuity": ("/console/cases/{id}/acuity/", {"acuity": "2", "reason": "worse"}),
}
API_POSTS = {
    "accept": ("/api/v1/cases/{id}/accept/", {}),
    "disposition": ("/api/v1/cases/{id}/disposition/", {"disposition": "home-care", "note": "x"}),
    "acuity": ("/api/v1/cases/{id}/acuity/", {"acuity": 2, "reason": "worse"}),
}


def _denied(**filters: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="access.denied", **filters).order_by("pk"))


@pytest.fixture
def held_by_alice(personas) -> Case:
    case_enqueue(clinic=personas.north, callback_number="+15553330003", acuity=3, patient_display="Heldby Alice")
    case = case_claim_next(clinic=personas.north, nurse=personas.alice)
    assert case is not None
    return case


def _console(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _api(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.mark.parametrize("path", sorted(CONSOLE_POSTS))
def test_console_refusals_on_another_clinics_or_an_unknown_case_are_audited(personas, held_by_alice, path):
    url, form = CONSOLE_POSTS[path]
    carol = _console(personas.carol)
    for case_id in (held_by_alice.pk, UNKNOWN_ID):
        before = len(_denied(object_id=str(case_id)))
        response = carol.post(url.format(id=case_id), form)
        assert response.status_code == 404, (path, response.status_code)
        rows = _denied(object_id=str(case_id))
        assert len(rows) == before + 1, (path, case_id)
        row = rows[-1]
        assert (row.clinic_id, row.actor_id, row.object_type) == (personas.south.pk, personas.carol.pk, "case")
        assert "Heldby" not in str(row.__dict__)
    # The two refusals read the same in the log (another clinic's case vs. no such case).
    first, second = _denied(object_id=str(held_by_alice.pk))[-1], _denied(object_id=str(UNKNOWN_ID))[-1]
    assert (first.reason, first.object_type) == (second.reason, second.object_type)
    held_by_alice.refresh_from_db()
    assert held_by_alice.state == "reserved" and held_by_alice.reserved_by_id == personas.alice.pk


@pytest.mark.parametrize("path", sorted(API_POSTS))
def test_api_refusals_on_another_clinics_case_are_audited(personas, held_by_alice, path):
    url, body = API_POSTS[path]
    before = len(_denied(clinic=personas.south))
    response = _api(personas.carol).post(url.format(id=held_by_alice.pk), body, format="json")
    assert response.status_code == 404
    rows = _denied(clinic=personas.south)
    assert len(rows) == before + 1 and rows[-1].object_id == str(held_by_alice.pk)


@pytest.mark.parametrize("path", ["accept", "release", "disposition", "callback"])
def test_acting_on_a_colleagues_reservation_is_refused_and_audited(personas, held_by_alice, path):
    url, form = CONSOLE_POSTS[path]
    response = _console(personas.dave).post(url.format(id=held_by_alice.pk), form)
    assert response.status_code in (302, 409)  # the console answers a conflict with a message and a redirect
    rows = _denied(clinic=personas.north, actor=personas.dave)
    assert [(r.object_id, r.reason) for r in rows] == [(str(held_by_alice.pk), "not reserved by you")]
    held_by_alice.refresh_from_db()
    assert held_by_alice.state == "reserved" and held_by_alice.reserved_by_id == personas.alice.pk


def test_the_holder_accepting_writes_no_refusal(personas, held_by_alice):
    response = _console(personas.alice).post(f"/console/cases/{held_by_alice.pk}/accept/")
    assert response.status_code == 302
    assert _denied() == []


def test_a_nurse_cosigning_is_refused_and_audited(personas, held_by_alice):
    from triage.services import acuity_override_request

    override = acuity_override_request(
        case_id=held_by_alice.pk, clinic=personas.north, user=personas.alice, to_acuity=5, reason="better"
    )
    response = _api(personas.dave).post(f"/api/v1/acuity-overrides/{override.pk}/cosign/", {"decision": "approve"})
    assert response.status_code == 403
    rows = _denied(clinic=personas.north, actor=personas.dave)
    assert [(r.object_type, r.object_id, r.reason) for r in rows] == [("acuity_override", str(override.pk), "role")]
    # Carol (South) on North's override id: 404, audited in South.
    response = _api(personas.carol).post(f"/api/v1/acuity-overrides/{override.pk}/cosign/", {"decision": "approve"})
    assert response.status_code == 404
    assert [r.reason for r in _denied(clinic=personas.south)] == ["not found"]
