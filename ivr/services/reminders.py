"""Appointment reminder campaigns: booked FHIR `Appointment`s -> one SMS each, at the provider's rate.

1. `campaign_create` (admin command / API): a `ReminderCampaign` for a clinic and a window of appointment
   start times; `ivr.tasks.reminder_campaign_load` runs after commit.
2. `campaign_load`: reads the appointments from the EHR (`ehr.services.appointments_between`) and writes
   one `AppointmentReminder` per (campaign, appointment) - a unique constraint, so a reload (retry, crash)
   never adds a second one. A number that replied STOP, or no phone, is `skipped` at once.
3. `reminders_send`: the campaign's one sender (a lease on the campaign row) claims batches of
   `REMINDER_BATCH_SIZE` pending rows (`SELECT ... FOR UPDATE SKIP LOCKED`, marked `sending`, committed),
   sends them at most `REMINDER_RATE_PER_SECOND` messages in any second (`Pacer`), and records the
   outcomes of the batch in one `bulk_update`. Each task call sends for at most `max_seconds`, then
   re-queues itself, so no task runs for hours.
   Delivery guarantee: a row is claimed (committed) before the provider is asked, so it is never sent
   twice; a sender killed mid-batch leaves rows `sending`, which the sweep marks `unknown` after the lease
   (not re-sent: a lost reminder is preferred to a duplicate).
4. Replies (`reminder_reply_record`, from `ivr.services.sms`): CONFIRM / CANCEL APPT land on the most
   recent reminder sent to that number by that clinic in the last `REPLY_WINDOW`; "worse" goes through the
   usual SMS flow (open case or message-only case, acuity raised) and the reminder records the case.

Write-back of confirmations to the EHR (`Appointment.participant.status` / `AppointmentResponse`) is not
built: confirmations and cancellation requests stay in CareLine (see the README).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clinics.models import Clinic
from ehr.services import appointments_between
from ehr.types import EhrError
from ivr import prompts, tasks
from ivr.models import AppointmentReminder, ReminderCampaign, SmsOptOut
from ivr.services import optout
from ivr.twilio.messaging import SmsNotConfigured, SmsRejected, SmsUnavailable, send_sms, sending_enabled
from triage.models import Case

logger = logging.getLogger(__name__)

REPLY_WINDOW = timedelta(days=7)
# A sender sending `batch` rows at `rate` needs batch/rate seconds; the lease adds this margin.
LEASE_MARGIN = timedelta(seconds=60)

Sender = Callable[[AppointmentReminder, str], str]


def rate_per_second() -> float:
    """`REMINDER_RATE_PER_SECOND` (messages/s; Twilio's long-code default is 1, toll-free 3, short code 100)."""
    return float(settings.REMINDER_RATE_PER_SECOND)


def batch_size() -> int:
    """`REMINDER_BATCH_SIZE` (rows claimed per transaction)."""
    return int(settings.REMINDER_BATCH_SIZE)


@dataclass
class Pacer:
    """The provider's rate limit, kept by the sender: never more than `rate` sends in any window of `window`
    seconds (`window` = 1 s, or 1/rate for rates under 1/s: the "messages per second" providers enforce),
    and never two sends closer than 1 / (`catch_up` x rate) seconds. The second rule spreads the catch-up
    after the sender's own pauses (claiming and recording a batch) instead of bursting; the first one is
    the limit itself, whatever happened before (after an idle period nothing is "saved up").

    `wait()` blocks until a send is allowed and returns that time (`clock()` seconds: Unix time, so that the
    window can be handed to a sender in another process, `recent()` / `resume()`).
    """

    rate: float
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    catch_up: float = 2.0
    _sent: deque[float] = field(default_factory=deque, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        self.window = max(1.0, 1.0 / self.rate)
        self.capacity = max(1, int(self.rate * self.window + 1e-9))
        self.spacing = 1.0 / (self.catch_up * self.rate)

    def recent(self) -> list[float]:
        """The send times that still bind the next sends (at most `capacity`)."""
        return list(self._sent)

    def resume(self, sent: list[float]) -> None:
        """Continue after another sender whose `recent()` was `sent`."""
        self._sent = deque(sorted(float(t) for t in sent)[-self.capacity :])

    def wait(self) -> float:
        now = self.clock()
        earliest = now
        if self._sent:
            earliest = max(earliest, self._sent[-1] + self.spacing)
        if len(self._sent) >= self.capacity:
            earliest = max(earliest, self._sent[-self.capacity] + self.window)
        if earliest > now:
            self.sleep(earliest - now)
            now = max(self.clock(), earliest)
        self._sent.append(now)
        while len(self._sent) > self.capacity:
            self._sent.popleft()
        return now


def campaign_create(*, clinic: Clinic, name: str, window_start: datetime, window_end: datetime) -> ReminderCampaign:
    """Create a campaign for appointments starting in `[window_start, window_end)` (aware datetimes) and
    load it after commit. Raises ValueError for an empty window."""
    if window_end <= window_start:
        raise ValueError("the window must end after it starts")
    campaign = ReminderCampaign.objects.create(
        clinic=clinic, name=name[:120], window_start=window_start, window_end=window_end
    )
    tasks.reminder_campaign_load.delay_after_commit(campaign.pk)
    return campaign


def campaign_load(*, campaign_id: int) -> int:
    """Read the campaign's appointments from the EHR and write the missing reminder rows; returns how many
    rows were added (0 on a reload). On EHR trouble the campaign is `failed` with the error (retry by
    loading again). Queues the sender after commit."""
    campaign = ReminderCampaign.objects.select_related("clinic").get(pk=campaign_id)
    try:
        due = appointments_between(start=campaign.window_start, end=campaign.window_end)
    except EhrError as exc:
        ReminderCampaign.objects.filter(pk=campaign_id).update(state=ReminderCampaign.State.FAILED, last_error=str(exc))
        logger.warning("reminder campaign %s: EHR unavailable (%s)", campaign_id, type(exc).__name__)
        return 0
    clinic = campaign.clinic
    rows = []
    for appointment in due:
        digest = optout.number_digest(appointment.phone) if appointment.phone else ""
        skipped = not appointment.phone or optout.is_opted_out(clinic=clinic, number=appointment.phone)
        rows.append(
            AppointmentReminder(
                campaign=campaign,
                clinic=clinic,
                appointment_id=appointment.appointment_id,
                patient_fhir_id=appointment.patient_fhir_id,
                appointment_start=appointment.start,
                to=appointment.phone,
                number_digest=digest,
                language=appointment.language if appointment.language in prompts.LANGUAGES else "en",
                state=AppointmentReminder.State.SKIPPED if skipped else AppointmentReminder.State.PENDING,
                last_error=("no phone" if not appointment.phone else "opted out (STOP)") if skipped else "",
            )
        )
    with transaction.atomic():
        before = campaign.reminders.count()
        AppointmentReminder.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
        added = campaign.reminders.count() - before
        ReminderCampaign.objects.filter(pk=campaign_id, state=ReminderCampaign.State.LOADING).update(
            state=ReminderCampaign.State.SENDING
        )
        tasks.reminder_campaign_send.delay_after_commit(campaign_id)
    logger.info("reminder campaign %s: %d appointment(s), %d new reminder(s)", campaign_id, len(due), added)
    return added


def _when(reminder: AppointmentReminder, clinic: Clinic) -> str:
    local = timezone.localtime(reminder.appointment_start, ZoneInfo(clinic.timezone))
    return local.strftime("%b %d at %I:%M %p").replace(" 0", " ")


def reminder_body(reminder: AppointmentReminder, clinic: Clinic) -> str:
    """The reminder text (no clinical details: clinic, date and time, reply options)."""
    return prompts.text("sms_reminder", reminder.language, clinic=clinic.name, when=_when(reminder, clinic))


def twilio_sender(reminder: AppointmentReminder, body: str) -> str:
    """Send through Twilio (`send_sms`); returns the Message SID. Raises the `ivr.twilio.messaging` errors."""
    return send_sms(to=reminder.to, from_number=reminder.clinic.twilio_number, body=body)


def _lease(campaign_id: int, seconds: float) -> bool:
    now = timezone.now()
    return bool(
        ReminderCampaign.objects.filter(pk=campaign_id, state=ReminderCampaign.State.SENDING)
        .filter(_lease_free(now))
        .update(lease_until=now + timedelta(seconds=seconds) + LEASE_MARGIN)
    )


def _lease_free(now: datetime) -> Q:
    """Campaigns no sender holds: no lease, or an expired one."""
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


@dataclass
class SendReport:
    """What one `reminders_send` call did: rows sent (or recorded), failed, skipped, and whether rows remain."""

    sent: int = 0
    failed: int = 0
    skipped: int = 0
    remaining: bool = False
    leased: bool = True


def reminders_send(
    *,
    campaign_id: int,
    rate: float | None = None,
    batch: int | None = None,
    max_seconds: float = 240.0,
    sender: Sender | None = None,
    pacer: Pacer | None = None,
) -> SendReport:
    """Send the campaign's pending reminders for up to `max_seconds` (see the module docstring).

    `rate` messages/s (default `REMINDER_RATE_PER_SECOND`), `batch` rows per claim (default
    `REMINDER_BATCH_SIZE`), `sender(reminder, body) -> provider id` (default: Twilio when
    `TWILIO_ACCOUNT_SID` is set, else the row is `recorded`). Returns a SendReport; `leased` False when
    another sender holds the campaign (nothing done). Marks the campaign `done` when no row is pending.
    """
    rate = rate or rate_per_second()
    batch = batch or batch_size()
    pacer = pacer or Pacer(rate)
    if sender is None and sending_enabled():
        sender = twilio_sender
    report = SendReport()
    if not _lease(campaign_id, max_seconds + batch / rate):
        report.leased = False
        return report
    campaign = ReminderCampaign.objects.select_related("clinic").get(pk=campaign_id)
    clinic = campaign.clinic
    pacer.resume(list(campaign.recent_sends))
    started = time.monotonic()
    try:
        while time.monotonic() - started < max_seconds:
            with transaction.atomic():
                claimed = list(
                    AppointmentReminder.objects.select_for_update(skip_locked=True)
                    .filter(campaign_id=campaign_id, state=AppointmentReminder.State.PENDING)
                    .order_by("appointment_start", "pk")[:batch]
                )
                now = timezone.now()
                AppointmentReminder.objects.filter(pk__in=[r.pk for r in claimed]).update(
                    state=AppointmentReminder.State.SENDING, claimed_at=now
                )
            if not claimed:
                break
            # The opt-out table, consulted once per batch (one query, not one per message).
            stopped = set(
                SmsOptOut.objects.filter(
                    clinic=clinic, active=True, number_digest__in=[r.number_digest for r in claimed]
                ).values_list("number_digest", flat=True)
            )
            for reminder in claimed:
                reminder.clinic = clinic
                if reminder.number_digest in stopped:
                    reminder.state = AppointmentReminder.State.SKIPPED
                    reminder.last_error = "opted out (STOP)"
                    report.skipped += 1
                    continue
                body = reminder_body(reminder, clinic)
                pacer.wait()
                if sender is None:
                    reminder.state = AppointmentReminder.State.RECORDED
                    reminder.sent_at = timezone.now()
                    report.sent += 1
                    continue
                try:
                    reminder.provider_sid = sender(reminder, body)
                except (SmsRejected, SmsUnavailable, SmsNotConfigured) as exc:
                    reminder.state = AppointmentReminder.State.FAILED
                    reminder.last_error = str(exc)
                    report.failed += 1
                else:
                    reminder.state = AppointmentReminder.State.SENT
                    reminder.sent_at = timezone.now()
                    report.sent += 1
            AppointmentReminder.objects.bulk_update(claimed, ["state", "provider_sid", "sent_at", "last_error"])
        report.remaining = AppointmentReminder.objects.filter(
            campaign_id=campaign_id, state=AppointmentReminder.State.PENDING
        ).exists()
        if not report.remaining:
            ReminderCampaign.objects.filter(pk=campaign_id).update(
                state=ReminderCampaign.State.DONE, finished_at=timezone.now()
            )
    finally:
        ReminderCampaign.objects.filter(pk=campaign_id).update(lease_until=None, recent_sends=pacer.recent())
    return report


def reminders_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Beat: rows left `sending` past their campaign's lease -> `unknown` (never re-sent); campaigns still
    `sending` with no live sender -> their sender is queued again. Returns `{"unknown", "resumed"}`."""
    now = now or timezone.now()
    stale_before = now - LEASE_MARGIN - timedelta(seconds=300)
    unknown = AppointmentReminder.objects.filter(
        state=AppointmentReminder.State.SENDING, claimed_at__lt=stale_before
    ).update(state=AppointmentReminder.State.UNKNOWN, last_error="sender stopped before recording the outcome")
    resumed = 0
    for campaign_id in (
        ReminderCampaign.objects.filter(state=ReminderCampaign.State.SENDING)
        .filter(_lease_free(now))
        .values_list("pk", flat=True)
    ):
        tasks.reminder_campaign_send.delay(campaign_id)
        resumed += 1
    return {"unknown": unknown, "resumed": resumed}


def reminder_for_reply(*, clinic: Clinic, number: str) -> AppointmentReminder | None:
    """The most recent reminder this clinic sent (or recorded) to `number` in the last `REPLY_WINDOW`."""
    return (
        AppointmentReminder.objects.filter(
            clinic=clinic,
            number_digest=optout.number_digest(number),
            state__in=[AppointmentReminder.State.SENT, AppointmentReminder.State.RECORDED],
            sent_at__gte=timezone.now() - REPLY_WINDOW,
        )
        .order_by("-sent_at", "-pk")
        .first()
    )


def reminder_reply_record(
    *, reminder: AppointmentReminder, reply: str, case: Case | None = None
) -> AppointmentReminder:
    """Record the patient's `reply` (an `AppointmentReminder.Reply` value) on the reminder (last one wins);
    `case`: the case a "worse" reply landed on."""
    reminder.reply = reply
    reminder.replied_at = timezone.now()
    reminder.case = case or reminder.case
    reminder.save(update_fields=["reply", "replied_at", "case"])
    return reminder


def reply_text(*, reminder: AppointmentReminder, key: str) -> str:
    """The acknowledgement `key` ("sms_reminder_confirmed" / "sms_reminder_cancel") for this reminder."""
    clinic = reminder.clinic
    return prompts.text(
        key,
        reminder.language,
        clinic=clinic.name,
        when=_when(reminder, clinic),
        number=prompts.spoken_number(clinic.twilio_number),
    )
