"""Read queries of the ehr app, always scoped to the caller's clinic."""

from __future__ import annotations

from clinics.models import Clinic
from ehr.models import WriteBack


def writebacks_for_case(*, clinic: Clinic, case_id: int) -> list[WriteBack]:
    """The outbox rows of triage case `case_id` in `clinic` (none for another clinic's case), oldest first.

    Carries no PHI beyond the payload; views show `target`, `state`, `attempts`, `last_error`, `sent_at`.
    """
    return list(WriteBack.objects.filter(clinic=clinic, source_id=case_id).order_by("created_at", "pk"))
