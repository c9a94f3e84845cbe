"""Video visits (DESIGN §6.5): invite the patient by SMS, redeem the join link, admit the two participants,
store quality samples, end the visit with a quality summary on the case timeline.

Join link. `visit_start` makes a token `django.core.signing.dumps({"r": room, "c": case_id}, salt=...)`
(HMAC-SHA256 over the payload with `SECRET_KEY`, timestamped), sends `<base>/visit/join/<token>/` by SMS
through the IVR outbox (`ivr.services.messages.outbound_message_record`, so it lands on the case timeline)
and stores only `sha256(token)`. `visit_redeem` refuses a token that was altered (`LinkTampered`), is older
than `VIDEO_LINK_TTL_SECONDS` (`LinkExpired`), or was already redeemed / belongs to an ended visit
(`LinkUsed`); the payload must name the visit's own room and case (bound to the case). The SMS body in the
outbox necessarily holds the link until it is sent (encrypted at rest, `clinics.crypto`).

Participants. A room has exactly two: the nurse who started the visit and still holds the case
(`triage.selectors.access_case` + `Case.reserved_by`), and the browser session that redeemed the link (the
session keeps the room in `PATIENT_SESSION_KEY`). `visit_participant` decides; every refusal is audited
(`access.denied`, object `video_visit`).

Row-level security (`clinics.db_scope`, README "Security"). The nurse's requests run in her clinic's scope
(`ClinicScopeMiddleware`); the patient has no account, so her requests start unset and see no visit. Her
side therefore runs in the visit's clinic scope once the join token's signature (`visit_check_link`,
`visit_redeem`) or the session's binding to the room (`participant_scope`) has been checked; the clinic is
found by `_system_lookup`, the only system-scoped query here, which reads the ids of one visit row.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import statistics
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.utils import timezone

from careline import metrics
from clinics import db_scope
from clinics.models import Clinic
from clinics.selectors import NotStaff, staff_for_user
from clinics.services import audit_record
from contactcenter.models import CallSession, QualitySample, VideoVisit
from ivr.services.messages import outbound_message_record
from triage.exceptions import InvalidTransition, NotYourCase
from triage.models import Case, CaseEvent, CaseState
from triage.selectors import access_case
from triage.services import case_add_event

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

logger = logging.getLogger(__name__)

TOKEN_SALT = "careline.video.join"
PATIENT_SESSION_KEY = "video_rooms"


def room_group(room: uuid.UUID | str) -> str:
    """Channel-layer group of a visit's signaling room."""
    return f"visit.{room}"


def role_group(room: uuid.UUID | str, role: str) -> str:
    """Group holding the one live socket of `role` ("nurse"/"patient") in a room (a newer one supersedes it)."""
    return f"visit.{room}.{role}"


class LinkError(Exception):
    """A join link that must not open the visit; `reason` names the page shown."""

    reason = "invalid"


class LinkTampered(LinkError):
    """The token's signature does not verify, or it names another visit or case."""

    reason = "tampered"


class LinkExpired(LinkError):
    """Older than `VIDEO_LINK_TTL_SECONDS`."""

    reason = "expired"


class LinkUsed(LinkError):
    """Already redeemed (single use), or the visit has ended."""

    reason = "used"


class NotAParticipant(Exception):
    """Neither the visit's nurse nor the patient session bound to it."""


