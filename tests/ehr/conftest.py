"""Shared set-up of the ehr tests: an `Outcome` factory (a closed triage case as the EHR receives it)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ehr.types import Answer, Outcome

NOTE = "Fever 38.9 C since yesterday, drinking well.\nAdvised paracetamol | fluids ^ rest; call back if worse."


@pytest.fixture
def make_outcome() -> Callable[..., Outcome]:
    """`make_outcome(patient_fhir_id, **overrides)`: an Outcome with a fresh case uuid (tests share one server)."""

    def make(patient_fhir_id: str = "", **overrides: Any) -> Outcome:
        ended = datetime(2026, 11, 21, 3, 15, tzinfo=UTC)
        values: dict[str, Any] = {
            "case_uuid": str(uuid.uuid4()),
            "case_id": 4242,
            "clinic_slug": "north",
            "clinic_name": "North Clinic",
            "patient_fhir_id": patient_fhir_id,
            "patient_display": "Betty O'Conner" if patient_fhir_id else "",
            "started_at": ended - timedelta(minutes=12),
            "ended_at": ended,
            "acuity": 3,
            "disposition_code": "see_pcp_24h",
            "disposition_display": "See your doctor within 24 hours",
            "note": NOTE,
            "nurse_username": "alice",
            "nurse_display": "Alice Nurse",
            "protocol_code": "fever-adult",
            "protocol_title": "Fever (adult)",
            "protocol_version": "2",
            "answers": (
                Answer("breathing", "Trouble breathing?", False),
                Answer("fever3d", "Fever over 3 days?", True),
            ),
        }
        values.update(overrides)
        return Outcome(**values)

    return make
