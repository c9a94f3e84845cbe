"""The IVR call flow: one handler per `<Gather>` step, each returning the next TwiML (`VoiceResponse`).

Order (DESIGN §6.1): emergency disclaimer -> language (1 English / 2 Español) -> identify the caller
(caller ID in the EHR, then the birth date on the keypad, MMDDYYYY, before anything about a patient is
said) -> protocol menu (adult 1 / child 2, then the clinic's protocols for that audience from
`triage.protocols.protocols_for`, 8 per page on digits 1..8, 9 = more) -> questions (1 yes / 2 no) ->
`triage.protocols.evaluate`: a red flag (acuity 1) gets emergency advice and a warm transfer `<Dial>` to the
clinic's on-call number, never the queue; otherwise the case is queued and the caller chooses 1 to hold
(`<Enqueue>`) or 2 for a callback (`<Hangup>`), keeping their place either way. While holding, the wait
document offers 9 for worse symptoms: re-triage inside the wait document (`triage.retriage`; decision 0004).

Rules kept everywhere: "0" reaches a nurse from any menu; no input or invalid input re-prompts at most
`MAX_REPROMPTS` times, then the call is routed to a nurse (queued at `NURSE_ASSESSMENT_ACUITY` with what is
known). Handlers mutate the `CallLeg` they are given (the caller, `ivr.services.calls`, holds its row lock
and saves it) and call `ivr.services.cases` for every change to a case. Every `<Gather>` posts to
`/ivr/voice/step/<step>/?seq=<n>` with `actionOnEmptyResult`, so no input arrives as empty `Digits`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from django.urls import reverse
from django.utils import timezone
from twilio.twiml.voice_response import VoiceResponse

from ivr import prompts
from ivr.models import CallLeg, EhrStatus, Step
from ivr.services import cases
from ivr.services.patients import PhoneLookup
from triage.models import Case, CaseState
from triage.protocols import Protocol, TriageResult, evaluate, get_protocol, get_protocol_version, protocols_for
from triage.retriage import (
    RETRIAGE_STATES,
    case_retriage_raise,
    case_retriage_red_flag,
    case_retriage_unchanged,
    retriage_questions,
)
from triage.selectors import queue_position

MAX_REPROMPTS = 2
MAX_DOB_ATTEMPTS = 2
NURSE_DIGIT = "0"
LANGUAGE_DIGITS = {"1": "en", "2": "es"}
GATHER_TIMEOUT_SECONDS = 8
DIAL_TIMEOUT_SECONDS = 30
# While holding: 9 = "my symptoms are worse" (re-triage); seconds the hold <Gather> waits after its prompt.
WORSE_DIGIT = "9"
HOLD_GATHER_TIMEOUT_SECONDS = 3
# Twilio's public hold-music bucket (used in Twilio's own `<Enqueue>` examples).
HOLD_MUSIC_URL = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"


def step_url(step: str, seq: int) -> str:
    """The `<Gather>` action URL of `step`, carrying the leg's sequence number (path + query)."""
    return f"{reverse('ivr:step', kwargs={'step': step})}?seq={seq}"


def wait_url(case: Case) -> str:
    """The `<Enqueue waitUrl>` of a case: announces the caller's position while they hold."""
    return reverse("ivr:wait", kwargs={"case_uuid": case.uuid})


def queue_left_url(case: Case) -> str:
    """The `<Enqueue action>` of a case: requested when the caller leaves the queue (`QueueResult`)."""
    return reverse("ivr:queue-left", kwargs={"case_uuid": case.uuid})


def _say(response: Any, sentence: str, language: str) -> None:
    """Append `<Say language=..>` to a `VoiceResponse` or a `<Gather>`."""
    response.say(sentence, language=prompts.SAY_LANGUAGE.get(language, "en-US"))


