"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Run with `daphne careline.asgi:application`. WebSocket connections pass the origin check
(`AllowedHostsOriginValidator`, i.e. `ALLOWED_HOSTS`) and session authentication before routing.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings.base")
# Pooled database connections, not persistent ones, in ASGI processes (careline.settings.base, "DATABASE_POOL").
os.environ.setdefault("DATABASE_POOL", "true")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (after Django is set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from careline.drain import DrainWatcherMiddleware  # noqa: E402
from contactcenter.routing import websocket_urlpatterns  # noqa: E402

# DrainWatcherMiddleware starts this process's drain watcher (careline.drain) with the first HTTP request served
# (the proxy's health checks); drain-aware consumers start it on their first connect too.
application = ProtocolTypeRouter(
    {
        "http": DrainWatcherMiddleware(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
