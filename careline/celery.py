"""Celery application.

Broker: `REDIS_URL` when set; otherwise the embedded default, kombu's `filesystem://` transport under
`var/celery/`, so `make run` needs no Redis. Tasks live in each app's `tasks.py` and are thin: load a row by
id, call a service (STYLE.md habit 4).

Every task runs in the database's system scope (`clinics.db_scope`, PostgreSQL row-level security): a task
works for the service (sweeps across clinics, the outbox, EHR lookups), and its services scope their own
queries to the clinic of the row they load. The scope is restored afterwards, which matters for eager tasks
(tests, the embedded run) that run inside a staff request.
"""

import os
from typing import Any

from celery import Celery, Task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings.base")


class SystemScopedTask(Task):  # type: ignore[misc]
    """A task whose body runs in `clinics.db_scope.system_scope()`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from clinics import db_scope  # Django is set up by the time a task runs, not when this module loads

        with db_scope.system_scope():
            return super().__call__(*args, **kwargs)


app = Celery("careline", task_cls=SystemScopedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
