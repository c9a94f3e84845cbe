"""SMART on FHIR: backend services (client_credentials + private_key_jwt) and the EHR launch (auth code + PKCE).

`fhirclient` only forwards a JWT the caller made and never reads `.well-known/smart-configuration`; this
module fills both gaps with PyJWT + cryptography:

- **Discovery** (`discover`): `[base]/.well-known/smart-configuration`, falling back to the
  CapabilityStatement's `rest.security` `oauth-uris` extension (SMART App Launch 2.x, "Conformance";
  the extension is the STU1 way many servers still use). Cached `FHIR_SMART_DISCOVERY_CACHE_SECONDS`.
- **Keys** (`configured_keys`, `jwks`): `FHIR_SMART_PRIVATE_KEYS` is a list of PEM files; the first signs,
  every one is published on `/.well-known/jwks.json` with `kid` = RFC 7638 thumbprint, so a key can be
  published before it signs and kept published after it stops signing (rotation without downtime).
- **Client assertion** (`client_assertion`): SMART Backend Services (HL7 SMART App Launch 2.x, "Backend
  Services", "Authenticating to the token endpoint"): `iss` = `sub` = client id, `aud` = token endpoint,
  `exp` at most 5 minutes ahead, unique `jti`, header `kid`, `alg` RS384 (RSA) or ES384 (EC P-384).
- **Access token** (`access_token`): shared Django cache (Redis in production) until
  `FHIR_SMART_TOKEN_EXPIRY_MARGIN_SECONDS` before `expires_in`. After a failed token request, further
  requests for the same client fail fast with the same error for `FHIR_SMART_TOKEN_FAILURE_BACKOFF_SECONDS`
  (no retry storm against the authorization server when a key is wrong or the server is down).
- **EHR launch** (`launch_begin`, `launch_complete`): authorization code flow with PKCE S256 (RFC 7636) as a
  public client, for an allow-listed `iss` only (`FHIR_SMART_LAUNCH_ISS`).

Errors: `EhrRejected` (the server answered and refused: `invalid_client`, `invalid_scope`, no token endpoint,
an unsupported algorithm) and `EhrUnavailable` (transport, timeout, 5xx). Tokens and assertions are never
logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.core.cache import cache

from ehr.types import EhrRejected, EhrUnavailable

logger = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OAUTH_URIS_EXTENSION = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
# SMART Backend Services: the assertion's exp "no more than five minutes in the future".
MAX_ASSERTION_LIFETIME_SECONDS = 300
SUPPORTED_ALGS = ("RS384", "ES384")
RSA_KEY_BITS = 3072

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --- Keys and JWKS ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientKey:
    """One private key of CareLine's SMART client: `alg` RS384 or ES384, `kid` its RFC 7638 thumbprint."""

    path: str
    private_key: PrivateKey
    alg: str
    kid: str
    public_jwk: dict[str, Any] = field(hash=False, compare=False)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _int_b64(number: int) -> str:
    return _b64url(number.to_bytes((number.bit_length() + 7) // 8 or 1, "big"))


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public RSA or EC JWK (the required members, sorted, no spaces)."""
    if jwk["kty"] == "RSA":
        members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    else:
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _b64url(hashlib.sha256(canonical).digest())


def _public_jwk(private_key: PrivateKey) -> tuple[str, dict[str, Any]]:
    """(alg, public JWK without kid) of `private_key`. Raises EhrRejected for an unsupported key type."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        numbers = private_key.public_key().public_numbers()
        if private_key.key_size < 2048:
            raise EhrRejected("SMART signing key: RSA keys must have at least 2048 bits")
        return "RS384", {"kty": "RSA", "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(private_key.curve, ec.SECP384R1):
        point = private_key.public_key().public_numbers()
        return "ES384", {"kty": "EC", "crv": "P-384", "x": _b64url(point.x.to_bytes(48, "big")),
                         "y": _b64url(point.y.to_bytes(48, "big"))}  # fmt: skip
    raise EhrRejected("SMART signing key: only RSA (RS384) and EC P-384 (ES384) keys are supported")


def client_key_from_pem(pem: bytes, *, path: str = "") -> ClientKey:
    """Parse an unencrypted PEM private key into a `ClientKey`. Raises EhrRejected if unusable."""
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise EhrRejected(f"SMART signing key {path or '(pem)'} is not an unencrypted PEM private key") from exc
    if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise EhrRejected("SMART signing key: only RSA (RS384) and EC P-384 (ES384) keys are supported")
    alg, jwk = _public_jwk(private_key)
    kid = jwk_thumbprint(jwk)
    return ClientKey(
        path=path, private_key=private_key, alg=alg, kid=kid, public_jwk={**jwk, "kid": kid, "alg": alg, "use": "sig"}
    )


_parsed_keys: dict[tuple[str, int], ClientKey] = {}


def load_client_key(path: str) -> ClientKey:
    """The key in PEM file `path` (parsed once per file version). Raises EhrRejected if missing or unusable."""
    try:
        version = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise EhrRejected(f"SMART signing key file {path} cannot be read") from exc
    cached = _parsed_keys.get((path, version))
    if cached is None:
        cached = client_key_from_pem(Path(path).read_bytes(), path=path)
        _parsed_keys[(path, version)] = cached
    return cached


def configured_keys() -> list[ClientKey]:
    """`FHIR_SMART_PRIVATE_KEYS` in order: the first signs, all are published. Empty if none configured."""
    return [load_client_key(path) for path in settings.FHIR_SMART_PRIVATE_KEYS if path]


def jwks() -> dict[str, Any]:
    """The JWK Set to register at the EHR: every configured key's public part (`kid`, `alg`, `use`=sig)."""
    return {"keys": [dict(key.public_jwk) for key in configured_keys()]}


def generate_private_key_pem(*, alg: str) -> bytes:
    """A new PKCS#8 PEM private key for `alg` (RS384: RSA 3072 bits; ES384: EC P-384)."""
    private_key: PrivateKey
    if alg == "RS384":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    elif alg == "ES384":
        private_key = ec.generate_private_key(ec.SECP384R1())
    else:
        raise ValueError(f"alg must be one of {', '.join(SUPPORTED_ALGS)}")
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private_key(*, alg: str, path: Path) -> ClientKey:
    """Write a new key for `alg` to `path` (mode 0600, never overwriting). Raises FileExistsError."""
    pem = generate_private_key_pem(alg=alg)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return client_key_from_pem(pem, path=str(path))


# --- Discovery -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmartConfiguration:
    """What a FHIR server advertises for SMART. `source` is "well-known" or "capability-statement"."""

    token_endpoint: str
    authorization_endpoint: str = ""
    auth_methods: tuple[str, ...] = ()
    signing_algs: tuple[str, ...] = ()
    code_challenge_methods: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    source: str = "well-known"


def _cache_key(kind: str, *parts: str) -> str:
    digest = hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:32]
    return f"ehr:smart:{kind}:{digest}"


def _get_json(url: str, *, timeout: float, accept: str) -> tuple[int, Any]:
    """(status, JSON body or None). Raises EhrUnavailable on transport failure, timeout or 5xx."""
    try:
        response = requests.get(url, timeout=timeout, headers={"Accept": accept})
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise EhrUnavailable(f"SMART discovery: {type(exc).__name__}") from exc
    if response.status_code >= 500:
        raise EhrUnavailable(f"SMART discovery: HTTP {response.status_code}")
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def _from_capability(capability: Any) -> SmartConfiguration | None:
    for rest in (capability or {}).get("rest", []) if isinstance(capability, dict) else []:
        for extension in (rest.get("security") or {}).get("extension", []):
            if extension.get("url") != OAUTH_URIS_EXTENSION:
                continue
            uris = {sub.get("url"): sub.get("valueUri", "") for sub in extension.get("extension", [])}
            if uris.get("token"):
                return SmartConfiguration(
                    token_endpoint=uris["token"],
                    authorization_endpoint=uris.get("authorize", ""),
                    source="capability-statement",
                )
    return None


def discover(*, base_url: str, timeout: float | None = None) -> SmartConfiguration:
    """The SMART configuration of the FHIR server at `base_url` (cached).

    Reads `[base]/.well-known/smart-configuration`; if it is absent or has no `token_endpoint`, reads
    `[base]/metadata` and its `rest.security` oauth-uris extension. Raises EhrUnavailable (transport, 5xx)
    or EhrRejected (the server advertises no token endpoint).
    """
    base = base_url.rstrip("/")
    key = _cache_key("discovery", base)
    cached = cache.get(key)
    if cached is not None:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in cached.items()}
        return SmartConfiguration(**fields)
    seconds = timeout if timeout is not None else settings.FHIR_TIMEOUT_SECONDS
    status, body = _get_json(f"{base}/.well-known/smart-configuration", timeout=seconds, accept="application/json")
    config: SmartConfiguration | None = None
    if status == 200 and isinstance(body, dict) and body.get("token_endpoint"):
        config = SmartConfiguration(
            token_endpoint=str(body["token_endpoint"]),
            authorization_endpoint=str(body.get("authorization_endpoint") or ""),
            auth_methods=tuple(body.get("token_endpoint_auth_methods_supported") or ()),
            signing_algs=tuple(body.get("token_endpoint_auth_signing_alg_values_supported") or ()),
            code_challenge_methods=tuple(body.get("code_challenge_methods_supported") or ()),
            capabilities=tuple(body.get("capabilities") or ()),
        )
    else:
        status, body = _get_json(f"{base}/metadata", timeout=seconds, accept="application/fhir+json")
        config = _from_capability(body) if status == 200 else None
    if config is None:
        raise EhrRejected(
            f"SMART discovery: {base} advertises no token endpoint "
            "(neither .well-known/smart-configuration nor the CapabilityStatement oauth-uris extension)"
        )
    cache.set(key, asdict(config), timeout=settings.FHIR_SMART_DISCOVERY_CACHE_SECONDS)
    return config


# --- Backend services: assertion and access token ----------------------------------------------------------------


def backend_services_configured() -> bool:
    """True when FHIR requests must carry a SMART backend-services token (client id and a key are set)."""
    return bool(settings.FHIR_SMART_CLIENT_ID and [p for p in settings.FHIR_SMART_PRIVATE_KEYS if p])


def client_assertion(
    *, client_id: str, token_endpoint: str, key: ClientKey, lifetime_seconds: int = 300, now: float | None = None
) -> str:
    """A signed `private_key_jwt` client assertion (SMART Backend Services).

    Claims: `iss` = `sub` = `client_id`, `aud` = `token_endpoint`, `iat`, `exp` = iat + `lifetime_seconds`
    (capped at 300 s), `jti` a random UUID (never reused). Header: `alg` (the key's), `kid`, `typ` JWT.
    """
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "iat": issued,
        "exp": issued + min(lifetime_seconds, MAX_ASSERTION_LIFETIME_SECONDS),
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT"})


def _oauth_error(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        description = str(body.get("error_description") or "")[:300]
        return f"{body['error']}: {description}" if description else str(body["error"])
    return f"HTTP {response.status_code}"


_fetch_lock = threading.Lock()


def _token_cache_keys(base: str) -> tuple[str, str]:
    signing = configured_keys()[0]
    parts = (base, settings.FHIR_SMART_CLIENT_ID, signing.kid, settings.FHIR_SMART_SCOPE)
    return _cache_key("token", *parts), _cache_key("token-failure", *parts)


def access_token(*, base_url: str | None = None, timeout: float | None = None) -> str:
    """A backend-services access token for the FHIR server at `base_url` (default `FHIR_BASE_URL`).

    Served from the cache until `FHIR_SMART_TOKEN_EXPIRY_MARGIN_SECONDS` before it expires; otherwise
    discovery + a `client_credentials` request with a fresh client assertion signed by the first configured
    key. Raises EhrRejected (e.g. "invalid_client: ..." from the server, no usable algorithm) or
    EhrUnavailable (transport, 5xx). After a failure, calls within `FHIR_SMART_TOKEN_FAILURE_BACKOFF_SECONDS`
    raise the same error without any HTTP request.
    """
    if not backend_services_configured():
        raise EhrRejected("SMART backend services are not configured (FHIR_SMART_CLIENT_ID, FHIR_SMART_PRIVATE_KEYS)")
    base = (base_url or settings.FHIR_BASE_URL).rstrip("/")
    token_key, failure_key = _token_cache_keys(base)
    token = cache.get(token_key)
    if token:
        return str(token)
    with _fetch_lock:  # threads of one process (parallel chart sections) share one token request
        token = cache.get(token_key)
        if token:
            return str(token)
        failure = cache.get(failure_key)
        if failure is not None:
            error = EhrUnavailable if failure["kind"] == "unavailable" else EhrRejected
            raise error(f"{failure['message']} (token requests paused after that failure; retried after backoff)")
        try:
            token, lifetime = _request_token(base=base, timeout=timeout)
        except (EhrRejected, EhrUnavailable) as exc:
            kind = "unavailable" if isinstance(exc, EhrUnavailable) else "rejected"
            cache.set(
                failure_key,
                {"kind": kind, "message": str(exc)},
                timeout=settings.FHIR_SMART_TOKEN_FAILURE_BACKOFF_SECONDS,
            )
            logger.warning("SMART token request failed (%s); pausing token requests", kind)
            raise
        cache.set(token_key, token, timeout=token_cache_seconds(lifetime))
        return token


def token_cache_seconds(expires_in: int) -> int:
    """How long to keep a token that lives `expires_in` seconds: up to the expiry margin before it expires
    (half its life when it is shorter than twice the margin), at least 1 s."""
    margin = settings.FHIR_SMART_TOKEN_EXPIRY_MARGIN_SECONDS
    keep = expires_in - margin if expires_in > 2 * margin else expires_in // 2
    return max(1, keep)


def _request_token(*, base: str, timeout: float | None) -> tuple[str, int]:
    seconds = timeout if timeout is not None else settings.FHIR_TIMEOUT_SECONDS
    config = discover(base_url=base, timeout=seconds)
    key = configured_keys()[0]
    if config.auth_methods and "private_key_jwt" not in config.auth_methods:
        raise EhrRejected(f"SMART: {base} does not accept private_key_jwt (it accepts {list(config.auth_methods)})")
    if config.signing_algs and key.alg not in config.signing_algs:
        raise EhrRejected(
            f"SMART: the signing key is {key.alg} but {base} accepts {list(config.signing_algs)}; "
            "generate a key of an accepted algorithm with `manage.py smart_keygen`"
        )
    form = {
        "grant_type": "client_credentials",
        "scope": settings.FHIR_SMART_SCOPE,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(
            client_id=settings.FHIR_SMART_CLIENT_ID, token_endpoint=config.token_endpoint, key=key
        ),
    }
    try:
        response = requests.post(
            config.token_endpoint, data=form, timeout=seconds, headers={"Accept": "application/json"}
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise EhrUnavailable(f"SMART token endpoint unreachable: {type(exc).__name__}") from exc
    if response.status_code >= 500:
        raise EhrUnavailable(f"SMART token endpoint: HTTP {response.status_code}")
    if response.status_code != 200:
        raise EhrRejected(
            f"SMART token request refused: {_oauth_error(response)} "
            f"(client id {settings.FHIR_SMART_CLIENT_ID!r}, key kid {key.kid}, {key.alg}); "
            "check that this key is registered for the client (JWKS at /.well-known/jwks.json)"
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise EhrRejected("SMART token endpoint answered 200 with a body that is not JSON") from exc
    token = body.get("access_token") if isinstance(body, dict) else None
    if not token or str(body.get("token_type", "")).lower() != "bearer":
        raise EhrRejected("SMART token endpoint answered without a bearer access_token")
    return str(token), int(body.get("expires_in") or 300)


def forget_access_token(*, base_url: str | None = None) -> None:
    """Drop the cached token (the FHIR server answered 401 with it: revoked, or the server restarted)."""
    if backend_services_configured():
        token_key, _ = _token_cache_keys((base_url or settings.FHIR_BASE_URL).rstrip("/"))
        cache.delete(token_key)


def token_state_reset(*, base_url: str | None = None) -> None:
    """Forget the cached token and any failure backoff for `base_url` (after fixing a key registration)."""
    if backend_services_configured():
        token_key, failure_key = _token_cache_keys((base_url or settings.FHIR_BASE_URL).rstrip("/"))
        cache.delete_many([token_key, failure_key])


# --- EHR launch (SMART App Launch, authorization code + PKCE) -----------------------------------------------------


@dataclass(frozen=True)
class LaunchRequest:
    """The first leg of an EHR launch: send the browser to `authorize_url`; keep the rest in the session."""

    authorize_url: str
    state: str
    code_verifier: str
    iss: str
    token_endpoint: str
    redirect_uri: str


@dataclass(frozen=True)
class LaunchContext:
    """What the token response of an EHR launch tells CareLine: the FHIR `patient` id (required), the
    `encounter` id and `fhir_user` if given, and the granted `scope`. The access token itself is not kept."""

    iss: str
    patient: str
    encounter: str = ""
    fhir_user: str = ""
    scope: str = ""


def launch_allowed(iss: str) -> bool:
    """True if `iss` (a FHIR base URL) is on the allow-list `FHIR_SMART_LAUNCH_ISS` (trailing slash ignored)."""
    allowed = {entry.rstrip("/") for entry in settings.FHIR_SMART_LAUNCH_ISS if entry}
    return iss.rstrip("/") in allowed


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(ASCII(code_verifier))) without padding."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def launch_begin(*, iss: str, launch: str, redirect_uri: str, timeout: float | None = None) -> LaunchRequest:
    """Start an EHR launch from `iss` with the EHR's opaque `launch` value.

    Checks the allow-list, discovers the authorization and token endpoints on `iss`, makes a PKCE verifier
    (RFC 7636, 64 random bytes) and a `state`, and builds the authorize URL with `response_type=code`,
    `client_id` (`FHIR_SMART_LAUNCH_CLIENT_ID`), `redirect_uri`, `launch`, `scope`
    (`FHIR_SMART_LAUNCH_SCOPE`), `state`, `aud`=iss and `code_challenge` (S256). Raises EhrRejected
    (iss not allowed, launch not configured, no authorization endpoint, S256 not offered) or EhrUnavailable.
    """
    if not settings.FHIR_SMART_LAUNCH_CLIENT_ID:
        raise EhrRejected("SMART EHR launch is not configured (FHIR_SMART_LAUNCH_CLIENT_ID)")
    if not launch_allowed(iss):
        raise EhrRejected("this EHR (iss) is not on CareLine's launch allow-list (FHIR_SMART_LAUNCH_ISS)")
    config = discover(base_url=iss, timeout=timeout)
    if not config.authorization_endpoint:
        raise EhrRejected("SMART discovery: the EHR advertises no authorization endpoint")
    if config.code_challenge_methods and "S256" not in config.code_challenge_methods:
        raise EhrRejected("SMART discovery: the EHR does not support PKCE S256")
    verifier = _b64url(secrets.token_bytes(64))
    state = secrets.token_urlsafe(32)
    params = {
        "response_type": "code",
        "client_id": settings.FHIR_SMART_LAUNCH_CLIENT_ID,
        "redirect_uri": redirect_uri,
        "launch": launch,
        "scope": settings.FHIR_SMART_LAUNCH_SCOPE,
        "state": state,
        "aud": iss,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in config.authorization_endpoint else "?"
    return LaunchRequest(
        authorize_url=f"{config.authorization_endpoint}{separator}{urlencode(params)}",
        state=state,
        code_verifier=verifier,
        iss=iss,
        token_endpoint=config.token_endpoint,
        redirect_uri=redirect_uri,
    )


def launch_complete(
    *, iss: str, token_endpoint: str, code: str, code_verifier: str, redirect_uri: str, timeout: float | None = None
) -> LaunchContext:
    """Exchange the authorization `code` (with the PKCE `code_verifier`) for the launch context.

    Raises EhrRejected (the server refused the code: "invalid_grant: ..."; no `patient` in the response)
    or EhrUnavailable (transport, 5xx).
    """
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": settings.FHIR_SMART_LAUNCH_CLIENT_ID,
        "code_verifier": code_verifier,
    }
    seconds = timeout if timeout is not None else settings.FHIR_TIMEOUT_SECONDS
    try:
        response = requests.post(token_endpoint, data=form, timeout=seconds, headers={"Accept": "application/json"})
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise EhrUnavailable(f"SMART token endpoint unreachable: {type(exc).__name__}") from exc
    if response.status_code >= 500:
        raise EhrUnavailable(f"SMART token endpoint: HTTP {response.status_code}")
    if response.status_code != 200:
        raise EhrRejected(f"SMART launch: the EHR refused the authorization code: {_oauth_error(response)}")
    try:
        body = response.json()
    except ValueError as exc:
        raise EhrRejected("SMART launch: the token response is not JSON") from exc
    patient = body.get("patient") if isinstance(body, dict) else None
    if not patient:
        raise EhrRejected("SMART launch: the EHR gave no patient in the launch context")
    return LaunchContext(
        iss=iss,
        patient=str(patient),
        encounter=str(body.get("encounter") or ""),
        fhir_user=str(body.get("fhirUser") or ""),
        scope=str(body.get("scope") or ""),
    )
