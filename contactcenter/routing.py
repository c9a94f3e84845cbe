"""WebSocket routes (mounted by `careline.asgi` behind the origin check and session authentication)."""

from django.urls import path

from contactcenter.consumers import ConsoleConsumer

websocket_urlpatterns = [
    path("ws/console/", ConsoleConsumer.as_asgi()),
]
