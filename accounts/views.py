"""Sign-in second step (TOTP or a backup code), first-sign-in enrolment, and the API token endpoint.

Flow: `/accounts/login/` (password; Django's LoginView behind django-axes) -> `/accounts/otp/` (the code; a user
with no confirmed device goes to `/accounts/otp/enrol/` first) -> the page asked for. Until the code passes,
`accounts.middleware.OtpRequiredMiddleware` allows nothing else. Wrong codes count towards the same django-axes
lockout as wrong passwords (username + IP).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import django_otp
from axes.handlers.proxy import AxesProxyHandler
from django.contrib.auth import authenticate, logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import lockout, services


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return "/console/"


def _locked(request: HttpRequest, username: str) -> bool:
    AxesProxyHandler.update_request(request)
    return bool(AxesProxyHandler.is_locked(request, {"username": username}))


def _count_failure(request: HttpRequest, username: str) -> bool:
    """Record a wrong OTP code with django-axes (and the audit receiver); True if that locked the account."""
    AxesProxyHandler.update_request(request)
    user_login_failed.send(sender=__name__, credentials={"username": username, "careline_step": "otp"}, request=request)
    return bool(getattr(request, "axes_locked_out", False))


def _lockout_reply(request: HttpRequest) -> HttpResponse:
    logout(request)
    return lockout.response(request)


@login_required
@require_http_methods(["GET", "POST"])
def otp_verify(request: HttpRequest) -> HttpResponse:
    """Second step: a 6-digit TOTP code (or a backup code). Success audits `auth.login` and rotates the session
    key; a wrong code audits `auth.failure` and counts towards the lockout."""
    user: Any = request.user
    if user.is_verified():
        return redirect(_next(request))
    if services.confirmed_totp(user) is None:
        return redirect(f"/accounts/otp/enrol/?{urlencode({'next': _next(request)})}")
    if _locked(request, user.get_username()):
        return _lockout_reply(request)
    error = ""
    if request.method == "POST":
        device = services.mfa_verify(user=user, token=request.POST.get("otp_token", ""))
        if device is not None:
            request.session.cycle_key()
            django_otp.login(request, device)
            services.audit_auth(user=user, action="auth.login", reason=f"second factor: {device.name}")
            return redirect(_next(request))
        if _count_failure(request, user.get_username()):
            return _lockout_reply(request)
        error = "That code did not match. Enter the current 6-digit code from your authenticator app."
    return render(request, "accounts/otp_verify.html", {"error": error, "next": _next(request)})


@login_required
@require_http_methods(["GET", "POST"])
def otp_enrol(request: HttpRequest) -> HttpResponse:
    """First sign-in: scan the QR code (or type the secret), confirm with one code; shows the backup codes once.

    Only for a user with no confirmed device: an enrolled user cannot replace their device from a
    password-only session (that would let a stolen password bypass MFA)."""
    user: Any = request.user
    if services.confirmed_totp(user) is not None:
        return redirect(f"/accounts/otp/?{urlencode({'next': _next(request)})}")
    if _locked(request, user.get_username()):
        return _lockout_reply(request)
    device = services.totp_enrolment_device(user)
    error = ""
    if request.method == "POST":
        codes = services.mfa_enrol(request=request, device=device, token=request.POST.get("otp_token", ""))
        if codes is not None:
            request.session.cycle_key()
            return render(request, "accounts/otp_backup_codes.html", {"codes": codes, "next": _next(request)})
        if _count_failure(request, user.get_username()):
            return _lockout_reply(request)
        error = "That code did not match. Check the app shows CareLine and enter its current 6-digit code."
    context = {
        "qr_svg": services.totp_qr_svg(device),
        "secret": services.totp_secret_text(device),
        "error": error,
        "next": _next(request),
    }
    return render(request, "accounts/otp_enrol.html", context)


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False)
    otp_token = serializers.CharField(help_text="current TOTP code (or a backup code)")


class ObtainTokenApi(APIView):
    """POST `{"username", "password", "otp_token"}` -> `{"token": "..."}` (DRF token for `Authorization: Token`).

    Needs the password *and* a current OTP code of an enrolled user (an account with no confirmed device must
    enrol in the browser first). 400 for wrong credentials, 429 `{"detail", "code": "locked_out"}` when
    django-axes has locked the username + IP. Audited like the browser sign-in (`auth.login` / `auth.failure`).
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=TokenRequestSerializer,
        responses={200: inline_serializer("TokenResponse", {"token": serializers.CharField()})},
    )
    def post(self, request: Request) -> Response | HttpResponse:
        data = TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        django_request = request._request
        username = data.validated_data["username"]
        if _locked(django_request, username):
            return lockout.response(django_request)
        user = authenticate(django_request, username=username, password=data.validated_data["password"])
        if getattr(django_request, "axes_locked_out", False):
            return lockout.response(django_request)
        if user is None:
            return Response({"detail": "Unable to sign in with those credentials."}, status=status.HTTP_400_BAD_REQUEST)
        if services.confirmed_totp(user) is None:
            return Response(
                {"detail": "Two-factor enrolment required: sign in once in the browser.", "code": "mfa_enrolment"},
                status=status.HTTP_403_FORBIDDEN,
            )
        device = services.mfa_verify(user=user, token=data.validated_data["otp_token"])
        if device is None:
            if _count_failure(django_request, username):
                return lockout.response(django_request)
            return Response({"detail": "Unable to sign in with those credentials."}, status=status.HTTP_400_BAD_REQUEST)
        services.audit_auth(user=user, action="auth.login", reason=f"API token, second factor: {device.name}")
        Token.objects.filter(user=user).delete()  # a fresh token: its 12 h start now
        token = Token.objects.create(user=user)
        return Response({"token": token.key})
