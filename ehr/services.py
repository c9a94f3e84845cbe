"""The EHR facade: find a patient, load a patient context, submit an outcome (DESIGN §7).

Everything else in CareLine calls these functions; the FHIR and HL7 details stay in `ehr/fhir/` and
`ehr/hl7/`. Nothing here writes PHI to log lines (ids, states and exception types only).

Write-back outbox (DESIGN §6.3): `writeback_enqueue` adds rows in the caller's transaction and dispatches
`ehr.tasks.send_writeback` on commit; `writeback_send` delivers one row under a lease; `writeback_sweep`
(Celery beat) retries what is due. Every state change publishes `writeback.changed` (clinics.events); a row
going `dead` also alerts the clinic's supervisors (`writeback.dead`). HL7 rows are strictly ordered per
patient and message type; analysts operate the queue with `writeback_retry` / `writeback_skip`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from clinics import events
from clinics.models import Clinic
from clinics.services import audit_record
from ehr.fhir.appointments import booked_appointments
from ehr.fhir.context import read_patient_context
from ehr.fhir.patients import search_by_phone
from ehr.fhir.writeback import build_bundle, send_bundle
from ehr.hl7 import mllp
from ehr.hl7.mdm import build_mdm
from ehr.hl7.oru import build_oru, control_id_for
from ehr.models import Hl7Message, WriteBack
from ehr.serialization import context_from_dict, context_to_dict, outcome_from_dict, outcome_to_dict
from ehr.types import AppointmentDue, EhrRejected, EhrUnavailable, Outcome, PatientContext, PatientMatch

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

NOT_IDENTIFIED = "caller not identified in the EHR: no Patient to file the outcome against"
PATIENT_PENDING = "waiting for the caller's EHR lookup (the EHR was unavailable during the call)"


def find_patients_by_phone(phone: str, *, timeout: float | None = None) -> list[PatientMatch]:
    """FHIR `Patient` search by phone number (any format; normalised to the formats EHRs store).

    `timeout` in seconds (default `FHIR_TIMEOUT_SECONDS`; the IVR passes `FHIR_IVR_TIMEOUT_SECONDS`).
    Returns every match (several for a household sharing a number), [] when none.
    Raises EhrUnavailable when the server cannot be reached in time or answers 5xx.
    """
    return search_by_phone(phone, timeout=timeout if timeout is not None else settings.FHIR_TIMEOUT_SECONDS)


def _patient_key(fhir_id: str) -> str:
    # FHIR ids are only unique per server, so the key names the server too.
    server = hashlib.sha256(settings.FHIR_BASE_URL.encode()).hexdigest()[:12]
    return f"ehr:patient-context:{server}:{fhir_id}"


def _context_cache_key(fhir_id: str, case_key: str) -> str:
    """The chart's key: server, patient, the patient's generation (bumped by `forget_patient_context`, which
    so drops every case's copy at once), and the case ("-" when read outside a case)."""
    generation = cache.get(f"{_patient_key(fhir_id)}:generation", "0")
    return f"{_patient_key(fhir_id)}:g{generation}:{case_key or '-'}"


def load_patient_context(fhir_id: str, *, case_key: str = "") -> PatientContext:
    """The chart of FHIR `Patient/<fhir_id>`; cached for `FHIR_CONTEXT_CACHE_SECONDS` per case.

    `case_key` names the case the chart is read for (its uuid; "" outside a case): the issue asks for a
    brief cache *per case*, so each case shows the chart as it was read for that case, and a new call from
    the same patient reads the EHR again instead of reusing another case's copy. Without a case the cache
    is per patient (same lifetime). `forget_patient_context` drops every copy of a patient.
    Reads the Patient and its sections (see `ehr.fhir.context`) within `FHIR_TIMEOUT_SECONDS` in total.
    Only complete charts are cached: a chart with `unavailable` sections is read again next time, so a
    nurse sees the EHR recover instead of a stale gap. Does not audit: callers go through an `access_*`
    selector that writes the audit row.
    Raises EhrUnavailable when the Patient read itself fails (transport, timeout, 5xx, circuit open) and
    EhrRejected when the EHR refuses it (404 unknown patient, other 4xx, malformed id); a failed section is
    listed in `PatientContext.unavailable` instead.
    """
    key = _context_cache_key(fhir_id, case_key)
    cached = cache.get(key)
    if cached is not None:
        return context_from_dict(cached)
    context = read_patient_context(fhir_id, budget=settings.FHIR_TIMEOUT_SECONDS)
    if not context.unavailable:
        cache.set(key, context_to_dict(context), timeout=settings.FHIR_CONTEXT_CACHE_SECONDS)
    return context


def forget_patient_context(fhir_id: str) -> None:
    """Drop every cached chart of `fhir_id`, for every case (e.g. after an inbound ADT^A08 update)."""
    # A new random generation: charts cached under any earlier one are never read again. It outlives every
    # chart cached under the previous generation, so when it expires (back to "0") no chart of the
    # original "0" generation is left either.
    cache.set(f"{_patient_key(fhir_id)}:generation", uuid.uuid4().hex, timeout=settings.FHIR_CONTEXT_CACHE_SECONDS + 60)


# --- write-back outbox -------------------------------------------------------------------------------------

# Outbox rows an analyst may send again now (`writeback_retry`) or give up on (`writeback_skip`).
RETRYABLE_STATES = ("pending", "retrying", "failed", "dead")
SKIPPABLE_STATES = ("pending", "retrying", "failed", "dead", "held")
# HL7 rows in these states no longer hold back the patient's later messages.
_SETTLED_STATES = (WriteBack.State.SENT, WriteBack.State.SKIPPED)
DEFAULT_HL7_TYPE = "ORU^R01"
_HL7_BUILDERS = {"ORU^R01": (build_oru, "ORU^R01^ORU_R01"), "MDM^T02": (build_mdm, "MDM^T02^MDM_T02")}


class WriteBackNotOperable(Exception):
    """An analyst's retry or skip does not apply: wrong state, or no reason given."""


def _publish(row: WriteBack) -> None:
    events.publish(
        row.clinic_id, "writeback.changed", {"case_id": row.source_id, "target": row.target, "state": row.state}
    )


def hl7_ordering_key(outcome: Outcome) -> str:
    """The patient an HL7 message is ordered under: `fhir:<Patient id>`, else `mrn:<MRN>`, else `case:<uuid>`.

    The FHIR id comes first because it is what CareLine identified the caller by; an unidentified caller's
    messages have nothing to be ordered against but their own case.
    """
    if outcome.patient_fhir_id:
        return f"fhir:{outcome.patient_fhir_id}"[:160]
    if outcome.patient_mrn:
        return f"mrn:{outcome.patient_mrn}"[:160]
    return f"case:{outcome.case_uuid}"


def _idempotency_key(outcome: Outcome, target: str, message_type: str) -> str:
    # ORU^R01 keeps the key it had before MDM existed, so rows (and MSH-10s) written earlier stay the same.
    if target == WriteBack.Target.HL7V2 and message_type != DEFAULT_HL7_TYPE:
        return f"{outcome.case_uuid}:{target}:{message_type}"
    return f"{outcome.case_uuid}:{target}"


def writeback_enqueue(*, clinic: Clinic, outcome: Outcome) -> list[WriteBack]:
    """Write the outbox rows for `outcome` in the caller's transaction; dispatch sending on commit.

    Rows: one `fhir` row (without `outcome.patient_fhir_id`: state `held` while `outcome.patient_pending`,
    i.e. the caller's EHR lookup is still to be retried, else `skipped` with `last_error` saying why: the
    caller was never identified), and, when `HL7_MLLP_HOST` is set, one `hl7v2` row per type in
    `clinic.hl7_outbound_types` (`ORU^R01`, `MDM^T02`; an HL7 v2 feed can still file an unidentified call by
    its case number), each with its `message_type` and `ordering_key` (`hl7_ordering_key`).
    `idempotency_key` is `"<case_uuid>:fhir"`, `"<case_uuid>:hl7v2"` (ORU^R01) or
    `"<case_uuid>:hl7v2:<type>"`; enqueuing the same outcome twice returns the existing rows unchanged.
    `payload` is `ehr.serialization.outcome_to_dict(outcome)`. Returns the rows, fhir first.
    """
    targets: list[tuple[str, str]] = [(WriteBack.Target.FHIR, "")]
    if settings.HL7_MLLP_HOST:
        types = clinic.hl7_outbound_types if isinstance(clinic.hl7_outbound_types, list) else [DEFAULT_HL7_TYPE]
        targets += [(WriteBack.Target.HL7V2, message_type) for message_type in types if message_type in _HL7_BUILDERS]
    payload = outcome_to_dict(outcome)
    rows = []
    with transaction.atomic():
        for target, message_type in targets:
            state, reason = WriteBack.State.PENDING, ""
            if target == WriteBack.Target.FHIR and not outcome.patient_fhir_id:
                state, reason = (
                    (WriteBack.State.HELD, PATIENT_PENDING)
                    if outcome.patient_pending
                    else (WriteBack.State.SKIPPED, NOT_IDENTIFIED)
                )
            row, created = WriteBack.objects.get_or_create(
                idempotency_key=_idempotency_key(outcome, target, message_type),
                defaults={
                    "clinic": clinic,
                    "source_id": outcome.case_id,
                    "target": target,
                    "message_type": message_type,
                    "ordering_key": hl7_ordering_key(outcome) if target == WriteBack.Target.HL7V2 else "",
                    "payload": payload,
                    "state": state,
                    "last_error": reason,
                },
            )
            rows.append(row)
            if not created:
                continue
            _publish(row)
            if row.state == WriteBack.State.PENDING:
                transaction.on_commit(partial(_dispatch, row.pk))
    return rows


def writeback_patient_resolved(
    *, clinic: Clinic, source_id: int, patient_fhir_id: str, patient_display: str = ""
) -> list[WriteBack]:
    """Release the `held` rows of case `source_id` once its caller's EHR lookup has an answer.

    With a `patient_fhir_id` the rows get it in their payload and go `pending` (sent on commit); with ""
    (no unique patient matched) they become `skipped` with the reason. Runs in the caller's transaction;
    rows in any other state are left alone. Returns the rows changed.
    """
    changed = []
    with transaction.atomic():
        for row in WriteBack.objects.select_for_update().filter(
            clinic=clinic, source_id=source_id, state=WriteBack.State.HELD
        ):
            if patient_fhir_id:
                row.payload = {
                    **row.payload,
                    "patient_fhir_id": patient_fhir_id,
                    "patient_display": patient_display,
                    "patient_pending": False,
                }
                row.state, row.last_error = WriteBack.State.PENDING, ""
                transaction.on_commit(partial(_dispatch, row.pk))
            else:
                row.state, row.last_error = WriteBack.State.SKIPPED, NOT_IDENTIFIED
            row.save(update_fields=["payload", "state", "last_error"])
            _publish(row)
            changed.append(row)
    return changed


def _dispatch(writeback_id: int) -> None:
    from ehr.tasks import send_writeback  # the task module imports this one

    send_writeback.delay_or_log(writeback_id)


def _take_lease(writeback_id: int, now: datetime) -> bool:
    """Atomically lease a sendable row: one UPDATE, so two workers never send the same row at once."""
    return bool(
        WriteBack.objects.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
            pk=writeback_id,
            state__in=(WriteBack.State.PENDING, WriteBack.State.RETRYING),
        ).update(lease_until=now + timedelta(seconds=settings.WRITEBACK_LEASE_SECONDS))
    )


