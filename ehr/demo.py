"""The demo patients shipped in `ehr/demo_data/patients/` (synthetic; see that folder's README).

One source of truth for the demo: `load_demo_patients` posts these bundles to the demo EHR, and the phone
simulator offers their phone numbers as caller IDs.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from ehr.phone import to_e164

DEMO_PATIENTS_DIR = Path(__file__).resolve().parent / "demo_data" / "patients"


@cache
def demo_callers() -> tuple[dict[str, str], ...]:
    """Caller IDs (E.164) of the demo patients, households merged: `({"number", "label"}, ...)`.

    The label names each patient with the birth date to key in (MMDDYYYY), so a demo user can confirm
    identity on the simulator's keypad. Synthetic data only.
    """
    index: dict[str, Any] = json.loads((DEMO_PATIENTS_DIR / "index.json").read_text())
    by_number: dict[str, list[str]] = {}
    for patient in index["patients"]:
        year, month, day = patient["birthDate"].split("-")
        label = f"{patient['name'].get('text', patient['file'])} {month}{day}{year}"
        if patient.get("language", "").startswith("es"):
            label += " (español)"
        for phone in patient["phones"]:
            by_number.setdefault(to_e164(phone), []).append(label)
    return tuple({"number": number, "label": ", ".join(labels)} for number, labels in by_number.items())
