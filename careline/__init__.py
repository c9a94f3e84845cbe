"""CareLine: after-hours nurse triage line (Django project package)."""

from careline.celery import app as celery_app

__all__ = ["celery_app"]
