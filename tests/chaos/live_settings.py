"""Settings of the daphne nodes that tests/chaos/test_fhir_hung.py starts: the test settings, with the EHR the
test names, and the FHIR circuit breaker and the IVR's EHR wait as in production.

`careline.settings.test` pins `FHIR_BASE_URL` to a closed port, turns the circuit breaker off (unit tests stop
the server on purpose and expect the transport error) and gives the IVR a generous EHR wait; a node in a chaos
test must instead reach the test's own sekmet-fhir and protect its webhooks with the breaker and production's
`FHIR_IVR_TIMEOUT_SECONDS`, as a production node does. Environment: `CARELINE_CHAOS_FHIR_BASE_URL` (required).
The test also passes `DATABASE_URL` and `REDIS_URL`, so `base` (imported first, as isort orders it) reads the
same services `careline.settings.test` would default to.
"""

import os

from careline.settings import base
from careline.settings.test import *  # noqa: F401,F403

FHIR_BASE_URL = os.environ["CARELINE_CHAOS_FHIR_BASE_URL"]
FHIR_CIRCUIT_FAILURE_THRESHOLD = base.FHIR_CIRCUIT_FAILURE_THRESHOLD
FHIR_IVR_TIMEOUT_SECONDS = base.FHIR_IVR_TIMEOUT_SECONDS