def _same_channel(row: WriteBack) -> QuerySet[WriteBack]:
    """The HL7 rows of `row`'s clinic, message type and patient (its ordering chain)."""
    return WriteBack.objects.filter(
        clinic_id=row.clinic_id,
        target=WriteBack.Target.HL7V2,
        message_type=row.message_type,
        ordering_key=row.ordering_key,
    )


def _blocker(row: WriteBack) -> WriteBack | None:
    """The earliest unsettled row recorded before `row` in its chain (None: `row` may be sent now).

    Only HL7 rows with an ordering key are ordered; FHIR bundles are independent transactions and are not.
    """
    if row.target != WriteBack.Target.HL7V2 or not row.ordering_key:
        return None
    return (
        _same_channel(row)
        .exclude(state__in=_SETTLED_STATES)
        .filter(Q(created_at__lt=row.created_at) | Q(created_at=row.created_at, pk__lt=row.pk))
        .order_by("created_at", "pk")
        .first()
    )


def _dispatch_successor(row: WriteBack) -> None:
    """On commit, send the next row of `row`'s chain (the one `row` was holding back), if any."""
    if row.target != WriteBack.Target.HL7V2 or not row.ordering_key:
        return
    successor = (
        _same_channel(row)
        .exclude(state__in=_SETTLED_STATES)
        .filter(Q(created_at__gt=row.created_at) | Q(created_at=row.created_at, pk__gt=row.pk))
        .order_by("created_at", "pk")
        .first()
    )
    if successor is not None and successor.state in (WriteBack.State.PENDING, WriteBack.State.RETRYING):
        transaction.on_commit(partial(_dispatch, successor.pk))


