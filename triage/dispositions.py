"""The disposition ladder: where the nurse sends the patient, most urgent first.

Each disposition implies an acuity level on the 5-level CTAS scale (1 = resuscitation .. 5 = non-urgent).
The ladder follows the common structure of telephone-triage dispositions (emergency services now, emergency
department now, emergency or urgent care within hours, clinician today / 24 h / 3 days / 2 weeks, home care);
the wording is CareLine's own.

The ladder is configurable per clinic (`triage.models.DispositionRung`): a clinic with rows uses exactly its
active rows; a clinic without rows uses `DISPOSITIONS`. `get_disposition` reads the default ladder;
`ladder_for(clinic)` / `disposition_for(clinic, code)` read a clinic's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from triage.models.protocols import DispositionRung

if TYPE_CHECKING:
    from clinics.models import Clinic


@dataclass(frozen=True)
class Disposition:
    """One rung of the ladder. `acuity` is the CTAS level (1-5) the disposition implies."""

    code: str
    display: str
    display_es: str
    acuity: int


DISPOSITIONS: tuple[Disposition, ...] = (
    Disposition("call-911", "Call 911 now", "Llame al 911 ahora", 1),
    Disposition("ed-now", "Go to the emergency department now", "Vaya a urgencias ahora", 2),
    Disposition("ed-ucc-hours", "Go to the ED or urgent care within 4 hours", "Vaya a urgencias en 4 horas", 3),
    Disposition("clinician-today", "See a clinician today", "Consulte a un médico hoy", 3),
    Disposition("clinician-24h", "See a clinician within 24 hours", "Consulte a un médico en 24 horas", 4),
    Disposition("clinician-3d", "See a clinician within 3 days", "Consulte a un médico en 3 días", 4),
    Disposition("clinician-2w", "See a clinician within 2 weeks", "Consulte a un médico en 2 semanas", 5),
    Disposition("home-care", "Home care", "Cuidados en casa", 5),
)

BY_CODE: dict[str, Disposition] = {d.code: d for d in DISPOSITIONS}


def get_disposition(code: str) -> Disposition:
    """Return the disposition with `code`. Raises KeyError for an unknown code."""
    return BY_CODE[code]


def ladder_for(clinic: Clinic | None) -> tuple[Disposition, ...]:
    """The disposition ladder of `clinic`, most urgent first (the default ladder when it has no rungs)."""
    if clinic is None:
        return DISPOSITIONS
    rungs = DispositionRung.objects.filter(clinic=clinic, active=True).order_by("position", "acuity")
    ladder = tuple(Disposition(r.code, r.display, r.display_es, r.acuity) for r in rungs)
    return ladder or DISPOSITIONS


def ladder_codes(clinic: Clinic | None) -> frozenset[str]:
    """The disposition codes valid in `clinic`."""
    return frozenset(d.code for d in ladder_for(clinic))


def disposition_for(clinic: Clinic | None, code: str) -> Disposition:
    """The disposition `code` on `clinic`'s ladder. Raises KeyError when the clinic's ladder has no such code."""
    for disposition in ladder_for(clinic):
        if disposition.code == code:
            return disposition
    raise KeyError(code)
