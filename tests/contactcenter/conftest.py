"""Helpers for console tests: cases in the personas' clinics."""

from __future__ import annotations

from typing import Any

import pytest

from triage.models import Case

CHEST_PAIN_ANSWERS = [
    {
        "question": "cp-collapse",
        "text": "Is the person unconscious, very hard to wake, or struggling to breathe?",
        "answer": False,
    },
    {"question": "cp-crushing", "text": "Is the pain crushing or pressure-like?", "answer": False},
    {"question": "cp-ongoing", "text": "Has the pain lasted more than five minutes?", "answer": True},
]


@pytest.fixture
def make_case() -> Any:
    """`make_case(clinic, acuity=2, **fields)` -> a queued Case (chest-pain protocol, unidentified by default)."""
    from triage.services import case_enqueue

    def make(clinic: Any, acuity: int = 2, **fields: Any) -> Case:
        values: dict[str, Any] = {
            "callback_number": "+15555550100",
            "protocol_code": "chest-pain",
            "protocol_version": "2026.11.0",
            "answers": CHEST_PAIN_ANSWERS,
            "suggested_disposition": "ed-now",
        }
        values.update(fields)
        return case_enqueue(clinic=clinic, acuity=acuity, **values)

    return make
