"""Video visit pages: the nurse's (console, staff session) and the patient's (no account: the SMS join link).

Nurse: `POST /console/cases/<id>/video/` starts a visit (SMS link) and opens `/console/visits/<room>/`;
`POST /console/visits/<room>/end/` ends it. Patient: `GET /visit/join/<token>/` checks the link and shows a
"Join" button (a GET never spends the link: SMS apps fetch links to draw previews); `POST` redeems it, binds
the browser session to the room and redirects to `/visit/<room>/`, which a reload reopens without the
link. An expired, used or altered link gets its own page (410 / 410 / 400), never the visit.
`GET /visit/<room>/ice/` gives either participant the RTCPeerConnection configuration with short-lived TURN
credentials (`contactcenter.turn`); anyone else gets 403.

Database scope (row-level security): the nurse's pages run in her clinic's (`ClinicScopeMiddleware`). The
patient's pages start unset (anonymous); the join link's views get the visit's clinic scope inside
`visits.visit_check_link` / `visits.visit_redeem` once the token verified, and the room's views (`/visit/<room>/...`,
used by both sides) run whole in `visits.participant_scope`, which is the visit's clinic for a session bound
to the room.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from careline.drain import refuse_if_draining
from contactcenter import turn, visit_chat, visits
from contactcenter.models import VideoVisit, VisitAttachment
from contactcenter.precall import precall_token
from contactcenter.views import _Conflict, _nurse, _source_ip, staff_view

LINK_PAGES = {
    "expired": (410, "This video visit link has expired", "Links work for a short time only."),
    "used": (410, "This video visit link was already used", "Each link opens the visit once."),
    "tampered": (400, "This video visit link is not valid", "The link may have been cut or changed."),
    "not_joined": (403, "Open the link from your text message", "This visit opens only from the link we sent you."),
    "ended": (410, "This video visit has ended", "Your nurse has ended the visit."),
}


def _link_error(request: HttpRequest, reason: str) -> HttpResponse:
    status, title, detail = LINK_PAGES[reason]
    return render(
        request,
        "visit/link_error.html",
        {"title": title, "detail": detail, "reason": reason, "clinic_phone": ""},
        status=status,
    )


def _base_url(request: HttpRequest) -> str:
    return str(settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}")


def _page_config(visit: VideoVisit, role: str) -> dict[str, Any]:
    """What `static/js/visit.js` reads from the page's data attributes."""
    return {
        "room": str(visit.room),
        "role": role,
        "force_relay": bool(settings.VIDEO_FORCE_RELAY),
        "audio_only_below_kbps": int(settings.VIDEO_AUDIO_ONLY_BELOW_KBPS),
    }


@require_POST
@staff_view
def visit_start(request: HttpRequest, case_id: int) -> HttpResponse:
    """Start a video visit for the nurse's accepted case; the patient gets the join link by SMS. A draining
    node (`careline.drain`) answers 503 with Retry-After: new rooms start on another node."""
    refused = refuse_if_draining()
    if refused is not None:
        return refused
    started = visits.visit_start(
        user=_nurse(request), case_id=case_id, base_url=_base_url(request), source_ip=_source_ip(request)
    )
    return redirect("console:visit", room=started.visit.room)


@require_GET
@staff_view
def nurse_visit(request: HttpRequest, room: str) -> HttpResponse:
    """The nurse's side of the visit: local and remote video, live quality indicator, End visit."""
    try:
        visit, role = visits.visit_participant(
            room=room, user=request.user, session_rooms=[], source_ip=_source_ip(request)
        )
    except visits.NotAParticipant as exc:
        raise _Conflict("You cannot join this video visit.") from exc
    staff = request.staff  # type: ignore[attr-defined]
    return render(
        request,
        "console/visit.html",
        {
            "visit": visit,
            "case": visit.case,
            "cfg": _page_config(visit, role),
            # The phone fallback (`static/js/visit.js`): shown when the video has not connected within the budget.
            "connect_budget_seconds": int(settings.VIDEO_CONNECT_BUDGET_SECONDS),
            "nurse_number": staff.desk_number or staff.phone,
        },
    )


