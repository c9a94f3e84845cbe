"""Domain errors of the triage app. Edges (views, API, consumers) map them to replies in one place."""


class TriageError(Exception):
    """Base class of triage domain errors."""


class InvalidTransition(TriageError):
    """The case is not in a state that allows this operation (e.g. a disposition on a queued case)."""


class NotYourCase(TriageError):
    """The case is reserved by, or in progress with, another nurse."""


class UnknownDisposition(TriageError):
    """The disposition code is not on the ladder (`triage.dispositions`)."""
