"""Fault injection (issue 7): the daphne process holding a video visit's signaling is killed mid-visit.

Real peers: two daphne processes (nodes A and B, `CARELINE_NODE_ID`) behind HAProxy with the generated
configuration (`ops.topology`), on the test database and the test run's Redis channel layer; coturn
(`turn_server`, relay forced: media can only flow through TURN, never through daphne); two headless Chromium
browsers with fake camera and microphone, the nurse's (signed in) and the patient's (redeemed the SMS link).

Scenario:
1. Node B is put in maintenance on HAProxy's runtime API while both pages join, so both signaling sockets
   land on node A (checked with the open-session count A's drain watcher publishes); B is then put back.
2. Both sides decode video through a relay pair. Node A is killed with SIGKILL (a crash, not a drain: no
   close frame, no `peer left`, its channel-layer group memberships stay behind in Redis).
3. Right after the kill, while HAProxy still has A in rotation (health checks every 2 s, down after 2
   failures) and least connections prefers it (three other consoles hold connections on B), a request through
   the proxy is answered by B at once: the proxy passes a connection refused by A on to B
   (`option redispatch 1` in `ops.topology`) instead of three retries on A ending in a 503.
4. For at least 10 s after the kill, `framesDecoded` keeps rising on both pages (never seen standing still for
   more than 4 s, at a rate of at least a quarter of the rate before the kill), on the same RTCPeerConnection
   (it was not rebuilt), through the relay; the browser's own freeze figures are reported.
5. Both pages' sockets reconnect through the proxy (visit.js backoff) and land on node B; the time from the
   kill to each reconnect, and any failed attempt, is measured in the page.
6. The visit continues, proven rather than assumed: a chat message each way after the reconnect, an ICE
   restart negotiated over the new sockets (both sides see new ICE credentials and media flows after it), the
   visit still active in PostgreSQL and quality samples of both roles stored after the kill.

Runtime about 60-90 s on a quiet 2-CPU machine (two daphne, HAProxy, coturn, two Chromium).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from careline import drain
from contactcenter import services, visits
from contactcenter.models import QualitySample, VideoVisit
from ops import topology
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, trace_page
from tests.e2e.test_video_visit import CONNECT_MS, MEDIA_ARGS, MEDIA_STATE_JS
from tests.ops.test_topology import (
    free_port,
    node_env,
    session_cookie,
    start_node,
    start_proxy,
    stop_nodes,
    wait_until,
)
from triage.services import case_enqueue

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        os.environ.get("DATABASE_URL", "postgres").startswith("sqlite"), reason="the scaled topology needs PostgreSQL"
    ),
]

# HAProxy's health check as in `make up-scaled` (every 2 s, down after 2 failures): a dead node stays in rotation
# for up to ~4 s after it dies, long enough for the pages' first reconnect attempts to be sent its way.
CHECK_INTERVAL_MS = 2000
# Media must keep flowing at least this long after the kill (the "media keeps flowing").
MEDIA_WINDOW_S = 10.0
# Longest time the decoded-frame count may be seen standing still on either page: fake video runs at 30 fps, so
# anything near a second is already a visible freeze; the bound leaves room for a loaded 2-CPU machine.
MAX_MEDIA_GAP_S = 4.0
# Frames decoded per second after the kill, at least this share of the rate before it (measured in the same run).
MIN_RATE_RATIO = 0.25

# In the page: the video frames decoded so far and the browser's own freeze figures for them (webrtc-stats
# `freezeCount`, `totalFreezesDuration` in s: an inter-frame delay over max(3x the mean, mean + 150 ms)), the
# socket (re)connections, the peer connection's ICE state and the ICE credentials (ufrag) of both descriptions,
# and whether the peer connection is still the one marked before the kill.
PAGE_STATE_JS = """
async () => {
  const visit = window.careLineVisit;
  const pc = visit.pc;
  let frames = 0, freezes = 0, freezeSeconds = 0;
  if (pc) (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      frames += s.framesDecoded || 0;
      freezes += s.freezeCount || 0;
      freezeSeconds += s.totalFreezesDuration || 0;
    }
  });
  const ufrag = (d) => (d && (d.sdp.match(/a=ice-ufrag:(\\S+)/) || [])[1]) || null;
  return {frames, freezes, freezeSeconds, connections: visit.connections, ice: pc && pc.iceConnectionState,
          signaling: pc && pc.signalingState, samePc: !!pc && pc === window.__pcBeforeKill,
          localUfrag: ufrag(pc && pc.localDescription), remoteUfrag: ufrag(pc && pc.remoteDescription),
          status: document.getElementById("visit-status").dataset.state};
}
"""


# Before any page script: every WebSocket the page opens is recorded (URL, page times of creation, open, close).
WEBSOCKET_LOG_JS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const entry = {url: String(url), at: performance.now(), opened: null, closed: null, code: null};
      window.__sockets.push(entry);
      this.addEventListener("open", () => { entry.opened = performance.now(); });
      this.addEventListener("close", (e) => { entry.closed = performance.now(); entry.code = e.code; });
    }
  };
})();
"""

