"""Triage models, one module per area: `case` (Case, CaseEvent), `escalation` (CallbackAttempt,
SurgeEpisode), `protocols` (versioned protocols, the clinic's disposition ladder, risk-rule settings, acuity
overrides), `routing` (queues, hours, rules, ledger)."""

from triage.models.breakglass import BreakGlassGrant
from triage.models.case import OPEN_STATES, Case, CaseEvent, CaseState
from triage.models.escalation import CallbackAttempt, SurgeEpisode
from triage.models.protocols import (
    AcuityOverride,
    DispositionRung,
    Protocol,
    ProtocolVersion,
    RiskRuleSetting,
    validate_questions,
)
from triage.models.routing import BusinessHours, Holiday, Queue, RoutingLedgerEntry, RoutingRule

__all__ = [
    "OPEN_STATES",
    "AcuityOverride",
    "BreakGlassGrant",
    "BusinessHours",
    "CallbackAttempt",
    "Case",
    "CaseEvent",
    "CaseState",
    "DispositionRung",
    "Holiday",
    "Protocol",
    "ProtocolVersion",
    "Queue",
    "RiskRuleSetting",
    "RoutingLedgerEntry",
    "RoutingRule",
    "SurgeEpisode",
    "validate_questions",
]
