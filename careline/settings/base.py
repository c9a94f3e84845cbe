"""Base settings: every environment, with safe embedded defaults for `make run`.

Every value that differs between environments comes from the environment through `env` (django-environ,
typed). Unset `DATABASE_URL` -> SQLite in `var/`; unset `REDIS_URL` -> in-memory channel layer and a
filesystem Celery broker. The README documents each variable.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="careline-embedded-demo-key-not-for-production")
DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Demo mode: the phone simulator and demo seeding. Never on in production settings.
CARELINE_DEMO = env.bool("CARELINE_DEMO", default=True)

# Field encryption at rest (clinics.crypto, README "Encryption at rest"): `kid:base64key[,kid:base64key...]`,
# 32-byte keys, the first encrypts and all decrypt; or a file of the same entries (one per line). Never in the
# database. Only the embedded demo (CARELINE_DEMO) falls back to a fixed, public demo key; production settings
# require one of the two variables.
DEMO_FIELD_ENCRYPTION_KEYS = "demo-not-secret:ZGVtby1maWVsZC1rZXktcHVibGljLW5vdC1zZWNyZXQ="  # DEMO ONLY, public
FIELD_ENCRYPTION_KEYS = env.str("FIELD_ENCRYPTION_KEYS", default="")
FIELD_ENCRYPTION_KEYS_FILE = env.str("FIELD_ENCRYPTION_KEYS_FILE", default="")
if CARELINE_DEMO and not FIELD_ENCRYPTION_KEYS and not FIELD_ENCRYPTION_KEYS_FILE:
    FIELD_ENCRYPTION_KEYS = DEMO_FIELD_ENCRYPTION_KEYS

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_htmx",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "clinics",
    "triage",
    "ehr",
    "ivr",
    "contactcenter",
    "ops",
    "django_prometheus",
    "accounts",
]

MIDDLEWARE = [
    # /healthz, /readyz, /metrics answered before anything else (no session, host check or HTTPS redirect).
    "careline.health.OpsEndpointsMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "careline.middleware.RequestIdMiddleware",  # first: the request id is on every log record and audit row
    "django.middleware.security.SecurityMiddleware",
    "careline.security_headers.PermissionsPolicyMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "careline.middleware.ClinicScopeMiddleware",  # PostgreSQL RLS scope of the user's clinic (clinics.db_scope)
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): the session passed the TOTP step
    "accounts.middleware.SessionTimeoutMiddleware",  # idle / absolute expiry, before anything reads PHI
    "accounts.middleware.OtpRequiredMiddleware",  # signed in but not OTP-verified: only the OTP pages
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # django-axes: turns a lockout into accounts.lockout.response
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "careline.urls"
ASGI_APPLICATION = "careline.asgi.application"
WSGI_APPLICATION = "careline.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "careline.context_processors.careline",
            ]
        },
    }
]

# --- Database -----------------------------------------------------------------------------------------
# SQLite in WAL mode with IMMEDIATE transactions for the embedded run: daphne and the Celery worker write
# concurrently, and IMMEDIATE serialises writers instead of failing with "database is locked".
_SQLITE_DEFAULT = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": str(VAR_DIR / "careline.sqlite3"),
    "OPTIONS": {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    },
}
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # ASGI processes (careline/asgi.py sets DATABASE_POOL=true): Django runs each sync request in a thread of
    # its own, so persistent connections are never reused and one is opened per concurrent request (a surge of
    # webhooks exhausted PostgreSQL's max_connections, bench/ivr_webhook.py). Django's documented answer
    # ("Persistent connections": disable them under ASGI, use the backend's pool): psycopg_pool, at most
    # DATABASE_POOL_MAX_SIZE connections per process; a request waits up to DATABASE_POOL_TIMEOUT seconds for one.
    if env.bool("DATABASE_POOL", default=False) and DATABASES["default"]["ENGINE"].endswith("postgresql"):
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool refuses persistent connections
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=8),
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=20.0),
        }
else:
    DATABASES = {"default": _SQLITE_DEFAULT}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# PostgreSQL row-level security (clinics.db_scope, clinics.db_security): the non-superuser role every
# connection SETs ROLE to (created NOLOGIN and granted by `manage.py migrate`); "" keeps the login role.
DATABASE_APP_ROLE = env.str("DATABASE_APP_ROLE", default="")
# The scope of a fresh connection: "" = no clinic's rows (fail-closed). Only the test settings change it.
DATABASE_INITIAL_SCOPE = ""

# --- Redis: channel layer, Celery broker, cache -----------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default; the layer's receive is a blocking
                # BZPOPMIN of up to 5 s, so an idle console's consumer died with TimeoutError (close 1011)
                # every few seconds (django/channels_redis#422, redis/redis-py#4091). No client timeout here.
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": env.str("CHANNEL_LAYER_PREFIX", default="careline"),
            },
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = REDIS_URL
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    _broker_dir = VAR_DIR / "celery"
    for _folder in ("queue", "processed"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }

CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True  # a task survives a worker crash: it is redelivered, and tasks are idempotent
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    # Reservations not accepted in time go back to the queue (DESIGN §5).
    "triage-expire-reservations": {"task": "triage.tasks.expire_reservations", "schedule": 10.0},
    # Routing fallbacks: relax the skill requirement or overflow to another queue after N minutes.
    "triage-routing-fallbacks": {"task": "triage.tasks.apply_routing_fallbacks", "schedule": 30.0},
    # Outbox sweep: write-backs due for a (re)try; the on-commit dispatch is only the fast path.
    "ehr-writeback-sweep": {"task": "ehr.tasks.writeback_sweep", "schedule": 15.0},
    # Outbound SMS still unsent (worker crashed, provider down).
    "ivr-outbound-sweep": {"task": "ivr.tasks.outbound_message_sweep", "schedule": 30.0},
    # "Call patient" calls still unplaced (worker crashed, Twilio down); expired past their age.
    "ivr-outbound-call-sweep": {"task": "ivr.tasks.outbound_call_sweep", "schedule": 15.0},
    # Appointment reminders: resume campaigns whose sender died; stale claimed rows -> unknown.
    "ivr-reminder-sweep": {"task": "ivr.tasks.reminder_sweep", "schedule": 60.0},
    # Cases whose EHR lookup failed during the call ("EHR context pending").
    "ivr-resolve-pending-patients": {"task": "ivr.tasks.resolve_pending_patients", "schedule": 60.0},
    # Escalation (issue 3): cases past their target -> supervisor alert + on-call page once; surge paging.
    "contactcenter-escalation-sweep": {"task": "contactcenter.tasks.escalation_sweep", "schedule": 30.0},
    # Presence: consoles silent for PRESENCE_OFFLINE_SECONDS are offline.
    "contactcenter-presence-sweep": {"task": "contactcenter.tasks.presence_sweep", "schedule": 30.0},
    # Reconciliation: reservations of offline nurses, "holding" cases whose call ended.
    "contactcenter-reconcile": {"task": "contactcenter.tasks.reconcile", "schedule": 30.0},
    # SLOs per clinic (ops): breach -> supervisor event, log line, optional webhook; cleared likewise.
    "ops-slo-evaluate": {"task": "ops.tasks.slo_evaluate", "schedule": 60.0},
    # SLO alert webhook outbox rows still undelivered (dispatch lost, receiver down past the task's retries).
    "ops-slo-alert-sweep": {"task": "ops.tasks.slo_alert_sweep", "schedule": 60.0},
}

# --- Auth, i18n, static -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
AUTHENTICATION_BACKENDS = [
    "accounts.backends.LockoutBackend",  # django-axes, first: refuses a locked-out username+IP before the password
    "django.contrib.auth.backends.ModelBackend",
]
# --- Authentication: MFA, lockout, sessions (README "Security": person or entity authentication) -------------
# TOTP (django-otp, RFC 6238): the issuer shown in authenticator apps.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="CareLine")
# Lockout (django-axes): AXES_FAILURE_LIMIT failed password or OTP attempts per username + IP lock that pair
# for AXES_COOLOFF_MINUTES; the page says so, the API answers 429 JSON; audited as `auth.lockout`.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_CALLABLE = "accounts.lockout.response"
AXES_SENSITIVE_PARAMETERS = ["password", "otp_token", "token"]
AXES_VERBOSE = False
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]  # behind a proxy: set the proxy's header first
# Sessions: idle and absolute limits, enforced server-side for HTTP (accounts.middleware) and WebSockets
# (careline.ws). The console's keepalive ping is not activity (a nurse who walked away is signed out).
SESSION_IDLE_TIMEOUT_SECONDS = env.int("SESSION_IDLE_TIMEOUT_SECONDS", default=15 * 60)
SESSION_ABSOLUTE_TIMEOUT_SECONDS = env.int("SESSION_ABSOLUTE_TIMEOUT_SECONDS", default=12 * 60 * 60)
# WebSockets (careline.ws): largest client frame accepted (bytes; larger -> close 1009) and the per-user token
# bucket shared by every process through the cache (burst size, refill per second; empty bucket -> close 1008).
WS_MAX_MESSAGE_BYTES = env.int("WS_MAX_MESSAGE_BYTES", default=64 * 1024)
WS_RATE_BURST = env.int("WS_RATE_BURST", default=30)
WS_RATE_PER_SECOND = env.float("WS_RATE_PER_SECOND", default=2.0)
# Break-glass (triage.breakglass): charts of cases closed longer ago than this need a supervisor's break-glass
# grant with a written reason, valid BREAKGLASS_GRANT_MINUTES, flagged for review.
CHART_OPEN_WINDOW_HOURS = env.int("CHART_OPEN_WINDOW_HOURS", default=72)
BREAKGLASS_GRANT_MINUTES = env.int("BREAKGLASS_GRANT_MINUTES", default=60)
LOGIN_REDIRECT_URL = "console:queue"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "accounts.authentication.ExpiringTokenAuthentication",  # tokens only after OTP, 12 h at most
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CareLine API",
    "DESCRIPTION": "After-hours nurse triage: cases, claims, dispositions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Integrations ---------------------------------------------------------------------------------------------
# FHIR R4 server (the EHR). The embedded run starts a local sekmet-fhir on this address.
FHIR_BASE_URL = env.str("FHIR_BASE_URL", default="http://127.0.0.1:8091/fhir")
# The IVR never waits longer than this for the EHR: half of the 2 s a webhook may take (issue 7, "no webhook over
# 2 s"; Twilio's own limit is 15 s), the other half is the webhook's own work. tests/chaos/test_fhir_hung.py.
FHIR_IVR_TIMEOUT_SECONDS = env.float("FHIR_IVR_TIMEOUT_SECONDS", default=1.0)
FHIR_TIMEOUT_SECONDS = env.float("FHIR_TIMEOUT_SECONDS", default=10.0)
# Patient context (chart) cache per case (per patient when no case is given), seconds.
FHIR_CONTEXT_CACHE_SECONDS = env.int("FHIR_CONTEXT_CACHE_SECONDS", default=120)
# The server's CapabilityStatement (what searches it supports) is cached this long per base URL, seconds.
FHIR_CAPABILITY_CACHE_SECONDS = env.int("FHIR_CAPABILITY_CACHE_SECONDS", default=3600)
# The chart's "Recent encounters" looks back this many months (Encounter?date=ge<now - N months>).
FHIR_CONTEXT_ENCOUNTER_MONTHS = env.int("FHIR_CONTEXT_ENCOUNTER_MONTHS", default=12)
# Circuit breaker (ehr/fhir/circuit.py): open after this many consecutive failures (0 disables it) ...
FHIR_CIRCUIT_FAILURE_THRESHOLD = env.int("FHIR_CIRCUIT_FAILURE_THRESHOLD", default=5)
# ... for this many seconds, then let one probe request through.
FHIR_CIRCUIT_OPEN_SECONDS = env.float("FHIR_CIRCUIT_OPEN_SECONDS", default=30.0)

# SMART on FHIR backend services (ehr/fhir/smart.py). With a client id and at least one key, every FHIR request
# carries a bearer token. FHIR_SMART_PRIVATE_KEYS: comma-separated PEM paths; the first signs, all are published
# at /.well-known/jwks.json (rotation: add the new key second, then move it first, then remove the old one).
FHIR_SMART_CLIENT_ID = env.str("FHIR_SMART_CLIENT_ID", default="")
FHIR_SMART_PRIVATE_KEYS = env.list("FHIR_SMART_PRIVATE_KEYS", default=[])
FHIR_SMART_SCOPE = env.str("FHIR_SMART_SCOPE", default="system/*.read system/*.write")
# A token is reused until this many seconds before `expires_in` (seconds).
FHIR_SMART_TOKEN_EXPIRY_MARGIN_SECONDS = env.int("FHIR_SMART_TOKEN_EXPIRY_MARGIN_SECONDS", default=60)
# After a failed token request (wrong key, server down), token requests pause this long (seconds).
FHIR_SMART_TOKEN_FAILURE_BACKOFF_SECONDS = env.int("FHIR_SMART_TOKEN_FAILURE_BACKOFF_SECONDS", default=30)
# .well-known/smart-configuration (or CapabilityStatement) is re-read after this long (seconds).
FHIR_SMART_DISCOVERY_CACHE_SECONDS = env.int("FHIR_SMART_DISCOVERY_CACHE_SECONDS", default=3600)
# SMART App Launch (EHR launch of the console): a public client with PKCE; only these FHIR bases may launch.
FHIR_SMART_LAUNCH_CLIENT_ID = env.str("FHIR_SMART_LAUNCH_CLIENT_ID", default="")
FHIR_SMART_LAUNCH_ISS = env.list("FHIR_SMART_LAUNCH_ISS", default=[])
FHIR_SMART_LAUNCH_SCOPE = env.str("FHIR_SMART_LAUNCH_SCOPE", default="launch openid fhirUser patient/*.read")

HL7_MLLP_HOST = env.str("HL7_MLLP_HOST", default="")
HL7_MLLP_PORT = env.int("HL7_MLLP_PORT", default=2575)
HL7_TIMEOUT_SECONDS = env.float("HL7_TIMEOUT_SECONDS", default=10.0)
HL7_SENDING_APPLICATION = env.str("HL7_SENDING_APPLICATION", default="CARELINE")
HL7_RECEIVING_APPLICATION = env.str("HL7_RECEIVING_APPLICATION", default="EHR")
# Inbound ADT feed (`manage.py mllp_listen`): largest MLLP frame accepted (bytes) and how long a connection
# may stay silent before it is closed (seconds; senders reconnect on their next message).
HL7_MLLP_MAX_FRAME_BYTES = env.int("HL7_MLLP_MAX_FRAME_BYTES", default=1 << 20)
HL7_MLLP_IDLE_SECONDS = env.float("HL7_MLLP_IDLE_SECONDS", default=300.0)
# An outbound HL7 message answered AE/CE this many times goes `dead` (AR/CR: dead at once).
HL7_AE_MAX_ATTEMPTS = env.int("HL7_AE_MAX_ATTEMPTS", default=3)

# Write-back retry backoff (seconds): exponential, capped, with jitter.
WRITEBACK_BACKOFF_FACTOR_SECONDS = env.int("WRITEBACK_BACKOFF_FACTOR_SECONDS", default=10)
WRITEBACK_BACKOFF_MAX_SECONDS = env.int("WRITEBACK_BACKOFF_MAX_SECONDS", default=900)
# A worker holds an outbox row this long at most while sending; a killed worker's lease expires and the sweep
# resends. Must exceed the slowest send (FHIR_TIMEOUT_SECONDS / HL7_TIMEOUT_SECONDS plus margin).
WRITEBACK_LEASE_SECONDS = env.int("WRITEBACK_LEASE_SECONDS", default=120)

# Twilio. Without an account SID the outbound SMS stays in the outbox (state "recorded"), shown by the demo.
# The auth token also verifies every inbound webhook signature, so it always has a value; the default is the
# embedded demo's and the simulator signs with it.
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="careline-demo-auth-token")
# The URL Twilio sees (scheme + host [+ port]); signatures are computed over it. Behind a proxy, set it.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="")
# A "Call patient" call not placed within this many seconds (worker down, Twilio down) is dropped, never
# placed late: the nurse sees "not placed" on the timeline and may call again.
OUTBOUND_CALL_MAX_AGE_SECONDS = env.int("OUTBOUND_CALL_MAX_AGE_SECONDS", default=120)
# Appointment reminders: the SMS provider's rate limit (messages per second; Twilio: 1 per long code,
# 3 toll-free, 100 short code, more with a Messaging Service) and the rows claimed per transaction.
REMINDER_RATE_PER_SECOND = env.float("REMINDER_RATE_PER_SECOND", default=1.0)
REMINDER_BATCH_SIZE = env.int("REMINDER_BATCH_SIZE", default=50)

# Reservation: how long a nurse has to accept a claimed case before it goes back to the queue (seconds).
TRIAGE_RESERVATION_SECONDS = env.int("TRIAGE_RESERVATION_SECONDS", default=120)
# Presence: a console that sent nothing (connect or heartbeat ping) for this long counts as offline (seconds).
# The console pings every 20 s.
PRESENCE_OFFLINE_SECONDS = env.int("PRESENCE_OFFLINE_SECONDS", default=90)
# Claims reuse a clinic's queue discipline (rates, overload mode) this long per process; 0 recomputes per claim.
TRIAGE_DISCIPLINE_CACHE_SECONDS = env.int("TRIAGE_DISCIPLINE_CACHE_SECONDS", default=15)

# Pre-call test (contactcenter/precall.py): a server-side WebRTC echo peer in each ASGI process.
# Hard limit of one echo session (seconds); it is closed and its slot freed after this, connected or not.
PRECALL_MAX_SECONDS = env.float("PRECALL_MAX_SECONDS", default=30.0)
# Concurrent echo sessions per ASGI process; beyond it the offer is answered 503 with Retry-After. Each session
# decodes and re-encodes the caller's video on the event loop's process, so keep this small.
PRECALL_MAX_SESSIONS = env.int("PRECALL_MAX_SESSIONS", default=8)
# Offers accepted per pre-call token subject (a visit) or per staff session within PRECALL_RATE_WINDOW_SECONDS.
PRECALL_RATE_LIMIT = env.int("PRECALL_RATE_LIMIT", default=10)
PRECALL_RATE_WINDOW_SECONDS = env.int("PRECALL_RATE_WINDOW_SECONDS", default=600)
# A pre-call token (precall_token(), rendered into the visit page) is accepted this long (seconds).
PRECALL_TOKEN_MAX_AGE_SECONDS = env.int("PRECALL_TOKEN_MAX_AGE_SECONDS", default=15 * 60)
# The addresses the server's WebRTC peers offer as ICE host candidates. Empty: every non-loopback interface
# (aioice's default). Set it on hosts with many interfaces (containers) to the reachable one(s); loopback-only
# test runs set "127.0.0.1", which aioice otherwise never offers.
RTC_HOST_ADDRESSES = env.list("RTC_HOST_ADDRESSES", default=[])
# STUN servers for the server's peers (e.g. "stun:stun.example.org:3478"); none by default (no outside calls).
RTC_STUN_URLS = env.list("RTC_STUN_URLS", default=[])
# Video visits (contactcenter.visits). The patient's SMS join link expires after this long (seconds).
VIDEO_LINK_TTL_SECONDS = env.int("VIDEO_LINK_TTL_SECONDS", default=900)
# TURN (coturn REST-API scheme, `use-auth-secret`): comma list of `turn:`/`turns:` URLs, the shared secret
# (coturn's `static-auth-secret`) and the lifetime of the credentials handed out (seconds). No URLs: STUN-less
# host candidates only (works on one network, not through NATs).
TURN_URLS = env.list("TURN_URLS", default=[])
TURN_SECRET = env.str("TURN_SECRET", default="")
TURN_TTL_SECONDS = env.int("TURN_TTL_SECONDS", default=3600)
# Force `iceTransportPolicy: "relay"` on both pages (tests prove media goes through TURN; also a privacy
# option: neither side learns the other's addresses).
VIDEO_FORCE_RELAY = env.bool("VIDEO_FORCE_RELAY", default=False)
# A page whose available outgoing bitrate stays below this (kbit/s) switches its camera off (audio only).
VIDEO_AUDIO_ONLY_BELOW_KBPS = env.int("VIDEO_AUDIO_ONLY_BELOW_KBPS", default=150)
# Store-and-forward during a visit: largest photo or document accepted (bytes).
VIDEO_ATTACHMENT_MAX_BYTES = env.int("VIDEO_ATTACHMENT_MAX_BYTES", default=5 * 1024 * 1024)
# The nurse's visit page offers "call the patient's phone" when the video has not connected within this time
# (or failed and did not recover).
VIDEO_CONNECT_BUDGET_SECONDS = env.int("VIDEO_CONNECT_BUDGET_SECONDS", default=45)

STATIC_ROOT.mkdir(exist_ok=True)

# --- Logs ---------------------------------------------------------------------------------------------------
# LOG_FORMAT: "plain" (human, the default here) or "json" (one JSON object per line, python-json-logger; the
# production default). Every record carries request_id ("-" outside a request) and node (CARELINE_NODE_ID or
# hostname:pid). No PHI: log calls pass ids and codes, never names, numbers or answers (tests/e2e/test_no_phi_in_logs).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "careline.middleware.RequestIdLogFilter"},
        "node_id": {"()": "careline.middleware.NodeIdLogFilter"},
        "redact_url_query": {"()": "careline.middleware.RedactUrlQueryFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(node)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id", "node_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # one INFO line per sign-in; lockouts are audited (auth.lockout)
        # No PHI in logs: FHIR search URLs carry phone numbers, birth dates, MRNs in their query string.
        "urllib3.connectionpool": {"filters": ["redact_url_query"]},
    },
}

# --- Operations (ops app, careline.drain / health / metrics; README "Operating CareLine") --------------------
# Drain: a draining node waits at most this long for open calls before it exits 0 (seconds) ...
DRAIN_TIMEOUT_SECONDS = env.float("DRAIN_TIMEOUT_SECONDS", default=600.0)
# ... and checks its drain flag this often (seconds).
DRAIN_POLL_SECONDS = env.float("DRAIN_POLL_SECONDS", default=1.0)
# ... and stops this long after closing its last sockets, so their close frames are sent (seconds).
DRAIN_EXIT_GRACE_SECONDS = env.float("DRAIN_EXIT_GRACE_SECONDS", default=1.0)
# The per-process drain watcher (careline.drain.DrainWatcher); off only in the test suite's in-process apps.
DRAIN_WATCHER = env.bool("DRAIN_WATCHER", default=True)
# When Redis lost its data, the watcher tells open consoles to reconnect at most this many per second per
# process (careline.drain; a herd of handshakes would pass daphne's 5 s handshake limit).
LAYER_RESET_RECONNECTS_PER_SECOND = env.float("LAYER_RESET_RECONNECTS_PER_SECOND", default=40.0)
# /readyz: the channel-layer round trip must come back within this (seconds).
READYZ_TIMEOUT_SECONDS = env.float("READYZ_TIMEOUT_SECONDS", default=2.0)
# /metrics: `Authorization: Bearer <METRICS_TOKEN>` when set; otherwise only these source addresses/networks.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1/32", "::1/128"])
PROMETHEUS_EXPORT_MIGRATIONS = False
# SLO alerts are also POSTed (JSON) here when set: outbox rows (ops.SloAlert), retried with backoff by Celery.
SLO_ALERT_WEBHOOK_URL = env.str("SLO_ALERT_WEBHOOK_URL", default="")
SLO_ALERT_WEBHOOK_TIMEOUT_SECONDS = env.float("SLO_ALERT_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# Capacity planner: measured per-process figures written by the benchmarks (keys in ops/capacity.py).
CAPACITY_FIGURES_PATH = env.str("CAPACITY_FIGURES_PATH", default=str(BASE_DIR / "bench" / "figures.json"))

SESSION_COOKIE_AGE = SESSION_ABSOLUTE_TIMEOUT_SECONDS

# --- Security headers (every environment, not only production: the console must work under them) ----------
# Content-Security-Policy (django-csp 4). No 'unsafe-inline' anywhere: templates carry no inline <script>
# bodies, `style=` attributes or <style> blocks, and htmx's inline indicator <style> is switched off by the
# `htmx-config` meta tag in templates/base.html (the `.htmx-indicator` rules live in static/console/console.css).
# connect-src 'self' covers the console's same-origin WebSocket (CSP Level 3 matches ws:/wss: to 'self');
# CSP_CONNECT_SRC_EXTRA adds origins if the WebSocket is served from another host.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "connect-src": [SELF, *env.list("CSP_CONNECT_SRC_EXTRA", default=[])],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "object-src": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [NONE],
    },
}
SECURE_CONTENT_TYPE_NOSNIFF = True  # X-Content-Type-Options: nosniff
SECURE_REFERRER_POLICY = "same-origin"  # Referrer-Policy: no case URLs leak to other sites
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"  # COOP
X_FRAME_OPTIONS = "DENY"  # for browsers without frame-ancestors
# Permissions-Policy (careline.security_headers): camera and microphone for this origin only (video visits),
# everything else the console never uses is off.
PERMISSIONS_POLICY = {
    "camera": ["self"],
    "microphone": ["self"],
    "geolocation": [],
    "payment": [],
    "usb": [],
    "display-capture": [],
}
