"""Triage models, one module per area: `case` (Case, CaseEvent), `protocols` (versioned protocols, the
clinic's disposition ladder, risk-rule settings, acuity overrides)."""

from triage.models.case import OPEN_STATES, Case, CaseEvent, CaseState
from triage.models.protocols import (
    AcuityOverride,
    DispositionRung,
    Protocol,
    ProtocolVersion,
    RiskRuleSetting,
    validate_questions,
)

__all__ = [
    "OPEN_STATES",
    "AcuityOverride",
    "Case",
    "CaseEvent",
    "CaseState",
    "DispositionRung",
    "Protocol",
    "ProtocolVersion",
    "RiskRuleSetting",
    "validate_questions",
]
