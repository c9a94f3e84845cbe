"""A daphne process holds at most its pool's PostgreSQL connections, however many webhooks arrive at once.

Django runs each sync request of an ASGI server in a thread of its own, so without a pool every concurrent
request opens a connection of its own: 50 concurrent IVR callers on one daphne took ~90 of PostgreSQL's 100
connections and the next callers got HTTP 500 ("too many clients", found by bench/ivr_webhook.py).
`careline/asgi.py` turns on Django's psycopg pool (`DATABASE_POOL`, careline.settings.base). Here a real
daphne on the test database answers 40 signed answer webhooks sent at once while this test samples
`pg_stat_activity` for that process's connections (tagged with `PGAPPNAME`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from ivr.models import CallLeg
from tests.conftest import NORTH_NUMBER
from tests.fixtures.fhir_server import free_port, stop_process
from tests.ivr.phone import twilio_form
from tests.twilio import sign

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.environ.get("DATABASE_URL", "postgres").startswith("sqlite"), reason="the pool is PostgreSQL's"
    ),
]

ROOT = Path(__file__).resolve().parents[2]
POOL_MAX = 3
CALLS = 40


def _connections(dsn: str, app_name: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app_name]).fetchone()
        return int(row[0]) if row else 0


async def _answer_all(base: str) -> list[int]:
    async def one(client: httpx.AsyncClient) -> int:
        params = twilio_form("voice_inbound", CallSid="CA" + uuid.uuid4().hex, To=NORTH_NUMBER, Called=NORTH_NUMBER)
        response = await client.post(
            "/ivr/voice/", data=params, headers={"X-Twilio-Signature": sign("/ivr/voice/", params)}
        )
        return response.status_code

    async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=CALLS)) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(CALLS))))


def test_concurrent_webhooks_share_the_pool_of_the_daphne_process(personas: Any, tmp_path: Path) -> None:
    db_name = connection.settings_dict["NAME"]
    dsn = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    app_name = f"careline-pool-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "careline.settings.test",
        "DATABASE_URL": dsn.replace("postgresql://", "postgres://"),
        "CARELINE_TEST_CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "CARELINE_TEST_CACHE_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "DATABASE_POOL_MAX_SIZE": str(POOL_MAX),
        "DATABASE_POOL_MIN_SIZE": "1",
        "PGAPPNAME": app_name,  # libpq: every connection of the daphne process carries this name
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DATABASE_POOL", None)  # what careline/asgi.py decides, not the environment of this test run
    log = (tmp_path / "daphne.log").open("wb")
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "careline.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    peak = 0
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, _connections(dsn, app_name))
            time.sleep(0.005)

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "daphne did not become ready"
            time.sleep(0.2)
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            statuses = asyncio.run(_answer_all(f"http://127.0.0.1:{port}"))
        finally:
            sampling = False
            sampler.join()
    finally:
        stop_process(daphne)  # type: ignore[arg-type]
        log.close()

    assert statuses == [200] * CALLS
    assert CallLeg.objects.filter(clinic=personas.north).count() == CALLS
    assert 1 <= peak <= POOL_MAX, f"daphne held {peak} connections at once (pool of {POOL_MAX})"
