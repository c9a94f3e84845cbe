"""Cross-tenant suite: nurse carol of clinic South against clinic North's data (issue 6, isolation).

HIPAA 164.312(a)(1) access control; ASVS 5.0 V8.2 (object-level authorization, no existence leak).
Carol tries every URL pattern of the project (walked from `get_resolver()`), with GET and POST, filling each
id with North's real ids, sequential guesses and an id that exists nowhere; every REST endpoint with her token;
and every WebSocket message type the console consumer accepts. No response may carry a byte of North's
data (patient name, FHIR id, callback number in any format, case uuids, note, protocol answers); a North case
id answers exactly what an unknown id answers (404, or 405 for a method the route never takes), never 403;
and every refused look-up of a case through `triage.selectors.access_case` is audited (`access.denied`).
The allowed control from the same set-up: carol reads her own case, alice reads North's.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from rest_framework.authtoken.models import Token

from clinics.models import AuditEvent
from clinics.services import staff_create
from contactcenter import services as console
from ehr.models import WriteBack
from tests.conftest import PASSWORD
from triage.models import AcuityOverride, BusinessHours, Holiday, Protocol, ProtocolVersion, RoutingRule
from triage.protocol_versions import protocol_library_install
from triage.services import case_enqueue

pytestmark = pytest.mark.django_db

NORTH_PATIENT = "Zebulon Canarywhistle"
NORTH_FHIR_ID = "north-canary-7f3e9a"
NORTH_CALLBACK = "+15558675309"
NORTH_NOTE = "Canarynote: pain eased after rest, daughter driving him in"
NORTH_ANSWER = "Canaryquestion: is the chest pain worse when lying flat?"
UNKNOWN_ID = 987654321


@dataclass
class North:
    canaries: list[str]
    case_ids: list[int]
    ids: dict[str, list[int]] = field(default_factory=dict)  # URL kwarg name -> North's ids of that object
    uuids: list[str] = field(default_factory=list)


@pytest.fixture
def north(personas) -> North:
    """North's data, made through the product's own services and admin pages."""
    erin = staff_create(clinic=personas.north, role="admin", username="erin", password=PASSWORD).user
    protocol_library_install(clinic=personas.north)
    admin = Client()
    admin.force_login(erin)
    base = "/console/admin/routing/"
    assert admin.post(base + "hours/", {"weekday": "0", "opens": "08:00", "closes": "17:00"}).status_code == 302
    assert admin.post(base + "holidays/", {"date": "2026-12-25", "name": "Christmas"}).status_code == 302
    assert admin.post(base + "queues/", {"name": "Pediatrics", "slug": "pediatrics"}).status_code == 302
    answers = [{"question": "cp-flat", "text": NORTH_ANSWER, "answer": True}]
    fields: dict[str, Any] = {
        "callback_number": NORTH_CALLBACK,
        "patient_display": NORTH_PATIENT,
        "patient_fhir_id": NORTH_FHIR_ID,
        "protocol_code": "chest-pain",
        "answers": answers,
        "suggested_disposition": "ed-now",
    }
    closed = case_enqueue(clinic=personas.north, acuity=2, **fields)
    claimed = console.claim_next(user=personas.alice)
    assert claimed is not None and claimed.pk == closed.pk
    console.accept(user=personas.alice, case_id=closed.pk)
    console.disposition_record(user=personas.alice, case_id=closed.pk, disposition_code="ed-now", note=NORTH_NOTE)
    queued = case_enqueue(clinic=personas.north, acuity=3, **fields)
    reserved = case_enqueue(clinic=personas.north, acuity=4, **fields)
    assert console.claim_next(user=personas.dave) is not None
    console.acuity_change(user=personas.alice, case_id=queued.pk, to_acuity=2, reason="Canaryreason worse")
    cases = [closed, queued, reserved]
    ids = {
        "case_id": [c.pk for c in cases],
        "rule_id": list(RoutingRule.objects.filter(clinic=personas.north).values_list("pk", flat=True)),
        "hours_id": list(BusinessHours.objects.filter(clinic=personas.north).values_list("pk", flat=True)),
        "holiday_id": list(Holiday.objects.filter(clinic=personas.north).values_list("pk", flat=True)),
        "protocol_id": list(Protocol.objects.filter(clinic=personas.north).values_list("pk", flat=True)),
        "version_id": list(
            ProtocolVersion.objects.filter(protocol__clinic=personas.north).values_list("pk", flat=True)
        ),
        "override_id": list(AcuityOverride.objects.filter(case__clinic=personas.north).values_list("pk", flat=True)),
        "writeback_id": list(WriteBack.objects.filter(clinic=personas.north).values_list("pk", flat=True)),
    }
    assert ids["override_id"] and ids["writeback_id"] and ids["protocol_id"] and ids["hours_id"]
    canaries = [
        NORTH_PATIENT,
        NORTH_PATIENT.split()[1],
        NORTH_FHIR_ID,
        NORTH_CALLBACK,
        "8675309",
        "867-5309",
        NORTH_NOTE,
        "Canarynote",
        NORTH_ANSWER,
        "Canaryquestion",
        "Canaryreason",
        *(str(c.uuid) for c in cases),
        *(c.uuid.hex for c in cases),
    ]
    return North(canaries=canaries, case_ids=ids["case_id"], ids=ids, uuids=[str(c.uuid) for c in cases])


def _leaks(body: bytes, north: North) -> list[str]:
    text = body.decode("utf-8", "replace")
    return [canary for canary in north.canaries if canary.lower() in text.lower()]


# --- The URL walk ---------------------------------------------------------------------------------------------

_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^)]*\)")


def _patterns(resolvers: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(route template, pattern) of every URL pattern, `<converter:name>` placeholders for route parameters and
    `<re:name>` for regex groups (Django admin)."""
    found: list[tuple[str, Any]] = []
    for entry in resolvers:
        route = str(entry.pattern)
        if route.startswith("^"):
            route = _GROUP.sub(lambda m: f"<re:{m['name']}>", route).lstrip("^").rstrip("$").replace("\\", "")
        if isinstance(entry, URLResolver):
            found.extend(_patterns(entry.url_patterns, prefix + route))
        elif isinstance(entry, URLPattern):
            found.append((prefix + route, entry))
    return found


