"""IVR state: one `CallLeg` per inbound Twilio call, and the outbound SMS outbox (`OutboundMessage`).

`CallLeg` makes every webhook step idempotent (DESIGN §4): Twilio retries a webhook that timed out or failed
with the same CallSid and parameters, and a retry must never create a second case. The leg row is locked
(`SELECT ... FOR UPDATE`) for the duration of each step, and the TwiML answered for the last step is stored,
so a repeat of that step is answered with the stored document and changes nothing.
"""

from __future__ import annotations

from django.db import models

from clinics.crypto import EncryptedJSONField, EncryptedTextField
from clinics.models import Clinic
from triage.models import Case


class Step(models.TextChoices):
    """Where a call is in the IVR flow: the step whose `<Gather>` action the leg waits for next.

    `answer` is the first webhook (`POST /ivr/voice/`); `transferred` and `done` are terminal for the flow
    (the caller was handed to the on-call line with `<Dial>`, or got `<Hangup>`). `hold`: the caller is in
    `<Enqueue>`; the wait document's `<Gather>` offers 9 for worse symptoms, which moves the leg to
    `retriage` (questions asked inside the wait document) and back to `hold`, or on a red flag to
    `transferred` (`<Leave>`, then the `<Enqueue action>` dials the on-call line).
    """

    ANSWER = "answer", "Answered (disclaimer, language menu)"
    LANGUAGE = "language", "Language menu"
    DOB = "dob", "Birth date"
    PROTOCOL = "protocol", "Protocol menu"
    QUESTION = "question", "Protocol question"
    CONTACT = "contact", "Hold or callback"
    HOLD = "hold", "Holding in queue"
    RETRIAGE = "retriage", "Re-triage while holding"
    TRANSFERRED = "transferred", "Transferred to on-call"
    DONE = "done", "Done"


# Steps whose `<Gather>` posts to `/ivr/voice/step/<step>/`. `hold` and `retriage` gather inside the
# `<Enqueue>` wait document ("if the symptoms are worse, press 9" and the re-triage questions).
GATHER_STEPS = frozenset(
    {Step.LANGUAGE, Step.DOB, Step.PROTOCOL, Step.QUESTION, Step.CONTACT, Step.HOLD, Step.RETRIAGE}
)


class EhrStatus(models.TextChoices):
    """Outcome of the caller-ID lookup in the EHR (`ehr.services.find_patients_by_phone`)."""

    NOT_ASKED = "", "Not asked yet"
    FOUND = "found", "One or more patients on this number"
    NONE = "none", "No patient on this number"
    UNAVAILABLE = "unavailable", "EHR unavailable during the call"


class CallLeg(models.Model):
    """One inbound call as the IVR sees it, keyed by Twilio's CallSid.

    - `step` / `seq`: the step the leg waits for and the number of steps answered so far; every `<Gather>`
      action URL carries `?seq=<seq>`, so a re-prompt of the same step is a new request, not a retry.
    - `retries`: no-input / invalid answers at the current step (reset when the step changes).
    - `candidate_patients`: FHIR `Patient` matches of the caller ID, a list of
      `{"fhir_id", "display", "birth_date": "YYYY-MM-DD" | None}`; `ehr_status` says whether the EHR answered.
    - `collected`: what the caller entered and what the flow decided, e.g. `{"dob": "1995-02-02",
      "dob_attempts": 1, "patient": {...}, "protocol": "abdominal-pain", "question": 2, "digits": [...]}`.
    - `answers`: protocol answers as stored on the case, `[{"question", "text", "answer"}]`.
    - `last_step_key` (`"<step>:<seq>"`) and `last_twiml`: the last request answered and its TwiML.

    PHI at rest: `from_number`, `candidate_patients` (names, birth dates), `collected` (digits and speech the
    caller entered), `answers` (symptoms) and `last_twiml` (it can read a name back) are encrypted
    (`clinics.crypto`); none of them is ever filtered in SQL.
    """

    call_sid = models.CharField(max_length=64, unique=True)
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="call_legs")
    from_number = EncryptedTextField(max_length=32, help_text="Caller ID as Twilio sent it (E.164 or 'anonymous')")
    language = models.CharField(max_length=8, default="en")
    step = models.CharField(max_length=16, choices=Step.choices, default=Step.ANSWER)
    seq = models.PositiveIntegerField(default=0)
    retries = models.PositiveSmallIntegerField(default=0)
    ehr_status = models.CharField(max_length=12, choices=EhrStatus.choices, default=EhrStatus.NOT_ASKED, blank=True)
    candidate_patients = EncryptedJSONField(default=list, blank=True)
    collected = EncryptedJSONField(default=dict, blank=True)
    answers = EncryptedJSONField(default=list, blank=True)
    case = models.OneToOneField(Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="call_leg")
    last_step_key = models.CharField(max_length=40, blank=True)
    last_twiml = EncryptedTextField(blank=True)
    call_status = models.CharField(max_length=20, blank=True, help_text="Last CallStatus from Twilio")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"CallLeg {self.call_sid} ({self.step})"

    def step_key(self, step: str, seq: int) -> str:
        """The idempotency key of one webhook request: `"<step>:<seq>"`."""
        return f"{step}:{seq}"


class OutboundMessage(models.Model):
    """Outbox row for one SMS, written in the same transaction as the case it belongs to.

    State: `recorded` (no Twilio account configured: kept for the demo's outbox, never sent), `queued` (to be
    sent by `ivr.tasks.send_outbound_message`; the beat sweep re-sends rows left queued), `sent` (Twilio
    accepted it; `provider_sid` is the Message SID), `failed` (rejected by Twilio or out of attempts).
    The body carries no clinical details.
    """

    class State(models.TextChoices):
        RECORDED = "recorded", "Recorded (not sent: no Twilio account)"
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="outbound_messages")
    case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="outbound_messages")
    to = EncryptedTextField(max_length=32, help_text="E.164")
    from_number = models.CharField(max_length=32, help_text="E.164: the clinic's Twilio number")
    body = EncryptedTextField(max_length=640)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RECORDED)
    provider_sid = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "created_at"], name="outbound_message_due")]

    def __str__(self) -> str:
        return f"OutboundMessage {self.pk} ({self.state})"
