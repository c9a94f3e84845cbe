"""Contact-center state: nurse presence (`AgentPresence`), video visits (`VideoVisit`), call sessions and their
quality samples (`CallSession`, `QualitySample`)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models

from clinics.crypto import EncryptedFieldMixin, EncryptedTextField
from clinics.models import Clinic


class AgentPresence(models.Model):
    """A staff member's presence at the console, one row per user.

    `state`: `available` (ready for the next case), `busy` (working a case), `wrap_up`, `away` (signed in,
    not taking cases), `offline` (no console open). `channels` counts the user's open console WebSockets;
    `last_seen` is the last connect or heartbeat (`{"type": "ping"}`) of any of them. A user with no live
    socket for `PRESENCE_OFFLINE_SECONDS` is set `offline` by the presence sweep
    (`contactcenter.presence.presence_sweep`), which also repairs counts left by a crashed process.
    `since` is when the current state began.
    """

    class State(models.TextChoices):
        AVAILABLE = "available", "Available"
        BUSY = "busy", "Busy"
        WRAP_UP = "wrap_up", "Wrap-up"
        AWAY = "away", "Away"
        OFFLINE = "offline", "Offline"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="presence")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="presences")
    state = models.CharField(max_length=12, choices=State.choices, default=State.OFFLINE)
    since = models.DateTimeField()
    last_seen = models.DateTimeField(null=True, blank=True)
    channels = models.PositiveSmallIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["clinic", "state"], name="presence_clinic_state")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.state}"


class VideoVisit(models.Model):
    """A nurse's video callback to the patient of one case (DESIGN §4, §6.5): one WebRTC room, two participants.

    The patient is invited by SMS with a join link carrying a signed token (`contactcenter.visits`); only the
    SHA-256 of the token is stored (`token_hash`), so the database cannot replay a link. The link is single-use
    (`redeemed_at`) and expires at `expires_at` (`VIDEO_LINK_TTL_SECONDS` after creation, default 900 s).
    Redeeming binds the patient's browser session to the visit (the session holds the visit's `room`), so a
    reload of the visit page rejoins without the link. `room` names the signaling group (`visit.<room>`).

    State: `invited` (link sent) -> `active` (link redeemed) -> `ended` (the nurse ended it, or the case
    closed). `nurse` is the nurse who holds the case and started the visit; only she and the bound patient
    session may join the room.
    """

    class State(models.TextChoices):
        INVITED = "invited", "Invited (link sent)"
        ACTIVE = "active", "Active"
        ENDED = "ended", "Ended"

    room = models.UUIDField(unique=True, editable=False)
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="video_visits")
    case = models.ForeignKey("triage.Case", on_delete=models.PROTECT, related_name="video_visits")
    nurse = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=10, choices=State.choices, default=State.INVITED)
    token_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 hex of the join token")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="The join link is refused after this instant")
    redeemed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["case", "created_at"], name="video_visit_case")]

    def __str__(self) -> str:
        return f"VideoVisit {self.pk} ({self.state})"


class CallSession(models.Model):
    """One media session of a case (DESIGN §4): today a video visit's WebRTC call, with its quality samples.

    `started_at` is when both participants were first in the room, `ended_at` when the visit ended.

    Call-setup facts (`contactcenter.visits.video_setup_decide`, `video_ice_report`; metrics in
    `careline.metrics`), each set once by a conditional UPDATE so a metric counts once per visit whatever
    the reconnects, reloads and duplicate reports: `setup_result` ("success": a leg reported ICE connected or
    decoded frames; "failure": the nurse's page reported the connect budget passed or ICE failed without
    recovering, after the patient had opened the link), `setup_decided_at`; `ice_failed_at` (the first leg
    that reported ICE `failed`); `nurse_media_path` / `patient_media_path` (local candidate type of the
    selected pair when that leg first connected: `host`, `srflx`, `prflx`, `relay`).
    """

    class SetupResult(models.TextChoices):
        UNDECIDED = "", "Undecided"
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"

    class Kind(models.TextChoices):
        VOICE = "voice", "Voice"
        VIDEO = "video", "Video"

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="call_sessions")
    case = models.ForeignKey("triage.Case", on_delete=models.PROTECT, related_name="call_sessions")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.VIDEO)
    visit = models.OneToOneField(
        VideoVisit, null=True, blank=True, on_delete=models.CASCADE, related_name="call_session"
    )
    provider_id = models.CharField(max_length=64, blank=True, help_text="e.g. Twilio CallSid for voice")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    setup_result = models.CharField(max_length=8, choices=SetupResult.choices, blank=True, default="")
    setup_decided_at = models.DateTimeField(null=True, blank=True)
    ice_failed_at = models.DateTimeField(null=True, blank=True)
    nurse_media_path = models.CharField(max_length=8, blank=True, default="")
    patient_media_path = models.CharField(max_length=8, blank=True, default="")

    def __str__(self) -> str:
        return f"CallSession {self.pk} ({self.kind})"


class QualitySample(models.Model):
    """One `RTCPeerConnection.getStats()` summary a participant's page reported (every ~5 s).

    Units: `rtt_ms` (round-trip time of the selected candidate pair, ms), `jitter_ms` (inbound RTP jitter,
    ms), `packet_loss_pct` (inbound packets lost / expected since the previous sample, %), `fps` (frames per
    second decoded), `frames_decoded` (cumulative, inbound video), `outgoing_kbps`
    (`availableOutgoingBitrate`, kbit/s), `candidate_type` (local candidate of the selected pair: `host`,
    `srflx`, `prflx`, `relay`), `audio_only` (the page had switched its camera off for bandwidth).
    Any figure the browser did not report is null. No PHI. `clinic` is the session's (set on create), so
    row-level security needs no join (`clinics.db_security`).
    """

    class Role(models.TextChoices):
        NURSE = "nurse", "Nurse"
        PATIENT = "patient", "Patient"

    session = models.ForeignKey(CallSession, on_delete=models.CASCADE, related_name="samples")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=8, choices=Role.choices)
    at = models.DateTimeField(auto_now_add=True)
    rtt_ms = models.FloatField(null=True, blank=True)
    jitter_ms = models.FloatField(null=True, blank=True)
    packet_loss_pct = models.FloatField(null=True, blank=True)
    fps = models.FloatField(null=True, blank=True)
    frames_decoded = models.PositiveBigIntegerField(null=True, blank=True)
    outgoing_kbps = models.FloatField(null=True, blank=True)
    candidate_type = models.CharField(max_length=8, blank=True)
    audio_only = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["session", "role", "at"], name="quality_sample_session")]

    def __str__(self) -> str:
        return f"QualitySample {self.role} at {self.at:%H:%M:%S}"


if TYPE_CHECKING:  # django-stubs: the Python types the field accepts and returns
    _BytesBase = models.TextField[Any, bytes]
else:
    _BytesBase = models.TextField


class EncryptedBytesField(EncryptedFieldMixin, _BytesBase):
    """Bytes encrypted at rest (`clinics.crypto`, AES-GCM per value): stored as the encryption of their base64.

    Loaded with the row: list queries should `.defer()` it. Key rotation (`rotate_field_keys`) covers it like
    every encrypted field.
    """

    def to_plaintext(self, value: Any) -> str:
        return base64.b64encode(bytes(value)).decode("ascii")

    def from_plaintext(self, text: str) -> Any:
        return base64.b64decode(text)

    def to_python(self, value: Any) -> Any:
        return value


class VisitMessage(models.Model):
    """One chat message of a video visit (works without video). `body` is encrypted at rest (PHI). `clinic` is
    the visit's (set on create), so row-level security needs no join (`clinics.db_security`)."""

    visit = models.ForeignKey(VideoVisit, on_delete=models.CASCADE, related_name="messages")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=8, choices=QualitySample.Role.choices)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    body = EncryptedTextField(max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"VisitMessage {self.pk} ({self.role})"


class VisitAttachment(models.Model):
    """A photo or document sent during a video visit (store-and-forward), shown to the nurse on the case.

    Images are re-encoded (pixels only: EXIF, GPS, ICC and text chunks dropped; orientation applied first);
    `content_type` is what was stored (`image/jpeg`, `image/png`, `application/pdf`), `size` its length in
    bytes. `filename` (as the sender named it) and `data` are encrypted at rest. `clinic` is the visit's (set on
    create), so row-level security needs no join (`clinics.db_security`).
    """

    visit = models.ForeignKey(VideoVisit, on_delete=models.CASCADE, related_name="attachments")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=8, choices=QualitySample.Role.choices)
    content_type = models.CharField(max_length=40)
    size = models.PositiveIntegerField()
    filename = EncryptedTextField(max_length=200)
    data = EncryptedBytesField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"VisitAttachment {self.pk} ({self.content_type})"
