"""Read queries of the ehr app, always scoped to the caller's clinic."""

from __future__ import annotations

from django.db.models import Count

from clinics.models import Clinic
from ehr.models import WriteBack


def writebacks_for_case(*, clinic: Clinic, case_id: int) -> list[WriteBack]:
    """The outbox rows of triage case `case_id` in `clinic` (none for another clinic's case), oldest first.

    Carries no PHI beyond the payload; views show `target`, `state`, `attempts`, `last_error`, `sent_at`.
    """
    return list(WriteBack.objects.filter(clinic=clinic, source_id=case_id).order_by("created_at", "pk"))


# Destinations an analyst sees: FHIR, and HL7 per message type (rows written before MDM existed have "").
OUTBOX_STATES = ("pending", "retrying", "held", "sent", "failed", "dead", "skipped")


def writeback_destination(row: WriteBack) -> str:
    """`fhir`, or `hl7v2 <type>` (e.g. `hl7v2 ORU^R01`): the channel a row goes out on."""
    if row.target == WriteBack.Target.FHIR:
        return "fhir"
    return f"hl7v2 {row.message_type or 'ORU^R01'}"


def outbound_queue_summary(*, clinic: Clinic, hl7_types: list[str]) -> list[dict[str, object]]:
    """Per destination of `clinic`, the count of rows in each state (every state in OUTBOX_STATES, 0 if none).

    Destinations: `fhir`, then `hl7v2 <type>` for each of `hl7_types` (the clinic's configured types) and any
    other type that still has rows. Returns `[{"destination", "counts": {state: n}}]`.
    """
    counts: dict[str, dict[str, int]] = {"fhir": dict.fromkeys(OUTBOX_STATES, 0)}
    for message_type in hl7_types:
        counts[f"hl7v2 {message_type}"] = dict.fromkeys(OUTBOX_STATES, 0)
    grouped = (
        WriteBack.objects.filter(clinic=clinic)
        .values("target", "message_type", "state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for item in grouped:
        row = WriteBack(target=item["target"], message_type=item["message_type"])
        destination = counts.setdefault(writeback_destination(row), dict.fromkeys(OUTBOX_STATES, 0))
        destination[item["state"]] = destination.get(item["state"], 0) + int(item["n"])
    return [{"destination": name, "counts": state_counts} for name, state_counts in counts.items()]


def outbound_rows(*, clinic: Clinic, destination: str = "", state: str = "", limit: int = 200) -> list[WriteBack]:
    """The outbox rows of `clinic`, newest first, at most `limit`; optionally one destination (as named by
    `writeback_destination`) and one state. Rows show no PHI: ids, states, attempts, errors, times."""
    rows = WriteBack.objects.filter(clinic=clinic)
    if destination == "fhir":
        rows = rows.filter(target=WriteBack.Target.FHIR)
    elif destination.startswith("hl7v2 "):
        message_type = destination.removeprefix("hl7v2 ")
        types = [message_type, ""] if message_type == "ORU^R01" else [message_type]
        rows = rows.filter(target=WriteBack.Target.HL7V2, message_type__in=types)
    if state:
        rows = rows.filter(state=state)
    return list(rows.order_by("-created_at", "-pk")[:limit])
