"""JSON-safe forms of the EHR value types: `Outcome` (outbox payload) and `PatientContext` (cache).

Both round-trip exactly: `outcome_from_dict(outcome_to_dict(o)) == o`. Datetimes are ISO 8601 strings with
their UTC offset; `Answer`s are `{"question_id", "text", "answer"}` dicts in the order asked; `SentMessage`s
are `{"sent_at", "body", "message_id"}` dicts (a payload written before `messages_sent` existed reads as ()).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from ehr.types import Answer, ChartEntry, Outcome, PatientContext, SentMessage

_CHART_SECTIONS = ("allergies", "conditions", "medications", "encounters", "vitals")


def outcome_to_dict(outcome: Outcome) -> dict[str, Any]:
    """`Outcome` as a JSON-safe dict (the `WriteBack.payload` shape; every field of `Outcome`)."""
    data = asdict(outcome)
    data["started_at"] = outcome.started_at.isoformat()
    data["ended_at"] = outcome.ended_at.isoformat()
    data["answers"] = [asdict(answer) for answer in outcome.answers]
    data["messages_sent"] = [
        {"sent_at": m.sent_at.isoformat(), "body": m.body, "message_id": m.message_id} for m in outcome.messages_sent
    ]
    return data


def outcome_from_dict(data: dict[str, Any]) -> Outcome:
    """The `Outcome` that `outcome_to_dict` wrote. Raises KeyError / ValueError on a malformed payload."""
    known = {f.name for f in fields(Outcome)}
    values = {key: value for key, value in data.items() if key in known}
    values["started_at"] = datetime.fromisoformat(data["started_at"])
    values["ended_at"] = datetime.fromisoformat(data["ended_at"])
    values["answers"] = tuple(Answer(**answer) for answer in data.get("answers", []))
    values["messages_sent"] = tuple(
        SentMessage(
            sent_at=datetime.fromisoformat(m["sent_at"]), body=m["body"], message_id=str(m.get("message_id", ""))
        )
        for m in data.get("messages_sent", [])
    )
    return Outcome(**values)


def context_to_dict(context: PatientContext) -> dict[str, Any]:
    """`PatientContext` as a JSON-safe dict (what the cache holds)."""
    data = asdict(context)
    data["fetched_at"] = context.fetched_at.isoformat() if context.fetched_at else None
    return data


def context_from_dict(data: dict[str, Any]) -> PatientContext:
    """The `PatientContext` that `context_to_dict` wrote."""
    values = dict(data)
    for section in _CHART_SECTIONS:
        values[section] = [ChartEntry(**entry) for entry in data.get(section, [])]
    values["fetched_at"] = datetime.fromisoformat(data["fetched_at"]) if data.get("fetched_at") else None
    return PatientContext(**values)