def _deliver(row: WriteBack) -> dict[str, object]:
    """Send one row to its target; returns what the EHR acknowledged. Raises EhrUnavailable / EhrRejected."""
    outcome = outcome_from_dict(row.payload)
    if row.target == WriteBack.Target.FHIR:
        return send_bundle(build_bundle(outcome), timeout=settings.FHIR_TIMEOUT_SECONDS)
    build, message_type = _HL7_BUILDERS[row.message_type or DEFAULT_HL7_TYPE]
    control_id = control_id_for(row.idempotency_key)
    message = build(outcome, control_id=control_id)
    log = Hl7Message.objects.create(
        clinic_id=row.clinic_id,
        direction=Hl7Message.Direction.OUTBOUND,
        message_type=message_type[:20],
        control_id=control_id,
        raw=message,
    )
    ack = mllp.send_message(
        message, host=settings.HL7_MLLP_HOST, port=settings.HL7_MLLP_PORT, timeout=settings.HL7_TIMEOUT_SECONDS
    )
    log.ack_code, log.ack_text = ack.code[:2], ack.text[:500]
    log.save(update_fields=["ack_code", "ack_text"])
    mllp.require_accept(ack, control_id=control_id)
    return {"control_id": control_id, "ack_code": ack.code, "ack_text": ack.text}


