"""Response headers Django has no setting for: `Permissions-Policy` (W3C Permissions Policy).

The policy comes from `settings.PERMISSIONS_POLICY`: feature name -> allow-list, where "self" means this
origin and an empty list switches the feature off (`camera=(self), geolocation=()`).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin


def permissions_policy_header(policy: dict[str, list[str]]) -> str:
    """The header value for `policy` (structured-field syntax: `self` bare, other origins quoted)."""
    parts = []
    for feature, allow in policy.items():
        members = " ".join(origin if origin == "self" else f'"{origin}"' for origin in allow)
        parts.append(f"{feature}=({members})")
    return ", ".join(parts)


class PermissionsPolicyMiddleware(MiddlewareMixin):
    """Adds `Permissions-Policy` to every response that does not set one itself (sync and async capable:
    MiddlewareMixin, so ASGI requests take no thread hop for it)."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        header = permissions_policy_header(getattr(settings, "PERMISSIONS_POLICY", {}))
        if header:
            response.headers.setdefault("Permissions-Policy", header)
        return response
