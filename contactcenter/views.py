"""Nurse console pages (server-rendered; htmx swaps the queue partial; DESIGN §8).

Views are thin: parse -> authorize -> call a service or selector -> render. Domain errors become HTTP
replies in one place, `_domain_errors`: another clinic's or an unknown case -> 404 (existence never
leaks), not staff -> 403, a case held by someone else or in the wrong state -> back to the case page with
a message (409 for htmx requests); an unknown disposition likewise (nothing is changed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from clinics import roles
from clinics.models import StaffMember
from clinics.selectors import NotStaff, staff_for_user
from contactcenter import conversation, escalation, presence, selectors, services, visit_chat, visits
from contactcenter.dashboard import (
    InvalidWhatIf,
    dashboard_for_clinic,
    parse_arrivals,
    staffing_what_if,
    what_if_inputs,
)
from contactcenter.models import AgentPresence
from ehr.types import EhrError
from ivr.services import optout
from ivr.services.outbound_calls import CallNotPossible, active_call
from triage import breakglass
from triage.dispositions import ladder_for
from triage.exceptions import InvalidOverride, InvalidTransition, NotYourCase, OverrideNotAllowed, UnknownDisposition
from triage.models import OPEN_STATES, AcuityOverride, BreakGlassGrant, CallbackAttempt, Case, CaseState
from triage.selectors import queue_list, routing_ledger

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

View = Callable[..., HttpResponse]


class _Conflict(Exception):
    """Carries a user-facing message for a case that cannot take the action now."""


@contextmanager
def _domain_errors() -> Iterator[None]:
    """Map domain errors to HTTP: the one place for the console's error replies."""
    try:
        yield
    except NotStaff as exc:
        raise PermissionDenied("Not a member of any clinic.") from exc
    except Case.DoesNotExist as exc:
        raise Http404("No such case.") from exc
    except NotYourCase as exc:
        raise _Conflict("This case is held by another nurse.") from exc
    except InvalidTransition as exc:
        raise _Conflict("This case cannot take that action in its current state.") from exc
    except UnknownDisposition as exc:
        raise _Conflict("Choose a disposition from the list.") from exc
    except presence.InvalidPresenceState as exc:
        raise _Conflict("Choose a status from the buttons.") from exc
    except AcuityOverride.DoesNotExist as exc:
        raise Http404("No such acuity change.") from exc
    except OverrideNotAllowed as exc:
        raise PermissionDenied(str(exc)) from exc
    except InvalidOverride as exc:
        raise _Conflict(str(exc)) from exc
    except (CallNotPossible, conversation.MessageNotPossible) as exc:
        raise _Conflict(str(exc)) from exc
    except breakglass.BreakGlassRefused as exc:
        raise _Conflict(str(exc)) from exc
    except BreakGlassGrant.DoesNotExist as exc:
        raise Http404("No such break-glass grant.") from exc


