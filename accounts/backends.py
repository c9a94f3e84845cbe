"""The django-axes authentication backend, for requests only."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend


class LockoutBackend(AxesStandaloneBackend):
    """django-axes' lockout check for every sign-in that comes with an HTTP request (browser form, API token).

    `authenticate()` without a request (management commands, a shell) is not a network attempt and cannot be
    tied to an address: it is passed on to the next backend instead of raising
    `AxesBackendRequestParameterRequired`.
    """

    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
