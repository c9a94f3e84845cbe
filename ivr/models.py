"""IVR state: one `CallLeg` per inbound Twilio call, the SMS outbox (`OutboundMessage`), inbound SMS
(`InboundMessage`), per-number SMS opt-outs (`SmsOptOut`) and the nurse-to-patient call outbox (`OutboundCall`).

`CallLeg` makes every webhook step idempotent (DESIGN §4): Twilio retries a webhook that timed out or failed
with the same CallSid and parameters, and a retry must never create a second case. The leg row is locked
(`SELECT ... FOR UPDATE`) for the duration of each step, and the TwiML answered for the last step is stored,
so a repeat of that step is answered with the stored document and changes nothing.
"""

from __future__ import annotations

import uuid

from django.conf import settings
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
    accepted it; `provider_sid` is the Message SID), `failed` (rejected by Twilio or out of attempts),
    `skipped` (never sent: the number replied STOP to this clinic, `SmsOptOut`). `delivery_status` is the
    last `MessageStatus` of Twilio's status callback (`delivered`, `undelivered`, `failed`...).
    `sent_by` is the nurse who wrote a reply from the console (None for CareLine's own texts). Automatic
    texts carry no clinical details; a nurse's reply is her own words (encrypted at rest like every body).
    """

    class State(models.TextChoices):
        RECORDED = "recorded", "Recorded (not sent: no Twilio account)"
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Not sent: the patient opted out (STOP)"

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="outbound_messages")
    case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="outbound_messages")
    to = EncryptedTextField(max_length=32, help_text="E.164")
    from_number = models.CharField(max_length=32, help_text="E.164: the clinic's Twilio number")
    body = EncryptedTextField(max_length=640)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RECORDED)
    purpose = models.CharField(max_length=64, blank=True, help_text="e.g. 'SMS confirmation', 'Nurse reply'")
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    delivery_status = models.CharField(max_length=16, blank=True, help_text="Twilio MessageStatus (status callback)")
    delivery_updated_at = models.DateTimeField(null=True, blank=True)
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


class InboundMessage(models.Model):
    """One SMS a patient sent to a clinic's number (`POST /ivr/sms/`), keyed by Twilio's MessageSid.

    A Twilio retry of the same MessageSid finds this row and is answered with the stored `reply` (TwiML),
    changing nothing. `keyword` is the opt-out / help keyword recognised ("stop", "help", "start") or the
    reply keyword ("call"), "" for free text; `case` is the case it was attached to (None for STOP/HELP/START
    from a number without an open case).
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="inbound_messages")
    case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_messages")
    message_sid = models.CharField(max_length=64, unique=True)
    from_number = EncryptedTextField(max_length=32, help_text="E.164 as Twilio sent it")
    body = EncryptedTextField(max_length=1600, blank=True)
    keyword = models.CharField(max_length=24, blank=True)
    reply = models.TextField(blank=True, help_text="TwiML answered (no PHI: fixed texts only)")
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"InboundMessage {self.message_sid}"


