"""EHR-aware risk modifiers: every rule (fires / does not), chart facts, per-clinic switches, and the chart
check after enqueue against the real FHIR server (pregnant patient; a patient we give an anticoagulant)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import requests

from ivr.services.risk import chart_risk_apply
from triage import risk
from triage.models import Case, CaseEvent, CaseState, RiskRuleSetting
from triage.services import case_apply_risk, case_enqueue

ALL = frozenset(r.code for r in risk.RULES)
TODAY = date(2026, 11, 21)


def _hits(protocol: str, acuity: int, facts: risk.RiskFacts) -> list[tuple[str, int]]:
    return [
        (h.rule, h.to_acuity) for h in risk.evaluate(protocol_code=protocol, acuity=acuity, facts=facts, enabled=ALL)
    ]


def test_anticoagulant_raises_injury_protocols_to_level_2_only():
    on = risk.RiskFacts(anticoagulated=True)
    assert _hits("injury", 5, on) == [("anticoagulant-injury", 2)]
    assert _hits("head-injury", 3, on) == [("anticoagulant-injury", 2)]
    assert _hits("cuts", 4, on) == [("anticoagulant-injury", 2)]
    assert _hits("sore-throat-ear", 5, on) == []  # not an injury or bleeding protocol
    assert _hits("injury", 5, risk.RiskFacts(anticoagulated=False)) == []
    assert _hits("injury", 5, risk.RiskFacts()) == []  # chart not read: unknown, nothing raised


def test_pregnancy_raises_abdominal_pain_only():
    assert _hits("abdominal-pain", 4, risk.RiskFacts(pregnant=True)) == [("pregnancy-abdominal", 2)]
    assert _hits("headache", 4, risk.RiskFacts(pregnant=True)) == []
    assert _hits("abdominal-pain", 4, risk.RiskFacts(pregnant=False)) == []


def test_immunosuppression_raises_fever_protocols():
    assert _hits("fever-adult", 5, risk.RiskFacts(immunosuppressed=True)) == [("immunosuppressed-fever", 2)]
    assert _hits("child-fever", 3, risk.RiskFacts(immunosuppressed=True)) == [("immunosuppressed-fever", 2)]
    assert _hits("cuts", 5, risk.RiskFacts(immunosuppressed=True)) == []


def test_infant_under_3_months_with_fever_but_not_older():
    young = risk.age_facts(birth_date=TODAY - timedelta(days=60), today=TODAY)
    older = risk.age_facts(birth_date=TODAY - timedelta(days=120), today=TODAY)
    assert _hits("child-fever", 5, young) == [("infant-fever", 2)]
    assert _hits("child-fever", 5, older) == []
    assert _hits("eye", 5, young) == []


def test_over_75_raises_one_level_never_above_3():
    old = risk.age_facts(birth_date=date(1940, 1, 1), today=TODAY)
    assert _hits("eye", 5, old) == [("age-over-75", 4)]
    assert _hits("eye", 4, old) == [("age-over-75", 3)]
    hit = risk.evaluate(protocol_code="eye", acuity=3, facts=old, enabled=ALL)[0]
    assert (hit.from_acuity, hit.to_acuity) == (3, 3)  # recorded (the nurse sees it), no change
    assert _hits("eye", 5, risk.age_facts(birth_date=date(1960, 1, 1), today=TODAY)) == []


def test_rules_chain_and_a_disabled_rule_does_not_fire():
    facts = risk.RiskFacts(anticoagulated=True, age_days=80 * 365)
    assert _hits("injury", 5, facts) == [("anticoagulant-injury", 2), ("age-over-75", 2)]
    enabled = ALL - {"anticoagulant-injury"}
    assert [h.rule for h in risk.evaluate(protocol_code="injury", acuity=5, facts=facts, enabled=enabled)] == [
        "age-over-75"
    ]


def test_chart_facts_from_text():
    facts = risk.facts_from_chart(
        conditions=["Normal pregnancy (finding)", "Hypertension"],
        medications=["Apixaban 5 MG Oral Tablet"],
        birth_date=date(1990, 5, 1),
        today=TODAY,
    )
    assert facts.pregnant and facts.anticoagulated and not facts.immunosuppressed
    history = risk.facts_from_chart(
        conditions=["Past pregnancy history of miscarriage (situation)"],
        medications=["Tacrolimus 1 MG"],
        birth_date=None,
        today=TODAY,
    )
    assert history.pregnant is False and history.immunosuppressed is True and history.age_days is None
    assert (
        risk.facts_from_chart(
            conditions=["Archive note"], medications=[], birth_date=None, today=TODAY
        ).immunosuppressed
        is False
    )


@pytest.mark.django_db
def test_case_apply_risk_records_explanations_once_and_honours_the_clinic_switch(personas):
    case = case_enqueue(clinic=personas.north, callback_number="+15550001111", acuity=5, protocol_code="injury")
    hits = case_apply_risk(case_id=case.pk, clinic=case.clinic, facts=risk.RiskFacts(anticoagulated=True))
    case.refresh_from_db()
    assert [h.rule for h in hits] == ["anticoagulant-injury"] and case.acuity == 2
    assert case.risk_modifiers[0]["explanation"].startswith("On an anticoagulant")
    assert any("acuity 5 -> 2" in e.summary for e in case.events.filter(kind=CaseEvent.Kind.RISK))
    assert (
        case_apply_risk(case_id=case.pk, clinic=case.clinic, facts=risk.RiskFacts(anticoagulated=True)) == []
    )  # idempotent
    assert case.events.filter(kind=CaseEvent.Kind.RISK).count() == 1

    RiskRuleSetting.objects.create(clinic=personas.south, rule="anticoagulant-injury", enabled=False)
    south = case_enqueue(clinic=personas.south, callback_number="+15550002222", acuity=5, protocol_code="injury")
    assert case_apply_risk(case_id=south.pk, clinic=south.clinic, facts=risk.RiskFacts(anticoagulated=True)) == []
    south.refresh_from_db()
    assert south.acuity == 5 and south.risk_modifiers == []


@pytest.mark.django_db
def test_closed_cases_are_not_touched(personas):
    case = case_enqueue(clinic=personas.north, callback_number="+15550001111", acuity=5, protocol_code="injury")
    case.state = CaseState.CLOSED
    case.save()
    assert case_apply_risk(case_id=case.pk, clinic=case.clinic, facts=risk.RiskFacts(anticoagulated=True)) == []


@pytest.mark.django_db
@pytest.mark.fhir
def test_pregnant_patient_with_abdominal_pain_is_raised_after_enqueue(personas, fhir):
    julieta = fhir.patient("stracke-julieta")
    case = case_enqueue(
        clinic=personas.north,
        callback_number="+15550001111",
        acuity=4,
        protocol_code="abdominal-pain",
        suggested_disposition="clinician-3d",
        patient_fhir_id=julieta["server_id"],
    )
    assert chart_risk_apply(case_id=case.pk, clinic_id=case.clinic_id) == "applied:1"
    case.refresh_from_db()
    assert case.acuity == 2
    assert case.risk_modifiers[0]["rule"] == "pregnancy-abdominal"
    assert chart_risk_apply(case_id=case.pk, clinic_id=case.clinic_id) == "applied:0"  # a retried task changes nothing


@pytest.mark.django_db
@pytest.mark.fhir
def test_a_non_pregnant_patient_with_abdominal_pain_is_not_raised(personas, fhir):
    jerry = fhir.patient("wiegand-jerry")
    case = case_enqueue(
        clinic=personas.north,
        callback_number="+15550001111",
        acuity=4,
        protocol_code="abdominal-pain",
        patient_fhir_id=jerry["server_id"],
    )
    assert chart_risk_apply(case_id=case.pk, clinic_id=case.clinic_id) == "applied:0"
    case.refresh_from_db()
    assert case.acuity == 4 and case.risk_modifiers == []


def _patient_on_anticoagulant(fhir) -> str:
    """Create a patient with an active apixaban MedicationRequest on the FHIR server; returns its id."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:8a3c2a8e-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"family": "Testpatient", "given": ["Anticoagulated"]}],
                    "birthDate": "1958-03-04",
                    "gender": "female",
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": {
                        "coding": [
                            {
                                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                "code": "1364445",
                                "display": "apixaban 5 MG Oral Tablet",
                            }
                        ],
                        "text": "apixaban 5 MG Oral Tablet",
                    },
                    "subject": {"reference": "urn:uuid:8a3c2a8e-0000-4000-8000-000000000001"},
                    "authoredOn": "2026-01-10",
                },
                "request": {"method": "POST", "url": "MedicationRequest"},
            },
        ],
    }
    response = requests.post(fhir.base_url, json=bundle, timeout=30, headers={"Content-Type": "application/fhir+json"})
    response.raise_for_status()
    location = next(
        e["response"]["location"] for e in response.json()["entry"] if "/Patient/" in e["response"]["location"]
    )
    return location.split("/Patient/")[1].split("/")[0]


