"""`ehr.services.find_patients_by_phone` against the real FHIR server (sekmet-fhir, shared patients)."""

from __future__ import annotations

import pytest

from ehr.services import find_patients_by_phone
from ehr.types import EhrUnavailable


def test_e164_caller_id_finds_both_members_of_a_household(fhir) -> None:
    jerry, celine = fhir.patient("wiegand-jerry"), fhir.patient("wiegand-celine")
    assert jerry["phones"] == celine["phones"] == ["555-303-1209"]  # the data stores national format

    matches = find_patients_by_phone("+15553031209")

    assert {m.fhir_id for m in matches} == {jerry["server_id"], celine["server_id"]}
    assert {m.display for m in matches} == {"Jerry Wiegand", "Celine Wiegand"}


def test_unknown_number_finds_nobody(fhir) -> None:
    assert find_patients_by_phone("+15550000001") == []


def test_server_down_is_unavailable(fhir) -> None:
    fhir.stop()
    with pytest.raises(EhrUnavailable):
        find_patients_by_phone("+15553031209", timeout=2)