class SmsOptOut(models.Model):
    """A number that replied STOP to a clinic (per number and clinic, like Twilio's own opt-out list).

    `number_digest` is a keyed hash of the E.164 number (`ivr.services.optout.number_digest`), so the table is
    searchable while the number itself stays encrypted (`number`). `active` False after START (kept for the
    record). Consulted by `ivr.services.messages.outbound_message_record` before every outbound SMS.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="sms_opt_outs")
    number_digest = models.CharField(max_length=64)
    number = EncryptedTextField(max_length=32)
    active = models.BooleanField(default=True)
    keyword = models.CharField(max_length=16, blank=True, help_text="the last keyword received (STOP, START...)")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["clinic", "number_digest"], name="sms_opt_out_one_per_number"),
        ]

    def __str__(self) -> str:
        return f"SmsOptOut {self.pk} ({'active' if self.active else 'inactive'})"


class OutboundCall(models.Model):
    """A nurse-to-patient phone call ("Call patient"): outbox row, then the call's progress from webhooks.

    Twilio first rings the nurse (`nurse_number`), and when she answers, `POST /ivr/outbound/<uuid>/connect/`
    answers `<Dial>` to `patient_number` (caller ID: the clinic's number). Reserved to `nurse` on `case`.

    State: `recorded` (no Twilio account: the demo and the tests drive the webhooks), `queued` (to be placed by
    `ivr.tasks.place_outbound_call`), `placed` (Twilio accepted it; `provider_sid` is the nurse leg's
    CallSid), `connecting` (the nurse answered; dialling the patient), `bridged` (the patient answered),
    then one terminal state: `completed`, `no_answer`, `busy`, `failed` (patient leg), `nurse_unreached`
    (the nurse's phone did not answer; the patient was never dialled), `expired` (never placed in time).
    `handled` lists the webhook events already applied (e.g. "dial:no-answer"), so a Twilio retry of any
    webhook changes nothing. `missed_message` is the missed-call SMS (sent once).
    """

    class State(models.TextChoices):
        RECORDED = "recorded", "Recorded (no Twilio account: not placed)"
        QUEUED = "queued", "Queued"
        PLACED = "placed", "Ringing the nurse"
        CONNECTING = "connecting", "Nurse answered; dialling the patient"
        BRIDGED = "bridged", "Patient answered; call bridged"
        COMPLETED = "completed", "Completed"
        NO_ANSWER = "no_answer", "Patient did not answer"
        BUSY = "busy", "Patient's line busy"
        FAILED = "failed", "Call failed"
        NURSE_UNREACHED = "nurse_unreached", "Nurse's phone did not answer"
        EXPIRED = "expired", "Not placed in time"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="outbound_calls")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="outbound_calls")
    nurse = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    nurse_number = EncryptedTextField(max_length=32, help_text="E.164: rung first")
    patient_number = EncryptedTextField(max_length=32, help_text="E.164: dialled when the nurse answers")
    reason = models.CharField(max_length=32, default="console", help_text="'console', 'video_failed'...")
    state = models.CharField(max_length=16, choices=State.choices, default=State.RECORDED)
    provider_sid = models.CharField(max_length=64, blank=True, help_text="CallSid of the nurse leg")
    patient_call_sid = models.CharField(max_length=64, blank=True, help_text="CallSid of the patient leg")
    handled = models.JSONField(default=list, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="DialCallDuration (s)")
    missed_message = models.ForeignKey(
        OutboundMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "created_at"], name="outbound_call_due")]

    def __str__(self) -> str:
        return f"OutboundCall {self.pk} ({self.state})"


class ReminderCampaign(models.Model):
    """Appointment reminders for the booked FHIR `Appointment`s of a clinic starting in `[window_start,
    window_end)`. State: `loading` (reading the EHR), `sending` (`ivr.services.reminders.reminders_send`
    works through the pending rows at `REMINDER_RATE_PER_SECOND`), `done`, `failed` (the EHR could not be
    read; `last_error`). `lease_until`: the one sender holding the campaign (a dead sender's lease expires
    and the beat sweep hands the campaign to another worker). `recent_sends`: the pacer's last window of
    send times, so the next sender (another task, maybe another machine) keeps the limit across the hand-off."""

    class State(models.TextChoices):
        LOADING = "loading", "Reading appointments"
        SENDING = "sending", "Sending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="reminder_campaigns")
    name = models.CharField(max_length=120)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.LOADING)
    lease_until = models.DateTimeField(null=True, blank=True)
    recent_sends = models.JSONField(
        default=list, blank=True, help_text="Unix times of the last sends (one window), handed to the next sender"
    )
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"ReminderCampaign {self.pk} ({self.state})"


class AppointmentReminder(models.Model):
    """One reminder text for one appointment in one campaign: at most one row per (campaign, appointment)
    (unique), so reloading a campaign never sends twice.

    State: `pending` -> `sending` (claimed by the sender, committed before the provider is asked) -> `sent`
    (`provider_sid`) / `recorded` (no Twilio account) / `failed`; `skipped` (no phone, or the number replied
    STOP); `unknown` (the sender died between claiming and recording the outcome: never re-sent, so a
    crash can lose a reminder but never duplicate one). `reply`: the patient's answer (`confirmed`,
    `cancel_requested`, `worse`); `case`: the case a "worse" reply landed on.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        RECORDED = "recorded", "Recorded (no Twilio account: not sent)"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (no phone, or opted out)"
        UNKNOWN = "unknown", "Outcome unknown (sender stopped)"

    class Reply(models.TextChoices):
        NONE = "", "No reply"
        CONFIRMED = "confirmed", "Confirmed"
        CANCEL_REQUESTED = "cancel_requested", "Asked to cancel"
        WORSE = "worse", "Feels worse"

    campaign = models.ForeignKey(ReminderCampaign, on_delete=models.CASCADE, related_name="reminders")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    appointment_id = models.CharField(max_length=128, help_text="FHIR Appointment id")
    patient_fhir_id = models.CharField(max_length=128, blank=True)
    appointment_start = models.DateTimeField()
    to = EncryptedTextField(max_length=32, blank=True, help_text="E.164")
    number_digest = models.CharField(max_length=64, blank=True, help_text="`optout.number_digest(to)`")
    language = models.CharField(max_length=8, default="en")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    provider_sid = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    reply = models.CharField(max_length=20, choices=Reply.choices, default=Reply.NONE, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "appointment_id"], name="reminder_once_per_appointment"),
        ]
        indexes = [
            models.Index(fields=["campaign", "state"], name="reminder_campaign_state"),
            models.Index(fields=["clinic", "number_digest", "sent_at"], name="reminder_reply_lookup"),
        ]

    def __str__(self) -> str:
        return f"AppointmentReminder {self.pk} ({self.state})"
