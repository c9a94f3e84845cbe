"""SMART backend services against a real sekmet-fhir that enforces SMART tokens (ehr/fhir/smart.py).

sekmet verifies the client assertion itself (signature against the registered JWKS, aud = its token URL,
iss = sub, exp <= 5 min, jti unused) and refuses FHIR requests without a valid bearer token; its own traffic
log counts the token requests.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from django.core.management import CommandError, call_command
from fhirclient.models.humanname import HumanName
from fhirclient.models.patient import Patient
from sekmet.auth.keys import thumbprint as sekmet_thumbprint

from ehr.fhir import smart
from ehr.fhir.client import call, server_for
from ehr.types import EhrRejected
from tests.fixtures.smart_peers import LaunchPeer, SmartSekmet

SCOPES = "system/*.read system/*.write"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, smart.ClientKey]:
    """RS384 "rs" (registered), "rs_new" (rotation), ES384 "es" (registered), RS384 "wrong" (never registered)."""
    folder = tmp_path_factory.mktemp("smart-keys")
    algs = {"rs": "RS384", "rs_new": "RS384", "es": "ES384", "wrong": "RS384"}
    return {name: smart.write_private_key(alg=alg, path=folder / f"{name}.pem") for name, alg in algs.items()}


@pytest.fixture(scope="module")
def sekmet(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, smart.ClientKey]) -> Any:
    clients = [
        {"client_id": "careline-rs", "jwks": {"keys": [keys["rs"].public_jwk]}, "scopes": SCOPES},
        {"client_id": "careline-es", "jwks": {"keys": [keys["es"].public_jwk]}, "scopes": SCOPES},
    ]
    server = SmartSekmet(workdir=tmp_path_factory.mktemp("sekmet-smart"), clients=clients).start()
    yield server
    server.stop()


def configure(settings: Any, server: SmartSekmet, client_id: str, *keys: smart.ClientKey) -> None:
    """Point CareLine at `server` as SMART client `client_id` signing with the first of `keys`."""
    settings.FHIR_BASE_URL = server.base_url
    settings.FHIR_SMART_CLIENT_ID = client_id
    settings.FHIR_SMART_PRIVATE_KEYS = [key.path for key in keys]
    smart.token_state_reset()


def token_requests_after(server: SmartSekmet, before: int, expected: int) -> int:
    """sekmet's count of token requests since `before`, waiting briefly for its log to reach `expected`."""
    deadline = time.monotonic() + 3
    while server.token_requests() - before < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # and a moment for any extra request to show up
    return server.token_requests() - before


def create_patient(family: str) -> str:
    patient = Patient({"name": [HumanName({"family": family, "given": ["Smart"]}).as_json()]})
    created = call(lambda: patient.create(server_for()))
    return str(created["id"])


def test_discovery_reads_the_well_known_smart_configuration(sekmet: SmartSekmet) -> None:
    config = smart.discover(base_url=sekmet.base_url)
    assert config.source == "well-known"
    assert config.token_endpoint == sekmet.token_url
    assert "private_key_jwt" in config.auth_methods
    assert {"RS384", "ES384"} <= set(config.signing_algs)


def test_discovery_falls_back_to_the_capability_statement_oauth_uris(
    sekmet: SmartSekmet, keys: dict[str, smart.ClientKey], settings: Any
) -> None:
    """A server without .well-known: the token endpoint comes from CapabilityStatement.rest.security, and a
    token is really obtained from it (the legacy base advertises sekmet's token endpoint)."""
    peer = LaunchPeer(client_id="unused", redirect_uri="https://careline.test/", legacy_token_endpoint=sekmet.token_url)
    peer.start()
    try:
        config = smart.discover(base_url=peer.legacy_iss)
        assert config.source == "capability-statement"
        assert config.token_endpoint == sekmet.token_url
        configure(settings, sekmet, "careline-rs", keys["rs"])
        smart.token_state_reset(base_url=peer.legacy_iss)
        assert smart.access_token(base_url=peer.legacy_iss)
    finally:
        peer.stop()