def parse_birth_date(digits: str, *, today: date | None = None) -> date | None:
    """Eight keypad digits MMDDYYYY as a date, or None when they are not a real, past date after 1900."""
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        value = date(int(digits[4:]), int(digits[:2]), int(digits[2:4]))
    except ValueError:
        return None
    today = today or timezone.localdate()
    return value if date(1900, 1, 1) <= value <= today else None


# --- Prompts: every step's <Gather> --------------------------------------------------------------------------


def _sentences(leg: CallLeg, step: str) -> list[str]:
    if step == Step.DOB:
        return [prompts.text("dob", leg.language)]
    if step == Step.PROTOCOL:
        audience = leg.collected.get("menu_audience")
        if not audience:
            return prompts.audience_menu(leg.language)
        return prompts.protocol_menu(_menu_choices(leg), int(leg.collected.get("menu_page", 0)), leg.language)
    if step == Step.QUESTION:
        protocol = _current_protocol(leg)
        assert protocol is not None
        return [prompts.question_prompt(protocol.questions[len(leg.answers)], leg.language)]
    if step == Step.CONTACT:
        return [prompts.text("contact_menu", leg.language)]
    if step == Step.RETRIAGE:
        assert leg.case is not None
        question = retriage_questions(case=leg.case)[len(leg.collected.get("retriage_answers", []))]
        return [prompts.question_prompt(question, leg.language)]
    raise ValueError(f"no prompt for step {step!r}")


def _prompt(leg: CallLeg, step: str, *, preface: tuple[str, ...] = ()) -> VoiceResponse:
    """Say `preface`, then `<Gather>` the answer to `step`; the leg now waits for `step`."""
    leg.step = step
    response = VoiceResponse()
    for sentence in preface:
        _say(response, sentence, leg.language)
    gather = response.gather(
        input="dtmf",
        action=step_url(step, leg.seq),
        method="POST",
        num_digits=8 if step == Step.DOB else 1,
        timeout=GATHER_TIMEOUT_SECONDS,
        action_on_empty_result=True,
    )
    for sentence in _sentences(leg, step):
        _say(gather, sentence, leg.language)
    return response


def _language_menu(leg: CallLeg, *, preface: tuple[tuple[str, str], ...] = ()) -> VoiceResponse:
    """The bilingual language menu; `preface` holds (sentence, language) pairs said first."""
    leg.step = Step.LANGUAGE
    response = VoiceResponse()
    for sentence, language in preface:
        _say(response, sentence, language)
    gather = response.gather(
        input="dtmf",
        action=step_url(Step.LANGUAGE, leg.seq),
        method="POST",
        num_digits=1,
        timeout=GATHER_TIMEOUT_SECONDS,
        action_on_empty_result=True,
    )
    _say(gather, prompts.text("language_menu", "en"), "en")
    _say(gather, prompts.text("language_menu", "es"), "es")
    return response


def _new_step(leg: CallLeg) -> None:
    leg.retries = 0


def _reprompt(leg: CallLeg, step: str) -> VoiceResponse:
    """No input or invalid input at `step`: say so and ask again, or route to a nurse after MAX_REPROMPTS."""
    leg.retries += 1
    if leg.retries > MAX_REPROMPTS:
        if step == Step.RETRIAGE:  # inside the wait document: stop asking, keep holding (place unchanged)
            return _hold_loop(leg)
        if step == Step.CONTACT:  # the case exists; a caller who cannot choose stays on the line
            return _hold(leg)
        return _to_nurse(leg, reason=f"no valid input at the {Step(step).label.lower()} step")
    invalid = prompts.text("invalid", leg.language)
    if step == Step.LANGUAGE:
        return _language_menu(leg, preface=((invalid, "en"), (prompts.text("invalid", "es"), "es")))
    return _prompt(leg, step, preface=(invalid,))


# --- Outcomes ------------------------------------------------------------------------------------------------