def staff_view(view: View) -> View:
    """Login required, staff membership and the `clinics.work_cases` permission required (403 otherwise),
    domain errors mapped once."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with _domain_errors():
            staff = staff_for_user(request.user)
        if not request.user.has_perm(roles.WORK_CASES):
            raise PermissionDenied("Your role does not include the console.")
        request.staff = staff  # type: ignore[attr-defined]
        try:
            with _domain_errors():
                return view(request, *args, **kwargs)
        except _Conflict as exc:
            case_id = kwargs.get("case_id")
            if request.htmx:  # type: ignore[attr-defined]
                return HttpResponse(str(exc), status=409)
            messages.error(request, str(exc))
            return redirect("console:case", case_id=case_id) if case_id else redirect("console:queue")

    return wrapped


def _nurse(request: HttpRequest) -> User:
    """The signed-in staff member (`staff_view` has checked login and membership)."""
    return cast("User", request.user)


def _source_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _queue_rows(request: HttpRequest) -> list[dict[str, Any]]:
    now = timezone.now()
    clinic = request.staff.clinic  # type: ignore[attr-defined]
    rows = []
    for case in queue_list(clinic=clinic):
        waited = int((now - case.arrived_at).total_seconds()) if case.arrived_at else 0
        rows.append(
            {
                "case": case,
                "acuity_label": selectors.acuity_label(case.acuity),
                "wait_minutes": max(waited // 60, 0),
                "over_target": bool(case.arrived_at) and waited > clinic.target_seconds(case.acuity),
                "protocol_title": selectors.case_protocol_title(case),
                "mine": case.reserved_by_id == request.user.pk,
            }
        )
    return rows


def _header_context(request: HttpRequest) -> dict[str, Any]:
    """What the console header shows besides the clinic: the presence buttons and the supervisor flag."""
    staff: StaffMember = request.staff  # type: ignore[attr-defined]
    row = AgentPresence.objects.filter(user=_nurse(request)).first()
    return {
        "staff": staff,
        "is_supervisor": request.user.has_perm(roles.SUPERVISE),
        "presence_state": row.state if row else AgentPresence.State.OFFLINE,
        "presence_choices": [(s.value, s.label) for s in AgentPresence.State if s.value in presence.SETTABLE_STATES],
    }


@require_GET
@staff_view
def queue(request: HttpRequest) -> HttpResponse:
    """The queue board: open cases, most urgent and longest waiting first; "Next case" (key N)."""
    return render(request, "console/queue.html", {"rows": _queue_rows(request), **_header_context(request)})


@require_GET
@staff_view
def queue_partial(request: HttpRequest) -> HttpResponse:
    """The queue table alone; the page re-fetches it on every console event and on every (re)connect."""
    return render(request, "console/_queue_table.html", {"rows": _queue_rows(request), "oob": True})


@require_POST
@staff_view
def next_case(request: HttpRequest) -> HttpResponse:
    """Reserve the head of the queue for the nurse and open it; back to the queue when it is empty."""
    case = services.claim_next(user=_nurse(request))
    if case is None:
        messages.info(request, "The queue is empty.")
        return redirect("console:queue")
    return redirect("console:case", case_id=case.pk)


@require_GET
@staff_view
def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    """The case page: caller's answers, chart, timeline, write-back state, disposition form."""
    summary = selectors.case_summary(user=_nurse(request), case_id=case_id)
    case = summary.case
    selectors.audit_case_read(user=_nurse(request), case=case, source_ip=_source_ip(request))
    chart = None
    chart_error = ""
    chart_restricted = False
    try:
        chart = selectors.access_patient_chart(user=_nurse(request), case=case, source_ip=_source_ip(request))
    except selectors.ChartRestricted:
        chart_restricted = True
    except EhrError:
        # No PHI in logs: the case id is enough to find the event.
        logger.warning("chart unavailable for case %s", case.pk, exc_info=True)
        chart_error = "Chart unavailable: the EHR did not answer. Triage from the caller's answers."
    mine = case.reserved_by_id == request.user.pk
    return render(
        request,
        "console/case.html",
        {
            "summary": summary,
            "case": case,
            "chart": chart,
            "chart_error": chart_error,
            "chart_restricted": chart_restricted,
            "chart_grant": breakglass.active_grant(user=request.user, case=case) if chart is not None else None,
            "can_break_glass": request.user.has_perm(roles.GRANT_BREAK_GLASS),
            "chart_window_hours": settings.CHART_OPEN_WINDOW_HOURS,
            "breakglass_minutes": settings.BREAKGLASS_GRANT_MINUTES,
            "mine": mine,
            "can_accept": mine and case.state == CaseState.RESERVED,
            "can_release": mine and case.state == CaseState.RESERVED,
            "can_disposition": mine and case.state in (CaseState.RESERVED, CaseState.IN_PROGRESS, CaseState.WRAP_UP),
            "dispositions": ladder_for(case.clinic),
            "default_disposition": case.suggested_disposition,
            "writebacks": selectors.writebacks_for_case(case=case),
            "can_callback": mine and case.state in (CaseState.RESERVED, CaseState.IN_PROGRESS),
            "callback_attempts": list(case.callback_attempts.order_by("number")),
            "callback_results": CallbackAttempt.Result.choices,
            "routing_ledger": routing_ledger(case=case),
            "can_change_acuity": case.state in OPEN_STATES,
            "acuity_levels": [(level, selectors.acuity_label(level)) for level in range(1, 6)],
            "overrides": case.acuity_overrides.select_related("requested_by", "cosigned_by"),
            "is_supervisor": request.user.has_perm(roles.COSIGN_ACUITY),
            "can_video": mine and case.state == CaseState.IN_PROGRESS,
            "video_visits": [
                (visit, quality, visit_chat.visit_history(visit=visit))
                for visit, quality in visits.visits_for_case(case=case)
            ],
            **_conversation_context(request, case),
        },
    )


