"""The EHR facade: find a patient, load a patient context, submit an outcome (DESIGN §7).

Everything else in CareLine calls these functions; the FHIR and HL7 details stay in `ehr/fhir/` and
`ehr/hl7/`. Nothing here writes PHI to log lines (ids, states and exception types only).

Write-back outbox (DESIGN §6.3): `writeback_enqueue` adds rows in the caller's transaction and dispatches
`ehr.tasks.send_writeback` on commit; `writeback_send` delivers one row under a lease; `writeback_sweep`
(Celery beat) retries what is due. Every state change publishes `writeback.changed` (clinics.events).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime, timedelta
from functools import partial

from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clinics import events
from clinics.models import Clinic
from ehr.fhir.context import read_patient_context
from ehr.fhir.patients import search_by_phone
from ehr.fhir.writeback import build_bundle, send_bundle
from ehr.hl7 import mllp
from ehr.hl7.oru import MESSAGE_TYPE, build_oru, control_id_for
from ehr.models import Hl7Message, WriteBack
from ehr.serialization import context_from_dict, context_to_dict, outcome_from_dict, outcome_to_dict
from ehr.types import EhrRejected, EhrUnavailable, Outcome, PatientContext, PatientMatch

logger = logging.getLogger(__name__)

# A sender holds a row this long at most; a crashed worker's lease expires and the sweep takes the row.
WRITEBACK_LEASE_SECONDS = 120
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


def _publish(row: WriteBack) -> None:
    events.publish(
        row.clinic_id, "writeback.changed", {"case_id": row.source_id, "target": row.target, "state": row.state}
    )


def writeback_enqueue(*, clinic: Clinic, outcome: Outcome) -> list[WriteBack]:
    """Write the outbox rows for `outcome` in the caller's transaction; dispatch sending on commit.

    Rows: one `fhir` row (without `outcome.patient_fhir_id`: state `held` while `outcome.patient_pending`,
    i.e. the caller's EHR lookup is still to be retried, else `skipped` with `last_error` saying why: the
    caller was never identified), and one `hl7v2` row when `HL7_MLLP_HOST` is set (an HL7 v2
    feed can still file an unidentified call by its case number). `idempotency_key` is
    `"<case_uuid>:<target>"`; enqueuing the same outcome twice returns the existing rows unchanged.
    `payload` is `ehr.serialization.outcome_to_dict(outcome)`. Returns the rows, fhir first.
    """
    targets = [WriteBack.Target.FHIR]
    if settings.HL7_MLLP_HOST:
        targets.append(WriteBack.Target.HL7V2)
    payload = outcome_to_dict(outcome)
    rows = []
    with transaction.atomic():
        for target in targets:
            state, reason = WriteBack.State.PENDING, ""
            if target == WriteBack.Target.FHIR and not outcome.patient_fhir_id:
                state, reason = (
                    (WriteBack.State.HELD, PATIENT_PENDING)
                    if outcome.patient_pending
                    else (WriteBack.State.SKIPPED, NOT_IDENTIFIED)
                )
            row, created = WriteBack.objects.get_or_create(
                idempotency_key=f"{outcome.case_uuid}:{target}",
                defaults={
                    "clinic": clinic,
                    "source_id": outcome.case_id,
                    "target": target,
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

    send_writeback.delay(writeback_id)


def _take_lease(writeback_id: int, now: datetime) -> bool:
    """Atomically lease a sendable row: one UPDATE, so two workers never send the same row at once."""
    return bool(
        WriteBack.objects.filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
            pk=writeback_id,
            state__in=(WriteBack.State.PENDING, WriteBack.State.RETRYING),
        ).update(lease_until=now + timedelta(seconds=WRITEBACK_LEASE_SECONDS))
    )


def _deliver(row: WriteBack) -> dict[str, object]:
    """Send one row to its target; returns what the EHR acknowledged. Raises EhrUnavailable / EhrRejected."""
    outcome = outcome_from_dict(row.payload)
    if row.target == WriteBack.Target.FHIR:
        return send_bundle(build_bundle(outcome), timeout=settings.FHIR_TIMEOUT_SECONDS)
    control_id = control_id_for(row.idempotency_key)
    message = build_oru(outcome, control_id=control_id)
    log = Hl7Message.objects.create(
        clinic_id=row.clinic_id,
        direction=Hl7Message.Direction.OUTBOUND,
        message_type=MESSAGE_TYPE[:20],
        control_id=control_id,
        raw=message,
    )
    ack = mllp.send_message(
        message, host=settings.HL7_MLLP_HOST, port=settings.HL7_MLLP_PORT, timeout=settings.HL7_TIMEOUT_SECONDS
    )
    log.ack_code, log.ack_text = ack.code[:2], ack.text[:500]
    log.save(update_fields=["ack_code", "ack_text"])
    mllp.require_accept(ack)
    return {"control_id": control_id, "ack_code": ack.code, "ack_text": ack.text}


def writeback_send(*, writeback_id: int, now: datetime | None = None) -> WriteBack:
    """Deliver one outbox row, if it is still pending/retrying and no other worker holds it.

    Success: state `sent`, `sent_at`, `response` (FHIR: each entry's status and location; HL7: control id
    and ACK). EhrUnavailable: state `retrying`, `attempts + 1`, `next_attempt_at = now + backoff`, the
    backoff being celery's exponential interval (factor `WRITEBACK_BACKOFF_FACTOR_SECONDS`, cap
    `WRITEBACK_BACKOFF_MAX_SECONDS`, full jitter). EhrRejected: state `failed` (a person must look).
    A row that is sent, failed, skipped or leased elsewhere is returned unchanged (idempotent).
    Raises WriteBack.DoesNotExist.
    """
    now = now or timezone.now()
    if not _take_lease(writeback_id, now):
        return WriteBack.objects.get(pk=writeback_id)
    row = WriteBack.objects.get(pk=writeback_id)
    update: dict[str, object] = {"lease_until": None}
    try:
        response = _deliver(row)
    except EhrRejected as exc:
        update.update(
            state=WriteBack.State.FAILED, attempts=row.attempts + 1, last_error=str(exc)[:2000], next_attempt_at=None
        )
        logger.warning("write-back %s (%s) rejected: %s", row.pk, row.target, type(exc).__name__)
    except EhrUnavailable as exc:
        delay = get_exponential_backoff_interval(
            factor=settings.WRITEBACK_BACKOFF_FACTOR_SECONDS,
            retries=row.attempts,
            maximum=settings.WRITEBACK_BACKOFF_MAX_SECONDS,
            full_jitter=True,
        )
        # Full jitter may draw 0 s: wait at least a second so a dead EHR is not retried in a tight loop.
        delay = max(delay, 1)
        update.update(
            state=WriteBack.State.RETRYING,
            attempts=row.attempts + 1,
            last_error=str(exc)[:2000],
            next_attempt_at=now + timedelta(seconds=delay),
        )
        logger.info("write-back %s (%s) will retry in %ss: %s", row.pk, row.target, delay, type(exc).__name__)
    else:
        update.update(
            state=WriteBack.State.SENT,
            attempts=row.attempts + 1,
            last_error="",
            response=response,
            sent_at=timezone.now(),
            next_attempt_at=None,
        )
    with transaction.atomic():
        WriteBack.objects.filter(pk=row.pk).update(**update)
        row.refresh_from_db()
        _publish(row)
    return row


def writeback_sweep(*, now: datetime | None = None) -> int:
    """Send every row that is pending or retrying and due (`next_attempt_at` null or <= `now`).

    Rows leased by another worker are skipped by `writeback_send`. Returns the number of rows attempted.
    """
    now = now or timezone.now()
    due = (
        WriteBack.objects.filter(state__in=(WriteBack.State.PENDING, WriteBack.State.RETRYING))
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    count = 0
    for writeback_id in list(due):
        writeback_send(writeback_id=writeback_id, now=now)
        count += 1
    return count