@require_POST
@staff_view
def nurse_visit_failed(request: HttpRequest, room: str) -> HttpResponse:
    """The nurse's page reports that the video did not connect (`why`: budget / failed): a timeline note on
    the case (`visits.visit_video_failed`). 204; 409 for anyone but the visit's nurse of an open visit."""
    try:
        visits.visit_video_failed(
            user=_nurse(request), room=room, why=request.POST.get("why", "failed"), source_ip=_source_ip(request)
        )
    except visits.NotAParticipant:
        return JsonResponse({"error": "not the nurse of this open visit"}, status=409)
    return HttpResponse(status=204)


@require_POST
@staff_view
def nurse_visit_end(request: HttpRequest, room: str) -> HttpResponse:
    """End the visit; its quality summary goes on the case timeline."""
    try:
        visit = visits.visit_end(user=_nurse(request), room=room, source_ip=_source_ip(request))
    except visits.NotAParticipant as exc:
        raise _Conflict("You cannot end this video visit.") from exc
    return redirect("console:case", case_id=visit.case_id)


@never_cache
@require_http_methods(["GET", "POST"])
def patient_join(request: HttpRequest, token: str) -> HttpResponse:
    """GET: check the link and offer "Join"; POST: redeem it once and open the visit page."""
    try:
        if request.method == "GET":
            visit = visits.visit_check_link(token=token)
            return render(request, "visit/join.html", {"clinic": visit.clinic, "token": token})
        rooms = visits.visit_redeem(
            token=token,
            session_rooms=list(request.session.get(visits.PATIENT_SESSION_KEY, [])),
            source_ip=_source_ip(request),
        )
    except visits.LinkError as exc:
        return _link_error(request, exc.reason)
    # A fresh session key for the bound session (no fixation of a key planted before the link was opened).
    request.session.cycle_key()
    request.session[visits.PATIENT_SESSION_KEY] = rooms
    return redirect("visit:patient", room=rooms[-1])


def _session_rooms(request: HttpRequest) -> list[str]:
    return list(request.session.get(visits.PATIENT_SESSION_KEY, []))


def _room_scope(request: HttpRequest, room: str) -> AbstractContextManager[None]:
    """`visits.participant_scope` of this request: held over the whole view of a room."""
    return visits.participant_scope(room=str(room), user=request.user, session_rooms=_session_rooms(request))


def _patient_visit(request: HttpRequest, room: str) -> tuple[VideoVisit, str] | HttpResponse:
    room = str(room)
    rooms = _session_rooms(request)
    try:
        return visits.visit_participant(
            room=room,
            user=request.user if request.user.is_authenticated else None,
            session_rooms=rooms,
            source_ip=_source_ip(request),
        )
    except visits.NotAParticipant:
        ended = room in rooms and VideoVisit.objects.filter(room=room, state=VideoVisit.State.ENDED).exists()
        return _link_error(request, "ended" if ended else "not_joined")


@never_cache
@require_GET
def patient_visit(request: HttpRequest, room: str) -> HttpResponse:
    """The patient's visit page: camera/microphone help, self-view check, waiting room, then the call."""
    with _room_scope(request, room):
        found = _patient_visit(request, room)
        if isinstance(found, HttpResponse):
            return found
        visit, role = found
        return render(
            request,
            "visit/patient.html",
            {
                "visit": visit,
                "clinic": visit.clinic,
                "cfg": _page_config(visit, role),
                "max_attachment_mb": int(settings.VIDEO_ATTACHMENT_MAX_BYTES) // (1024 * 1024),
                **_precall_context(visit),
            },
        )


