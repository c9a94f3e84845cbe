"""Who may run the pre-call test (`POST /precall/offer/`): a valid pre-call token, or a signed-in staff session
with its CSRF token; everyone else 403. Rate limit per token subject / session. The staff page and its link.

Requests that are allowed here carry a body that is not JSON (400): the authorization and the rate limit
are decided before the offer is read, and no peer is started. Real offers: test_precall_echo.py and
tests/e2e/test_precall.py."""

from __future__ import annotations

import time
import uuid

import pytest
from django.contrib.auth.models import User
from django.core import signing
from django.test import Client

from contactcenter.precall import InvalidPrecallToken, precall_subject, precall_token

OFFER_URL = "/precall/offer/"


def subject() -> str:
    return f"visit:{uuid.uuid4()}"  # unique per test: the rate-limit counters live in the shared Redis


def post(client: Client, token: str | None = None, **headers: str):
    if token is not None:
        headers["HTTP_X_PRECALL_TOKEN"] = token
    return client.post(OFFER_URL, data="not json", content_type="application/json", **headers)


def test_token_round_trip_and_its_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    s = subject()
    assert precall_subject(precall_token(s)) == s
    with pytest.raises(InvalidPrecallToken):
        precall_subject(precall_token(s) + "x")
    with pytest.raises(InvalidPrecallToken):
        precall_subject(signing.dumps(s, salt="careline.other"))
    real = time.time
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: real() - 16 * 60)  # signed 16 minutes ago
        old = precall_token(s)
    with pytest.raises(InvalidPrecallToken, match="age"):
        precall_subject(old)


@pytest.mark.django_db
def test_a_valid_token_is_enough(client: Client) -> None:
    assert post(client, precall_token(subject())).status_code == 400  # authorized; the body is refused


@pytest.mark.django_db
def test_bad_tokens_and_anonymous_callers_get_403(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    s = subject()
    real = time.time
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: real() - 16 * 60)
        expired = precall_token(s)
    assert post(client, expired).status_code == 403
    assert post(client, precall_token(s)[:-2] + "xx").status_code == 403
    assert post(client, signing.dumps(s, salt="careline.visit")).status_code == 403
    assert post(client).status_code == 403  # no token, not signed in
    assert client.get(OFFER_URL).status_code == 405


@pytest.mark.django_db
def test_staff_session_with_csrf_is_allowed_without_it_denied(personas) -> None:
    nurse = Client(enforce_csrf_checks=True)
    nurse.force_login(personas.alice)
    assert post(nurse).status_code == 403  # no CSRF token: a cross-site POST must not start a test
    page = nurse.get("/console/precall/")
    csrf = page.cookies["csrftoken"].value
    assert post(nurse, HTTP_X_CSRFTOKEN=csrf).status_code == 400


@pytest.mark.django_db
def test_signed_in_but_not_staff_is_denied(personas) -> None:
    outsider = User.objects.create_user("mallory", password="x" * 12)
    client = Client()
    client.force_login(outsider)
    assert post(client).status_code == 403
    assert client.get("/console/precall/").status_code == 403


@pytest.mark.django_db
def test_rate_limit_per_token_subject(client: Client, settings) -> None:
    settings.PRECALL_RATE_LIMIT = 2
    settings.PRECALL_RATE_WINDOW_SECONDS = 60
    s = subject()
    assert [post(client, precall_token(s)).status_code for _ in range(2)] == [400, 400]
    limited = post(client, precall_token(s))  # a fresh token for the same visit counts against the same limit
    assert limited.status_code == 429
    assert limited["Retry-After"] == "60"
    assert post(client, precall_token(subject())).status_code == 400  # another visit is not affected


@pytest.mark.django_db
def test_rate_limit_per_staff_session(personas, settings) -> None:
    settings.PRECALL_RATE_LIMIT = 1
    nurse = Client()
    nurse.force_login(personas.alice)
    assert post(nurse).status_code == 400
    assert post(nurse).status_code == 429
    other = Client()
    other.force_login(personas.dave)
    assert post(other).status_code == 400


@pytest.mark.django_db
def test_hangup_of_an_unknown_session_is_404(client: Client) -> None:
    assert client.post("/precall/sessions/nope/hangup/").status_code == 404


@pytest.mark.django_db
def test_staff_page_embeds_the_test_and_the_header_links_it(client: Client, personas) -> None:
    assert client.get("/console/precall/").status_code == 302  # sign in first
    client.force_login(personas.alice)
    page = client.get("/console/precall/").content.decode()
    assert 'data-precall-url="/precall/offer/"' in page
    assert 'data-precall-token=""' in page
    assert "js/precall.js" in page
    assert 'id="precall-link"' in client.get("/console/").content.decode()
