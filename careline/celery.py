"""Celery application.

Broker: `REDIS_URL` when set; otherwise the embedded default, kombu's `filesystem://` transport under
`var/celery/`, so `make run` needs no Redis. Tasks live in each app's `tasks.py` and are thin: load a row by
id, call a service (STYLE.md habit 4).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings.base")

app = Celery("careline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