def _precall_context(visit: VideoVisit) -> dict[str, str]:
    """The pre-call test embedded in the patient's page: a token whose subject is the visit's id (no PHI)
    and the visit's TURN servers (JSON), so the test goes through the same relay as the visit."""
    ice = turn.turn_credentials(user_id=f"{visit.pk}-patient").as_json()["iceServers"]
    return {"precall_token": precall_token(f"visit:{visit.pk}"), "precall_ice_servers": json.dumps(ice)}


def _participant_or_none(request: HttpRequest, room: str) -> tuple[VideoVisit, str] | None:
    rooms = _session_rooms(request)
    try:
        return visits.visit_participant(
            room=str(room),
            user=request.user if request.user.is_authenticated else None,
            session_rooms=rooms,
            source_ip=_source_ip(request),
        )
    except visits.NotAParticipant:
        return None


@never_cache
@require_GET
def visit_history(request: HttpRequest, room: str) -> HttpResponse:
    """`{"items": [...]}`: the visit's chat messages and attachment notices, oldest first (participants only).
    Pages re-read it on every (re)connect, so a dropped socket loses no message."""
    with _room_scope(request, room):
        found = _participant_or_none(request, room)
        if found is None:
            return JsonResponse({"error": "not a participant of this visit"}, status=403)
        return JsonResponse({"items": visit_chat.visit_history(visit=found[0])})


@require_POST
def visit_attachment_upload(request: HttpRequest, room: str) -> HttpResponse:
    """Multipart `file`: a photo or PDF from a participant (rules in `contactcenter.visit_chat`).

    201 with the attachment's notice; 400 (no file, refused type), 413 (too large), 403 (not a participant).
    """
    with _room_scope(request, room):
        return _attachment_upload(request, room)


def _attachment_upload(request: HttpRequest, room: str) -> HttpResponse:
    found = _participant_or_none(request, room)
    if found is None:
        return JsonResponse({"error": "not a participant of this visit"}, status=403)
    visit, role = found
    upload = request.FILES.get("file")
    if upload is None:
        return JsonResponse({"error": "Choose a photo or a document."}, status=400)
    if upload.size is not None and upload.size > int(settings.VIDEO_ATTACHMENT_MAX_BYTES):
        return JsonResponse({"error": "This file is too large."}, status=413)
    try:
        attachment = visit_chat.attachment_store(visit=visit, role=role, filename=upload.name or "", data=upload.read())
    except visit_chat.AttachmentRefused as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse(visit_chat.attachment_json(attachment), status=201)


@require_GET
@staff_view
def case_attachment(request: HttpRequest, case_id: int, attachment_id: int) -> HttpResponse:
    """Download an attachment of a case (staff of the case's clinic; audited). Served as a download in a
    sandbox: never rendered as a page of this origin."""
    try:
        attachment = visit_chat.attachment_read(
            user=_nurse(request), case_id=case_id, attachment_id=attachment_id, source_ip=_source_ip(request)
        )
    except VisitAttachment.DoesNotExist as exc:
        raise Http404("No such attachment.") from exc
    response = HttpResponse(attachment.data, content_type=attachment.content_type)
    extension = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}.get(attachment.content_type, "bin")
    response["Content-Disposition"] = f'attachment; filename="case-{case_id}-attachment-{attachment.pk}.{extension}"'
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@require_GET
def ice_servers(request: HttpRequest, room: str) -> HttpResponse:
    """`{"iceServers": [{"urls", "username", "credential"}], "ttl", "iceTransportPolicy"}` for a participant.

    The TURN username's id part is `<visit id>-<role>` (coturn logs it; no PHI). 403 for anyone else.
    """
    with _room_scope(request, room):
        found = _participant_or_none(request, room)
    if found is None:
        return JsonResponse({"error": "not a participant of this visit"}, status=403)
    visit, role = found
    body = turn.turn_credentials(user_id=f"{visit.pk}-{role}").as_json()
    body["iceTransportPolicy"] = "relay" if settings.VIDEO_FORCE_RELAY else "all"
    return JsonResponse(body)
