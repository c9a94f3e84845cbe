"""Production settings: everything from the environment, demo features off, `check --deploy` clean."""

from careline.settings.base import *  # noqa: F401,F403
from careline.settings.base import env

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
