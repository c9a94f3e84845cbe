"""Schemathesis against the OpenAPI schema (drf-spectacular), as nurse carol of clinic South (issue 6).

Schemathesis generates calls for every operation of `/api/v1/` (path ids, query strings and bodies; a bounded
number of examples per operation keeps the run short); each is sent through Django's test client with carol's
token while clinic North holds real cases. No answer may be a 5xx, and no answer may hold North's data
(patient name, FHIR id, callback number, case uuids, note, answers). The schema is the one `/api/v1/schema/`
serves (drf-spectacular's generator, in process). The test client (rather than `case.call`) keeps every request
inside the test's transaction.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import schemathesis
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.core import NotSet

from tests.security.test_cross_tenant import North, _leaks, north  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 12


@pytest.fixture
def api_schema(db: None):
    return schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_as_carol_no_5xx_and_no_north_data(case, personas, north: North):  # noqa: F811
    token = Token.objects.get_or_create(user=personas.carol)[0].key
    path = case.formatted_path + ("?" + urlencode(case.query, doseq=True) if case.query else "")
    if isinstance(case.body, NotSet) or case.body is None:
        body: str | bytes = ""
    elif isinstance(case.body, str | bytes):
        body = case.body
    else:
        body = json.dumps(case.body)
    response = Client().generic(
        case.method,
        path,
        data=body or "",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    detail = (case.method, path, response.status_code, response.content[:300])
    assert response.status_code < 500, detail
    assert _leaks(response.content, north) == [], detail
