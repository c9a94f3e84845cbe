"""Template context shared by every page."""

from django.conf import settings
from django.http import HttpRequest


def careline(request: HttpRequest) -> dict[str, object]:
    """Expose `CARELINE_DEMO` (demo banner, simulator link) to templates."""
    return {"CARELINE_DEMO": settings.CARELINE_DEMO}
