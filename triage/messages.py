"""Cases reached by text message: finding a patient's open case by phone number, raising acuity on words.

`ivr` (inbound SMS) calls these; triage never imports ivr (DESIGN §3). The screening rule itself (which
words raise to which acuity, and its sources) lives with the SMS parsing in `ivr.keywords`.
"""

from __future__ import annotations

from django.db import transaction

from clinics import events
from clinics.models import Clinic
from triage.models import OPEN_STATES, Case, CaseEvent
from triage.services import case_add_event


def open_case_for_number(*, clinic: Clinic, number: str, patient_fhir_ids: frozenset[str] = frozenset()) -> Case | None:
    """The most recent open case of `clinic` whose callback number is `number` (E.164) or whose patient is
    one of `patient_fhir_ids` (FHIR Patient ids the number belongs to); None when there is none.

    Never looks at another clinic's cases. `callback_number` is encrypted at rest, so the comparison is made
    in Python over the clinic's open cases (a nurse line holds tens of open cases, not thousands).
    """
    candidates = Case.objects.filter(clinic=clinic, state__in=OPEN_STATES).order_by("-created_at", "-pk")
    for case in candidates:
        if case.callback_number == number or (case.patient_fhir_id and case.patient_fhir_id in patient_fhir_ids):
            return case
    return None


RULE_LABELS = {"emergency_words": "emergency words", "worse_words": "words saying the patient feels worse"}


@transaction.atomic
def case_raise_from_message(*, case_id: int, to_acuity: int, rule: str) -> Case:
    """Raise an open case's acuity to `to_acuity` (1-5) because the patient's text matched `rule`
    ("emergency_words" / "worse_words", see `ivr.keywords`); never lowers it. The timeline names the rule,
    never the words (symptoms are PHI: they stay in the encrypted message body).
    Publishes `case.updated` with `fields: ["acuity"]`.
    Raises Case.DoesNotExist.
    """
    case = Case.objects.select_for_update().get(pk=case_id)
    before = case.acuity
    if to_acuity < case.acuity and case.state in OPEN_STATES:
        case.acuity = to_acuity
        case.save(update_fields=["acuity"])
        case_add_event(
            case=case,
            kind=CaseEvent.Kind.RISK,
            summary=f"Patient's text has {RULE_LABELS.get(rule, rule)}: acuity {before} -> {to_acuity}; "
            "patient told to call 911",
            detail={"rule": rule, "from": before, "to": to_acuity},
        )
        events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["acuity"]})
    return case
