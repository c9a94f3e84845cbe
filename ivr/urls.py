"""Twilio webhooks, mounted at `/ivr/`."""

from django.urls import path

from ivr import webhooks

app_name = "ivr"

urlpatterns = [
    path("voice/", webhooks.voice, name="voice"),
    path("voice/status/", webhooks.status, name="status"),
    path("voice/step/<slug:step>/", webhooks.step, name="step"),
    path("voice/wait/<uuid:case_uuid>/", webhooks.wait, name="wait"),
    path("voice/queue-left/<uuid:case_uuid>/", webhooks.queue_left, name="queue-left"),
]