def _conversation_context(request: HttpRequest, case: Case) -> dict[str, Any]:
    """What the case page's "Conversation" card shows: texts, calls, and the nurse's call / reply forms."""
    staff: StaffMember = request.staff  # type: ignore[attr-defined]
    mine = case.reserved_by_id == request.user.pk
    return {
        "conversation": selectors.case_conversation(case=case),
        "calls": list(selectors.case_calls(case=case)[:5]),
        "call_in_progress": active_call(case=case) is not None,
        "can_call": mine and case.state in conversation.CALLABLE_STATES,
        "can_reply": mine and case.state in conversation.REPLYABLE_STATES,
        "opted_out": optout.is_opted_out(clinic=case.clinic, number=case.callback_number),
        "nurse_number": staff.desk_number or staff.phone,
        "max_reply": conversation.MAX_REPLY_CHARACTERS,
    }


@require_GET
@staff_view
def case_conversation_partial(request: HttpRequest, case_id: int) -> HttpResponse:
    """The "Conversation" card alone (texts and calls), re-fetched when a console event names this case.
    Shows message bodies (PHI): audited like the case page (`case.conversation.read`)."""
    case = selectors.case_summary(user=_nurse(request), case_id=case_id).case
    selectors.audit_case_read(
        user=_nurse(request), case=case, source_ip=_source_ip(request), action="case.conversation.read"
    )
    return render(request, "console/_conversation.html", {"case": case, **_conversation_context(request, case)})


# Why a call is placed: the console's button, or the video visit's fallback (issue 5).
CALL_REASONS = frozenset({"console", "video_failed"})


@require_POST
@staff_view
def case_call_patient(request: HttpRequest, case_id: int) -> HttpResponse:
    """ "Call patient": ring the nurse's phone, then bridge the patient (`contactcenter.conversation`)."""
    selectors.case_summary(user=_nurse(request), case_id=case_id)  # another clinic's case: 404, audited
    reason = request.POST.get("reason", "console")
    conversation.call_patient(
        user=_nurse(request),
        case_id=case_id,
        nurse_number=request.POST.get("nurse_number", ""),
        reason=reason if reason in CALL_REASONS else "console",
        source_ip=_source_ip(request),
    )
    messages.info(request, "Calling: your phone rings first, then the patient is dialled.")
    return redirect("console:case", case_id=case_id)


@require_POST
@staff_view
def case_sms_reply(request: HttpRequest, case_id: int) -> HttpResponse:
    """Text the patient from the case page (outbox; refused after STOP)."""
    selectors.case_summary(user=_nurse(request), case_id=case_id)  # another clinic's case: 404, audited
    conversation.sms_reply(user=_nurse(request), case_id=case_id, body=request.POST.get("body", ""))
    messages.success(request, "Text queued for the patient.")
    return redirect("console:case", case_id=case_id)


@require_GET
@staff_view
def case_status_partial(request: HttpRequest, case_id: int) -> HttpResponse:
    """The case's state and write-back state alone, re-fetched when a console event names this case."""
    summary = selectors.case_summary(user=_nurse(request), case_id=case_id)
    return render(
        request,
        "console/_case_status.html",
        {"case": summary.case, "writebacks": selectors.writebacks_for_case(case=summary.case)},
    )


@require_POST
@staff_view
def case_accept(request: HttpRequest, case_id: int) -> HttpResponse:
    """Accept the nurse's reservation (key A): the case is now in progress with her."""
    services.accept(user=_nurse(request), case_id=case_id)
    return redirect("console:case", case_id=case_id)


