"""Triage models, one module per area: `case` (Case, CaseEvent), `escalation` (CallbackAttempt, SurgeEpisode)."""

from triage.models.case import OPEN_STATES, Case, CaseEvent, CaseState
from triage.models.escalation import CallbackAttempt, SurgeEpisode

__all__ = ["OPEN_STATES", "CallbackAttempt", "Case", "CaseEvent", "CaseState", "SurgeEpisode"]