def _values(converter: str | None, name: str, north: North, carol_case: int) -> list[str]:
    """Values to put in a parameter: North's ids, sequential guesses around them, an unknown id, her own."""
    if converter == "int" or name.endswith("_id") or name in ("object_id", "pk", "id"):
        real = north.ids.get(name) or north.case_ids
        # Sequential guesses: the neighbours of every real id and of her own case (sequences are not reset
        # between tests on PostgreSQL, so the ids can be large; a window keeps the walk bounded), and 1..3.
        guesses = {g for v in [*real, carol_case] for g in range(max(1, v - 2), v + 3)} | {1, 2, 3}
        return sorted({str(v) for v in [*real, *guesses, UNKNOWN_ID]}, key=int)
    if converter == "uuid":
        return [*north.uuids, str(uuid.uuid4())]
    if name == "app_label":
        return ["triage", "clinics", "auth", "ehr"]
    if name == "model_name":
        return ["case", "auditevent"]
    return ["language", "x"]


def _urls(north: North, carol_case: int) -> list[tuple[str, dict[str, str]]]:
    urls = []
    for template, _pattern in _patterns(get_resolver().url_patterns):
        params = list(_PARAM.finditer(template))
        combos: list[tuple[str, dict[str, str]]] = [(template, {})]
        for param in params:
            values = _values(param["converter"], param["name"], north, carol_case)
            combos = [
                (path.replace(param.group(0), value, 1), {**chosen, param["name"]: value})
                for path, chosen in combos
                for value in values
            ]
        for path, chosen in combos:
            url = "/" + path
            try:
                resolve(url)
            except Resolver404:
                continue
            urls.append((url, chosen))
    return urls


ADMIN_OR_SUPERVISOR_ONLY = ("/admin/", "/console/admin/")
# A well-formed body for the console's forms, so a POST gets past validation to the case look-up.
FORM = {
    "disposition": "ed-now",
    "note": "x",
    "result": "no_answer",
    "acuity": "2",
    "reason": "x",
    "decision": "approve",
}
LOGIN_FORMS = {"/admin/login/"}  # a sign-in form is open to anyone; it shows nobody's data