@pytest.mark.parametrize(
    ("client_id", "key_name", "alg"), [("careline-rs", "rs", "RS384"), ("careline-es", "es", "ES384")]
)
def test_an_unauthenticated_read_is_refused_and_the_smart_one_allowed(
    sekmet: SmartSekmet, keys: dict[str, smart.ClientKey], settings: Any, client_id: str, key_name: str, alg: str
) -> None:
    assert keys[key_name].alg == alg
    configure(settings, sekmet, client_id, keys[key_name])
    patient_id = create_patient(f"Auth{alg}")
    read = call(lambda: Patient.read(patient_id, server_for()))
    assert read.name[0].family == f"Auth{alg}"

    settings.FHIR_SMART_CLIENT_ID = ""  # SMART off: the same read carries no token
    with pytest.raises(EhrRejected, match="HTTP 401"):
        call(lambda: Patient.read(patient_id, server_for()))


def test_one_token_request_serves_many_fhir_calls(
    sekmet: SmartSekmet, keys: dict[str, smart.ClientKey], settings: Any
) -> None:
    configure(settings, sekmet, "careline-rs", keys["rs"])
    before = sekmet.token_requests()
    for _ in range(8):
        call(lambda: Patient.where({"family": "Nobody"}).perform(server_for()))
    assert token_requests_after(sekmet, before, expected=1) == 1


def test_a_rejected_token_is_fetched_again_once(
    sekmet: SmartSekmet, keys: dict[str, smart.ClientKey], settings: Any
) -> None:
    """The FHIR server answers 401 to a cached token (revoked): one new token, the request resent, success."""
    from django.core.cache import cache

    configure(settings, sekmet, "careline-rs", keys["rs"])
    cache.set(smart._token_cache_keys(sekmet.base_url)[0], "revoked-token", timeout=60)
    before = sekmet.token_requests()
    call(lambda: Patient.where({"family": "Nobody"}).perform(server_for()))
    assert token_requests_after(sekmet, before, expected=1) == 1


def test_a_wrong_key_gives_a_clear_error_and_no_retry_storm(
    sekmet: SmartSekmet, keys: dict[str, smart.ClientKey], settings: Any
) -> None:
    configure(settings, sekmet, "careline-rs", keys["wrong"])
    before = sekmet.token_requests()
    with pytest.raises(EhrRejected) as first:
        call(lambda: Patient.where({"family": "Nobody"}).perform(server_for()))
    message = str(first.value)
    assert "invalid_client" in message
    assert "careline-rs" in message and keys["wrong"].kid in message
    assert token_requests_after(sekmet, before, expected=1) == 1

    for _ in range(5):  # within the back-off window: the same error, no HTTP request to the token endpoint
        with pytest.raises(EhrRejected, match="invalid_client"):
            call(lambda: Patient.where({"family": "Nobody"}).perform(server_for()))
    assert token_requests_after(sekmet, before, expected=1) == 1


def test_an_unknown_client_is_named_in_the_error(
    sekmet: SmartSekmet, keys: dict[str, smart.ClientKey], settings: Any
) -> None:
    configure(settings, sekmet, "not-registered", keys["rs"])
    with pytest.raises(EhrRejected, match="invalid_client.*Unknown client_id"):
        smart.access_token()


def test_the_client_assertion_claims(keys: dict[str, smart.ClientKey]) -> None:
    for key in (keys["rs"], keys["es"]):
        endpoint = "https://ehr.example/auth/token"
        first = smart.client_assertion(client_id="careline", token_endpoint=endpoint, key=key)
        second = smart.client_assertion(client_id="careline", token_endpoint=endpoint, key=key, lifetime_seconds=3600)
        public = key.private_key.public_key()
        for assertion in (first, second):
            header = jwt.get_unverified_header(assertion)
            assert header["kid"] == key.kid and header["alg"] == key.alg
            claims = jwt.decode(assertion, public, algorithms=[key.alg], audience=endpoint)
            assert claims["iss"] == claims["sub"] == "careline"
            assert 0 < claims["exp"] - claims["iat"] <= 300
            assert claims["exp"] - time.time() <= 300
        jtis = {jwt.decode(a, options={"verify_signature": False})["jti"] for a in (first, second)}
        assert len(jtis) == 2


