"""WebSocket routes (mounted by `careline.asgi` behind the origin check and session authentication)."""

from django.urls import path

from contactcenter.consumers import ConsoleConsumer
from contactcenter.visit_consumers import VisitConsumer

websocket_urlpatterns = [
    path("ws/console/", ConsoleConsumer.as_asgi()),
    path("ws/visit/<uuid:room>/", VisitConsumer.as_asgi()),
]
