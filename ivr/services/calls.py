"""One function per voice webhook. Each locks the call's `CallLeg` row and makes the step idempotent.

Idempotency (Twilio retries a webhook with the same CallSid and parameters): a request is keyed
`"<step>:<seq>"`; the leg stores the key and the TwiML of the last request it answered. A request with that
key, or one for a step/sequence the leg is no longer waiting for (late or out of order), gets the stored
TwiML back and changes nothing. Only the request the leg waits for runs the flow, under
`SELECT ... FOR UPDATE` of the leg row, so two copies of one request arriving together run once.
The EHR search is done before the lock is taken (no row lock or transaction held while the EHR is slow).
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.utils import timezone

from clinics.models import Clinic
from ivr import flow
from ivr.models import GATHER_STEPS, CallLeg, EhrStatus, Step
from ivr.services import cases, patients

logger = logging.getLogger(__name__)


def _locked(call_sid: str) -> CallLeg | None:
    return (
        CallLeg.objects.select_for_update(of=("self",))
        .select_related("clinic", "case")
        .filter(call_sid=call_sid)
        .first()
    )


def _remember(leg: CallLeg, key: str, twiml: str) -> str:
    leg.last_step_key = key
    leg.last_twiml = twiml
    leg.save()
    return twiml


def call_answer(*, call_sid: str, from_number: str, clinic: Clinic) -> str:
    """`POST /ivr/voice/`: create the leg and answer the disclaimer and language menu (TwiML string).

    A repeat for a CallSid that already has a leg returns the leg's last TwiML and writes nothing.
    """
    with transaction.atomic():
        leg = _locked(call_sid)
        if leg is not None:
            logger.info("ivr %s: repeated answer webhook; replaying the last TwiML", call_sid)
            return leg.last_twiml
        leg = CallLeg.objects.create(call_sid=call_sid, clinic=clinic, from_number=from_number)
        key = leg.step_key(Step.ANSWER, 0)
        twiml = str(flow.answer(leg))
        logger.info("ivr %s: answered (clinic %s)", call_sid, clinic.pk)
        return _remember(leg, key, twiml)


def _is_replay(leg: CallLeg, step: str, seq: int) -> bool:
    return leg.last_step_key == leg.step_key(step, seq) or (step, seq) != (leg.step, leg.seq)


def call_step(*, call_sid: str, from_number: str, clinic: Clinic, step: str, seq: int, digits: str) -> str:
    """`POST /ivr/voice/step/<step>/?seq=<seq>`: run `step` of the flow with `digits`; returns TwiML.

    An unknown CallSid (the answer webhook never reached us) starts the call over with `call_answer`.
    Raises KeyError for a step that takes no input (the view answers 400).
    """
    if step not in GATHER_STEPS:
        raise KeyError(step)
    leg = CallLeg.objects.filter(call_sid=call_sid).first()
    if leg is None:
        logger.warning("ivr %s: step %s for an unknown call; starting over", call_sid, step)
        return call_answer(call_sid=call_sid, from_number=from_number, clinic=clinic)
    if _is_replay(leg, step, seq):
        logger.info("ivr %s: step %s seq %s is a repeat; replaying the last TwiML", call_sid, step, seq)
        return leg.last_twiml
    lookup = None
    if step == Step.LANGUAGE and digits in flow.LANGUAGE_DIGITS and leg.ehr_status == EhrStatus.NOT_ASKED:
        lookup = patients.lookup_by_phone(leg.from_number, call_sid=call_sid)
    with transaction.atomic():
        leg = _locked(call_sid)
        assert leg is not None
        if _is_replay(leg, step, seq):
            return leg.last_twiml
        key = leg.step_key(step, seq)
        twiml = str(flow.handle(leg=leg, step=step, digits=digits, lookup=lookup))
        logger.info("ivr %s: step %s seq %s answered; now at %s", call_sid, step, seq, leg.step)
        return _remember(leg, key, twiml)


def call_wait(*, call_sid: str, case_uuid: uuid.UUID) -> str | None:
    """`POST /ivr/voice/wait/<case_uuid>/` (the `<Enqueue>` waitUrl): the hold announcement (TwiML).

    Returns None when the call and the case do not belong together (the view answers 400). Writes nothing.
    While the leg is at the `hold` step the announcement offers 9 for worse symptoms (a `<Gather>` posting
    to the `hold` step with the leg's current sequence number).
    """
    leg = CallLeg.objects.select_related("case").filter(call_sid=call_sid, case__uuid=case_uuid).first()
    if leg is None or leg.case is None:
        return None
    return str(flow.wait(leg.case, seq=leg.seq if leg.step == Step.HOLD else None))


def call_queue_left(*, call_sid: str, case_uuid: uuid.UUID, queue_result: str) -> str | None:
    """`POST /ivr/voice/queue-left/<case_uuid>/` (the `<Enqueue action>`): the caller left the queue.

    Runs `flow.queue_left` under the leg lock (red flag in re-triage -> `<Dial>` on-call). A repeat of the
    request gets the stored TwiML. Returns None when call and case do not belong together.
    """
    with transaction.atomic():
        leg = _locked(call_sid)
        if leg is None or leg.case is None or leg.case.uuid != case_uuid:
            return None
        key = f"queue-left:{queue_result}"
        if leg.last_step_key == key:
            return leg.last_twiml
        twiml = str(flow.queue_left(leg, queue_result))
        logger.info("ivr %s: left the queue (%s); now at %s", call_sid, queue_result, leg.step)
        return _remember(leg, key, twiml)


def call_status(*, call_sid: str, call_status: str, duration_seconds: int | None) -> bool:
    """`POST /ivr/voice/status/` (status callback): record `call_status`; when the call has ended
    (`cases.CALL_ENDED_STATUSES`) mark the leg ended once and tell the case (`cases.case_call_ended`).

    Returns False for an unknown CallSid (nothing written). Safe to repeat: a leg is ended only once.
    """
    with transaction.atomic():
        leg = _locked(call_sid)
        if leg is None:
            logger.info("ivr %s: status %s for an unknown call", call_sid, call_status)
            return False
        leg.call_status = call_status
        if call_status in cases.CALL_ENDED_STATUSES and leg.ended_at is None:
            leg.ended_at = timezone.now()
            if leg.case_id is not None:
                cases.case_call_ended(
                    case_id=leg.case_id, clinic=leg.clinic, call_status=call_status, duration_seconds=duration_seconds
                )
            logger.info("ivr %s: call ended (%s) at step %s", call_sid, call_status, leg.step)
        leg.save(update_fields=["call_status", "ended_at", "updated_at"])
        return True
