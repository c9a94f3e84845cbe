"""`ehr.services.load_patient_context` against the real FHIR server, and a partly failing EHR.

The partial failure is real HTTP: a small reverse proxy in front of sekmet answers 503 for `Observation`
searches and forwards everything else, so the vitals search truly fails while the other sections work.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from ehr.services import forget_patient_context, load_patient_context
from ehr.types import EhrRejected, EhrUnavailable
from tests.fixtures.fhir_server import DEFAULT_PATIENTS


def _bundle_resources(file: str, resource_type: str) -> list[dict]:
    bundle = json.loads((Path(DEFAULT_PATIENTS) / file).read_text())
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def _display(concept: dict) -> str:
    return concept.get("text") or concept["coding"][0].get("display") or concept["coding"][0]["code"]


@pytest.mark.django_db
def test_context_shows_the_allergies_in_the_patients_record(fhir) -> None:
    patient = fhir.patient("skiles-elodia")
    forget_patient_context(patient["server_id"])

    context = load_patient_context(patient["server_id"])

    expected = sorted(_display(a["code"]) for a in _bundle_resources(patient["file"], "AllergyIntolerance"))
    assert len(expected) == 9
    assert sorted(a.text for a in context.allergies) == expected
    assert context.unavailable == []
    assert context.name == "Elodia Skiles"
    assert context.birth_date == patient["birthDate"]
    assert context.phones == patient["phones"]
    mrn = next(i["value"] for i in patient["identifiers"] if i["type"] == "MR")
    assert context.mrn == mrn
    active = [
        c
        for c in _bundle_resources(patient["file"], "Condition")
        if c["clinicalStatus"]["coding"][0]["code"] == "active"
    ]
    assert sorted(c.text for c in context.conditions) == sorted(_display(c["code"]) for c in active)
    assert 1 <= len(context.encounters) <= 5
    assert [e.date for e in context.encounters] == sorted((e.date for e in context.encounters), reverse=True)
    assert context.vitals and len({v.date for v in context.vitals}) == 1  # one set: the newest
    newest = max(
        o["effectiveDateTime"]
        for o in _bundle_resources(patient["file"], "Observation")
        if any(c["code"] == "vital-signs" for cat in o.get("category", []) for c in cat["coding"])
    )
    assert context.vitals[0].date[:19] == newest[:19]


@pytest.mark.django_db
def test_spanish_speaker_context_language_and_allergy(fhir) -> None:
    patient = fhir.patient("porras-cecilia")
    forget_patient_context(patient["server_id"])

    context = load_patient_context(patient["server_id"])

    assert context.language == "es"
    assert [a.text for a in context.allergies] == [
        _display(a["code"]) for a in _bundle_resources(patient["file"], "AllergyIntolerance")
    ]


class _FailingObservationProxy(BaseHTTPRequestHandler):
    upstream = ""
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(self.path.split("?")[0])
        if self.path.startswith("/fhir/Observation"):
            body = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}'
            self.send_response(503)
        else:
            upstream = requests.get(
                self.upstream + self.path[len("/fhir") :], timeout=10, headers={"Accept": "application/fhir+json"}
            )
            body = upstream.content.replace(self.upstream.encode(), self.proxy_base.encode())
            self.send_response(upstream.status_code)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def observation_outage(fhir, settings) -> Iterator[type[_FailingObservationProxy]]:
    """FHIR_BASE_URL pointed at a proxy whose Observation searches answer 503."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingObservationProxy)
    handler = type(
        "Handler",
        (_FailingObservationProxy,),
        {"upstream": fhir.base_url, "seen": [], "proxy_base": f"http://127.0.0.1:{server.server_port}/fhir"},
    )
    server.RequestHandlerClass = handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.FHIR_BASE_URL = handler.proxy_base
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db
def test_failing_section_is_unavailable_and_the_rest_still_shows(fhir, observation_outage) -> None:
    patient = fhir.patient("skiles-elodia")
    forget_patient_context(patient["server_id"])

    context = load_patient_context(patient["server_id"])

    assert context.unavailable == ["vitals"]
    assert context.vitals == []
    assert len(context.allergies) == 9
    assert "/fhir/Observation" in observation_outage.seen
    # A partial chart is not cached: the next view asks the EHR again.
    load_patient_context(patient["server_id"])
    assert observation_outage.seen.count(f"/fhir/Patient/{patient['server_id']}") == 2


@pytest.mark.django_db
def test_complete_context_is_cached(fhir) -> None:
    patient = fhir.patient("goodwin-randall")
    forget_patient_context(patient["server_id"])
    first = load_patient_context(patient["server_id"])
    fhir.stop()  # a cached chart does not need the EHR

    again = load_patient_context(patient["server_id"])

    assert again == first
    assert len(again.allergies) == 3
    forget_patient_context(patient["server_id"])


@pytest.mark.django_db
def test_patient_read_failure_raises(fhir) -> None:
    patient = fhir.patient("gaitan-rodrigo")
    forget_patient_context(patient["server_id"])
    with pytest.raises(EhrRejected):
        load_patient_context("no-such-patient")
    fhir.stop()
    with pytest.raises(EhrUnavailable):
        load_patient_context(patient["server_id"])