def _retry_at(row: WriteBack, now: datetime) -> datetime:
    delay = get_exponential_backoff_interval(
        factor=settings.WRITEBACK_BACKOFF_FACTOR_SECONDS,
        retries=row.attempts,
        maximum=settings.WRITEBACK_BACKOFF_MAX_SECONDS,
        full_jitter=True,
    )
    # Full jitter may draw 0 s: wait at least a second so a dead EHR is not retried in a tight loop.
    return now + timedelta(seconds=max(delay, 1))


def _alert_dead(row: WriteBack) -> None:
    events.publish(
        row.clinic_id,
        "writeback.dead",
        {
            "writeback_id": row.pk,
            "case_id": row.source_id,
            "target": row.target,
            "message_type": row.message_type,
            "reason": row.last_error,
        },
    )


def writeback_send(*, writeback_id: int, now: datetime | None = None) -> WriteBack:
    """Deliver one outbox row, if it is still pending/retrying, no other worker holds it, and (HL7) no
    earlier message of the same patient and type is unsettled.

    Success: state `sent`, `sent_at`, `response` (FHIR: each entry's status and location; HL7: control id
    and ACK); the patient's next HL7 message is dispatched on commit. EhrUnavailable (down, timeout, no ACK,
    MSA-2 not our MSH-10): state `retrying`, `attempts + 1`, `next_attempt_at = now + backoff`, the backoff
    being celery's exponential interval (factor `WRITEBACK_BACKOFF_FACTOR_SECONDS`, cap
    `WRITEBACK_BACKOFF_MAX_SECONDS`, full jitter). HL7 AR/CR: state `dead` at once; AE/CE: `retrying` until
    the `HL7_AE_MAX_ATTEMPTS`th AE, then `dead` (interface-engine practice: AR means the message itself is
    unacceptable, AE that the receiver could not apply it now, e.g. an ADT not yet processed). `dead` alerts
    the supervisors (`writeback.dead`) and holds back the patient's later messages until an analyst retries
    or skips it. Other EhrRejected (FHIR 4xx): state `failed` (a person must look).
    A row held back by an earlier one stays as it is (`last_error` says which row it waits for).
    A row that is sent, failed, dead, skipped or leased elsewhere is returned unchanged (idempotent).
    Raises WriteBack.DoesNotExist.
    """
    now = now or timezone.now()
    if not _take_lease(writeback_id, now):
        return WriteBack.objects.get(pk=writeback_id)
    row = WriteBack.objects.get(pk=writeback_id)
    blocker = _blocker(row)
    if blocker is not None:
        waiting = f"waiting for earlier message #{blocker.pk} ({blocker.state}) of the same patient"
        WriteBack.objects.filter(pk=row.pk).update(lease_until=None, last_error=waiting)
        # The blocker may have settled between our check and the release (its successor dispatch then found
        # this row leased): look once more, so the row does not wait for the next sweep.
        if _blocker(row) is None:
            return writeback_send(writeback_id=writeback_id, now=now)
        row.refresh_from_db()
        return row
    update: dict[str, object] = {"lease_until": None, "attempts": row.attempts + 1}
    try:
        response = _deliver(row)
    except EhrUnavailable as exc:
        update.update(state=WriteBack.State.RETRYING, last_error=str(exc)[:2000], next_attempt_at=_retry_at(row, now))
        logger.info("write-back %s (%s) will retry: %s", row.pk, row.target, type(exc).__name__)
    except mllp.AckError as exc:
        if row.attempts + 1 >= settings.HL7_AE_MAX_ATTEMPTS:
            update.update(
                state=WriteBack.State.DEAD, last_error=f"{exc} ({row.attempts + 1} times)", next_attempt_at=None
            )
        else:
            update.update(state=WriteBack.State.RETRYING, last_error=str(exc), next_attempt_at=_retry_at(row, now))
        logger.warning("write-back %s (%s) answered %s", row.pk, row.target, type(exc).__name__)
    except mllp.AckRefused as exc:
        update.update(state=WriteBack.State.DEAD, last_error=str(exc)[:2000], next_attempt_at=None)
        logger.warning("write-back %s (%s) refused: %s", row.pk, row.target, type(exc).__name__)
    except EhrRejected as exc:
        update.update(state=WriteBack.State.FAILED, last_error=str(exc)[:2000], next_attempt_at=None)
        logger.warning("write-back %s (%s) rejected: %s", row.pk, row.target, type(exc).__name__)
    else:
        update.update(
            state=WriteBack.State.SENT, last_error="", response=response, sent_at=timezone.now(), next_attempt_at=None
        )
    with transaction.atomic():
        WriteBack.objects.filter(pk=row.pk).update(**update)
        row.refresh_from_db()
        _publish(row)
        if row.state == WriteBack.State.DEAD:
            _alert_dead(row)
        if row.state == WriteBack.State.SENT:
            _dispatch_successor(row)
    return row


