"""Connection to the FHIR R4 server through `fhirclient`, with the timeouts fhirclient lacks.

fhirclient's `FHIRServer` uses a `requests.Session` without timeouts; `server_for(timeout)` gives it one
whose every request has `timeout` seconds, and maps transport failures to `EhrUnavailable`. When SMART
backend services are configured (`ehr.fhir.smart`), the session also sends `Authorization: Bearer` on every
request to the FHIR base (never to another host), and after a 401 fetches a new token and resends once.
Every request made through `call` passes the circuit breaker of `FHIR_BASE_URL` (`ehr.fhir.circuit`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import requests
from django.conf import settings
from fhirclient.server import FHIRServer

from ehr.fhir import circuit, smart
from ehr.types import EhrRejected, EhrUnavailable

T = TypeVar("T")


class _TimeoutSession(requests.Session):
    """A session whose requests default to `timeout` seconds (connect and read), with SMART auth if set up.

    `base_url`: the FHIR base; only requests under it carry the bearer token.
    """

    def __init__(self, timeout: float, base_url: str = "") -> None:
        super().__init__()
        self.timeout = timeout
        self.base_url = base_url.rstrip("/")
        self.smart = bool(base_url) and smart.backend_services_configured()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        target = url.decode() if isinstance(url, bytes) else url
        if not self.smart or not (target == self.base_url or target.startswith(self.base_url + "/")):
            return super().request(method, url, *args, **kwargs)
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Authorization"] = f"Bearer {smart.access_token(base_url=self.base_url, timeout=self.timeout)}"
        response = super().request(method, url, *args, **{**kwargs, "headers": headers})
        if response.status_code == 401:  # revoked or expired early (server restart): one fresh token, once
            smart.forget_access_token(base_url=self.base_url)
            headers["Authorization"] = f"Bearer {smart.access_token(base_url=self.base_url, timeout=self.timeout)}"
            response = super().request(method, url, *args, **{**kwargs, "headers": headers})
        return response


def server_for(timeout: float | None = None) -> FHIRServer:
    """A fhirclient `FHIRServer` on `FHIR_BASE_URL` whose requests time out after `timeout` seconds.

    With SMART backend services configured, every request carries a cached bearer token; a token failure
    raises EhrRejected / EhrUnavailable from the request (see `ehr.fhir.smart.access_token`).
    """
    base = settings.FHIR_BASE_URL.rstrip("/")
    server = FHIRServer(None, base_uri=base + "/")
    server.session = _TimeoutSession(timeout if timeout is not None else settings.FHIR_TIMEOUT_SECONDS, base)
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