@pytest.mark.django_db
@pytest.mark.fhir
def test_anticoagulated_patient_with_an_injury_is_raised_to_level_2(personas, fhir):
    patient_id = _patient_on_anticoagulant(fhir)
    injury = case_enqueue(
        clinic=personas.north,
        callback_number="+15550001111",
        acuity=5,
        protocol_code="injury",
        patient_fhir_id=patient_id,
    )
    eye = case_enqueue(
        clinic=personas.north, callback_number="+15550001112", acuity=5, protocol_code="eye", patient_fhir_id=patient_id
    )
    assert chart_risk_apply(case_id=injury.pk, clinic_id=injury.clinic_id) == "applied:1"
    assert chart_risk_apply(case_id=eye.pk, clinic_id=eye.clinic_id) == "applied:0"
    injury.refresh_from_db()
    eye.refresh_from_db()
    assert injury.acuity == 2 and injury.risk_modifiers[0]["rule"] == "anticoagulant-injury"
    assert eye.acuity == 5


@pytest.mark.django_db
@pytest.mark.fhir
def test_ehr_down_leaves_the_case_as_triaged(personas, fhir):
    julieta = fhir.patient("stracke-julieta")
    case = case_enqueue(
        clinic=personas.north,
        callback_number="+15550001111",
        acuity=4,
        protocol_code="abdominal-pain",
        patient_fhir_id=julieta["server_id"],
    )
    from django.core.cache import cache

    cache.clear()  # no cached chart from an earlier test
    fhir.stop()
    assert chart_risk_apply(case_id=case.pk, clinic_id=case.clinic_id) == "ehr-unavailable"
    case.refresh_from_db()
    assert case.acuity == 4


@pytest.mark.django_db
def test_system_side_services_take_the_clinic_and_refuse_another_clinics_case(personas):
    """Defence in depth: a service acting for the system (IVR, tasks) loads the case of the clinic it was
    given; a case id of another clinic is not found, and the case is left alone."""
    case = case_enqueue(clinic=personas.north, callback_number="+15550001111", acuity=5, protocol_code="injury")
    with pytest.raises(Case.DoesNotExist):
        case_apply_risk(case_id=case.pk, clinic=personas.south, facts=risk.RiskFacts(anticoagulated=True))
    assert chart_risk_apply(case_id=case.pk, clinic_id=personas.south.pk) == "no-patient"
    case.refresh_from_db()
    assert case.acuity == 5 and case.risk_modifiers == []
    assert case_apply_risk(case_id=case.pk, clinic=personas.north, facts=risk.RiskFacts(anticoagulated=True))
