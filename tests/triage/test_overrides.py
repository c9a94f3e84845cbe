"""Nurse acuity override (eCTAS rule): raise freely with a reason; lower only with a supervisor's co-sign."""

from __future__ import annotations

import pytest

from triage.exceptions import InvalidOverride, OverrideNotAllowed
from triage.models import AcuityOverride, CaseEvent, CaseState
from triage.services import acuity_override_cosign, acuity_override_request, case_enqueue

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(personas):
    return case_enqueue(clinic=personas.north, callback_number="+15550001111", acuity=3)


def test_a_nurse_raises_acuity_at_once_with_a_reason(personas, case):
    override = acuity_override_request(
        case_id=case.pk, clinic=personas.north, user=personas.alice, to_acuity=2, reason="sounds short of breath"
    )
    case.refresh_from_db()
    assert override.status == AcuityOverride.Status.APPLIED and case.acuity == 2
    event = case.events.get(kind=CaseEvent.Kind.ACUITY_OVERRIDE)
    assert "raised acuity 3 -> 2" in event.summary and event.actor == personas.alice


def test_a_nurse_lowering_waits_for_a_supervisor_and_the_case_keeps_its_acuity(personas, case):
    override = acuity_override_request(
        case_id=case.pk, clinic=personas.north, user=personas.alice, to_acuity=5, reason="pain resolved"
    )
    case.refresh_from_db()
    assert override.status == AcuityOverride.Status.PENDING and case.acuity == 3
    assert any("needs a supervisor co-sign" in e.summary for e in case.events.all())

    done = acuity_override_cosign(override_id=override.pk, clinic=personas.north, supervisor=personas.bob)
    case.refresh_from_db()
    assert done.status == AcuityOverride.Status.APPLIED and done.cosigned_by == personas.bob and case.acuity == 5
    assert any("co-signed lowering acuity 3 -> 5" in e.summary for e in case.events.all())


def test_a_nurse_cannot_cosign(personas, case):
    override = acuity_override_request(
        case_id=case.pk, clinic=personas.north, user=personas.alice, to_acuity=4, reason="improving"
    )
    with pytest.raises(OverrideNotAllowed):
        acuity_override_cosign(override_id=override.pk, clinic=personas.north, supervisor=personas.dave)
    case.refresh_from_db()
    assert case.acuity == 3 and AcuityOverride.objects.get().status == AcuityOverride.Status.PENDING


def test_a_supervisor_cannot_cosign_their_own_lowering(personas, case):
    override = acuity_override_request(
        case_id=case.pk, clinic=personas.north, user=personas.bob, to_acuity=4, reason="x"
    )
    with pytest.raises(OverrideNotAllowed):
        acuity_override_cosign(override_id=override.pk, clinic=personas.north, supervisor=personas.bob)


def test_another_clinics_staff_can_neither_request_nor_cosign(personas, case):
    with pytest.raises(OverrideNotAllowed):
        acuity_override_request(case_id=case.pk, clinic=personas.north, user=personas.carol, to_acuity=2, reason="x")
    override = acuity_override_request(
        case_id=case.pk, clinic=personas.north, user=personas.alice, to_acuity=4, reason="x"
    )
    with pytest.raises(AcuityOverride.DoesNotExist):  # South's view: the request does not exist
        acuity_override_cosign(override_id=override.pk, clinic=personas.south, supervisor=personas.carol)


def test_a_supervisor_declines_and_nothing_changes(personas, case):
    override = acuity_override_request(
        case_id=case.pk, clinic=personas.north, user=personas.alice, to_acuity=5, reason="x"
    )
    declined = acuity_override_cosign(
        override_id=override.pk, clinic=personas.north, supervisor=personas.bob, approve=False
    )
    case.refresh_from_db()
    assert declined.status == AcuityOverride.Status.DECLINED and case.acuity == 3
    with pytest.raises(InvalidOverride):  # decided once
        acuity_override_cosign(override_id=override.pk, clinic=personas.north, supervisor=personas.bob)


def test_a_raise_after_a_pending_lowering_makes_it_stale(personas, case):
    lowering = acuity_override_request(
        case_id=case.pk, clinic=personas.north, user=personas.alice, to_acuity=5, reason="x"
    )
    acuity_override_request(case_id=case.pk, clinic=personas.north, user=personas.dave, to_acuity=2, reason="worse")
    lowering.refresh_from_db()
    assert lowering.status == AcuityOverride.Status.STALE
    with pytest.raises(InvalidOverride):
        acuity_override_cosign(override_id=lowering.pk, clinic=personas.north, supervisor=personas.bob)
    case.refresh_from_db()
    assert case.acuity == 2


@pytest.mark.parametrize(
    ("to_acuity", "reason", "message"), [(2, "  ", "reason"), (3, "x", "already"), (6, "x", "1 to 5")]
)
def test_malformed_changes_are_refused(personas, case, to_acuity, reason, message):
    with pytest.raises(InvalidOverride, match=message):
        acuity_override_request(
            case_id=case.pk, clinic=personas.north, user=personas.alice, to_acuity=to_acuity, reason=reason
        )


def test_only_open_cases_and_one_pending_lowering(personas, case):
    acuity_override_request(case_id=case.pk, clinic=personas.north, user=personas.alice, to_acuity=4, reason="x")
    with pytest.raises(InvalidOverride, match="already waiting"):
        acuity_override_request(case_id=case.pk, clinic=personas.north, user=personas.dave, to_acuity=5, reason="y")
    case.state = CaseState.CLOSED
    case.save()
    with pytest.raises(InvalidOverride, match="open case"):
        acuity_override_request(case_id=case.pk, clinic=personas.north, user=personas.alice, to_acuity=2, reason="x")