def _menu_choices(leg: CallLeg) -> tuple[Protocol, ...]:
    """The protocols on this caller's menu: the clinic's active ones for the chosen audience."""
    return prompts.menu_protocols(protocols_for(leg.clinic), str(leg.collected.get("menu_audience", "adult")))


def _current_protocol(leg: CallLeg) -> Protocol | None:
    """The protocol the caller chose, in the exact version chosen (an admin may activate a new version while
    the call is in progress; the call keeps the questions it started with)."""
    code = leg.collected.get("protocol")
    if not code:
        return None
    version_id = leg.collected.get("protocol_version_id")
    return get_protocol_version(int(version_id)) if version_id else get_protocol(code)


def _to_nurse(leg: CallLeg, *, reason: str) -> VoiceResponse:
    """Route to a nurse: queue at NURSE_ASSESSMENT_ACUITY with what is known ("needs nurse assessment"),
    then hold. A leg that already has a case just holds."""
    if leg.case is None:
        cases.case_enqueue_from_leg(
            leg=leg,
            acuity=cases.NURSE_ASSESSMENT_ACUITY,
            suggested_disposition="",
            protocol=_current_protocol(leg),
            reason=f"needs nurse assessment: {reason}",
        )
        return _hold(leg, preface=(prompts.text("to_nurse", leg.language),))
    return _hold(leg)


def _hold(leg: CallLeg, *, preface: tuple[str, ...] = ()) -> VoiceResponse:
    """`<Enqueue>` the caller in the case's own queue; the wait URL announces the position."""
    assert leg.case is not None
    cases.case_choose_hold(case=leg.case)
    leg.step = Step.HOLD
    response = VoiceResponse()
    for sentence in (*preface, prompts.text("hold", leg.language)):
        _say(response, sentence, leg.language)
    response.enqueue(
        cases.queue_name(leg.case),
        wait_url=wait_url(leg.case),
        wait_url_method="POST",
        action=queue_left_url(leg.case),
        method="POST",
    )
    return response


def _callback(leg: CallLeg) -> VoiceResponse:
    assert leg.case is not None
    cases.case_choose_callback(case=leg.case)
    leg.step = Step.DONE
    response = VoiceResponse()
    _say(response, prompts.text("callback", leg.language), leg.language)
    response.hangup()
    return response


def _transfer(leg: CallLeg, protocol: Protocol, result: TriageResult) -> VoiceResponse:
    """Red flag: emergency advice and a warm transfer `<Dial>` to the on-call number; never queued."""
    cases.case_transfer_from_leg(leg=leg, protocol=protocol, result=result)
    leg.step = Step.TRANSFERRED
    response = VoiceResponse()
    _say(response, prompts.text("red_flag", leg.language), leg.language)
    dial = response.dial(caller_id=leg.clinic.twilio_number, timeout=DIAL_TIMEOUT_SECONDS)
    dial.number(leg.clinic.on_call_number)
    # Reached only after the transfer ends or fails.
    _say(response, prompts.text("transfer_ended", leg.language), leg.language)
    response.hangup()
    return response


# --- Step handlers ---------------------------------------------------------------------------------------------


def answer(leg: CallLeg) -> VoiceResponse:
    """First webhook: the emergency disclaimer (English, then Spanish), then the language menu."""
    leg.seq += 1
    return _language_menu(
        leg,
        preface=(
            (prompts.text("disclaimer", "en", clinic=leg.clinic.name), "en"),
            (prompts.text("disclaimer", "es"), "es"),
        ),
    )


def _on_language(leg: CallLeg, digits: str, lookup: PhoneLookup | None) -> VoiceResponse:
    if digits not in LANGUAGE_DIGITS:
        return _reprompt(leg, Step.LANGUAGE)
    leg.language = LANGUAGE_DIGITS[digits]
    _new_step(leg)
    if lookup is not None:
        leg.ehr_status = lookup.status
        leg.candidate_patients = lookup.candidates
    if leg.ehr_status == EhrStatus.NONE:  # nobody on this number: continue unidentified, callback = From
        leg.collected["identity"] = "unidentified"
        return _prompt(leg, Step.PROTOCOL)
    return _prompt(leg, Step.DOB)


