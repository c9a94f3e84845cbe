"""Console: the protocol admin pages (admin only) and the case page's acuity form, risk notes and co-sign."""

from __future__ import annotations

import pytest
from django.test import Client

from clinics.services import staff_create
from tests.conftest import PASSWORD
from triage import risk
from triage.models import Protocol, ProtocolVersion
from triage.protocol_versions import protocol_library_install
from triage.protocols import get_protocol
from triage.services import case_apply_risk

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(personas):
    """Clinic admin of North."""
    return staff_create(clinic=personas.north, role="admin", username="ada", password=PASSWORD).user


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_only_admins_reach_the_protocol_pages(personas, ada):
    protocol_library_install(clinic=personas.north)
    chest = Protocol.objects.get(clinic=personas.north, code="chest-pain")
    for user in (personas.alice, personas.bob):
        client = signed_in(user)
        assert client.get("/console/admin/protocols/").status_code == 403
        assert client.get(f"/console/admin/protocols/{chest.pk}/edit/").status_code == 403
    assert Client().get("/console/admin/protocols/").status_code == 302  # to the login page
    page = signed_in(ada).get("/console/admin/protocols/")
    assert page.status_code == 200 and b'data-code="chest-pain"' in page.content


def test_another_clinics_protocol_is_404_for_an_admin(personas, ada):
    protocol_library_install(clinic=personas.south)
    south_chest = Protocol.objects.get(clinic=personas.south, code="chest-pain")
    assert signed_in(ada).get(f"/console/admin/protocols/{south_chest.pk}/").status_code == 404


def test_edit_with_errors_shows_them_and_saves_nothing(personas, ada):
    protocol_library_install(clinic=personas.north)
    chest = Protocol.objects.get(clinic=personas.north, code="chest-pain")
    form = signed_in(ada).get(f"/console/admin/protocols/{chest.pk}/edit/")
    assert b"cp-collapse | call-911 |" in form.content  # starts from the newest version
    response = signed_in(ada).post(
        f"/console/admin/protocols/{chest.pk}/edit/",
        {
            "title_en": "chest pain",
            "title_es": "dolor de pecho",
            "default_disposition": "home-care",
            "questions": "a | see-a-wizard | Q? | ¿Q?\na | ed-now | R? | \nthis line has no separators",
        },
    )
    assert response.status_code == 400
    assert b"expected 4 fields" in response.content
    assert chest.versions.count() == 1
    response = signed_in(ada).post(
        f"/console/admin/protocols/{chest.pk}/edit/",
        {
            "title_en": "chest pain",
            "title_es": "dolor de pecho",
            "default_disposition": "home-care",
            "questions": "a | see-a-wizard | Q? | ¿Q?\na | ed-now | R? | ",
        },
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "unknown disposition code &#x27;see-a-wizard&#x27;" in text
    assert "duplicate id" in text and "Spanish text is empty" in text
    assert chest.versions.count() == 1


def test_edit_saves_a_draft_and_activation_puts_it_on_the_phone(personas, ada):
    protocol_library_install(clinic=personas.north)
    chest = Protocol.objects.get(clinic=personas.north, code="chest-pain")
    response = signed_in(ada).post(
        f"/console/admin/protocols/{chest.pk}/edit/",
        {
            "title_en": "chest pain or pressure",
            "title_es": "dolor o presión en el pecho",
            "default_disposition": "clinician-today",
            "questions": "cp-collapse | call-911 | Is the person collapsed? | ¿La persona se desplomó?\n"
            "cp-ongoing | ed-now | Is the pain still there? | ¿Sigue el dolor?",
        },
    )
    assert response.status_code == 302
    draft = chest.versions.get(version=2)
    assert draft.status == ProtocolVersion.Status.DRAFT and draft.author == ada
    assert get_protocol("chest-pain", clinic=personas.north).version == "1"
    detail = signed_in(ada).get(f"/console/admin/protocols/{chest.pk}/")
    assert b'id="activate-2"' in detail.content
    assert (
        signed_in(personas.alice).post(f"/console/admin/protocols/{chest.pk}/versions/{draft.pk}/activate/").status_code
        == 403
    )
    signed_in(ada).post(f"/console/admin/protocols/{chest.pk}/versions/{draft.pk}/activate/")
    active = get_protocol("chest-pain", clinic=personas.north)
    assert (active.version, active.title_en, len(active.questions)) == ("2", "chest pain or pressure", 2)
    assert chest.versions.get(version=1).status == ProtocolVersion.Status.RETIRED


def test_install_button_adds_the_library(personas, ada):
    response = signed_in(ada).post("/console/admin/protocols/install/")
    assert response.status_code == 302
    assert Protocol.objects.filter(clinic=personas.north).count() >= 20


def test_case_page_shows_risk_explanations_and_the_override_flow(personas, make_case):
    case = make_case(personas.north, acuity=4, protocol_code="abdominal-pain")
    case_apply_risk(case_id=case.pk, clinic=case.clinic, facts=risk.RiskFacts(pregnant=True))
    page = signed_in(personas.alice).get(f"/console/cases/{case.pk}/").content.decode()
    assert 'data-rule="pregnancy-abdominal"' in page and "acuity 4 &rarr; 2" in page
    assert 'id="acuity-form"' in page

    response = signed_in(personas.alice).post(
        f"/console/cases/{case.pk}/acuity/", {"acuity": "4", "reason": "ultrasound normal"}
    )
    assert response.status_code == 302
    case.refresh_from_db()
    assert case.acuity == 2  # lowering waits for a co-sign
    override = case.acuity_overrides.get()
    assert (
        f'id="cosign-{override.pk}"'.encode() not in signed_in(personas.alice).get(f"/console/cases/{case.pk}/").content
    )
    assert f'id="cosign-{override.pk}"'.encode() in signed_in(personas.bob).get(f"/console/cases/{case.pk}/").content
    cosign_url = f"/console/cases/{case.pk}/acuity/{override.pk}/cosign/"
    assert signed_in(personas.dave).post(cosign_url, {"decision": "approve"}).status_code == 403
    assert signed_in(personas.carol).post(cosign_url, {"decision": "approve"}).status_code == 404
    signed_in(personas.bob).post(cosign_url, {"decision": "approve"})
    case.refresh_from_db()
    assert case.acuity == 4


def test_acuity_form_refuses_a_missing_reason_without_changing_anything(personas, make_case):
    case = make_case(personas.north, acuity=3)
    response = signed_in(personas.alice).post(
        f"/console/cases/{case.pk}/acuity/", {"acuity": "2", "reason": ""}, follow=True
    )
    assert b"A reason is required." in response.content
    case.refresh_from_db()
    assert case.acuity == 3
