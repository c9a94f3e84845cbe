"""DRF token authentication with the absolute session limit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed


class ExpiringTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` as DRF's, but a token older than SESSION_ABSOLUTE_TIMEOUT_SECONDS (12 h) is
    deleted and refused (401 "Token expired."): API clients sign in again with password and OTP code, like
    people do. Tokens are issued only by `accounts.views.ObtainTokenApi`, after the second factor."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        user, token = super().authenticate_credentials(key)
        if timezone.now() - token.created >= timedelta(seconds=settings.SESSION_ABSOLUTE_TIMEOUT_SECONDS):
            token.delete()
            raise AuthenticationFailed("Token expired. Request a new one with your password and code.")
        return user, token
