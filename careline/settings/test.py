"""Test settings: PostgreSQL and Redis at localhost (real connections), unless the environment says otherwise."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/careline")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("CARELINE_DEMO", "true")

from careline.settings.base import *  # noqa: E402,F401,F403
from careline.settings.base import CACHES, CHANNEL_LAYERS, DATABASES  # noqa: E402

# Each test run gets its own channel-layer prefix so parallel runs on one Redis do not cross. Server processes a
# test starts (tests/ops/test_topology.py) are given the test's own prefix in CARELINE_TEST_CHANNEL_PREFIX.
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = os.environ.get(  # type: ignore[index]
    "CARELINE_TEST_CHANNEL_PREFIX", f"careline-test-{os.getpid()}"
)
# The same for cache keys (drain flags, SLI counters are keyed by node and clinic id, which repeat across runs).
CACHES["default"]["KEY_PREFIX"] = os.environ.get("CARELINE_TEST_CACHE_PREFIX", f"careline-test-{os.getpid()}")
# The drain watcher runs in real server processes only (tests that need it set DRAIN_WATCHER=true for them).
DRAIN_WATCHER = os.environ.get("DRAIN_WATCHER", "false").lower() == "true"
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("CARELINE_TEST_DB", "test_careline")}
# The whole suite runs as the non-superuser application role, under row-level security (clinics.db_scope).
# Test code itself starts in system scope (fixtures of any clinic); requests, tasks and webhooks set theirs.
DATABASE_APP_ROLE = os.environ.get("DATABASE_APP_ROLE", "careline_app")
DATABASE_INITIAL_SCOPE = "system"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tasks run in-process, unless a test's server process is to publish them to the broker as production does
# (tests/chaos/test_redis_restart.py: CELERY_TASK_ALWAYS_EAGER=false).
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "true").lower() == "true"
CELERY_TASK_EAGER_PROPAGATES = True
TWILIO_AUTH_TOKEN = "test-auth-token"
# Field encryption (clinics.crypto): a fixed, public TEST-ONLY key (32 bytes), whatever the environment says.
FIELD_ENCRYPTION_KEYS = "test-not-secret:dGVzdC1maWVsZC1rZXktcHVibGljLW5vdC1zZWNyZXQ="
FIELD_ENCRYPTION_KEYS_FILE = ""
# No Twilio account (SMS recorded, not queued), unless a test's server process is to queue SMS to the broker
# (tests/chaos/test_redis_restart.py; no worker runs there, so nothing is sent).
TWILIO_ACCOUNT_SID = os.environ.get("CARELINE_TEST_TWILIO_ACCOUNT_SID", "")
PUBLIC_BASE_URL = "https://careline.test"
ALLOWED_HOSTS = ["*"]
# No EHR unless a test asks for one (the `fhir` fixture points this at a real sekmet-fhir): a closed port,
# so a test that forgets the fixture fails the same way on every machine.
FHIR_BASE_URL = "http://127.0.0.1:9/fhir"
# The FHIR circuit breaker is off in tests (tests stop the server on purpose and expect the transport
# error); tests/ehr/test_circuit.py turns it on.
FHIR_CIRCUIT_FAILURE_THRESHOLD = 0
# A generous EHR wait for the IVR on a loaded test machine (production: 1 s, half the webhook budget); the chaos
# test's live nodes (tests/chaos/live_settings.py) run with production's value.
FHIR_IVR_TIMEOUT_SECONDS = 5.0
# WebRTC peers on loopback only (TESTING.md: aioice never offers 127.0.0.1 unless told to).
RTC_HOST_ADDRESSES = ["127.0.0.1"]
RTC_STUN_URLS = []