def _on_dob(leg: CallLeg, digits: str, lookup: PhoneLookup | None) -> VoiceResponse:
    birth_date = parse_birth_date(digits)
    if birth_date is None:
        return _reprompt(leg, Step.DOB)
    leg.collected["dob"] = birth_date.isoformat()
    if leg.ehr_status == EhrStatus.UNAVAILABLE:  # cannot check now: keep it for ivr.tasks.resolve_pending_patients
        leg.collected["identity"] = "pending"
        _new_step(leg)
        return _prompt(leg, Step.PROTOCOL, preface=(prompts.text("dob_noted", leg.language),))
    same = [c for c in leg.candidate_patients if c.get("birth_date") == birth_date.isoformat()]
    if len(same) == 1:
        leg.collected["identity"] = "identified"
        leg.collected["patient"] = same[0]
        _new_step(leg)
        return _prompt(leg, Step.PROTOCOL, preface=(prompts.text("identified", leg.language),))
    if len(same) > 1:  # e.g. twins on one phone: the keypad cannot tell them apart; a nurse will
        leg.collected["identity"] = "unidentified"
        _new_step(leg)
        return _prompt(leg, Step.PROTOCOL, preface=(prompts.text("dob_not_confirmed", leg.language),))
    attempts = int(leg.collected.get("dob_attempts", 0)) + 1
    leg.collected["dob_attempts"] = attempts
    if attempts < MAX_DOB_ATTEMPTS:
        return _prompt(leg, Step.DOB, preface=(prompts.text("dob_mismatch", leg.language),))
    leg.collected["identity"] = "unidentified"
    _new_step(leg)
    return _prompt(leg, Step.PROTOCOL, preface=(prompts.text("dob_not_confirmed", leg.language),))


def _on_protocol(leg: CallLeg, digits: str, lookup: PhoneLookup | None) -> VoiceResponse:
    if not leg.collected.get("menu_audience"):
        if digits not in prompts.AUDIENCE_DIGITS:
            return _reprompt(leg, Step.PROTOCOL)
        leg.collected["menu_audience"] = prompts.AUDIENCE_DIGITS[digits]
        leg.collected["menu_page"] = 0
        _new_step(leg)
        return _prompt(leg, Step.PROTOCOL)
    choices = _menu_choices(leg)
    page = int(leg.collected.get("menu_page", 0))
    if digits == prompts.MORE_DIGIT and prompts.page_count(choices) > 1:
        leg.collected["menu_page"] = (page + 1) % prompts.page_count(choices)
        _new_step(leg)
        return _prompt(leg, Step.PROTOCOL)
    protocol = prompts.protocol_by_digit(choices, page, digits)
    if protocol is None:
        return _reprompt(leg, Step.PROTOCOL)
    leg.collected["protocol"] = protocol.code
    leg.collected["protocol_version_id"] = protocol.version_id
    leg.answers = []
    _new_step(leg)
    return _prompt(leg, Step.QUESTION)


def _on_question(leg: CallLeg, digits: str, lookup: PhoneLookup | None) -> VoiceResponse:
    if digits not in ("1", "2"):
        return _reprompt(leg, Step.QUESTION)
    protocol = _current_protocol(leg)
    assert protocol is not None
    question = protocol.questions[len(leg.answers)]
    leg.answers = [
        *leg.answers,
        {"question": question.id, "text": question.text(leg.language), "answer": digits == "1"},
    ]
    _new_step(leg)
    result = evaluate(protocol, {a["question"]: a["answer"] for a in leg.answers})
    if result is None:
        return _prompt(leg, Step.QUESTION)
    if result.red_flag:
        return _transfer(leg, protocol, result)
    cases.case_enqueue_from_leg(
        leg=leg, acuity=result.acuity, suggested_disposition=result.disposition, protocol=protocol
    )
    return _prompt(leg, Step.CONTACT, preface=(prompts.text("enqueued", leg.language),))