@require_POST
@staff_view
def case_release(request: HttpRequest, case_id: int) -> HttpResponse:
    """Hand a reserved case back to the queue (the caller keeps their place)."""
    services.release(user=_nurse(request), case_id=case_id)
    messages.info(request, "Case returned to the queue.")
    return redirect("console:queue")


@require_POST
@staff_view
def case_disposition(request: HttpRequest, case_id: int) -> HttpResponse:
    """Record the disposition and note; closes the case, queues the EHR write-back, back to the queue."""
    code = request.POST.get("disposition", "")
    note = request.POST.get("note", "")
    case = services.disposition_record(
        user=_nurse(request), case_id=case_id, disposition_code=code, note=note, source_ip=_source_ip(request)
    )
    messages.success(request, f"Case {case.pk} closed: {selectors.disposition_display(case.disposition, case.clinic)}.")
    return redirect("console:queue")


@require_POST
@staff_view
def presence_set(request: HttpRequest) -> HttpResponse:
    """A status button in the console header (available, busy, wrap-up, away); back to the page (204 for htmx)."""
    presence.presence_set(user=_nurse(request), state=request.POST.get("state", ""))
    if request.htmx:  # type: ignore[attr-defined]
        return HttpResponse(status=204)
    return redirect(request.POST.get("next") or "console:queue")


@require_POST
@staff_view
def callback_attempt(request: HttpRequest, case_id: int) -> HttpResponse:
    """Record one callback attempt's result on a case the nurse holds (answered, no answer, voicemail,
    wrong number). Unanswered with attempts left: the case goes back to the queue (place kept)."""
    result = request.POST.get("result", "")
    if result not in CallbackAttempt.Result.values:
        raise _Conflict("Choose the result of the call.")
    outcome = escalation.callback_attempt(user=_nurse(request), case_id=case_id, result=result)
    label = CallbackAttempt.Result(result).label
    if outcome.requeued:
        messages.info(request, f"Attempt {outcome.attempt.number} ({label}) recorded; the case is back in the queue.")
        return redirect("console:queue")
    if outcome.exhausted:
        messages.warning(request, "Patient not reached: the on-call clinician was paged. Record a disposition.")
    return redirect("console:case", case_id=case_id)


def _supervisor_dashboard(request: HttpRequest) -> StaffMember:
    staff: StaffMember = request.staff  # type: ignore[attr-defined]
    if not request.user.has_perm(roles.SUPERVISE):
        raise PermissionDenied("The dashboard is for supervisors and clinic admins.")
    return staff


@require_GET
@staff_view
def dashboard(request: HttpRequest) -> HttpResponse:
    """Supervisor dashboard (supervisors and clinic admins; nurses 403): queue health live."""
    staff = _supervisor_dashboard(request)
    context = {"board": dashboard_for_clinic(clinic=staff.clinic), **_header_context(request)}
    return render(request, "console/dashboard.html", context)


@require_GET
async def dashboard_staffing(request: HttpRequest) -> HttpResponse:
    """The staffing what-if panel (supervisors and clinic admins): nurses needed to meet every KPI at the
    current arrival rate or `?arrivals_per_hour=`. Async on purpose: the simulation takes seconds of CPU and
    runs on a worker thread (`thread_sensitive=False`), so it never holds daphne's one thread for sync views
    (pages, Twilio webhooks) while it works. 400 with the reason for a bad rate."""
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        staff = await sync_to_async(staff_for_user)(user)
    except NotStaff as exc:
        raise PermissionDenied("Not a member of any clinic.") from exc
    if not await sync_to_async(user.has_perm)(roles.SUPERVISE):
        raise PermissionDenied("The dashboard is for supervisors and clinic admins.")
    try:
        typed = parse_arrivals(request.GET.get("arrivals_per_hour", ""))
    except InvalidWhatIf as exc:
        return render(request, "console/_dashboard_staffing.html", {"error": str(exc)}, status=400)
    rate, source, mix, minutes = await sync_to_async(what_if_inputs)(clinic=staff.clinic, arrivals_per_hour=typed)
    what_if = await sync_to_async(staffing_what_if, thread_sensitive=False)(
        clinic=staff.clinic, arrivals_per_hour=rate, source=source, mix=mix, mean_service_minutes=minutes
    )
    return render(request, "console/_dashboard_staffing.html", {"what_if": what_if})