def test_carol_gets_nothing_of_north_from_any_url(personas, north: North):
    own = case_enqueue(clinic=personas.south, acuity=3, callback_number="+15550001111", patient_display="Own Patient")
    carol = Client()
    carol.force_login(personas.carol)
    denied_before = AuditEvent.objects.filter(action="access.denied").count()
    urls = _urls(north, own.pk)
    templates = {template for template, _ in _patterns(get_resolver().url_patterns)}
    assert len(urls) > 300 and len(templates) >= 40  # the walk reached the whole URL map
    leaks, existence_leaks, admin_open = [], [], []
    unknown_status: dict[tuple[str, str], int] = {}
    requests = 0
    north_case_probes: Counter[int] = Counter()
    for url, chosen in urls:
        for method in ("get", "post"):
            response = carol.get(url) if method == "get" else carol.post(url, FORM)
            requests += 1
            if url.endswith("/logout/"):  # the walk signs her out: sign in again for the next routes
                carol.force_login(personas.carol)
            body = response.content + str(response.headers).encode()
            found = _leaks(body, north)
            if found:
                leaks.append((method, url, response.status_code, found))
            if url.startswith(ADMIN_OR_SUPERVISOR_ONLY) and url not in LOGIN_FORMS and response.status_code == 200:
                admin_open.append((method, url))
            if chosen.get("case_id") and int(chosen["case_id"]) in north.case_ids:
                shape = re.sub(r"/\d+/", "/N/", url)
                probe = url.replace(f"/{chosen['case_id']}/", f"/{UNKNOWN_ID}/", 1)
                key = (method, shape + "|" + str(sorted(k for k in chosen if k != "case_id")))
                if key not in unknown_status:
                    unknown_status[key] = (carol.get(probe) if method == "get" else carol.post(probe, FORM)).status_code
                north_case_probes[response.status_code] += 1
                if response.status_code == 403 or response.status_code != unknown_status[key]:
                    existence_leaks.append((method, url, response.status_code, unknown_status[key]))
    assert leaks == []
    assert existence_leaks == []
    assert admin_open == []
    assert requests > 600
    assert north_case_probes[404] >= 20 and set(north_case_probes) <= {404, 405}, north_case_probes
    # Her refused case look-ups were audited in her clinic's log, with no North data.
    denied = AuditEvent.objects.filter(action="access.denied").exclude(pk__lte=0)
    assert denied.count() > denied_before
    assert set(denied.values_list("clinic_id", flat=True)) == {personas.south.pk}
    for event in denied:
        # "acuity_override": her co-sign attempts on North's override ids (contactcenter.services.refusals_audited);
        # "video_visit": a video room id she tried that is no visit at all (a room of North's visits is the same
        # to her: row-level security hides it, and the refusal records no id).
        assert event.actor_id == personas.carol.pk and event.object_type in ("case", "acuity_override", "video_visit")
        assert not _leaks(str(event.__dict__).encode(), north)
    # Control, same set-up: carol's own case page works, and alice sees North's case (the canaries are real).
    assert carol.get(f"/console/cases/{own.pk}/").status_code == 200
    alice = Client()
    alice.force_login(personas.alice)
    page = alice.get(f"/console/cases/{north.case_ids[0]}/")
    assert page.status_code == 200 and NORTH_PATIENT.encode() in page.content


@pytest.mark.parametrize("suffix", ["", "status/"])
def test_a_north_case_page_is_404_and_audited_for_carol(personas, north: North, suffix: str):
    carol = Client()
    carol.force_login(personas.carol)
    case_id = north.case_ids[0]
    before = AuditEvent.objects.filter(action="access.denied", object_id=str(case_id)).count()
    response = carol.get(f"/console/cases/{case_id}/{suffix}")
    assert response.status_code == 404
    assert not _leaks(response.content, north)
    after = AuditEvent.objects.filter(action="access.denied", object_id=str(case_id))
    assert after.count() == before + 1
    event = after.latest("pk")
    assert event.clinic_id == personas.south.pk and event.actor_id == personas.carol.pk


# --- REST API with a token ---------------------------------------------------------------------------------------


def test_carol_gets_nothing_of_north_from_the_api(personas, north: North):
    from rest_framework.test import APIClient

    own = case_enqueue(clinic=personas.south, acuity=3, callback_number="+15550001111")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=personas.carol).key}")
    api_urls = [(url, chosen) for url, chosen in _urls(north, own.pk) if url.startswith("/api/v1/")]
    assert len(api_urls) > 50
    bodies = {"acuity": 1, "reason": "x", "disposition_code": "ed-now", "note": "x", "approve": True, "outcome": "x"}
    leaks, statuses = [], []
    for url, chosen in api_urls:
        for method in ("get", "post", "put", "patch", "delete"):
            response = getattr(api, method)(url, bodies, format="json") if method != "get" else api.get(url)
            statuses.append(response.status_code)
            found = _leaks(response.content, north)
            if found:
                leaks.append((method, url, found))
            if chosen.get("case_id") and int(chosen["case_id"]) in north.case_ids:
                assert response.status_code in (404, 405), (method, url, response.status_code)
    assert leaks == []
    assert all(status < 500 for status in statuses)
    # Control: the list answers her own case only.
    listed = api.get("/api/v1/cases/").json()
    assert str(own.uuid) in str(listed) and not _leaks(api.get("/api/v1/cases/").content, north)