def _on_contact(leg: CallLeg, digits: str, lookup: PhoneLookup | None) -> VoiceResponse:
    if digits in ("1", NURSE_DIGIT):
        return _hold(leg)
    if digits == "2":
        return _callback(leg)
    return _reprompt(leg, Step.CONTACT)


# --- Holding: "if the symptoms are worse, press 9" and re-triage (inside the <Enqueue> wait document) --------


def _hold_loop(leg: CallLeg, *, preface: tuple[str, ...] = ()) -> VoiceResponse:
    """Back to the hold loop: `preface`, then the wait document (the caller never left the queue)."""
    assert leg.case is not None
    leg.step = Step.HOLD
    leg.collected.pop("retriage_answers", None)
    return wait(leg.case, seq=leg.seq, preface=preface)


def _on_hold(leg: CallLeg, digits: str, lookup: PhoneLookup | None) -> VoiceResponse:
    """A key pressed while holding: 9 starts re-triage (`triage.retriage`); anything else keeps holding."""
    assert leg.case is not None
    case = Case.objects.get(
        pk=leg.case.pk, clinic_id=leg.clinic_id
    )  # fresh: acuity and state may have changed since the leg loaded
    leg.case = case
    if digits != WORSE_DIGIT or case.state not in RETRIAGE_STATES:
        return _hold_loop(leg)
    if not retriage_questions(case=case):
        return _hold_loop(leg, preface=(prompts.text("retriage_none", leg.language),))
    _new_step(leg)
    leg.collected["retriage_answers"] = []
    return _prompt(leg, Step.RETRIAGE, preface=(prompts.text("retriage_intro", leg.language),))


def _on_retriage(leg: CallLeg, digits: str, lookup: PhoneLookup | None) -> VoiceResponse:
    """One re-triage answer (1 yes / 2 no). The first "yes" decides: red flag -> emergency advice and
    `<Leave>` (the `<Enqueue action>` then dials the on-call line); otherwise the acuity is raised. All "no"
    -> recorded, back to holding with the place kept."""
    if digits not in ("1", "2"):
        return _reprompt(leg, Step.RETRIAGE)
    assert leg.case is not None
    questions = retriage_questions(case=leg.case)
    answers = list(leg.collected.get("retriage_answers", []))
    question = questions[len(answers)]
    answers.append({"question": question.id, "text": question.text(leg.language), "answer": digits == "1"})
    leg.collected["retriage_answers"] = answers
    _new_step(leg)
    if digits == "1":
        if question.red_flag:
            leg.case = case_retriage_red_flag(
                case_id=leg.case.pk,
                clinic=leg.clinic,
                question=question,
                answers=answers,
                transferred_to=leg.clinic.on_call_number,
            )
            leg.step = Step.TRANSFERRED
            leg.collected.pop("retriage_answers", None)
            response = VoiceResponse()
            _say(response, prompts.text("red_flag", leg.language), leg.language)
            response.leave()
            return response
        leg.case = case_retriage_raise(case_id=leg.case.pk, clinic=leg.clinic, question=question, answers=answers)
        return _hold_loop(leg, preface=(prompts.text("retriage_raised", leg.language),))
    if len(answers) < len(questions):
        return _prompt(leg, Step.RETRIAGE)
    leg.case = case_retriage_unchanged(case_id=leg.case.pk, clinic=leg.clinic, answers=answers)
    return _hold_loop(leg, preface=(prompts.text("retriage_unchanged", leg.language),))


def _dial_on_call(leg: CallLeg, response: VoiceResponse) -> VoiceResponse:
    dial = response.dial(caller_id=leg.clinic.twilio_number, timeout=DIAL_TIMEOUT_SECONDS)
    dial.number(leg.clinic.on_call_number)
    # Reached only after the transfer ends or fails.
    _say(response, prompts.text("transfer_ended", leg.language), leg.language)
    response.hangup()
    return response