def writeback_sweep(*, now: datetime | None = None) -> int:
    """Send every row that is pending or retrying and due (`next_attempt_at` null or <= `now`), oldest first.

    Oldest first keeps each patient's HL7 messages in order within one sweep (a row whose predecessor fails
    in this sweep waits; see `writeback_send`). Rows leased by another worker are skipped by
    `writeback_send`. Returns the number of rows attempted.
    """
    now = now or timezone.now()
    due = (
        WriteBack.objects.filter(state__in=(WriteBack.State.PENDING, WriteBack.State.RETRYING))
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )
    count = 0
    for writeback_id in list(due):
        writeback_send(writeback_id=writeback_id, now=now)
        count += 1
    return count


def _operate(
    *, clinic: Clinic, writeback_id: int, actor: User | None, reason: str, source_ip: str | None, action: str
) -> WriteBack:
    reason = reason.strip()
    if not reason:
        raise WriteBackNotOperable("Give a reason: it is kept with the row and the audit log.")
    allowed = RETRYABLE_STATES if action == "writeback.retry" else SKIPPABLE_STATES
    with transaction.atomic():
        row = WriteBack.objects.select_for_update().get(clinic=clinic, pk=writeback_id)
        if row.state not in allowed:
            raise WriteBackNotOperable(f"A {row.get_state_display().lower()} message cannot be changed.")
        if row.lease_until is not None and row.lease_until > timezone.now():
            raise WriteBackNotOperable("A worker is sending this message right now; try again in a moment.")
        if action == "writeback.retry":
            row.state, row.next_attempt_at = WriteBack.State.PENDING, None
        else:
            row.state, row.next_attempt_at = WriteBack.State.SKIPPED, None
        row.operator_note = reason[:2000]
        row.save(update_fields=["state", "next_attempt_at", "operator_note"])
        audit_record(
            clinic=clinic,
            actor=actor,
            action=action,
            object_type="writeback",
            object_id=row.pk,
            patient_ref=str(row.payload.get("patient_fhir_id", "")),
            reason=reason,
            source_ip=source_ip,
        )
        _publish(row)
        if row.state == WriteBack.State.PENDING:
            transaction.on_commit(partial(_dispatch, row.pk))
        else:
            _dispatch_successor(row)
    return row


