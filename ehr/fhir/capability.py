"""What the FHIR server says it supports: its CapabilityStatement (`GET [base]/metadata`), read and cached.

FHIR R4 §3.1.0 (http.html#capabilities): every server publishes a CapabilityStatement; per resource type,
`rest[mode=server].resource[].searchParam[].name` lists the search parameters it supports and
`searchInclude` the `_include` values. CareLine asks only for what is listed, so one code path works
against servers that differ (e.g. `Patient?phone=` vs `Patient?telecom=`, Condition `category`).

Cache: the parsed capabilities of each base URL are kept in the Django cache (Redis in production, so all
processes share one copy) for `FHIR_CAPABILITY_CACHE_SECONDS` (default 3600 s: servers change their
capabilities with a release, not during a shift). When `/metadata` cannot be read, `Capabilities.assumed`
(US Core 3.1.1 defaults: every parameter CareLine uses) is returned and *not* cached, so the next request
asks the server again. Nothing here logs resource content (there is none: metadata holds no PHI).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache

from ehr.fhir.client import call, server_for
from ehr.types import EhrError

logger = logging.getLogger(__name__)

# The search parameters CareLine uses, per resource type, as US Core 3.1.1 requires servers to support them
# (Patient `phone` is not a US Core SHALL, but is the FHIR base parameter; `telecom` is the alternative).
US_CORE_ASSUMED: dict[str, frozenset[str]] = {
    "Patient": frozenset({"phone", "telecom", "identifier", "birthdate", "family"}),
    "AllergyIntolerance": frozenset({"patient", "clinical-status"}),
    "Condition": frozenset({"patient", "category", "clinical-status"}),
    "MedicationRequest": frozenset({"patient", "intent", "status"}),
    "Encounter": frozenset({"patient", "date", "identifier"}),
    "Observation": frozenset({"patient", "category", "date", "identifier"}),
}


@dataclass(frozen=True)
class Capabilities:
    """Search parameters and `_include`s per resource type. `assumed` is True when not read from the server."""

    search_params: dict[str, frozenset[str]] = field(default_factory=dict)
    includes: dict[str, frozenset[str]] = field(default_factory=dict)
    assumed: bool = False

    def supports(self, resource_type: str, param: str) -> bool:
        """True when `resource_type?param=` is advertised (`_id`, `_count`, `_sort` are treated as always on:
        FHIR servers ignore an unknown `_count`/`_sort` rather than fail, and CareLine re-sorts in Python)."""
        if param in ("_id", "_count", "_sort"):
            return True
        return param in self.search_params.get(resource_type, frozenset())

    def can_include(self, resource_type: str, include: str) -> bool:
        """True when `_include=<include>` (e.g. `MedicationRequest:medication`) or `_include=*` is advertised."""
        values = self.includes.get(resource_type, frozenset())
        return include in values or "*" in values

    @classmethod
    def assumed_defaults(cls) -> Capabilities:
        """US Core defaults, used when the server's CapabilityStatement cannot be read."""
        return cls(search_params=dict(US_CORE_ASSUMED), includes={}, assumed=True)

    @classmethod
    def from_statement(cls, statement: dict[str, Any]) -> Capabilities:
        """Parse a CapabilityStatement (FHIR R4 JSON). Raises EhrError when it is not one."""
        if statement.get("resourceType") != "CapabilityStatement":
            raise EhrError("the FHIR server's /metadata is not a CapabilityStatement")
        params: dict[str, frozenset[str]] = {}
        includes: dict[str, frozenset[str]] = {}
        for rest in statement.get("rest") or []:
            if rest.get("mode") != "server":
                continue
            common = {str(p.get("name")) for p in rest.get("searchParam") or [] if p.get("name")}
            for resource in rest.get("resource") or []:
                kind = str(resource.get("type", ""))
                names = {str(p.get("name")) for p in resource.get("searchParam") or [] if p.get("name")}
                params[kind] = frozenset(params.get(kind, frozenset()) | names | common)
                includes[kind] = frozenset(
                    includes.get(kind, frozenset()) | {str(i) for i in resource.get("searchInclude") or []}
                )
        return cls(search_params=params, includes=includes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "search_params": {k: sorted(v) for k, v in self.search_params.items()},
            "includes": {k: sorted(v) for k, v in self.includes.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Capabilities:
        return cls(
            search_params={k: frozenset(v) for k, v in data["search_params"].items()},
            includes={k: frozenset(v) for k, v in data["includes"].items()},
        )


def _cache_key(base_url: str) -> str:
    return "ehr:fhir-capabilities:" + hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]


def server_capabilities(*, timeout: float) -> Capabilities:
    """The capabilities of `FHIR_BASE_URL`, cached per base URL for `FHIR_CAPABILITY_CACHE_SECONDS`.

    `timeout` in seconds for the `/metadata` read on a cache miss. Never raises for an unreachable or
    malformed `/metadata`: answers `Capabilities.assumed_defaults()` (not cached) and logs the exception
    type only.
    """
    key = _cache_key(settings.FHIR_BASE_URL)
    cached = cache.get(key)
    if cached is not None:
        return Capabilities.from_dict(cached)
    server = server_for(timeout)
    try:
        statement = call(lambda: server.request_json("metadata"))
        capabilities = Capabilities.from_statement(statement)
    except Exception as exc:  # noqa: BLE001 - any failure: fall back to US Core defaults, ask again next time
        logger.warning("FHIR CapabilityStatement unavailable (%s): assuming US Core", type(exc).__name__)
        return Capabilities.assumed_defaults()
    cache.set(key, capabilities.to_dict(), timeout=settings.FHIR_CAPABILITY_CACHE_SECONDS)
    return capabilities


def forget_capabilities() -> None:
    """Drop the cached capabilities of `FHIR_BASE_URL` (after a server upgrade, and in tests)."""
    cache.delete(_cache_key(settings.FHIR_BASE_URL))
