"""Chart-based risk modifiers for a queued call: read the EHR chart, then `triage.services.case_apply_risk`.

Runs in a Celery task after the case is committed (`ivr.tasks.apply_chart_risk`), never in the webhook
request path: the caller is already in line at the protocol's acuity, and the chart can only raise it.
This module orchestrates the two lower apps (ehr reads the chart, triage decides), which may not import
each other (DESIGN §3).
"""

from __future__ import annotations

import logging
from datetime import date

from django.utils import timezone

from ehr.services import load_patient_context
from ehr.types import EhrError
from triage import risk
from triage.models import OPEN_STATES, Case
from triage.services import case_apply_risk

logger = logging.getLogger(__name__)


def chart_risk_apply(*, case_id: int, clinic_id: int) -> str:
    """Apply the chart rules (and age rules from the chart's birth date) to case `case_id` of clinic `clinic_id`.

    Returns what happened: "no-patient" (unidentified), "closed" (nothing to raise), "ehr-unavailable"
    (the chart could not be read; the nurse sees the chart error, nothing is raised), or "applied:<n>"
    with the number of new rule hits. Safe to run twice (rules already recorded are skipped).
    """
    case = (
        Case.objects.filter(pk=case_id, clinic_id=clinic_id)
        .select_related("clinic")
        .only("pk", "clinic", "patient_fhir_id", "state", "patient_birth_date")
        .first()
    )
    if case is None or not case.patient_fhir_id:
        return "no-patient"
    if case.state not in OPEN_STATES:
        return "closed"
    try:
        chart = load_patient_context(case.patient_fhir_id, case_key=str(case.uuid))
    except EhrError:
        # No PHI in logs: the case id is enough.
        logger.warning("chart risk check skipped for case %s: EHR unavailable", case.pk)
        return "ehr-unavailable"
    birth_date = case.patient_birth_date
    if birth_date is None and chart.birth_date:
        try:
            birth_date = date.fromisoformat(chart.birth_date[:10])
        except ValueError:
            birth_date = None
    facts = risk.facts_from_chart(
        conditions=[c.text for c in chart.conditions],
        medications=[m.text for m in chart.medications],
        birth_date=birth_date,
        today=timezone.localdate(),
    )
    hits = case_apply_risk(case_id=case.pk, clinic=case.clinic, facts=facts)
    return f"applied:{len(hits)}"