@require_GET
@staff_view
def dashboard_panels(request: HttpRequest) -> HttpResponse:
    """The dashboard panels alone; re-fetched on every console event and on every (re)connect."""
    staff = _supervisor_dashboard(request)
    return render(request, "console/_dashboard_panels.html", {"board": dashboard_for_clinic(clinic=staff.clinic)})


def _acuity(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 5:
        raise _Conflict("Choose an acuity level from 1 to 5.")
    return int(raw)


@require_POST
@staff_view
def case_acuity(request: HttpRequest, case_id: int) -> HttpResponse:
    """Change the case's acuity with a reason: a raise applies now; a lowering waits for a supervisor."""
    selectors.case_summary(user=_nurse(request), case_id=case_id)  # another clinic's case: 404
    override = services.acuity_change(
        user=_nurse(request),
        case_id=case_id,
        to_acuity=_acuity(request.POST.get("acuity", "")),
        reason=request.POST.get("reason", ""),
    )
    if override.status == AcuityOverride.Status.PENDING:
        messages.info(request, f"Lower acuity {override.to_acuity} requested: waiting for a supervisor's co-sign.")
    else:
        messages.success(request, f"Acuity raised to {override.to_acuity}.")
    return redirect("console:case", case_id=case_id)


@require_POST
@staff_view
def acuity_cosign(request: HttpRequest, case_id: int, override_id: int) -> HttpResponse:
    """A supervisor co-signs (or declines, `decision=decline`) a pending lower acuity."""
    approve = request.POST.get("decision", "approve") != "decline"
    services.acuity_cosign(user=_nurse(request), override_id=override_id, approve=approve)
    messages.success(request, "Lower acuity co-signed." if approve else "Lower acuity declined.")
    return redirect("console:case", case_id=case_id)


@require_GET
@staff_view
def precall_page(request: HttpRequest) -> HttpResponse:
    """`/console/precall/`: a nurse tests her own camera, microphone and connection against the server's echo
    peer (`static/js/precall.js`, the same test the patient's visit page embeds)."""
    context = {"max_seconds": settings.PRECALL_MAX_SECONDS, **_header_context(request)}
    return render(request, "console/precall.html", context)


@require_POST
@staff_view
def case_break_glass(request: HttpRequest, case_id: int) -> HttpResponse:
    """A supervisor opens an older case's chart for BREAKGLASS_GRANT_MINUTES with a written reason
    (`triage.breakglass`); others get the refusal as a message on the case page."""
    breakglass.break_glass_grant(
        user=_nurse(request), case_id=case_id, reason=request.POST.get("reason", ""), source_ip=_source_ip(request)
    )
    messages.warning(request, f"Break-glass access for {settings.BREAKGLASS_GRANT_MINUTES} minutes: reviewed later.")
    return redirect("console:case", case_id=case_id)


def _reviewer(request: HttpRequest) -> None:
    if not request.user.has_perm(roles.REVIEW_BREAK_GLASS):
        raise PermissionDenied("Break-glass review is for clinic admins.")


@require_GET
@staff_view
def break_glass_review_page(request: HttpRequest) -> HttpResponse:
    """Every break-glass grant of the clinic, unreviewed first (`clinics.review_break_glass`; others 403)."""
    _reviewer(request)
    grants = breakglass.grants_for_review(user=_nurse(request))
    return render(request, "console/admin_break_glass.html", {"grants": grants, **_header_context(request)})


@require_POST
@staff_view
def break_glass_reviewed(request: HttpRequest, grant_id: int) -> HttpResponse:
    """Mark one grant reviewed, with an optional note (another clinic's or unknown grant: 404)."""
    _reviewer(request)
    breakglass.break_glass_review(user=_nurse(request), grant_id=grant_id, note=request.POST.get("note", ""))
    return redirect("console:break-glass-admin")
