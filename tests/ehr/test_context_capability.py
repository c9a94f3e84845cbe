"""The patient context follows the server's CapabilityStatement, against the real FHIR server (sekmet-fhir).

A small real HTTP proxy in front of sekmet records every query it forwards and can rewrite `/metadata` (to
take a search parameter away) or fail one resource type's searches with 503. Nothing is mocked: the
searches CareLine sends are the ones sekmet answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import Client

from ehr.fhir.capability import forget_capabilities, server_capabilities
from ehr.fhir.context import months_before
from ehr.services import find_patients_by_phone, forget_patient_context, load_patient_context
from tests.fixtures.fhir_server import DEFAULT_PATIENTS

pytestmark = pytest.mark.django_db


@dataclass
class Proxy:
    """What the proxy saw (`queries`: (path, params) in order) and how it misbehaves."""

    base_url: str
    queries: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    rewrite_metadata: Callable[[dict[str, Any]], None] | None = None
    fail_type: str = ""

    def searched(self, resource_type: str) -> list[dict[str, list[str]]]:
        return [params for path, params in self.queries if path == f"/fhir/{resource_type}"]

    def reads(self, path: str) -> int:
        return sum(1 for seen, _ in self.queries if seen == path)


@pytest.fixture
def proxy(fhir, settings) -> Iterator[Proxy]:
    """FHIR_BASE_URL pointed at a recording proxy in front of sekmet (capabilities cache emptied)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Proxy(base_url=f"http://127.0.0.1:{server.server_port}/fhir")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            split = urlsplit(self.path)
            state.queries.append((split.path, parse_qs(split.query)))
            if state.fail_type and split.path == f"/fhir/{state.fail_type}":
                self._answer(
                    503, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}'
                )
                return
            upstream = requests.get(
                fhir.base_url + self.path[len("/fhir") :], timeout=10, headers={"Accept": "application/fhir+json"}
            )
            body = upstream.content
            if split.path == "/fhir/metadata" and state.rewrite_metadata is not None:
                statement = upstream.json()
                state.rewrite_metadata(statement)
                body = json.dumps(statement).encode()
            self._answer(upstream.status_code, body.replace(fhir.base_url.encode(), state.base_url.encode()))

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.FHIR_BASE_URL = state.base_url
    forget_capabilities()
    try:
        yield state
    finally:
        forget_capabilities()
        server.shutdown()
        server.server_close()


def _drop_search_param(resource_type: str, name: str) -> Callable[[dict[str, Any]], None]:
    def rewrite(statement: dict[str, Any]) -> None:
        for rest in statement["rest"]:
            for resource in rest["resource"]:
                if resource["type"] == resource_type:
                    resource["searchParam"] = [p for p in resource["searchParam"] if p["name"] != name]

    return rewrite


def _resources(file: str, resource_type: str) -> list[dict]:
    bundle = json.loads((Path(DEFAULT_PATIENTS) / file).read_text())
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def test_sekmet_advertises_what_the_context_uses_and_it_is_cached(fhir, proxy) -> None:
    capabilities = server_capabilities(timeout=5)

    assert not capabilities.assumed
    assert capabilities.supports("Patient", "phone") and capabilities.supports("Patient", "telecom")
    assert capabilities.supports("Condition", "category")
    assert capabilities.can_include("MedicationRequest", "MedicationRequest:medication")
    server_capabilities(timeout=5)
    assert proxy.reads("/fhir/metadata") == 1  # the second answer came from the cache


def test_context_sends_the_us_core_searches_the_server_supports(fhir, proxy) -> None:
    patient = fhir.patient("stracke-julieta")
    forget_patient_context(patient["server_id"])

    context = load_patient_context(patient["server_id"])

    [condition] = proxy.searched("Condition")
    assert condition["category"] == ["problem-list-item,encounter-diagnosis"]
    assert condition["clinical-status"] == ["active"]
    [medication] = proxy.searched("MedicationRequest")
    assert medication["intent"] == ["order"] and medication["status"] == ["active"]
    assert medication["_include"] == ["MedicationRequest:medication"]
    [encounter] = proxy.searched("Encounter")
    assert encounter["date"] == [f"ge{months_before(date.today(), 12).isoformat()}"]
    [vitals] = proxy.searched("Observation")
    assert vitals["category"] == ["vital-signs"]
    assert context.unavailable == []
    # Problem-list items come first and are marked; active encounter diagnoses (her pregnancy, which the
    # pregnancy risk rule reads) are still listed.
    active = [
        c for c in _resources(patient["file"], "Condition") if c["clinicalStatus"]["coding"][0]["code"] == "active"
    ]
    problems = [c for c in active if c["category"][0]["coding"][0]["code"] == "problem-list-item"]
    assert len(context.conditions) == len(active)
    assert [c.detail for c in context.conditions[: len(problems)]] == ["problem list"] * len(problems)
    assert "Normal pregnancy (finding)" in [c.text for c in context.conditions]


