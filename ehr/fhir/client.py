"""Connection to the FHIR R4 server through `fhirclient`, with the timeouts fhirclient lacks.

fhirclient's `FHIRServer` uses a `requests.Session` without timeouts; `server_for(timeout)` gives it one
whose every request has `timeout` seconds, and maps transport failures to `EhrUnavailable`. Every request
made through `call` passes the circuit breaker of `FHIR_BASE_URL` (`ehr.fhir.circuit`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import requests
from django.conf import settings
from fhirclient.server import FHIRServer

from ehr.fhir import circuit
from ehr.types import EhrRejected, EhrUnavailable

T = TypeVar("T")


class _TimeoutSession(requests.Session):
    """A session whose requests default to `timeout` seconds (connect and read)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)


def server_for(timeout: float | None = None) -> FHIRServer:
    """A fhirclient `FHIRServer` on `FHIR_BASE_URL` whose requests time out after `timeout` seconds."""
    server = FHIRServer(None, base_uri=settings.FHIR_BASE_URL.rstrip("/") + "/")
    server.session = _TimeoutSession(timeout if timeout is not None else settings.FHIR_TIMEOUT_SECONDS)
    return server


def call(operation: Callable[[], T]) -> T:
    """Run a FHIR request, mapping failures: transport / timeout / 5xx -> EhrUnavailable, 4xx -> EhrRejected.

    The request goes through the circuit breaker: while the circuit is open it is not sent and
    `circuit.CircuitOpen` (an EhrUnavailable) is raised at once.
    """
    return circuit.guarded(lambda: _mapped(operation))


def _mapped(operation: Callable[[], T]) -> T:
    try:
        return operation()
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise EhrUnavailable(type(exc).__name__) from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status >= 500 or status == 0:
            raise EhrUnavailable(f"HTTP {status}") from exc
        raise EhrRejected(f"HTTP {status}") from exc
    except Exception as exc:  # fhirclient raises its own FHIR*Exception wrappers with a `.response`
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if status is None:
            raise
        if status >= 500:
            raise EhrUnavailable(f"HTTP {status}") from exc
        raise EhrRejected(f"HTTP {status}") from exc
