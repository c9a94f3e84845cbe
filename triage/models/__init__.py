"""Triage models, one module per area: `case` (Case, CaseEvent)."""

from triage.models.case import OPEN_STATES, Case, CaseEvent, CaseState

__all__ = ["OPEN_STATES", "Case", "CaseEvent", "CaseState"]
