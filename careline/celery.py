"""Celery application.

Broker: `REDIS_URL` when set; otherwise the embedded default, kombu's `filesystem://` transport under
`var/celery/`, so `make run` needs no Redis. Tasks live in each app's `tasks.py` and are thin: load a row by
id, call a service (STYLE.md habit 4).

Every task runs in the database's system scope (`clinics.db_scope`, PostgreSQL row-level security): a task
works for the service (sweeps across clinics, the outbox, EHR lookups), and its services scope their own
queries to the clinic of the row they load. The scope is restored afterwards, which matters for eager tasks
(tests, the embedded run) that run inside a staff request.

Dispatching from a request: `task.delay_after_commit(*args)` publishes once the transaction commits and never
fails the committed request when the broker (Redis) is unreachable: kombu's `OperationalError` (raised after
its publish retries, about 1.3 s) is logged with the task name only. Tasks dispatched that way are fast paths
of rows the database keeps (the SMS and call outboxes, write-backs), which their beat sweeps pick up later;
a Redis restart without persistence loses queued messages the same way (tests/chaos/test_redis_restart.py).
"""

import logging
import os
from typing import Any

from celery import Celery, Task
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings.base")


class SystemScopedTask(Task):  # type: ignore[misc]
    """A task whose body runs in `clinics.db_scope.system_scope()`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from clinics import db_scope  # Django is set up by the time a task runs, not when this module loads

        with db_scope.system_scope():
            return super().__call__(*args, **kwargs)

    def delay_after_commit(self, *args: Any) -> None:
        """`self.delay(*args)` once the current transaction commits; a broker outage is logged, not raised
        (module docstring). Returns nothing: the caller's change is committed either way."""
        from django.db import transaction

        transaction.on_commit(lambda: self.delay_or_log(*args))

    def delay_or_log(self, *args: Any) -> None:
        """`self.delay(*args)` now; kombu `OperationalError` (broker unreachable) -> a warning, no raise."""
        try:
            self.delay(*args)
        except OperationalError:
            logger.warning("task %s not published: broker unreachable (its sweep retries)", self.name)


app = Celery("careline", task_cls=SystemScopedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