# The visit sockets a page has opened, in order.
VISIT_SOCKETS_JS = """() => window.__sockets.filter((s) => s.url.includes("/ws/visit/"))"""


class HaproxyAdmin:
    """HAProxy's runtime API on a unix socket (`stats socket ... level admin`): one command per connection."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.path))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()


@pytest.fixture
def video_nodes(personas: Any, turn_server: Any) -> Iterator[dict[str, Any]]:
    """Nodes A and B (daphne, TURN configured, relay forced) and HAProxy with an admin socket; all stopped
    afterwards (a node already killed by the test is only reaped)."""
    env = node_env(
        TURN_URLS=turn_server.url,
        TURN_SECRET=turn_server.secret,
        TURN_TTL_SECONDS="600",
        VIDEO_FORCE_RELAY="true",
    )
    ports = {"a": free_port(), "b": free_port(), "proxy": free_port()}
    ids = {n: f"node-{n}-{uuid.uuid4().hex[:8]}" for n in ("a", "b")}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    log_dir = Path(settings.VAR_DIR) / "test-chaos-video"
    log_dir.mkdir(exist_ok=True)
    admin_socket = log_dir / f"haproxy-{ports['proxy']}.sock"
    try:
        for name in ("a", "b"):
            processes[name] = start_node(port=ports[name], node_id=ids[name], env=env, log=log_dir / f"{name}.log")
        config = topology.haproxy_config(
            bind_port=ports["proxy"],
            nodes=[topology.Node("a", ports["a"]), topology.Node("b", ports["b"])],
            check_interval_ms=CHECK_INTERVAL_MS,
        )
        # The test's own addition: the runtime API, to hold node B out of rotation while the pages join.
        config = config.replace("global\n", f"global\n    stats socket {admin_socket} mode 600 level admin\n", 1)
        processes["proxy"] = start_proxy(config, ports=ports, log_dir=log_dir)
        yield {"ports": ports, "processes": processes, "ids": ids, "admin": HaproxyAdmin(admin_socket)}
    finally:
        stop_nodes(processes, node_ids=ids.values())
        with contextlib.suppress(FileNotFoundError):
            admin_socket.unlink()


def proxied_node(base: str) -> str:
    """The node id that answers `/readyz` through the proxy ("" while HAProxy has no node in rotation)."""
    response = httpx.get(f"{base}/readyz", timeout=10)
    return str(response.json().get("node", "")) if response.status_code == 200 else ""


def finish_sessions(node_id: str) -> int:
    """Open video sessions (`drain_policy = "finish"`) of a node, as its drain watcher last published them."""
    return int((drain.open_sessions(node_id) or {}).get("finish", -1))


def state(page: Any) -> dict[str, Any]:
    """One reading of a page (PAGE_STATE_JS): frames, freezes, connections, ICE and signaling state, ufrags."""
    return dict(page.evaluate(PAGE_STATE_JS))


def relay_media(page: Any) -> dict[str, Any]:
    """The page decodes video through a relay pair and its frame count is rising; returns the last reading."""
    first = wait_until_value(
        lambda: (m := page.evaluate(MEDIA_STATE_JS))["frames"] > 0 and m["candidate"] == "relay" and m, 60
    )
    return dict(wait_until_value(lambda: (m := page.evaluate(MEDIA_STATE_JS))["frames"] > first["frames"] and m, 15))


def wait_until_value(predicate: Any, timeout: float) -> Any:
    """Like `wait_until`, returning the predicate's first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def longest_flat(samples: list[tuple[float, int]]) -> float:
    """Longest time (s) the frame count was seen not to move: from the first to the last of consecutive readings
    with the same count (samples: (t, frames) in time order). A lower bound of a freeze, and no false one when the
    page itself is slow to answer (no readings then, not equal readings)."""
    flat, since, count = 0.0, samples[0][0], samples[0][1]
    for t, frames in samples[1:]:
        if frames != count:
            since, count = t, frames
        flat = max(flat, t - since)
    return flat


