"""The FHIR circuit breaker against a real hanging server (a socket that accepts and never answers) and the
real FHIR server (sekmet-fhir) stopped and started again.

Behaviour is asserted, not wall-clock time: with the circuit open no connection reaches the server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from ehr.fhir import circuit
from ehr.fhir.capability import forget_capabilities
from ehr.models import WriteBack
from ehr.services import find_patients_by_phone, writeback_enqueue, writeback_send
from ehr.types import EhrUnavailable

pytestmark = pytest.mark.django_db


class HangingServer:
    """Accepts TCP connections on loopback and never answers; counts the connections it accepted."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopping:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self.held.append(connection)

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=2)
        for connection in self.held:
            connection.close()
        self.listener.close()


@pytest.fixture
def breaker(settings) -> Iterator[None]:
    settings.FHIR_CIRCUIT_FAILURE_THRESHOLD = 2
    settings.FHIR_CIRCUIT_OPEN_SECONDS = 30.0
    yield
    circuit.reset()
    forget_capabilities()


@pytest.fixture
def hanging(settings, breaker) -> Iterator[HangingServer]:
    server = HangingServer()
    settings.FHIR_BASE_URL = server.base_url
    circuit.reset()
    forget_capabilities()
    try:
        yield server
    finally:
        circuit.reset()
        server.close()


def test_a_hanging_server_opens_the_circuit_and_then_nothing_reaches_it(hanging) -> None:
    for _ in range(2):  # each lookup times out (0.3 s) on the hanging server: two failures open the circuit
        with pytest.raises(EhrUnavailable):
            find_patients_by_phone("+15551461616", timeout=0.3)
    assert circuit.state() == circuit.OPEN
    reached = hanging.accepted
    assert reached >= 2

    with pytest.raises(circuit.CircuitOpen):
        find_patients_by_phone("+15551461616", timeout=0.3)

    time.sleep(0.2)  # let any connection that was (wrongly) made be accepted and counted
    assert hanging.accepted == reached  # fail fast: not one connection attempt, so no timeout to wait for


def test_a_writeback_with_the_circuit_open_goes_to_retrying_without_a_connection(
    hanging, personas, make_outcome
) -> None:
    for _ in range(2):
        with pytest.raises(EhrUnavailable):
            find_patients_by_phone("+15551461616", timeout=0.3)
    reached = hanging.accepted
    [row] = writeback_enqueue(clinic=personas.north, outcome=make_outcome("some-patient"))

    sent = writeback_send(writeback_id=row.pk)

    assert sent.state == WriteBack.State.RETRYING
    assert "circuit open" in sent.last_error
    assert sent.next_attempt_at is not None
    time.sleep(0.2)
    assert hanging.accepted == reached


def test_the_breaker_half_opens_and_one_successful_probe_closes_it(fhir, breaker, settings) -> None:
    settings.FHIR_CIRCUIT_OPEN_SECONDS = 0.5
    circuit.reset()
    patient = fhir.patient("oconner-betty")
    fhir.stop()
    for _ in range(2):
        with pytest.raises(EhrUnavailable):
            find_patients_by_phone(patient["phones"][0], timeout=1)
    assert circuit.state() == circuit.OPEN
    fhir.start()  # takes about 1 s: longer than the circuit stays open
    time.sleep(0.6)
    assert circuit.state() == circuit.HALF_OPEN
    matches = find_patients_by_phone(patient["phones"][0], timeout=5)

    assert patient["server_id"] in [m.fhir_id for m in matches]
    assert circuit.state() == circuit.CLOSED


def test_a_failed_probe_opens_the_circuit_again(fhir, breaker, settings) -> None:
    settings.FHIR_CIRCUIT_OPEN_SECONDS = 0.5
    circuit.reset()
    fhir.stop()
    for _ in range(2):
        with pytest.raises(EhrUnavailable):
            find_patients_by_phone("+15551461616", timeout=1)
    time.sleep(0.6)
    assert circuit.state() == circuit.HALF_OPEN

    with pytest.raises(EhrUnavailable):
        find_patients_by_phone("+15551461616", timeout=1)  # the probe: still down

    assert circuit.state() == circuit.OPEN


def test_a_4xx_is_an_answer_and_does_not_count_as_a_failure(fhir, breaker) -> None:
    from ehr.services import load_patient_context
    from ehr.types import EhrRejected

    circuit.reset()
    for _ in range(3):
        with pytest.raises(EhrRejected):
            load_patient_context("no-such-patient")
    assert circuit.state() == circuit.CLOSED
