"""Nothing lost, nothing duplicated: a real Celery worker is killed (SIGKILL) in the middle of a burst of
200 outcomes; another worker and the beat sweep finish the job. Real peers: sekmet-fhir (`fhir`), the
python-hl7 MLLP peer (`mllp_peer`), Redis as broker, PostgreSQL (the test database, committed data: a
transactional test, so the worker subprocesses see it).

What this proves: every outcome reaches the FHIR server exactly once (one Encounter per case identifier,
although a killed worker's in-flight bundles are sent again: conditional create) and the MLLP peer exactly
once per MSH-10, every row ends `sent`, and each patient's HL7 messages arrive in the order recorded.
HL7 has no conditional create: a message delivered just before the kill, and not yet marked sent, is sent
again with the same MSH-10, so the peer may see it twice; a receiver that dedupes on MSH-10 (as interface
engines do, and as CareLine's own inbound listener does) drops the copy. The test counts distinct MSH-10s
and prints how many copies there were.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import hl7
import pytest
from django.db import connection

from careline.celery import app
from ehr import tasks
from ehr.fhir.writeback import CASE_IDENTIFIER_SYSTEM
from ehr.hl7.oru import control_id_for
from ehr.models import WriteBack
from ehr.services import writeback_enqueue

REPO = Path(__file__).resolve().parents[2]
OUTCOMES = 200
PATIENTS = 20
LEASE_SECONDS = 8


def _start_worker(env: dict[str, str], name: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "careline", "worker", "-Q", env["CARELINE_WORKER_QUEUE"]]
    command += ["-n", f"{name}@%h", "-c", "4", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    command += ["-l", "WARNING"]
    return subprocess.Popen(  # its own process group: SIGKILL reaches the pool children too
        command, cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _kill(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def _sent() -> int:
    return WriteBack.objects.filter(state=WriteBack.State.SENT).count()


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_burst_loses_and_duplicates_nothing(
    fhir, mllp_peer, settings, personas, make_outcome, monkeypatch, tmp_path
) -> None:
    if connection.vendor != "postgresql":
        # Several worker processes writing at once is a production (PostgreSQL) property; the embedded SQLite
        # run executes tasks in-process and would only report "database is locked".
        pytest.skip("the worker-crash test needs PostgreSQL (make test runs it)")
    queue = f"careline-test-outbox-{uuid.uuid4().hex[:8]}"
    settings.HL7_MLLP_HOST, settings.HL7_MLLP_PORT = mllp_peer.host, mllp_peer.port
    # This process only enqueues: tasks go to the broker, on the test's own queue.
    monkeypatch.setattr(app.conf, "task_always_eager", False)
    monkeypatch.setattr(app.conf, "task_default_queue", queue)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.ehr.worker_settings",
        "CARELINE_WORKER_QUEUE": queue,
        "CARELINE_WORKER_DB": connection.settings_dict["NAME"],
        "FHIR_BASE_URL": fhir.base_url,
        "HL7_MLLP_HOST": mllp_peer.host,
        "HL7_MLLP_PORT": str(mllp_peer.port),
        "WRITEBACK_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    patients = sorted(fhir.ids_by_file.values())[:PATIENTS]
    log = tmp_path / "worker.log"
    first = _start_worker(env, "first", log)
    second = None
    try:
        outcomes = []
        for number in range(OUTCOMES):
            outcome = make_outcome(patients[number % len(patients)], case_id=number + 1)
            writeback_enqueue(clinic=personas.north, outcome=outcome)  # commits; dispatch on commit
            outcomes.append(outcome)
        total = 2 * OUTCOMES
        deadline = time.monotonic() + 30
        while _sent() < total // 5:  # kill once a fifth is through: the burst is in full flight
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"worker made no progress: {log.read_text()}"
            time.sleep(0.02)
        _kill(first)
        sent_at_kill = _sent()
        assert sent_at_kill < total, "the burst finished before the kill: nothing was tested"

        second = _start_worker(env, "second", log)
        deadline = time.monotonic() + 45
        next_sweep = time.monotonic() + 2
        while _sent() < total and time.monotonic() < deadline:
            if time.monotonic() >= next_sweep:  # what beat does every 15 s; leased rows are left alone
                tasks.writeback_sweep.delay()
                next_sweep = time.monotonic() + 2
            time.sleep(0.2)
    finally:
        _kill(first)
        if second is not None:
            _kill(second)

    states = dict.fromkeys(WriteBack.State.values, 0)
    for state in WriteBack.objects.values_list("state", flat=True):
        states[state] += 1
    assert states["sent"] == total, (states, log.read_text()[-3000:])

    # FHIR: exactly one Encounter per case, although the killed worker's bundles were sent again.
    for outcome in outcomes:
        found = fhir.search(f"Encounter?identifier={CASE_IDENTIFIER_SYSTEM}|{outcome.case_uuid}&_summary=count")
        assert found["total"] == 1, outcome.case_uuid

    # HL7: every MSH-10 exactly once among the distinct ones, in the recorded order per patient.
    received = [str(hl7.parse(raw).segment("MSH")[10]) for raw in mllp_peer.messages]
    expected = {o.case_uuid: control_id_for(f"{o.case_uuid}:hl7v2") for o in outcomes}
    assert set(received) == set(expected.values())
    first_seen = list(dict.fromkeys(received))
    for patient in patients:
        chain = [expected[o.case_uuid] for o in outcomes if o.patient_fhir_id == patient]
        assert [c for c in first_seen if c in set(chain)] == chain, patient
    copies = len(received) - len(set(received))
    assert copies <= 4 * 2, copies  # at most what the killed pool had in flight
    print(
        f"\nkilled at {sent_at_kill}/{total} rows sent; all {total} sent after restart; "
        f"FHIR duplicates 0; HL7 copies with a repeated MSH-10: {copies}"
    )
