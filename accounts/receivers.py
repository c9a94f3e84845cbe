"""Audit and socket-closing hooks on Django's auth signals and django-axes' lockout signal.

These are framework events, not business flow (STYLE habit 5): the login/logout machinery of
`django.contrib.auth` and django-axes announces them only by signal.
"""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.middleware import stamp_new_session
from accounts.services import audit_auth
from accounts.sockets import close_user_sockets
from clinics.models import StaffMember


def _user_named(username: object) -> Any:
    if not isinstance(username, str) or not username:
        return None
    return get_user_model().objects.filter(username=username).first()


@receiver(user_logged_in)
def _on_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Password accepted: start the session clocks. The OTP step comes next; `auth.login` is audited when it
    passes (accounts.views), so a password alone leaves no "signed in" row."""
    if request is not None and hasattr(request, "session"):
        stamp_new_session(request.session)


@receiver(user_login_failed)
def _on_failure(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    """Wrong password or OTP code: `auth.failure` in the account's clinic log (unknown names: log line)."""
    user = _user_named(credentials.get("username"))
    if user is not None:
        audit_auth(user=user, action="auth.failure", reason=str(credentials.get("careline_step", "password")))


@receiver(user_locked_out)
def _on_lockout(
    sender: Any, request: Any, username: str | None = None, ip_address: str | None = None, **kw: Any
) -> None:
    """django-axes locked username + IP out: `auth.lockout`."""
    user = _user_named(username)
    if user is not None:
        audit_auth(user=user, action="auth.lockout", reason=f"{username} from {ip_address}")


@receiver(user_logged_out)
def _on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Sign-out (or expiry): close the user's sockets everywhere; `auth.logout` unless expiry audited it."""
    if user is None:
        return
    if not getattr(request, "careline_session_expired", False):
        audit_auth(user=user, action="auth.logout")
    close_user_sockets(user_id=user.pk, reason="logout")


@receiver(post_save, sender=get_user_model())
def _on_user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """An account set inactive: its open sockets close (its sessions no longer authenticate)."""
    if not created and not instance.is_active:
        close_user_sockets(user_id=instance.pk, reason="deactivated")


@receiver(post_delete, sender=StaffMember)
def _on_membership_removed(sender: Any, instance: StaffMember, **kwargs: Any) -> None:
    """A StaffMember removed (staff deactivated in a clinic): the user's sockets close."""
    close_user_sockets(user_id=instance.user_id, reason="deactivated")
