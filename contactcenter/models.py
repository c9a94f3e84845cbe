"""Contact-center state: nurse presence (`AgentPresence`)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

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