def token_hash(token: str) -> str:
    """SHA-256 hex of a join token: the only form stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def _ttl() -> int:
    return int(settings.VIDEO_LINK_TTL_SECONDS)


def _budget() -> int:
    return int(settings.VIDEO_CONNECT_BUDGET_SECONDS)


@dataclass(frozen=True)
class StartedVisit:
    visit: VideoVisit
    link: str


def visit_start(*, user: User, case_id: int, base_url: str, source_ip: str | None = None) -> StartedVisit:
    """The nurse invites the case's patient to a video visit: SMS with the join link, timeline entry, audit.

    `base_url`: scheme + host the patient's browser reaches (no trailing slash). The case must be the
    user's and `in_progress` (accepted by her). Earlier visits of the case that have not ended are ended
    (their links stop working). Raises NotStaff, Case.DoesNotExist (another clinic's or unknown: 404),
    NotYourCase, InvalidTransition.
    """
    case = access_case(user=user, case_id=case_id)  # outside the transaction: a refusal's audit row stays
    with transaction.atomic():
        return _visit_start(user=user, case_id=case.pk, base_url=base_url, source_ip=source_ip)


def _visit_start(*, user: User, case_id: int, base_url: str, source_ip: str | None) -> StartedVisit:
    case = Case.objects.select_for_update(of=("self",)).select_related("clinic").get(pk=case_id)
    if case.reserved_by_id != user.pk:
        raise NotYourCase(case.pk)
    if case.state != CaseState.IN_PROGRESS:
        raise InvalidTransition(f"case {case.pk} is {case.state}, not in_progress")
    now = timezone.now()
    for old in VideoVisit.objects.select_for_update().filter(case=case).exclude(state=VideoVisit.State.ENDED):
        _end(old, now=now, actor=user, reason="replaced by a new video visit")
    room = uuid.uuid4()
    token = signing.dumps({"r": str(room), "c": case.pk}, salt=TOKEN_SALT)
    visit = VideoVisit.objects.create(
        room=room,
        clinic=case.clinic,
        case=case,
        nurse=user,
        token_hash=token_hash(token),
        expires_at=now + timedelta(seconds=_ttl()),
    )
    CallSession.objects.create(clinic=case.clinic, case=case, kind=CallSession.Kind.VIDEO, visit=visit)
    link = f"{base_url.rstrip('/')}/visit/join/{token}/"
    minutes = max(1, _ttl() // 60)
    body = (
        f"{case.clinic.name}: your nurse is ready for a video visit. "
        f"Open this link on your phone within {minutes} min (one use only): {link}"
    )
    outbound_message_record(
        clinic=case.clinic, case=case, to=case.callback_number, body=body, purpose="Video visit link"
    )
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.VIDEO,
        summary=f"Video visit started; join link sent by SMS (valid {minutes} min)",
        detail={"visit_id": visit.pk, "expires_at": visit.expires_at.isoformat()},
        actor=user,
    )
    audit_record(
        clinic=case.clinic,
        actor=user,
        action="video.start",
        object_type="video_visit",
        object_id=visit.pk,
        patient_ref=case.patient_fhir_id,
        source_ip=source_ip,
    )
    return StartedVisit(visit=visit, link=link)


def _check_token(token: str) -> dict[str, Any]:
    try:
        payload = signing.loads(token, salt=TOKEN_SALT, max_age=_ttl())
    except signing.SignatureExpired as exc:
        raise LinkExpired from exc
    except signing.BadSignature as exc:
        raise LinkTampered from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("r"), str) or not isinstance(payload.get("c"), int):
        raise LinkTampered
    return payload


def _system_lookup(*, room: uuid.UUID | None = None, hash_: str | None = None) -> tuple[int, int] | None:
    """(visit id, clinic id) of the visit in `room`, or with token hash `hash_`; None for no such visit.

    The one system-scoped query of the patient side (module docstring): the patient's request has no clinic
    scope, and only the visit row knows its clinic. It reads these two ids of one row, nothing else; callers
    use them to enter `db_scope.clinic_scope(clinic id)`, where every other query runs, after checking the
    token's signature or the session's binding to the room (or, for a refused anonymous join, to audit the
    refusal in the visit's clinic: `_deny`).
    """
    visits = VideoVisit.objects.filter(room=room) if room is not None else VideoVisit.objects.filter(token_hash=hash_)
    with db_scope.system_scope():
        return visits.values_list("pk", "clinic_id").first()


def _token_clinic(token: str) -> tuple[dict[str, Any], int]:
    """(payload, clinic id) of a join token whose signature and age verify. Raises LinkTampered, LinkExpired."""
    payload = _check_token(token)
    found = _system_lookup(hash_=token_hash(token))  # only for a token this service signed
    if found is None:
        raise LinkTampered
    return payload, found[1]


def _visit_for_token(token: str, payload: dict[str, Any], *, lock: bool) -> VideoVisit:
    """The visit of a verified token (`_token_clinic`), read in its clinic's scope."""
    visits = VideoVisit.objects.select_related("case", "clinic")
    if lock:
        visits = visits.select_for_update(of=("self",))
    visit = visits.filter(token_hash=token_hash(token)).first()
    if visit is None or str(visit.room) != payload["r"] or visit.case_id != payload["c"]:
        raise LinkTampered
    if visit.redeemed_at is not None or visit.state == VideoVisit.State.ENDED:
        raise LinkUsed
    if timezone.now() >= visit.expires_at:
        raise LinkExpired
    return visit


def visit_check_link(*, token: str) -> VideoVisit:
    """The visit a join link opens, without redeeming it (the landing page before "Join").

    Raises LinkTampered, LinkExpired, LinkUsed. Reads nothing but the visit row (and its case and clinic), in
    the visit's clinic scope once the token verified.
    """
    payload, clinic_id = _token_clinic(token)
    with db_scope.clinic_scope(clinic_id):
        return _visit_for_token(token, payload, lock=False)


def visit_redeem(*, token: str, session_rooms: list[str], source_ip: str | None = None) -> list[str]:
    """Redeem a join link once: the visit becomes `active` and its room is added to the patient's session.

    `session_rooms`: the rooms the browser session already holds; returns the new list to store under
    `PATIENT_SESSION_KEY`. Adds a timeline entry and an audit row (actor: the patient, anonymous), in the
    visit's clinic scope once the token verified. Raises LinkTampered, LinkExpired, LinkUsed (nothing is
    written then).
    """
    payload, clinic_id = _token_clinic(token)
    with db_scope.clinic_scope(clinic_id), transaction.atomic():
        return _redeem(token, payload, session_rooms=session_rooms, source_ip=source_ip)


def _redeem(token: str, payload: dict[str, Any], *, session_rooms: list[str], source_ip: str | None) -> list[str]:
    visit = _visit_for_token(token, payload, lock=True)
    now = timezone.now()
    visit.redeemed_at = now
    visit.state = VideoVisit.State.ACTIVE
    visit.save(update_fields=["redeemed_at", "state"])
    case_add_event(case=visit.case, kind=CaseEvent.Kind.VIDEO, summary="Patient opened the video visit link")
    audit_record(
        clinic=visit.clinic,
        actor=None,
        action="video.link_redeemed",
        object_type="video_visit",
        object_id=visit.pk,
        patient_ref=visit.case.patient_fhir_id,
        source_ip=source_ip,
        role="patient",
    )
    rooms = [room for room in session_rooms if room != str(visit.room)]
    return [*rooms[-9:], str(visit.room)]


def _deny(
    visit: VideoVisit | None,
    *,
    room_id: uuid.UUID | None,
    user: User | AnonymousUser | None,
    source_ip: str | None,
) -> None:
    """Audit a refused attempt to join a room (in the user's clinic if staff, else in the visit's clinic).

    A caller with no clinic (anonymous, or a session not bound to the room) runs unset on PostgreSQL and so
    saw no visit: the room's visit and clinic come from `_system_lookup`, and the audit row is written in
    that clinic's scope. The caller is answered the same either way.
    """
    clinic = None
    if user is not None and user.is_authenticated:
        try:
            clinic = staff_for_user(user).clinic
        except NotStaff:
            clinic = None
    if clinic is None and visit is not None:
        clinic = visit.clinic
    if clinic is None and visit is None and room_id is not None:
        found = _system_lookup(room=room_id)
        if found is not None:
            with db_scope.clinic_scope(found[1]):
                audit_record(
                    clinic=Clinic.objects.get(pk=found[1]),
                    actor=user,
                    action="access.denied",
                    object_type="video_visit",
                    object_id=found[0],
                    source_ip=source_ip,
                )
            return
    if clinic is None:
        logger.info("refused video room join (unknown room)")
        return
    audit_record(
        clinic=clinic,
        actor=user,
        action="access.denied",
        object_type="video_visit",
        # An id that names no visit of this clinic is not recorded: it is the caller's input, not a record.
        object_id=visit.pk if visit is not None and visit.clinic_id == clinic.pk else "",
        source_ip=source_ip,
    )


def _staff_clinic_id(user: User | AnonymousUser | None) -> int | None:
    if user is None or not user.is_authenticated:
        return None
    try:
        return staff_for_user(user).clinic_id
    except NotStaff:
        return None


@contextlib.contextmanager
def participant_scope(*, room: str, user: User | AnonymousUser | None, session_rooms: list[str]) -> Iterator[None]:
    """The database scope (`clinics.db_scope`) of a request or socket for room `room`, to hold over
    `visit_participant` and the work that follows it (pages, history, uploads, signaling):

    - a staff member: her clinic (on HTTP `ClinicScopeMiddleware` has set it already). Another clinic's
      visit is invisible there, so she is refused as for an unknown room;
    - otherwise, a browser session bound to the room (it redeemed the link: the room is in
      `session_rooms`): the visit's clinic, found by `_system_lookup`;
    - anyone else: unset (nothing is visible; `visit_participant` refuses, `_deny` audits).

    A no-op on SQLite (no row-level security there).
    """
    if connection.vendor != "postgresql":
        yield
        return
    value = db_scope.scope_for_user(user)
    if value == db_scope.UNSET and str(room) in session_rooms:
        try:
            found = _system_lookup(room=uuid.UUID(str(room)))
        except ValueError:
            found = None
        if found is not None:
            value = str(found[1])
    with db_scope.scope(value):
        yield


def visit_participant(
    *,
    room: str,
    user: User | AnonymousUser | None,
    session_rooms: list[str],
    source_ip: str | None = None,
) -> tuple[VideoVisit, str]:
    """(visit, role) for someone asking to join room `room`: role "nurse" or "patient".

    Nurse: a signed-in staff member of the visit's clinic who started the visit and still holds the case
    (`access_case`); another clinic's room is unknown to a staff member. Patient: a browser session holding
    the room (it redeemed the link). An ended visit admits nobody. Raises NotAParticipant (audited as
    `access.denied`, object `video_visit`, in its own transaction when the caller has none: call it
    outside a transaction that the refusal would roll back). Call it inside `participant_scope`.
    """
    try:
        room_id = uuid.UUID(str(room))
    except ValueError:
        raise NotAParticipant from None
    visits = VideoVisit.objects.select_related("case", "clinic").filter(room=room_id)
    staff_clinic_id = _staff_clinic_id(user)
    if staff_clinic_id is not None:
        # Another clinic's room is unknown to a staff member, as row-level security has it on PostgreSQL
        # (`participant_scope`): refused and audited like a room that does not exist, on every database.
        visits = visits.filter(clinic_id=staff_clinic_id)
    visit = visits.first()
    if visit is not None and visit.state != VideoVisit.State.ENDED:
        if user is not None and user.is_authenticated:
            try:
                case = access_case(user=user, case_id=visit.case_id)
            except Case.DoesNotExist:  # not expected (the visit is of her clinic); access_case audited it
                raise NotAParticipant from None
            except NotStaff:
                case = None
            if case is not None and visit.nurse_id == user.pk and case.reserved_by_id == user.pk:
                return visit, QualitySample.Role.NURSE
        if str(room_id) in session_rooms:
            return visit, QualitySample.Role.PATIENT
    _deny(visit, room_id=room_id, user=user, source_ip=source_ip)
    raise NotAParticipant


def _figure(figures: dict[str, Any], key: str, *, upper: float) -> float | None:
    value = figures.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or value < 0:  # NaN or negative: not a measurement
        return None
    return float(min(value, upper))


CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
# `RTCIceConnectionState` values (W3C WebRTC 1.0 §4.3.3); "connected"/"completed" mean media can flow.
ICE_STATES = frozenset({"new", "checking", "connected", "completed", "failed", "disconnected", "closed"})
ICE_CONNECTED = frozenset({"connected", "completed"})


class BadIceReport(ValueError):
    """An `ice` report whose `state` or `candidate_type` is not one of the allowed values (message says which)."""


def _session_facts(visit_id: int) -> tuple[int, int, str] | None:
    """(call session id, clinic id, clinic slug) of a visit's call session; None when it has none."""
    return CallSession.objects.filter(visit_id=visit_id).values_list("pk", "clinic_id", "clinic__slug").first()


def video_setup_decide(*, visit_id: int, ok: bool) -> bool:
    """Decide the visit's call setup once: success (`ok`) or failure. Returns True when this call decided it.

    The rule (issue 7, "call setup success >= 99.5 %"), per visit, not per leg or page: the first fact wins
    and later ones are ignored, so reconnects, reloads and both participants reporting the same connection
    count one setup. Success = media can flow (a leg reported ICE `connected`/`completed`, or a quality
    report shows decoded frames); failure = the nurse's page reported that the video did not connect within
    `VIDEO_CONNECT_BUDGET_SECONDS` or failed without recovering (`visit_video_failed`), or the visit ended
    undecided at least that budget after the patient opened the link (`_end`: the nurse's page closed
    before reporting). A visit the patient never opened made no attempt and counts nothing. A conditional UPDATE
    (`setup_result = ''`) makes it exactly once across processes; the metric and SLI event
    (`careline.metrics.record_call_setup(kind="video")`) are recorded after commit. Runs in the caller's
    scope (the visit's clinic).
    """
    facts = _session_facts(visit_id)
    if facts is None:
        return False
    session_id, clinic_id, slug = facts
    result = CallSession.SetupResult.SUCCESS if ok else CallSession.SetupResult.FAILURE
    decided = CallSession.objects.filter(pk=session_id, setup_result=CallSession.SetupResult.UNDECIDED).update(
        setup_result=result, setup_decided_at=timezone.now()
    )
    if decided:
        transaction.on_commit(
            lambda: metrics.record_call_setup(clinic_id=clinic_id, clinic_slug=slug, kind="video", ok=ok)
        )
    return bool(decided)


def _media_path_field(role: str) -> str:
    """The `CallSession` field holding `role`'s media path."""
    return "nurse_media_path" if role == QualitySample.Role.NURSE else "patient_media_path"


def video_media_path(*, visit_id: int, role: str, candidate_type: str) -> bool:
    """Record the media path of a connected leg (`role`) once per visit and role: `candidate_type` is the
    local candidate type of the selected candidate pair (`relay` = through TURN; `host`/`srflx`/`prflx` =
    direct). Returns True when this call recorded it (then `careline.metrics.record_media_path`, after
    commit). Unknown types are ignored (False)."""
    if candidate_type not in CANDIDATE_TYPES:
        return False
    facts = _session_facts(visit_id)
    if facts is None:
        return False
    session_id, _clinic_id, slug = facts
    field = _media_path_field(role)
    recorded = CallSession.objects.filter(pk=session_id, **{field: ""}).update(**{field: candidate_type})
    if recorded:
        transaction.on_commit(lambda: metrics.record_media_path(clinic_slug=slug, relayed=candidate_type == "relay"))
    return bool(recorded)


def video_ice_report(*, visit_id: int, role: str, state: Any, candidate_type: Any = "") -> None:
    """A participant's page reports its peer connection's ICE state (`iceconnectionstatechange`).

    `state`: an `RTCIceConnectionState`; `candidate_type`: with `connected`/`completed`, the local candidate
    type of the selected pair ("" or None when the page could not tell). Connected -> the visit's setup
    succeeds (`video_setup_decide`) and the leg's media path is recorded (`video_media_path`); `failed` ->
    the visit's first ICE failure is counted (`careline.metrics.record_ice_failure`, once per visit: the
    page restarts ICE, and a failure that does not recover becomes a setup failure through the nurse's
    budget, `visit_video_failed`). Other states change nothing. Raises BadIceReport for a value outside
    `ICE_STATES` / `CANDIDATE_TYPES`.
    """
    if not isinstance(state, str) or state not in ICE_STATES:
        raise BadIceReport(f"state must be one of {', '.join(sorted(ICE_STATES))}")
    if candidate_type is None:
        candidate_type = ""
    if not isinstance(candidate_type, str) or (candidate_type and candidate_type not in CANDIDATE_TYPES):
        raise BadIceReport(f"candidate_type must be empty or one of {', '.join(sorted(CANDIDATE_TYPES))}")
    if state in ICE_CONNECTED:
        video_setup_decide(visit_id=visit_id, ok=True)
        if candidate_type:
            video_media_path(visit_id=visit_id, role=role, candidate_type=candidate_type)
    elif state == "failed":
        facts = _session_facts(visit_id)
        if facts is None:
            return
        session_id, _clinic_id, slug = facts
        if CallSession.objects.filter(pk=session_id, ice_failed_at__isnull=True).update(ice_failed_at=timezone.now()):
            transaction.on_commit(lambda: metrics.record_ice_failure(clinic_slug=slug))


def quality_record(*, visit_id: int, role: str, figures: dict[str, Any]) -> QualitySample:
    """Store one quality report of `role`'s page (`QualitySample`, units there); the first report that
    shows decoded frames marks the call session started (and, media flowing, decides the visit's call setup
    as a success and records the leg's media path, if no `ice` report did first). Every report feeds the
    client RTT / jitter / loss histograms (`careline.metrics.record_client_stats(kind="video")`, seconds and
    a 0..1 fraction).

    `figures`: `{"rtt_ms", "jitter_ms", "packet_loss_pct", "fps", "frames_decoded", "outgoing_kbps",
    "candidate_type", "audio_only"}`; unknown keys are ignored, non-numeric or negative figures stored as
    null, values clamped to sane bounds. Raises CallSession.DoesNotExist for a visit without a session.
    """
    session = CallSession.objects.get(visit_id=visit_id)
    candidate = figures.get("candidate_type")
    frames = _figure(figures, "frames_decoded", upper=2**62)
    sample = QualitySample.objects.create(
        session=session,
        clinic_id=session.clinic_id,
        role=role,
        rtt_ms=_figure(figures, "rtt_ms", upper=60_000),
        jitter_ms=_figure(figures, "jitter_ms", upper=60_000),
        packet_loss_pct=_figure(figures, "packet_loss_pct", upper=100),
        fps=_figure(figures, "fps", upper=240),
        frames_decoded=int(frames) if frames is not None else None,
        outgoing_kbps=_figure(figures, "outgoing_kbps", upper=1_000_000),
        candidate_type=candidate if candidate in CANDIDATE_TYPES else "",
        audio_only=figures.get("audio_only") is True,
    )
    if session.started_at is None and frames:
        CallSession.objects.filter(pk=session.pk, started_at__isnull=True).update(started_at=sample.at)
    # Decided once per visit and leg: the session read above says whether that is still to do, so the reports
    # that follow (every 5 s from each page) cost no more queries here.
    if frames and session.setup_result == CallSession.SetupResult.UNDECIDED:
        video_setup_decide(visit_id=visit_id, ok=True)
    if frames and sample.candidate_type and not getattr(session, _media_path_field(role)):
        video_media_path(visit_id=visit_id, role=role, candidate_type=sample.candidate_type)
    rtt, jitter, loss = sample.rtt_ms, sample.jitter_ms, sample.packet_loss_pct
    transaction.on_commit(
        lambda: metrics.record_client_stats(
            kind="video",
            rtt_seconds=None if rtt is None else rtt / 1000,
            jitter_seconds=None if jitter is None else jitter / 1000,
            loss_ratio=None if loss is None else loss / 100,
        )
    )
    return sample


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def quality_summary(*, session: CallSession) -> dict[str, dict[str, Any]]:
    """Per role: `{"samples", "rtt_ms" (median), "jitter_ms" (median), "packet_loss_pct" (max), "fps"
    (median), "candidate_types" (sorted), "audio_only" (any sample)}`; roles without samples are absent."""
    summary: dict[str, dict[str, Any]] = {}
    for role in (QualitySample.Role.NURSE, QualitySample.Role.PATIENT):
        samples = list(session.samples.filter(role=role).order_by("at"))
        if not samples:
            continue
        losses = [s.packet_loss_pct for s in samples if s.packet_loss_pct is not None]
        summary[str(role)] = {
            "samples": len(samples),
            "rtt_ms": _median([s.rtt_ms for s in samples]),
            "jitter_ms": _median([s.jitter_ms for s in samples]),
            "packet_loss_pct": round(max(losses), 1) if losses else None,
            "fps": _median([s.fps for s in samples]),
            "candidate_types": sorted({s.candidate_type for s in samples if s.candidate_type}),
            "audio_only": any(s.audio_only for s in samples),
        }
    return summary


def quality_line(summary: dict[str, dict[str, Any]]) -> str:
    """One timeline sentence from `quality_summary`: "nurse: RTT 12 ms, jitter 3 ms, loss 0 %, 30 fps (relay); ..."."""

    def fmt(value: float | None, unit: str) -> str:
        return "?" if value is None else f"{value:g}{unit}"

    parts = []
    for role, figures in summary.items():
        via = "/".join(figures["candidate_types"]) or "?"
        parts.append(
            f"{role}: RTT {fmt(figures['rtt_ms'], ' ms')}, jitter {fmt(figures['jitter_ms'], ' ms')}, "
            f"loss {fmt(figures['packet_loss_pct'], ' %')}, {fmt(figures['fps'], ' fps')} ({via})"
            + (", audio only at times" if figures["audio_only"] else "")
        )
    return "; ".join(parts) if parts else "no quality reports"


def _end(visit: VideoVisit, *, now: Any, actor: User | None, reason: str) -> None:
    if visit.redeemed_at is not None and (now - visit.redeemed_at).total_seconds() >= _budget():
        # The patient joined at least a connect budget ago and the call never connected (an undecided
        # setup): a failure, also when the nurse's page never reported it (closed, crashed).
        video_setup_decide(visit_id=visit.pk, ok=False)
    visit.state = VideoVisit.State.ENDED
    visit.ended_at = now
    visit.save(update_fields=["state", "ended_at"])
    session = CallSession.objects.filter(visit=visit).first()
    summary: dict[str, dict[str, Any]] = {}
    if session is not None:
        session.ended_at = now
        session.save(update_fields=["ended_at"])
        summary = quality_summary(session=session)
    case_add_event(
        case=visit.case,
        kind=CaseEvent.Kind.VIDEO,
        summary=f"Video visit ended ({reason}). Quality: {quality_line(summary)}",
        detail={"visit_id": visit.pk, "quality": summary},
        actor=actor,
    )
    room = str(visit.room)

    def notify() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(room_group(room), {"type": "visit.ended"})
        except Exception:  # noqa: BLE001 - the pages also learn it on their next reconnect
            logger.warning("visit end not delivered to room of visit %s", visit.pk, exc_info=True)

    transaction.on_commit(notify)


def visit_end(*, user: User, room: str, source_ip: str | None = None) -> VideoVisit:
    """The nurse ends the visit: state `ended`, call session closed, quality summary on the case timeline,
    both pages told (`visit.ended` to the room after commit).

    Raises NotAParticipant (audited) when the user is not the visit's nurse or the visit has already ended.
    """
    visit, role = visit_participant(room=room, user=user, session_rooms=[], source_ip=source_ip)
    if role != QualitySample.Role.NURSE:
        raise NotAParticipant
    with transaction.atomic():
        visit = VideoVisit.objects.select_for_update(of=("self",)).select_related("case", "clinic").get(pk=visit.pk)
        if visit.state != VideoVisit.State.ENDED:
            _end(visit, now=timezone.now(), actor=user, reason="ended by the nurse")
    return visit


VIDEO_FAILED_WHY = {"budget": "did not connect in time", "failed": "connection failed and did not recover"}


def visit_video_failed(*, user: User, room: str, why: str, source_ip: str | None = None) -> VideoVisit:
    """The nurse's page reports that the video did not connect (`why`: "budget", the connect time budget
    passed, or "failed", failed/disconnected without recovering): a timeline note on the case, so the phone
    call that follows (`conversation.call_patient(reason="video_failed")`) has its cause next to it. The visit
    stays open (the patient may still join). Once the patient has opened the link (`redeemed_at`), this is
    the visit's call setup failure unless it was already decided (`video_setup_decide`: a visit that
    connected stays a success; a patient who never opened the link made no setup attempt, nothing is
    counted). Raises NotAParticipant (audited) unless the user is the visit's nurse and the visit is open.
    """
    visit, role = visit_participant(room=room, user=user, session_rooms=[], source_ip=source_ip)
    if role != QualitySample.Role.NURSE:
        raise NotAParticipant
    seconds = _budget()
    text = VIDEO_FAILED_WHY.get(why, VIDEO_FAILED_WHY["failed"])
    case_add_event(
        case=visit.case,
        kind=CaseEvent.Kind.VIDEO,
        summary=f"Video failed: {text} (budget {seconds} s); phone call offered",
        detail={"visit_id": visit.pk, "video_failed": why if why in VIDEO_FAILED_WHY else "failed"},
        actor=user,
    )
    if visit.redeemed_at is not None:
        video_setup_decide(visit_id=visit.pk, ok=False)
    return visit


def visits_end_for_case(*, case: Case, actor: User | None) -> int:
    """End the case's visits that have not ended (the case is closing); returns how many. Caller's transaction."""
    ended = 0
    now = timezone.now()
    for visit in (
        VideoVisit.objects.select_for_update(of=("self",))
        .select_related("case", "clinic")
        .filter(case=case)
        .exclude(state=VideoVisit.State.ENDED)
    ):
        _end(visit, now=now, actor=actor, reason="case closed")
        ended += 1
    return ended


def visits_for_case(*, case: Case) -> list[tuple[VideoVisit, dict[str, dict[str, Any]]]]:
    """The case's visits, newest first, each with its quality summary (for the case page)."""
    result = []
    for visit in VideoVisit.objects.filter(case=case).select_related("call_session").order_by("-created_at"):
        session = getattr(visit, "call_session", None)
        result.append((visit, quality_summary(session=session) if session is not None else {}))
    return result
