"""The current request's id and source address, for audit rows and log records (no PHI).

`careline.middleware.RequestIdMiddleware` sets them for every HTTP request; outside a request (Celery tasks,
management commands) they are "" and None. A context variable, so concurrent ASGI requests never mix.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import NamedTuple


class RequestContext(NamedTuple):
    request_id: str
    source_ip: str | None


_current: ContextVar[RequestContext] = ContextVar("careline_request", default=RequestContext("", None))  # noqa: B039 - a NamedTuple is immutable


def current() -> RequestContext:
    """The request id and source address of the request being served (("", None) outside one)."""
    return _current.get()


def bind(*, request_id: str, source_ip: str | None) -> object:
    """Set the current request's id and address; returns the token `unbind` takes."""
    return _current.set(RequestContext(request_id, source_ip))


def clear() -> None:
    """Forget the current request (end of the request; safe from another thread's copy of the context)."""
    _current.set(RequestContext("", None))


def unbind(token: object) -> None:
    """Restore what was current before `bind`."""
    _current.reset(token)  # type: ignore[arg-type]
