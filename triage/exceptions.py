"""Domain errors of the triage app. Edges (views, API, consumers) map them to replies in one place."""


class TriageError(Exception):
    """Base class of triage domain errors."""


class InvalidTransition(TriageError):
    """The case is not in a state that allows this operation (e.g. a disposition on a queued case)."""


class NotYourCase(TriageError):
    """The case is reserved by, or in progress with, another nurse."""


class UnknownDisposition(TriageError):
    """The disposition code is not on the ladder (`triage.dispositions`)."""


class ProtocolInvalid(TriageError):
    """A protocol version failed validation; `errors` lists every problem as a sentence for the admin."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class OverrideNotAllowed(TriageError):
    """The user may not make this acuity change (e.g. a nurse co-signing, another clinic, own request)."""


class InvalidOverride(TriageError):
    """The acuity change is malformed: no reason, same level, level outside 1-5, or the case is closed."""
