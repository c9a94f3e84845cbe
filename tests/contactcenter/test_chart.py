"""`access_patient_chart` and the case page's chart, against the real FHIR server (sekmet-fhir).

Every read is audited (also reads the EHR facade answers from its cache); another clinic's nurse gets 404
and leaves no chart audit row; an EHR outage shows "chart unavailable", not an error page.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from clinics.models import AuditEvent
from contactcenter.selectors import access_patient_chart
from triage.models import Case

pytestmark = [pytest.mark.django_db, pytest.mark.fhir]


def chart_reads(**filters) -> int:
    return AuditEvent.objects.filter(action="chart.read", **filters).count()


def test_every_chart_read_is_audited_also_cached_ones(personas, make_case, fhir):
    patient = fhir.patient("skiles-elodia")
    case = make_case(personas.north, patient_fhir_id=patient["server_id"], patient_display="Elodia Skiles")

    first = access_patient_chart(user=personas.alice, case=case, source_ip="10.0.0.7")
    second = access_patient_chart(user=personas.alice, case=case)  # answered from the context cache

    assert len(first.allergies) == 9
    assert len(second.allergies) == 9
    rows = AuditEvent.objects.filter(action="chart.read", actor=personas.alice).order_by("pk")
    assert rows.count() == 2
    assert rows[0].clinic == personas.north
    assert (rows[0].object_type, rows[0].object_id) == ("case", str(case.pk))
    assert rows[0].patient_ref == patient["server_id"]
    assert rows[0].source_ip == "10.0.0.7"


def test_case_page_shows_the_allergies_and_audits_the_read(personas, make_case, fhir):
    patient = fhir.patient("skiles-elodia")
    case = make_case(personas.north, patient_fhir_id=patient["server_id"], patient_display="Elodia Skiles")
    client = Client()
    client.force_login(personas.alice)

    page = client.get(f"/console/cases/{case.pk}/").content.decode()

    allergies = re.search(r'<ul id="chart-allergies" class="entries">(.*?)</ul>', page, re.S)
    assert allergies is not None
    assert allergies.group(1).count("<li>") == 9
    assert chart_reads(actor=personas.alice, patient_ref=patient["server_id"], source_ip="127.0.0.1") == 1


def test_another_clinics_nurse_gets_404_and_no_chart_audit_row(personas, make_case, fhir):
    patient = fhir.patient("skiles-elodia")
    case = make_case(personas.north, patient_fhir_id=patient["server_id"], patient_display="Elodia Skiles")

    with pytest.raises(Case.DoesNotExist):
        access_patient_chart(user=personas.carol, case=case)
    client = Client()
    client.force_login(personas.carol)
    assert client.get(f"/console/cases/{case.pk}/").status_code == 404

    assert chart_reads(actor=personas.carol) == 0
    assert chart_reads() == 0


def test_unidentified_caller_has_no_chart_and_no_audit(personas, make_case):
    case = make_case(personas.north)
    assert access_patient_chart(user=personas.alice, case=case) is None
    assert chart_reads() == 0


def test_ehr_down_shows_chart_unavailable_not_an_error_page(personas, make_case, fhir):
    # A patient no other test reads, so the chart cannot come from the context cache.
    patient = fhir.patient("schowalter-anisha")
    case = make_case(personas.north, patient_fhir_id=patient["server_id"], patient_display="Anisha Schowalter")
    client = Client()
    client.force_login(personas.alice)
    fhir.stop()
    try:
        response = client.get(f"/console/cases/{case.pk}/")
    finally:
        fhir.start()
    assert response.status_code == 200
    assert b'id="chart-unavailable"' in response.content
    assert b"Chart unavailable" in response.content
    assert chart_reads() == 0, "nothing was shown, so nothing is audited"
