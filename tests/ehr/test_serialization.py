"""`ehr.serialization`: the outbox payload and the cached chart round-trip through JSON unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from ehr.serialization import context_from_dict, context_to_dict, outcome_from_dict, outcome_to_dict
from ehr.types import ChartEntry, PatientContext


def test_outcome_round_trips_through_json(make_outcome) -> None:
    outcome = make_outcome("abc-123", patient_mrn="42")
    payload = json.loads(json.dumps(outcome_to_dict(outcome)))
    assert payload["answers"][1] == {"question_id": "fever3d", "text": "Fever over 3 days?", "answer": True}
    assert payload["ended_at"] == "2026-11-21T03:15:00+00:00"
    assert outcome_from_dict(payload) == outcome


def test_context_round_trips_through_json() -> None:
    context = PatientContext(
        fhir_id="p1",
        name="A B",
        birth_date="2000-01-01",
        gender="female",
        allergies=[ChartEntry("Peanut", "Hives", "2020-01-01", "high")],
        unavailable=["vitals"],
        fetched_at=datetime(2026, 11, 21, tzinfo=UTC),
    )
    assert context_from_dict(json.loads(json.dumps(context_to_dict(context)))) == context


def test_outcome_with_sent_messages_round_trips_and_old_payloads_read_as_none(make_outcome) -> None:
    from ehr.types import SentMessage

    message = SentMessage(sent_at=datetime(2026, 11, 21, 3, 20, tzinfo=UTC), body="Call back if worse.", message_id="7")
    outcome = make_outcome("abc-123", messages_sent=(message,))
    payload = json.loads(json.dumps(outcome_to_dict(outcome)))
    assert payload["messages_sent"] == [
        {"sent_at": "2026-11-21T03:20:00+00:00", "body": "Call back if worse.", "message_id": "7"}
    ]
    assert outcome_from_dict(payload) == outcome
    del payload["messages_sent"]  # an outbox row written before the field existed
    assert outcome_from_dict(payload).messages_sent == ()
