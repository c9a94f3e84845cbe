"""The clinic admin's routing page (/console/admin/routing/), the case page's Routing section and the API's
`routing` block: allowed (admin) and denied (nurse, supervisor, other clinic's admin), preview, validation."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.test import Client

from clinics.models import AuditEvent
from clinics.services import staff_create
from tests.conftest import PASSWORD
from triage.models import BusinessHours, Holiday, Queue, RoutingRule
from triage.services import case_claim_next, queue_default_for

pytestmark = pytest.mark.django_db

URL = "/console/admin/routing/"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admins(personas):
    """`erin` admin of North, `frank` admin of South."""
    erin = staff_create(clinic=personas.north, role="admin", username="erin", password=PASSWORD).user
    frank = staff_create(clinic=personas.south, role="admin", username="frank", password=PASSWORD).user
    return erin, frank


RULE = {
    "name": "Spanish speakers",
    "order": "1",
    "enabled": "on",
    "acuity_levels": "",
    "protocol_codes": "",
    "language": "es",
    "identified": "any",
    "time_window": "always",
    "caller_states": "",
    "required_skills": "spanish",
    "priority_boost_seconds": "0",
    "escalation_policy": "",
    "fallback_after_minutes": "10",
    "fallback_action": "relax_skills",
}


def test_admin_sees_the_page_and_others_are_denied(personas, admins):
    erin, _ = admins
    page = logged_in(erin).get(URL)
    assert page.status_code == 200 and b'id="routing-rules"' in page.content
    assert b"General" in page.content  # the default queue exists
    for user in (personas.alice, personas.bob):
        assert logged_in(user).get(URL).status_code == 403
        assert logged_in(user).post(URL + "rules/new/", RULE).status_code == 403
    assert RoutingRule.objects.count() == 0
    assert Client().get(URL).status_code == 302  # login first


def test_admin_creates_edits_and_deletes_a_rule(personas, admins):
    erin, _ = admins
    client = logged_in(erin)
    response = client.post(URL + "rules/new/", {**RULE, "action": "save"})
    assert response.status_code == 302
    rule = RoutingRule.objects.get()
    assert rule.clinic == personas.north and rule.required_skills == ["spanish"] and rule.language == "es"
    assert AuditEvent.objects.filter(action="routing.rule.save", actor=erin, object_id=str(rule.pk)).exists()
    assert b"Spanish speakers" in client.get(URL).content
    client.post(URL + f"rules/{rule.pk}/", {**RULE, "name": "Spanish", "action": "save"})
    rule.refresh_from_db()
    assert rule.name == "Spanish"
    client.post(URL + f"rules/{rule.pk}/delete/")
    assert not RoutingRule.objects.exists()


def test_another_clinics_admin_gets_404_on_north_rules(personas, admins):
    erin, frank = admins
    logged_in(erin).post(URL + "rules/new/", {**RULE, "action": "save"})
    rule = RoutingRule.objects.get()
    other = logged_in(frank)
    assert other.get(URL + f"rules/{rule.pk}/").status_code == 404
    assert other.post(URL + f"rules/{rule.pk}/", {**RULE, "name": "hijack", "action": "save"}).status_code == 404
    assert other.post(URL + f"rules/{rule.pk}/delete/").status_code == 404
    assert other.post(URL + f"rules/{rule.pk}/move/", {"direction": "up"}).status_code == 404
    rule.refresh_from_db()
    assert rule.name == "Spanish speakers"
    assert b"Spanish speakers" not in other.get(URL).content


def test_bad_input_gets_clear_errors_and_nothing_is_saved(admins):
    erin, _ = admins
    bad = {**RULE, "acuity_levels": "0, 3", "caller_states": "ZZ", "min_age_years": "18", "max_age_years": "2"}
    response = logged_in(erin).post(URL + "rules/new/", {**bad, "action": "save"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Acuity levels are 1 (most urgent) to 5, not 0." in body
    assert "Unknown US state code(s): ZZ." in body
    assert "The maximum age must be at least the minimum age." in body
    assert not RoutingRule.objects.exists()


def test_reorder_moves_a_rule_up(personas, admins):
    erin, _ = admins
    client = logged_in(erin)
    for name in ("first", "second", "third"):
        client.post(URL + "rules/new/", {**RULE, "name": name, "order": "5", "action": "save"})
    third = RoutingRule.objects.get(name="third")
    client.post(URL + f"rules/{third.pk}/move/", {"direction": "up"})
    assert list(RoutingRule.objects.order_by("order").values_list("name", "order")) == [
        ("first", 1),
        ("third", 2),
        ("second", 3),
    ]


def test_hours_holidays_and_queues_are_added_with_validation(personas, admins):
    erin, frank = admins
    client = logged_in(erin)
    assert client.post(URL + "hours/", {"weekday": "0", "opens": "08:00", "closes": "17:00"}).status_code == 302
    bad = client.post(URL + "hours/", {"weekday": "0", "opens": "22:00", "closes": "06:00"})
    assert bad.status_code == 400 and b"crosses midnight" in bad.content
    assert BusinessHours.objects.filter(clinic=personas.north).count() == 1
    assert client.post(URL + "holidays/", {"date": "2026-12-25", "name": "Christmas"}).status_code == 302
    again = client.post(URL + "holidays/", {"date": "2026-12-25", "name": "Christmas"})
    assert again.status_code == 400 and b"already a holiday" in again.content
    assert client.post(URL + "queues/", {"name": "Pediatrics", "slug": "pediatrics"}).status_code == 302
    assert Queue.objects.filter(clinic=personas.north, slug="pediatrics").exists()
    hours = BusinessHours.objects.get()
    holiday = Holiday.objects.get()
    assert logged_in(frank).post(URL + f"hours/{hours.pk}/delete/").status_code == 404
    assert logged_in(frank).post(URL + f"holidays/{holiday.pk}/delete/").status_code == 404
    assert client.post(URL + f"hours/{hours.pk}/delete/").status_code == 302
    assert not BusinessHours.objects.exists()


def test_preview_shows_which_of_the_last_cases_the_unsaved_rule_would_route(personas, admins, make_case):
    erin, _ = admins
    north = personas.north
    kids_q = Queue.objects.create(clinic=north, name="Kids", slug="kids")
    RoutingRule.objects.create(clinic=north, order=1, name="Fever first", protocol_codes=["fever"])
    spanish = make_case(north, acuity=3, language="es")
    spanish_fever = make_case(north, acuity=3, language="es", protocol_code="fever")
    english = make_case(north, acuity=3, language="en")
    make_case(personas.south, acuity=3, language="es")  # another clinic's case: never previewed
    response = logged_in(erin).post(
        URL + "rules/new/", {**RULE, "order": "2", "target_queue": str(kids_q.pk), "action": "preview"}
    )
    assert response.status_code == 200
    rows = {row.case.pk: row for row in response.context["preview"]}
    assert set(rows) == {spanish.pk, spanish_fever.pk, english.pk}
    assert rows[spanish.pk].would_route
    assert rows[spanish_fever.pk].matches and not rows[spanish_fever.pk].would_route
    assert rows[spanish_fever.pk].earlier_rule == "Fever first"
    assert not rows[english.pk].matches and "language en" in rows[english.pk].mismatch
    assert rows[spanish.pk].actual_queue == "General"
    assert b"would have routed <strong>1</strong> of the last 3 cases" in response.content
    assert RoutingRule.objects.count() == 1  # preview never saves


def test_preview_uses_age_at_arrival(personas, admins, make_case):
    erin, _ = admins
    child = make_case(personas.north, acuity=3, patient_birth_date=date.today() - timedelta(days=365 * 5))
    adult = make_case(personas.north, acuity=3, patient_birth_date=date(1970, 1, 1))
    unknown = make_case(personas.north, acuity=3)
    rule = {**RULE, "language": "", "max_age_years": "17", "action": "preview"}
    rows = {r.case.pk: r for r in logged_in(erin).post(URL + "rules/new/", rule).context["preview"]}
    assert rows[child.pk].would_route and not rows[adult.pk].matches and rows[unknown.pk].mismatch == "age unknown"


def test_case_page_and_api_show_the_routing_ledger(personas, make_case):
    north = personas.north
    RoutingRule.objects.create(clinic=north, order=1, name="Everyone", escalation_policy="standard")
    case = make_case(north, acuity=3)
    assert case_claim_next(clinic=north, nurse=personas.alice).pk == case.pk
    client = logged_in(personas.alice)
    page = client.get(f"/console/cases/{case.pk}/").content.decode()
    assert 'id="routing-ledger"' in page
    assert 'data-kind="routed"' in page and "Rule #1 &quot;Everyone&quot; -&gt; General" in page
    assert 'data-kind="offered"' in page
    data = client.get(f"/api/v1/cases/{case.pk}/").json()
    assert data["routing"]["queue"] == queue_default_for(clinic=north).slug
    assert data["routing"]["rule"] == "Everyone" and data["routing"]["escalation_policy"] == "standard"
    assert [e["kind"] for e in data["routing"]["ledger"]] == ["routed", "offered"]
    assert data["routing"]["ledger"][1]["nurse"] == "alice"