def test_daphne_killed_mid_visit_media_flows_and_signaling_moves_to_the_other_node(
    personas: Any, video_nodes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ports, ids, processes, admin = (video_nodes[k] for k in ("ports", "ids", "processes", "admin"))
    base = f"http://127.0.0.1:{ports['proxy']}"

    # An accepted North case and its video visit (made before the browsers start: their loop runs here).
    case = case_enqueue(clinic=personas.north, callback_number="+15555550142", acuity=3)
    services.claim_next(user=personas.alice)
    services.accept(user=personas.alice, case_id=case.pk)
    started = visits.visit_start(user=personas.alice, case_id=case.pk, base_url="https://careline.test")
    room = started.visit.room
    join_path = urlparse(started.link).path

    # Both pages must join on node A: B is held in maintenance meanwhile.
    assert admin("set server daphne/b state maint").strip() == ""
    wait_until(lambda: proxied_node(base) == ids["a"], 15, "node A in rotation, alone")
    cookie_name, cookie_value = session_cookie(personas.alice).split("=", 1)

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API keeps a loop on this thread
    with sync_playwright() as playwright:
        browsers = [
            playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *MEDIA_ARGS])
            for _ in range(2)
        ]
        try:
            pages = []
            for browser, role in zip(browsers, ("nurse", "patient"), strict=True):
                context = browser.new_context(base_url=base, permissions=["camera", "microphone"])
                context.add_init_script(WEBSOCKET_LOG_JS)
                page = context.new_page()
                page.set_default_timeout(30_000)
                trace_page(page, role)
                pages.append(page)
            nurse, patient = pages
            nurse.context.add_cookies([{"name": cookie_name, "value": cookie_value, "url": base}])

            nurse.goto(f"/console/visits/{room}/")
            patient.goto(join_path)
            patient.locator("#join-visit").click()
            expect(patient).to_have_url(re.compile(rf"/visit/{room}/$"))
            for page in (nurse, patient):
                expect(page.locator("#visit-status")).to_have_attribute("data-state", "connected", timeout=CONNECT_MS)
            for page in (nurse, patient):
                relay_media(page)

            # Both signaling sockets are on node A (its watcher publishes its open video sessions).
            wait_until(lambda: finish_sessions(ids["a"]) == 2, 15, "both visit sockets on node A")
            assert finish_sessions(ids["b"]) == 0
            # B back in rotation: with A holding the sockets, leastconn sends the next request to B.
            assert admin("set server daphne/b state ready").strip() == ""
            wait_until(lambda: httpx.get(f"{base}/readyz", timeout=10).json()["node"] == ids["b"], 20, "B in rotation")
            # Three other consoles (dave's) connect through the proxy and land on B. Once A is dead (0 connections)
            # leastconn prefers it until the health checks mark it down: the pages' first reconnect attempts are
            # sent to the dead node unless the proxy retries them elsewhere.
            baseline_at, baseline = time.monotonic(), {"nurse": state(nurse), "patient": state(patient)}
            dave_name, dave_value = session_cookie(personas.dave).split("=", 1)
            ballast = browsers[0].new_context(base_url=base)
            ballast.add_cookies([{"name": dave_name, "value": dave_value, "url": base}])
            assert admin("set server daphne/a state drain").strip() == ""  # (keeps its sockets, takes no new)
            consoles = ballast.new_page()
            consoles.goto("/healthz")
            consoles.evaluate(
                """(url) => Promise.all([0, 1, 2].map(() => new Promise((resolve, reject) => {
                    const ws = new WebSocket(url);
                    ws.onopen = resolve; ws.onclose = reject; (window.__keep ||= []).push(ws);
                })))""",
                f"ws://127.0.0.1:{ports['proxy']}/ws/console/",
            )
            wait_until(lambda: (drain.open_sessions(ids["b"]) or {}).get("close") == 3, 15, "three consoles on B")
            assert admin("set server daphne/a state ready").strip() == ""

            for page in (nurse, patient):
                page.evaluate("window.__pcBeforeKill = window.careLineVisit.pc")
            before = {"nurse": state(nurse), "patient": state(patient)}
            samples: dict[str, list[tuple[float, int]]] = {"nurse": [], "patient": []}
            reconnected_after: dict[str, float] = {}

            # The crash: SIGKILL, no drain, no close frames from the application.
            marks = {"nurse": nurse.evaluate("performance.now()"), "patient": patient.evaluate("performance.now()")}
            killed_wall = timezone.now()
            killed_at = time.monotonic()
            processes["a"].send_signal(signal.SIGKILL)
            processes["a"].wait(timeout=10)
            # The proxy still counts the dead node in rotation (its health checks have not failed twice yet) and
            # least connections prefers it (no connections left, B holds the consoles): a request now must be
            # passed on to B at once (`option redispatch 1`), not answered 503 after three retries on A.
            probe = httpx.get(f"{base}/healthz", timeout=30)
            probe_s = time.monotonic() - killed_at
            assert probe.status_code == 200, f"HTTP {probe.status_code} from the proxy after {probe_s:.1f} s"
            assert probe.json()["node"] == ids["b"]

            deadline = killed_at + 90
            while True:
                now = time.monotonic()
                for role, page in (("nurse", nurse), ("patient", patient)):
                    reading = state(page)
                    samples[role].append((time.monotonic(), reading["frames"]))
                    if role not in reconnected_after and reading["connections"] > before[role]["connections"]:
                        reconnected_after[role] = time.monotonic() - killed_at
                if now - killed_at >= MEDIA_WINDOW_S and len(reconnected_after) == 2:
                    break
                assert now < deadline, f"after 90 s: reconnected {reconnected_after}"
                time.sleep(0.1)

            # Media kept flowing on both sides, on the same peer connection, through the relay: the frame count was
            # never seen standing still for long, and frames were decoded at a rate comparable to before the kill.
            gaps, rates, freezes = {}, {}, {}
            for role, page in (("nurse", nurse), ("patient", patient)):
                readings = [(t, f) for t, f in samples[role] if t >= killed_at]
                assert readings[-1][0] - killed_at >= MEDIA_WINDOW_S
                assert readings[-1][1] > before[role]["frames"], f"{role}: no frame decoded after the kill"
                gaps[role] = longest_flat([(killed_at, before[role]["frames"]), *readings])
                assert gaps[role] <= MAX_MEDIA_GAP_S, f"{role}: frames stood still for {gaps[role]:.1f} s"
                rate_before = (before[role]["frames"] - baseline[role]["frames"]) / (killed_at - baseline_at)
                rate_after = (readings[-1][1] - before[role]["frames"]) / (readings[-1][0] - killed_at)
                rates[role] = (rate_before, rate_after)
                assert rate_after >= MIN_RATE_RATIO * rate_before, f"{role}: {rate_after:.1f} fps vs {rate_before:.1f}"
                after = state(page)
                freezes[role] = (
                    after["freezes"] - before[role]["freezes"],
                    after["freezeSeconds"] - before[role]["freezeSeconds"],
                )
                assert after["samePc"], f"{role}: the peer connection was rebuilt"
                assert after["ice"] in ("connected", "completed"), after
                assert page.evaluate(MEDIA_STATE_JS)["candidate"] == "relay"

            # Both sockets came back through the proxy, on node B (A is gone). Attempts that failed before are
            # counted (none expected on a quiet machine; under heavy load B may not accept within daphne's 5 s
            # handshake timeout, and visit.js then tries again with backoff).
            wait_until(lambda: finish_sessions(ids["b"]) == 2, 15, "both visit sockets on node B")
            reconnect_s, timeline = {}, {}
            for role, page in (("nurse", nurse), ("patient", patient)):
                # The socket open at the kill (closed by it), then every attempt made since, in order.
                old, *attempts = [
                    s for s in page.evaluate(VISIT_SOCKETS_JS) if s["closed"] is None or s["closed"] >= marks[role]
                ]
                assert old["at"] < marks[role] and old["closed"] is not None, (role, old)
                opened = [i for i, attempt in enumerate(attempts) if attempt["opened"] is not None]
                assert opened, (role, "no reconnect", attempts)
                reconnect_s[role] = (attempts[opened[0]]["opened"] - marks[role]) / 1000
                timeline[role] = (
                    f"closed +{(old['closed'] - marks[role]) / 1000:.2f} s, first retry "
                    f"+{(attempts[0]['at'] - marks[role]) / 1000:.2f} s, open +{reconnect_s[role]:.2f} s, "
                    f"{opened[0]} failed attempt(s)"
                )

            # The visit continues: chat both ways over the new sockets (stored by B, relayed by B) ...
            patient.locator("#chat-input").fill("Still here after the hiccup")
            patient.locator("#chat-send").click()
            expect(nurse.locator('#chat-log li[data-role="patient"][data-type="chat"]')).to_have_text(
                "Patient: Still here after the hiccup", timeout=20_000
            )
            nurse.locator("#chat-input").fill("I can still see you.")
            nurse.locator("#chat-input").press("Enter")
            expect(patient.locator('#chat-log li[data-role="nurse"]')).to_have_text(
                "Nurse: I can still see you.", timeout=20_000
            )

            # ... and an ICE restart negotiated through node B: new credentials on both sides, media after it.
            ufrags = {"nurse": before["nurse"]["localUfrag"], "patient": before["patient"]["localUfrag"]}
            restart_at = time.monotonic()
            nurse.evaluate("window.careLineVisit.pc.restartIce()")

            def restarted() -> bool:
                n, p = state(nurse), state(patient)
                return bool(
                    n["localUfrag"] != ufrags["nurse"]
                    and p["localUfrag"] != ufrags["patient"]
                    and n["remoteUfrag"] == p["localUfrag"]
                    and p["remoteUfrag"] == n["localUfrag"]
                    and n["signaling"] == p["signaling"] == "stable"
                )

            wait_until(restarted, 30, "the ICE restart negotiated over the reconnected sockets")
            restart_s = time.monotonic() - restart_at
            for page in (nurse, patient):
                relay_media(page)
                assert state(page)["ice"] in ("connected", "completed")

            # Nothing lost on the server: the visit is active, both pages' quality reports arrive after the kill.
            visit = VideoVisit.objects.get(pk=started.visit.pk)
            assert visit.state != VideoVisit.State.ENDED
            for role in ("nurse", "patient"):
                wait_until(
                    lambda role=role: QualitySample.objects.filter(
                        session__visit=visit,
                        role=role,
                        at__gt=killed_wall,
                        candidate_type="relay",
                        frames_decoded__gt=before[role]["frames"],
                    ).exists(),
                    20,
                    f"a {role} quality sample after the kill",
                )
            print(
                f"\ndaphne killed mid-visit: a request through the proxy answered by the other node "
                f"{probe_s:.2f} s after the kill; sockets back on the other node after nurse "
                f"{reconnect_s['nurse']:.2f} s, patient {reconnect_s['patient']:.2f} s "
                f"(in the page: {timeline}); "
                f"frames seen standing still at most nurse {gaps['nurse']:.2f} s, patient {gaps['patient']:.2f} s; "
                f"decoded fps before/after the kill nurse {rates['nurse'][0]:.1f}/{rates['nurse'][1]:.1f}, "
                f"patient {rates['patient'][0]:.1f}/{rates['patient'][1]:.1f}; browser-reported freezes after the kill "
                f"(count, s) nurse {freezes['nurse'][0]}, {freezes['nurse'][1]:.2f}, patient {freezes['patient'][0]}, "
                f"{freezes['patient'][1]:.2f}; ICE restart over the new sockets {restart_s:.1f} s"
            )
        finally:
            for browser in browsers:
                browser.close()