def writeback_retry(
    *, clinic: Clinic, writeback_id: int, actor: User | None, reason: str, source_ip: str | None = None
) -> WriteBack:
    """An analyst sends a row again now: state `pending`, due now, dispatched on commit; audited.

    Applies to rows of `clinic` in RETRYABLE_STATES (pending, retrying, failed, dead) not leased by a worker;
    `attempts` is kept (the backoff restarts where it was). `reason` (required) is kept in `operator_note`;
    the audit row is `writeback.retry`. Raises WriteBack.DoesNotExist (another clinic's row, or none) and
    WriteBackNotOperable (no reason, wrong state, being sent).
    """
    return _operate(
        clinic=clinic,
        writeback_id=writeback_id,
        actor=actor,
        reason=reason,
        source_ip=source_ip,
        action="writeback.retry",
    )


def writeback_skip(
    *, clinic: Clinic, writeback_id: int, actor: User | None, reason: str, source_ip: str | None = None
) -> WriteBack:
    """An analyst gives up on a row: state `skipped`, never sent; the patient's next HL7 message goes on.

    Applies to rows of `clinic` in SKIPPABLE_STATES (pending, retrying, failed, dead, held) not leased by a
    worker. `reason` (required) is kept in `operator_note`; the audit row is `writeback.skip`. Raises
    WriteBack.DoesNotExist and WriteBackNotOperable as `writeback_retry`.
    """
    return _operate(
        clinic=clinic,
        writeback_id=writeback_id,
        actor=actor,
        reason=reason,
        source_ip=source_ip,
        action="writeback.skip",
    )


def appointments_between(*, start: datetime, end: datetime) -> list[AppointmentDue]:
    """Booked FHIR `Appointment`s starting in `[start, end)` with the patient's phone, for reminder campaigns
    (`ehr.fhir.appointments`). Raises EhrUnavailable, EhrRejected."""
    return booked_appointments(start=start, end=end)
