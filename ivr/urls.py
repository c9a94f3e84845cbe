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
    # Two-way SMS: the number's "A message comes in" webhook, and the Messages status callback.
    path("sms/", webhooks.sms, name="sms"),
    path("sms/status/", webhooks.sms_status, name="sms-status"),
    # "Call patient": the nurse's leg answered, the patient's leg status, the <Dial action>, nurse leg status.
    path("outbound/<uuid:call_uuid>/connect/", webhooks.outbound_connect, name="outbound-connect"),
    path("outbound/<uuid:call_uuid>/patient-status/", webhooks.outbound_patient_status, name="outbound-patient-status"),
    path("outbound/<uuid:call_uuid>/dial-result/", webhooks.outbound_dial_result, name="outbound-dial-result"),
    path("outbound/<uuid:call_uuid>/status/", webhooks.outbound_status, name="outbound-status"),
]
