"""Caller's state for routing: from the FHIR Patient's address (`ehr`) through the IVR into `case_enqueue`."""

from __future__ import annotations

import pytest
from fhirclient.models.patient import Patient

from ehr.fhir.patients import patient_state, to_match
from ivr.services.cases import _caller_state
from ivr.services.patients import candidate_of

# The suite-wide teardown fixture needs the test database even for these pure tests.
pytestmark = pytest.mark.django_db


def _patient(addresses):
    return Patient({"resourceType": "Patient", "id": "p1", "birthDate": "1980-02-03", "address": addresses})


@pytest.mark.parametrize(
    ("addresses", "state"),
    [
        ([{"use": "home", "state": "ma"}], "MA"),
        ([{"use": "work", "state": "NH"}, {"use": "home", "state": "VT"}], "VT"),
        ([{"use": "work", "state": "NH"}], "NH"),
        ([{"use": "home", "state": "Massachusetts"}], ""),
        ([{"use": "home", "city": "Boston"}], ""),
        ([], ""),
    ],
)
def test_state_comes_from_the_home_address(addresses, state):
    patient = _patient(addresses) if addresses else Patient({"resourceType": "Patient", "id": "p1"})
    assert patient_state(patient) == state
    assert to_match(patient).state == state


def test_ivr_passes_the_confirmed_patients_state():
    match = to_match(_patient([{"use": "home", "state": "NH"}]))
    candidate = candidate_of(match)
    assert candidate["state"] == "NH"

    class Leg:
        collected = {"patient": candidate}

    assert _caller_state(Leg()) == "NH"  # type: ignore[arg-type]
    Leg.collected = {}
    assert _caller_state(Leg()) == ""  # type: ignore[arg-type]
