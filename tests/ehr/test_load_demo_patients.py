"""`manage.py load_demo_patients` against a fresh, empty sekmet-fhir: loads every demo bundle, then skips."""

from __future__ import annotations

import json
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from ehr.management.commands.load_demo_patients import DEFAULT_FOLDER
from tests.fixtures.fhir_server import FhirServer, free_port


@pytest.fixture
def empty_fhir(tmp_path, settings):
    server = FhirServer(workdir=tmp_path, port=free_port())
    server.start()
    settings.FHIR_BASE_URL = server.base_url
    yield server
    server.stop()


def test_loads_once_then_skips(empty_fhir) -> None:
    index = json.loads((DEFAULT_FOLDER / "index.json").read_text())
    assert index["count"] == len(index["patients"]) == 8

    out = StringIO()
    call_command("load_demo_patients", "--wait", "5", stdout=out)
    assert "8 loaded, 0 already present" in out.getvalue()
    again = StringIO()
    call_command("load_demo_patients", stdout=again)
    assert "0 loaded, 8 already present" in again.getvalue()

    patients = requests.get(f"{empty_fhir.base_url}/Patient?_count=50", timeout=10).json()
    assert patients["total"] == 8
    jerry = next(p for p in index["patients"] if p["file"].startswith("wiegand-jerry"))
    found = requests.get(f"{empty_fhir.base_url}/Patient", params={"phone": jerry["phones"][0]}, timeout=10).json()
    assert found["total"] == 2  # the household
