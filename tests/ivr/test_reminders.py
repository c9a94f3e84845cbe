"""Appointment reminders (`ivr.services.reminders`) against the real FHIR server (sekmet-fhir).

Each test books its own appointments in its own window (the FHIR server is shared by the session).
"""

from __future__ import annotations

import io
import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.test import Client
from django.utils import timezone

from ivr.models import AppointmentReminder, ReminderCampaign
from ivr.services import optout, reminders
from tests.ivr.texting import replies, text
from triage.models import Case

pytestmark = [pytest.mark.django_db(transaction=False), pytest.mark.fhir]

_windows = itertools.count(1)


def _window() -> tuple[datetime, datetime]:
    """A day of its own, far in the future, for one test's appointments."""
    start = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=next(_windows) * 3)
    return start, start + timedelta(days=1)


def _post(fhir, resource: dict) -> str:
    response = requests.post(
        f"{fhir.base_url}/{resource['resourceType']}",
        json=resource,
        headers={"Content-Type": "application/fhir+json"},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def book(fhir, start: datetime, *, phone: str | None, status: str = "booked", language: str = "") -> str:
    """A Patient (with `phone` in the national spelling EHRs store) and an Appointment; returns its id."""
    patient: dict = {"resourceType": "Patient", "name": [{"family": "Reminder", "given": ["Pat"]}]}
    if phone:
        patient["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
    if language:
        patient["communication"] = [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}}]
    patient_id = _post(fhir, patient)
    return _post(
        fhir,
        {
            "resourceType": "Appointment",
            "status": status,
            "start": start.isoformat().replace("+00:00", "Z"),
            "end": (start + timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
            "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}],
        },
    )


def _campaign(clinic, start, end) -> ReminderCampaign:
    return ReminderCampaign.objects.create(clinic=clinic, name="test", window_start=start, window_end=end)


class Provider:
    """The SMS provider as the sender sees it: records each send's time and reminder (thread-safe)."""

    def __init__(self) -> None:
        self.sends: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.ids = itertools.count(1)

    def __call__(self, reminder: AppointmentReminder, body: str) -> str:
        import time

        assert "Reply CONFIRM" in body or "CONFIRMAR" in body
        with self.lock:
            self.sends.append((time.monotonic(), reminder.pk))
            return f"SM{next(self.ids):032x}"


def test_a_campaign_loads_booked_appointments_of_its_window_once(personas, fhir):
    start, end = _window()
    inside = book(fhir, start + timedelta(hours=9), phone="555-303-4401")
    spanish = book(fhir, start + timedelta(hours=10), phone="555-303-4402", language="es")
    no_phone = book(fhir, start + timedelta(hours=11), phone=None)
    book(fhir, start + timedelta(hours=12), phone="555-303-4403", status="cancelled")
    book(fhir, end + timedelta(hours=1), phone="555-303-4404")  # next day: outside
    optout.opt_out(clinic=personas.north, number="+15553034405", keyword="STOP")
    stopped = book(fhir, start + timedelta(hours=13), phone="555-303-4405")

    campaign = _campaign(personas.north, start, end)
    assert reminders.campaign_load(campaign_id=campaign.pk) == 4
    assert reminders.campaign_load(campaign_id=campaign.pk) == 0, "a reload adds nothing"
    rows = {r.appointment_id: r for r in campaign.reminders.all()}
    assert set(rows) == {inside, spanish, no_phone, stopped}
    assert rows[inside].to == "+15553034401" and rows[inside].state == "pending"
    assert rows[spanish].language == "es"
    assert rows[no_phone].state == "skipped" and rows[stopped].state == "skipped"

    report = reminders.reminders_send(campaign_id=campaign.pk, rate=100)
    assert (report.sent, report.remaining) == (2, False)
    campaign.refresh_from_db()
    assert campaign.state == ReminderCampaign.State.DONE
    assert rows[inside].__class__.objects.get(pk=rows[inside].pk).state == "recorded"
    assert reminders.reminders_send(campaign_id=campaign.pk, rate=100).sent == 0, "never twice"


def test_sending_respects_the_rate_and_sends_each_reminder_exactly_once(personas, fhir):
    start, end = _window()
    campaign = _campaign(personas.north, start, end)
    campaign.state = ReminderCampaign.State.SENDING
    campaign.save()
    AppointmentReminder.objects.bulk_create(
        AppointmentReminder(
            campaign=campaign,
            clinic=personas.north,
            appointment_id=f"a{i}",
            appointment_start=start,
            to=f"+1555303{5000 + i}",
            number_digest=optout.number_digest(f"+1555303{5000 + i}"),
        )
        for i in range(100)
    )
    provider = Provider()
    report = reminders.reminders_send(campaign_id=campaign.pk, rate=40, batch=7, sender=provider)
    assert report.sent == 100
    times = [t for t, _ in provider.sends]
    ids = [pk for _, pk in provider.sends]
    assert len(set(ids)) == 100 == len(ids)
    # The limit holds in every 1-second window (+1 for scheduling jitter of one send on a loaded machine)...
    for t in times:
        assert sum(1 for u in times if t <= u < t + 1) <= 40 + 1
    # ...and as a whole: the first window's 40, then 40 per second.
    assert times[-1] - times[0] >= (100 - 40) / 40 * 0.98
    assert set(AppointmentReminder.objects.values_list("state", flat=True)) == {"sent"}


def test_one_sender_per_campaign(personas, fhir):
    start, end = _window()
    campaign = _campaign(personas.north, start, end)
    ReminderCampaign.objects.filter(pk=campaign.pk).update(
        state=ReminderCampaign.State.SENDING, lease_until=timezone.now() + timedelta(minutes=5)
    )
    assert reminders.reminders_send(campaign_id=campaign.pk, rate=10).leased is False


def _fake_time():
    now = [0.0]

    def sleep(seconds: float) -> None:
        assert seconds > 0
        now[0] += seconds

    return now, (lambda: now[0]), sleep


def test_pacer_keeps_the_limit_in_every_window_and_never_bursts_after_idle():
    now, clock, sleep = _fake_time()
    pacer = reminders.Pacer(rate=4, clock=clock, sleep=sleep)
    times = [pacer.wait() for _ in range(12)]
    assert times[:5] == [0.0, 0.125, 0.25, 0.375, 1.0]  # 4 in the first second, the 5th waits for the window
    assert all(sum(1 for u in times if t <= u < t + 1) <= 4 for t in times)
    now[0] = 100.0  # idle: nothing saved up
    later = [pacer.wait() for _ in range(5)]
    assert later == [100.0, 100.125, 100.25, 100.375, 101.0]


def test_pacer_catches_up_after_a_pause_without_exceeding_the_limit():
    now, clock, sleep = _fake_time()
    pacer = reminders.Pacer(rate=4, clock=clock, sleep=sleep)
    times = [pacer.wait() for _ in range(4)]
    now[0] += 0.6  # the sender's own database work
    times += [pacer.wait() for _ in range(8)]
    assert all(sum(1 for u in times if t <= u < t + 1) <= 4 for t in times)
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.125
    # 12 sends in 2.6 s with a 0.6 s pause: the rate is made up, not lost.
    assert times[-1] <= 2.75


def test_pacer_under_one_per_second():
    _now, clock, sleep = _fake_time()
    pacer = reminders.Pacer(rate=0.5, clock=clock, sleep=sleep)
    assert [pacer.wait() for _ in range(3)] == [0.0, 2.0, 4.0]


def test_a_sender_that_died_leaves_unknown_rows_never_resent(personas, fhir):
    start, end = _window()
    campaign = _campaign(personas.north, start, end)
    ReminderCampaign.objects.filter(pk=campaign.pk).update(state=ReminderCampaign.State.SENDING)
    row = AppointmentReminder.objects.create(
        campaign=campaign,
        clinic=personas.north,
        appointment_id="x",
        appointment_start=start,
        to="+15553036000",
        state=AppointmentReminder.State.SENDING,
        claimed_at=timezone.now() - timedelta(minutes=30),
    )
    assert reminders.reminders_sweep()["unknown"] == 1
    row.refresh_from_db()
    assert row.state == AppointmentReminder.State.UNKNOWN


def test_the_ehr_down_fails_the_campaign_with_the_reason(personas, fhir):
    start, end = _window()
    campaign = _campaign(personas.north, start, end)
    fhir.stop()
    assert reminders.campaign_load(campaign_id=campaign.pk) == 0
    campaign.refresh_from_db()
    assert campaign.state == ReminderCampaign.State.FAILED and campaign.last_error


def _sent_reminder(personas, fhir, phone_national: str, e164: str) -> AppointmentReminder:
    start, end = _window()
    book(fhir, start + timedelta(hours=15), phone=phone_national)
    campaign = _campaign(personas.north, start, end)
    reminders.campaign_load(campaign_id=campaign.pk)
    reminders.reminders_send(campaign_id=campaign.pk, rate=100)
    reminder = campaign.reminders.get()
    assert reminder.to == e164 and reminder.state == "recorded"
    return reminder


def test_replies_confirm_and_cancel_appt_land_on_the_reminder(personas, fhir):
    reminder = _sent_reminder(personas, fhir, "555-303-7001", "+15553037001")
    client = Client()
    assert "is confirmed" in replies(text(client, from_number="+15553037001", body="Confirm"))[0]
    reminder.refresh_from_db()
    assert reminder.reply == AppointmentReminder.Reply.CONFIRMED
    answer = replies(text(client, from_number="+15553037001", body="cancel appt"))[0]
    assert "request to cancel" in answer
    reminder.refresh_from_db()
    assert reminder.reply == AppointmentReminder.Reply.CANCEL_REQUESTED
    assert not Case.objects.exists(), "a confirmation is no triage case"
    # Another clinic's patient replying CONFIRM to North's number has no reminder: no effect on this one.
    text(client, from_number="+15553037001", body="CONFIRM", to="+15550200200")
    reminder.refresh_from_db()
    assert reminder.reply == AppointmentReminder.Reply.CANCEL_REQUESTED


def test_a_worse_reply_starts_a_case_at_acuity_2_and_is_linked_to_the_reminder(personas, fhir):
    reminder = _sent_reminder(personas, fhir, "555-303-7002", "+15553037002")
    response = text(Client(), from_number="+15553037002", body="WORSE")
    assert "Call 911 now" in replies(response)[0]
    case = Case.objects.get()
    assert case.acuity == 2 and case.channel == Case.Channel.SMS
    reminder.refresh_from_db()
    assert reminder.reply == AppointmentReminder.Reply.WORSE and reminder.case == case
    assert any("answers an appointment reminder" in event.summary for event in case.events.all())  # encrypted


def test_a_bare_cancel_is_an_opt_out_not_an_appointment_cancellation(personas, fhir):
    reminder = _sent_reminder(personas, fhir, "555-303-7003", "+15553037003")
    text(Client(), from_number="+15553037003", body="CANCEL")
    reminder.refresh_from_db()
    assert reminder.reply == ""
    assert optout.is_opted_out(clinic=personas.north, number="+15553037003")


def test_the_command_creates_a_campaign_that_celery_loads_and_sends(personas, fhir, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    start, end = _window()
    appointment = book(fhir, start + timedelta(hours=16), phone="555-303-7004")
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "reminder_campaign",
            clinic="north",
            start=start.isoformat(),
            end=end.isoformat(),
            stdout=io.StringIO(),
        )
    campaign = ReminderCampaign.objects.get()
    assert campaign.state == ReminderCampaign.State.DONE
    reminder = campaign.reminders.get()
    assert (reminder.appointment_id, reminder.state, reminder.to) == (appointment, "recorded", "+15553037004")


def test_a_stop_between_loading_and_sending_skips_the_reminder(personas, fhir):
    start, end = _window()
    campaign = _campaign(personas.north, start, end)
    ReminderCampaign.objects.filter(pk=campaign.pk).update(state=ReminderCampaign.State.SENDING)
    for i, number in enumerate(("+15553038001", "+15553038002")):
        AppointmentReminder.objects.create(
            campaign=campaign,
            clinic=personas.north,
            appointment_id=f"s{i}",
            appointment_start=start,
            to=number,
            number_digest=optout.number_digest(number),
        )
    text(Client(), from_number="+15553038002", body="STOP")
    provider = Provider()
    report = reminders.reminders_send(campaign_id=campaign.pk, rate=100, sender=provider)
    assert (report.sent, report.skipped) == (1, 1)
    assert len(provider.sends) == 1
    assert campaign.reminders.get(appointment_id="s1").state == AppointmentReminder.State.SKIPPED


def test_the_limit_holds_across_a_hand_off_between_senders(personas, fhir):
    start, end = _window()
    campaign = _campaign(personas.north, start, end)
    ReminderCampaign.objects.filter(pk=campaign.pk).update(state=ReminderCampaign.State.SENDING)
    AppointmentReminder.objects.bulk_create(
        AppointmentReminder(
            campaign=campaign,
            clinic=personas.north,
            appointment_id=f"h{i}",
            appointment_start=start,
            to=f"+1555304{1000 + i}",
            number_digest=optout.number_digest(f"+1555304{1000 + i}"),
        )
        for i in range(60)
    )
    provider = Provider()
    first = reminders.reminders_send(campaign_id=campaign.pk, rate=20, batch=20, max_seconds=0.01, sender=provider)
    assert first.remaining and first.sent == 20  # one batch, then the task hands the campaign on
    second = reminders.reminders_send(campaign_id=campaign.pk, rate=20, batch=20, sender=provider)
    assert second.sent == 40
    times = [t for t, _ in provider.sends]
    for t in times:
        assert sum(1 for u in times if t <= u < t + 1) <= 20 + 1, "the next sender continued the window"


def test_yes_after_a_reminder_confirms_it(personas, fhir):
    reminder = _sent_reminder(personas, fhir, "555-303-7005", "+15553037005")
    assert "is confirmed" in replies(text(Client(), from_number="+15553037005", body="Yes!"))[0]
    reminder.refresh_from_db()
    assert reminder.reply == AppointmentReminder.Reply.CONFIRMED
