"""Triage models, one module per area: `case` (Case, CaseEvent), `escalation` (CallbackAttempt,
SurgeEpisode), `routing` (queues, hours, rules, ledger)."""

from triage.models.case import OPEN_STATES, Case, CaseEvent, CaseState
from triage.models.escalation import CallbackAttempt, SurgeEpisode
from triage.models.routing import BusinessHours, Holiday, Queue, RoutingLedgerEntry, RoutingRule

__all__ = [
    "OPEN_STATES",
    "BusinessHours",
    "CallbackAttempt",
    "Case",
    "CaseEvent",
    "CaseState",
    "Holiday",
    "Queue",
    "RoutingLedgerEntry",
    "RoutingRule",
    "SurgeEpisode",
]