def queue_left(leg: CallLeg, queue_result: str) -> VoiceResponse:
    """The `<Enqueue action>`: the caller left the queue with Twilio's `QueueResult`.

    `leave` after a red flag in re-triage -> `<Dial>` the on-call number. A hold that failed on Twilio's
    side (`error`, `system-error`, `queue-full`, `redirected`) while the case still waits -> callback,
    place kept. Anything else (`bridged`: a nurse took the call and it ended; `hangup`) -> `<Hangup>`.
    """
    leg.seq += 1
    case = leg.case
    if leg.step == Step.TRANSFERRED and case is not None and case.state == CaseState.TRANSFERRED:
        return _dial_on_call(leg, VoiceResponse())
    if (
        queue_result in ("error", "system-error", "queue-full", "redirected")
        and case is not None
        and case.state == CaseState.QUEUED
    ):
        return _callback(leg)
    leg.step = Step.DONE
    response = VoiceResponse()
    response.hangup()
    return response


_HANDLERS: dict[str, Callable[[CallLeg, str, PhoneLookup | None], VoiceResponse]] = {
    Step.LANGUAGE: _on_language,
    Step.DOB: _on_dob,
    Step.PROTOCOL: _on_protocol,
    Step.QUESTION: _on_question,
    Step.CONTACT: _on_contact,
    Step.HOLD: _on_hold,
    Step.RETRIAGE: _on_retriage,
}


def handle(*, leg: CallLeg, step: str, digits: str, lookup: PhoneLookup | None = None) -> VoiceResponse:
    """Answer the `<Gather>` of `step` with `digits` ("" for no input); returns the next TwiML.

    `lookup` is the caller-ID search done (outside the transaction) for the language step. Raises KeyError
    for a step that takes no input. "0" routes to a nurse from every menu except the hold/callback choice,
    where it means "hold for a nurse", and while holding (the caller already waits for a nurse).
    """
    leg.seq += 1
    if digits == NURSE_DIGIT and step not in (Step.CONTACT, Step.HOLD, Step.RETRIAGE):
        return _to_nurse(leg, reason=f"caller pressed 0 at the {Step(step).label.lower()} step")
    return _HANDLERS[step](leg, digits, lookup)


def wait(case: Case, *, seq: int | None = None, preface: tuple[str, ...] = ()) -> VoiceResponse:
    """The `<Enqueue>` wait document: the caller's position within their acuity band
    (`triage.selectors.queue_position`), hold music, then `<Redirect>` to itself (a loop).

    With `seq` (the leg's sequence number, leg at step `hold`) and a queued case, the announcement is a
    `<Gather>` offering 9 for worse symptoms (posting to the `hold` step); no key -> music and the loop.
    `preface` sentences are said first (re-triage outcome).
    """
    response = VoiceResponse()
    language = case.language
    for sentence in preface:
        _say(response, sentence, language)
    if case.state == CaseState.QUEUED:
        target: Any = response
        if seq is not None:
            target = response.gather(
                input="dtmf",
                action=step_url(Step.HOLD, seq),
                method="POST",
                num_digits=1,
                timeout=HOLD_GATHER_TIMEOUT_SECONDS,
            )
        _say(target, prompts.text("position", language, position=queue_position(case=case)), language)
        _say(target, prompts.text("wait_advice", language), language)
        if seq is not None:
            _say(target, prompts.text("worse_option", language), language)
    elif case.state in (CaseState.RESERVED, CaseState.IN_PROGRESS):
        _say(response, prompts.text("nurse_reviewing", language), language)
    else:
        _say(response, prompts.text("call_closed", language), language)
        response.hangup()
        return response
    response.play(HOLD_MUSIC_URL)
    response.redirect(wait_url(case), method="POST")
    return response
