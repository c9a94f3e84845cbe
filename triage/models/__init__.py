"""Triage models, one module per area: `case` (Case, CaseEvent), `routing` (queues, hours, rules, ledger)."""

from triage.models.case import OPEN_STATES, Case, CaseEvent, CaseState
from triage.models.routing import BusinessHours, Holiday, Queue, RoutingLedgerEntry, RoutingRule

__all__ = [
    "OPEN_STATES",
    "BusinessHours",
    "Case",
    "CaseEvent",
    "CaseState",
    "Holiday",
    "Queue",
    "RoutingLedgerEntry",
    "RoutingRule",
]