def test_kid_is_the_rfc7638_thumbprint(keys: dict[str, smart.ClientKey]) -> None:
    """Checked against sekmet's independent RFC 7638 implementation."""
    for key in keys.values():
        assert key.kid == sekmet_thumbprint(key.public_jwk)


# Every request passes ClinicScopeMiddleware, which sets the connection's row-level-security scope (an anonymous
# request: none) on an open connection.
@pytest.mark.django_db
def test_jwks_endpoint_publishes_every_key_through_a_rotation(
    client: Any, keys: dict[str, smart.ClientKey], settings: Any
) -> None:
    old, new = keys["rs"], keys["rs_new"]
    settings.FHIR_SMART_CLIENT_ID = "careline-rs"

    def published() -> list[str]:
        body = client.get("/.well-known/jwks.json").json()
        for jwk in body["keys"]:
            assert jwk["use"] == "sig" and jwk["alg"] in ("RS384", "ES384")
            assert "d" not in jwk and "p" not in jwk  # public parts only
        return [jwk["kid"] for jwk in body["keys"]]

    def signing_kid() -> str:
        key = smart.configured_keys()[0]
        return str(jwt.get_unverified_header(smart.client_assertion(client_id="c", token_endpoint="t", key=key))["kid"])

    settings.FHIR_SMART_PRIVATE_KEYS = [old.path]
    assert published() == [old.kid] and signing_kid() == old.kid
    settings.FHIR_SMART_PRIVATE_KEYS = [old.path, new.path]  # 1. publish the new key, still signing with the old
    assert published() == [old.kid, new.kid] and signing_kid() == old.kid
    settings.FHIR_SMART_PRIVATE_KEYS = [new.path, old.path]  # 2. sign with the new key, old still published
    assert published() == [new.kid, old.kid] and signing_kid() == new.kid
    settings.FHIR_SMART_PRIVATE_KEYS = [new.path]  # 3. retire the old key
    assert published() == [new.kid]


def test_rotation_without_downtime_against_a_server_that_reads_our_jwks(
    live_server: Any, tmp_path: Path, keys: dict[str, smart.ClientKey], settings: Any
) -> None:
    """sekmet registered with CareLine's JWKS URL (not a copy of the key): every phase of the rotation gets a
    token. sekmet caches the JWKS for 5 minutes, which is why the new key is published before it signs."""
    server = SmartSekmet(
        workdir=tmp_path / "sekmet",
        clients=[
            {"client_id": "careline-jwks", "jwks_url": f"{live_server.url}/.well-known/jwks.json", "scopes": SCOPES}
        ],
    ).start()
    try:
        old, new = keys["rs"], keys["rs_new"]
        configure(settings, server, "careline-jwks", old, new)
        assert smart.access_token()
        configure(settings, server, "careline-jwks", new, old)
        assert smart.access_token()
        configure(settings, server, "careline-jwks", new)
        assert smart.access_token()
        configure(settings, server, "careline-jwks", keys["wrong"])
        with pytest.raises(EhrRejected, match="invalid_client"):
            smart.access_token()
    finally:
        server.stop()


def test_token_cache_lifetime(settings: Any) -> None:
    settings.FHIR_SMART_TOKEN_EXPIRY_MARGIN_SECONDS = 60
    assert smart.token_cache_seconds(3600) == 3540
    assert smart.token_cache_seconds(100) == 50
    assert smart.token_cache_seconds(1) == 1


def test_smart_keygen_writes_a_private_key_and_prints_its_kid(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "keys" / "careline-es384.pem"
    call_command("smart_keygen", "--alg", "ES384", "--out", str(out))
    kid = capsys.readouterr().out.strip()
    assert out.stat().st_mode & 0o777 == 0o600
    key = smart.load_client_key(str(out))
    assert key.kid == kid and key.alg == "ES384"
    with pytest.raises(CommandError, match="exists"):
        call_command("smart_keygen", "--alg", "RS384", "--out", str(out))
