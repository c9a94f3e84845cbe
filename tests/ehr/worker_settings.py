"""Settings of the real Celery worker that tests/ehr/test_outbox_reliability.py starts as a subprocess.

The test settings plus: tasks really go through the broker (not eager), the worker uses the test database
(`CARELINE_WORKER_DB`), the test's FHIR server and MLLP peer, its own queue (so parallel runs on one Redis
never take each other's tasks), a short lease and a short Redis visibility timeout (a killed worker's
unacknowledged tasks come back within seconds, not the default hour).
"""

import os

from careline.settings.test import *  # noqa: F403
from careline.settings.test import DATABASES

CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_DEFAULT_QUEUE = os.environ["CARELINE_WORKER_QUEUE"]
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CARELINE_WORKER_VISIBILITY", "10"))}
DATABASES["default"]["NAME"] = os.environ["CARELINE_WORKER_DB"]
FHIR_BASE_URL = os.environ["FHIR_BASE_URL"]
HL7_MLLP_HOST = os.environ["HL7_MLLP_HOST"]
HL7_MLLP_PORT = int(os.environ["HL7_MLLP_PORT"])
FHIR_TIMEOUT_SECONDS = 5.0
HL7_TIMEOUT_SECONDS = 3.0
WRITEBACK_LEASE_SECONDS = int(os.environ.get("WRITEBACK_LEASE_SECONDS", "8"))
