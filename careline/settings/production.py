"""Production settings: everything from the environment, demo features off, `check --deploy` clean."""

import copy

from django.core.exceptions import ImproperlyConfigured

from careline.settings.base import *  # noqa: F401,F403
from careline.settings.base import LOGGING, env

DEBUG = False
CARELINE_DEMO = False
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN")
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")  # no default: the origin check of WebSockets relies on it
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True

# Logs are JSON lines in production (one object per record, request_id and node on each) unless LOG_FORMAT=plain.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = copy.deepcopy(LOGGING)  # base's dict stays as it is
LOGGING["handlers"]["console"]["formatter"] = "json" if LOG_FORMAT == "json" else "plain"  # type: ignore[index]

# Field encryption at rest: keys from the environment or a file, no default (the demo key is never used here).
FIELD_ENCRYPTION_KEYS = env.str("FIELD_ENCRYPTION_KEYS", default="")
FIELD_ENCRYPTION_KEYS_FILE = env.str("FIELD_ENCRYPTION_KEYS_FILE", default="")
if not FIELD_ENCRYPTION_KEYS and not FIELD_ENCRYPTION_KEYS_FILE:
    raise ImproperlyConfigured("set FIELD_ENCRYPTION_KEYS or FIELD_ENCRYPTION_KEYS_FILE (kid:base64key, 32 bytes)")
if "demo-not-secret" in FIELD_ENCRYPTION_KEYS or "test-not-secret" in FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS holds the public demo/test key; generate a real one")