def test_without_phone_in_the_capability_statement_the_search_uses_telecom(fhir, proxy) -> None:
    proxy.rewrite_metadata = _drop_search_param("Patient", "phone")
    patient = fhir.patient("oconner-betty")

    matches = find_patients_by_phone(patient["phones"][0], timeout=5)

    [search] = proxy.searched("Patient")
    assert "phone" not in search and "telecom" in search
    assert patient["server_id"] in [m.fhir_id for m in matches]


def test_with_phone_in_the_capability_statement_the_search_uses_phone(fhir, proxy) -> None:
    patient = fhir.patient("oconner-betty")

    matches = find_patients_by_phone(patient["phones"][0], timeout=5)

    [search] = proxy.searched("Patient")
    assert "phone" in search and "telecom" not in search
    assert patient["server_id"] in [m.fhir_id for m in matches]


def test_without_condition_category_the_context_asks_for_active_conditions(fhir, proxy) -> None:
    proxy.rewrite_metadata = _drop_search_param("Condition", "category")
    patient = fhir.patient("skiles-elodia")
    forget_patient_context(patient["server_id"])

    context = load_patient_context(patient["server_id"])

    [condition] = proxy.searched("Condition")
    assert "category" not in condition and condition["clinical-status"] == ["active"]
    active = [
        c for c in _resources(patient["file"], "Condition") if c["clinicalStatus"]["coding"][0]["code"] == "active"
    ]
    assert len(context.conditions) == len(active)


def test_without_clinical_status_the_active_filter_runs_in_python(fhir, proxy) -> None:
    def rewrite(statement: dict[str, Any]) -> None:
        _drop_search_param("Condition", "clinical-status")(statement)
        _drop_search_param("Condition", "category")(statement)

    proxy.rewrite_metadata = rewrite
    patient = fhir.patient("skiles-elodia")
    forget_patient_context(patient["server_id"])

    context = load_patient_context(patient["server_id"])

    [condition] = proxy.searched("Condition")
    assert set(condition) == {"patient"}
    everything = _resources(patient["file"], "Condition")
    active = [c for c in everything if c["clinicalStatus"]["coding"][0]["code"] == "active"]
    assert len(everything) > len(active)  # the server sent resolved ones too; they are not shown
    assert len(context.conditions) == len(active)


def test_metadata_down_falls_back_to_us_core_and_asks_again_next_time(fhir, proxy) -> None:
    proxy.fail_type = "metadata"

    first = server_capabilities(timeout=5)
    second = server_capabilities(timeout=5)

    assert first.assumed and second.assumed
    assert proxy.reads("/fhir/metadata") == 2  # a fallback is not cached


def test_the_chart_is_cached_per_case_and_forgetting_the_patient_drops_every_case(fhir, proxy) -> None:
    patient = fhir.patient("goodwin-randall")
    patient_path = f"/fhir/Patient/{patient['server_id']}"
    forget_patient_context(patient["server_id"])

    first = load_patient_context(patient["server_id"], case_key="case-a")
    load_patient_context(patient["server_id"], case_key="case-a")
    assert proxy.reads(patient_path) == 1  # the same case: cached
    other = load_patient_context(patient["server_id"], case_key="case-b")
    assert proxy.reads(patient_path) == 2  # another case reads the EHR itself
    assert other.allergies == first.allergies

    forget_patient_context(patient["server_id"])  # e.g. an ADT^A08 update arrived
    load_patient_context(patient["server_id"], case_key="case-a")
    load_patient_context(patient["server_id"], case_key="case-b")
    assert proxy.reads(patient_path) == 4


def test_a_failed_problem_search_shows_problems_unavailable_on_the_case_page(fhir, proxy, personas) -> None:
    from triage.services import case_enqueue

    proxy.fail_type = "Condition"
    patient = fhir.patient("skiles-elodia")
    forget_patient_context(patient["server_id"])
    case = case_enqueue(
        clinic=personas.north,
        acuity=3,
        callback_number="+15555550100",
        protocol_code="chest-pain",
        protocol_version="2026.11.0",
        answers=[],
        suggested_disposition="ed-now",
        patient_fhir_id=patient["server_id"],
        patient_display="Elodia Skiles",
    )
    client = Client()
    client.force_login(personas.alice)

    response = client.get(f"/console/cases/{case.pk}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-unavailable="conditions"' in page
    assert "Problems unavailable" in page
    assert page.count("data-unavailable=") == 1
    assert '<ul id="chart-allergies" class="entries">' in page  # the other sections still show
