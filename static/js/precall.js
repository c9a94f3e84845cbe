// CareLine pre-call test: camera and microphone check against the server's WebRTC echo peer.
// Plain ES module, no build step, no inline script or style (strict CSP).
//
// Embedding: any element with `data-precall-url` (the echo's offer URL) and `data-precall-token` (a
// pre-call token for patients; empty for signed-in staff, who are authorized by their session and send
// `data-precall-csrf`; optional `data-precall-ice-servers`, JSON). The module builds its UI inside that element. The test: ask for the camera and
// microphone (with help text when the browser refuses), show the local preview, connect to the echo (one
// non-trickle offer/answer), show the video the server sends back, measure for a few seconds with
// getStats(): round-trip time (`candidate-pair.currentRoundTripTime`), packet loss (both directions) and
// frames per second, whether the microphone picks up sound, then a verdict (good / poor / failed) with advice.
//
// State for page scripts and tests is mirrored on the root element: data-state (idle, permission,
// connecting, measuring, done), data-verdict, data-rtt-ms, data-loss-percent, data-fps, data-frames-decoded.

const MEASURE_SECONDS = 6;
const MAX_MEASURE_SECONDS = 15; // keep measuring past MEASURE_SECONDS while no returned frame is decoded yet
const CONNECT_TIMEOUT_MS = 15000;
const GATHER_TIMEOUT_MS = 3000;
// Verdict thresholds. A video call is comfortable under ~300 ms round trip (ITU-T G.114 puts one-way delay
// under 150 ms for interactive use), with loss under ~3 % and at least ~10 frames per second.
const GOOD_RTT_MS = 300;
const GOOD_LOSS_PERCENT = 3;
const GOOD_FPS = 10;

const PERMISSION_HELP = {
  NotAllowedError:
    "Your browser blocked the camera or microphone. Click the camera icon in the address bar (or your " +
    "browser's site settings), choose Allow for this site, then press Start test again.",
  SecurityError:
    "Your browser blocked the camera or microphone for this page. Open the link directly in Chrome, " +
    "Edge, Firefox or Safari (not inside another app), then try again.",
  NotFoundError:
    "No camera or microphone was found. Plug one in (or turn it on), then press Start test again. " +
    "On a phone, make sure no other app is using the camera.",
  NotReadableError:
    "The camera or microphone is in use by another application. Close it (video apps, other tabs), then " +
    "press Start test again.",
  OverconstrainedError: "Your camera does not support the requested settings. Try another camera.",
};

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, value);
  }
  if (text) node.textContent = text;
  return node;
}

function waitFor(check, subscribe, timeoutMs) {
  // Resolves when check() is true (re-checked on each event), false on timeout.
  return new Promise((resolve) => {
    if (check()) return resolve(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    const listener = () => check() && done(true);
    const unsubscribe = subscribe(listener);
    function done(value) {
      clearTimeout(timer);
      unsubscribe();
      resolve(value);
    }
  });
}

function gatheringComplete(pc) {
  return waitFor(
    () => pc.iceGatheringState === "complete",
    (fn) => {
      pc.addEventListener("icegatheringstatechange", fn);
      return () => pc.removeEventListener("icegatheringstatechange", fn);
    },
    GATHER_TIMEOUT_MS,
  );
}

function connected(pc) {
  // true once connected; false when the connection fails, closes, or the timeout passes.
  return waitFor(
    () => ["connected", "failed", "closed"].includes(pc.connectionState),
    (fn) => {
      pc.addEventListener("connectionstatechange", fn);
      return () => pc.removeEventListener("connectionstatechange", fn);
    },
    CONNECT_TIMEOUT_MS,
  ).then(() => pc.connectionState === "connected");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One getStats() reading: RTT (ms), loss (percent, the worse direction), fps and frames decoded of the
// returned video, and whether the returned audio carries sound.
export async function readStats(pc) {
  const report = await pc.getStats();
  const out = { rttMs: null, lossPercent: null, upLossPercent: null, downLossPercent: null, fps: null, framesDecoded: 0, micEnergy: 0, audioPacketsBack: 0 };
  let selectedPairId = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) selectedPairId = s.selectedCandidatePairId;
  });
  let down = { lost: 0, received: 0 };
  let up = { lost: 0, sent: 0 };
  let remoteRtt = null;
  report.forEach((s) => {
    if (s.type === "candidate-pair") {
      const selected = selectedPairId ? s.id === selectedPairId : s.nominated && s.state === "succeeded";
      if (selected && typeof s.currentRoundTripTime === "number") out.rttMs = s.currentRoundTripTime * 1000;
    } else if (s.type === "inbound-rtp") {
      down.lost += Math.max(s.packetsLost || 0, 0);
      down.received += s.packetsReceived || 0;
      if (s.kind === "video") {
        out.framesDecoded = s.framesDecoded || 0;
        if (typeof s.framesPerSecond === "number") out.fps = s.framesPerSecond;
      } else if (s.kind === "audio") {
        out.audioPacketsBack = s.packetsReceived || 0;
      }
    } else if (s.type === "media-source" && s.kind === "audio") {
      // The microphone's own signal, before encoding: proves it picks up sound.
      out.micEnergy = s.totalAudioEnergy || 0;
    } else if (s.type === "outbound-rtp") {
      up.sent += s.packetsSent || 0;
    } else if (s.type === "remote-inbound-rtp") {
      // The echo peer's receiver reports about what we send (RTCP RR).
      up.lost += Math.max(s.packetsLost || 0, 0);
      if (typeof s.roundTripTime === "number") remoteRtt = s.roundTripTime * 1000;
    }
  });
  if (out.rttMs === null && remoteRtt !== null) out.rttMs = remoteRtt;
  if (down.received + down.lost > 0) out.downLossPercent = (100 * down.lost) / (down.received + down.lost);
  if (up.sent > 0) out.upLossPercent = (100 * up.lost) / up.sent;
  const losses = [out.upLossPercent, out.downLossPercent].filter((v) => v !== null);
  out.lossPercent = losses.length ? Math.max(...losses) : null;
  return out;
}

// good / poor / failed, with advice, from the last reading (rules at the top of the module).
export function verdictFor(stats) {
  if (!stats || stats.framesDecoded === 0) {
    return ["failed", "Your video did not come back from CareLine. Check that your network allows video calls (some work or hotel Wi-Fi block them), or try another network. The nurse can call you by phone instead."];
  }
  const problems = [];
  if (stats.rttMs !== null && stats.rttMs > GOOD_RTT_MS) problems.push("the connection is slow (high delay)");
  if (stats.lossPercent !== null && stats.lossPercent > GOOD_LOSS_PERCENT) problems.push("data is being lost");
  if (stats.fps !== null && stats.fps < GOOD_FPS) problems.push("the video is choppy");
  if (problems.length) {
    return ["poor", `The call may be unstable: ${problems.join(", ")}. Move closer to your Wi-Fi router, close other apps or downloads, or switch to a mobile network. If it stays poor, the nurse can call you by phone.`];
  }
  return ["good", "Your camera, microphone and connection are ready for the video visit."];
}

export class PrecallTest {
  constructor(root) {
    this.root = root;
    this.url = root.dataset.precallUrl;
    this.token = root.dataset.precallToken || "";
    this.csrf = root.dataset.precallCsrf || "";
    // Optional: RTCIceServer list as JSON (e.g. the visit's short-lived TURN credentials), so a patient whose
    // network blocks direct UDP is tested through the same relay the visit would use.
    try {
      this.iceServers = JSON.parse(root.dataset.precallIceServers || "[]");
    } catch {
      this.iceServers = [];
    }
    this.pc = null;
    this.stream = null;
    this.hangupUrl = null;
    this.build();
  }

  build() {
    const r = this.root;
    r.classList.add("precall");
    this.button = el("button", { type: "button", class: "primary", "data-precall-role": "start" }, "Start test");
    this.status = el("p", { role: "status", "aria-live": "polite", "data-precall-role": "status" }, "Press Start test to check your camera, microphone and connection.");
    this.help = el("p", { class: "precall-help", "data-precall-role": "help", hidden: true });
    const videos = el("div", { class: "precall-videos" });
    const mine = el("figure");
    this.local = el("video", { autoplay: true, muted: true, playsinline: true, "data-precall-role": "local" });
    this.local.muted = true;
    mine.append(this.local, el("figcaption", {}, "Your camera"));
    const back = el("figure");
    this.returned = el("video", { autoplay: true, muted: true, playsinline: true, "data-precall-role": "returned" });
    this.returned.muted = true; // the echo of your own voice would feed back; the microphone shows below
    back.append(this.returned, el("figcaption", {}, "Returned by CareLine"));
    videos.append(mine, back);
    const figures = el("dl", { class: "precall-figures" });
    this.fields = {};
    for (const [key, label] of [["rtt", "Round-trip time"], ["loss", "Packet loss"], ["fps", "Frames per second"], ["mic", "Microphone"]]) {
      const dd = el("dd", { "data-precall-role": key }, "—");
      figures.append(el("dt", {}, label), dd);
      this.fields[key] = dd;
    }
    this.verdict = el("p", { class: "precall-verdict", "data-precall-role": "verdict", hidden: true });
    r.replaceChildren(this.button, this.status, this.help, videos, figures, this.verdict);
    this.button.addEventListener("click", () => this.run());
    this.setState("idle");
  }

  setState(state) {
    this.root.dataset.state = state;
    this.button.disabled = !["idle", "done"].includes(state);
  }

  say(text) {
    this.status.textContent = text;
  }

  showHelp(text) {
    this.help.textContent = text;
    this.help.hidden = !text;
  }

  finish(verdict, advice) {
    this.root.dataset.verdict = verdict;
    this.verdict.dataset.verdict = verdict;
    this.verdict.textContent = `${verdict === "good" ? "Good" : verdict === "poor" ? "Poor" : "Failed"}: ${advice}`;
    this.verdict.hidden = false;
    this.button.textContent = "Test again";
    this.setState("done");
    this.stop();
  }

  async run() {
    delete this.root.dataset.verdict;
    this.verdict.hidden = true;
    this.showHelp("");
    this.setState("permission");
    this.say("Asking for your camera and microphone… Choose Allow if your browser asks.");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15 } },
        audio: true,
      });
    } catch (err) {
      const help = PERMISSION_HELP[err && err.name] || `The camera or microphone could not start (${(err && err.name) || "unknown error"}).`;
      this.showHelp(help);
      this.say("Camera or microphone unavailable.");
      this.finish("failed", "Fix the camera or microphone first (see above).");
      return;
    }
    this.local.srcObject = this.stream;
    this.setState("connecting");
    this.say("Connecting to CareLine…");
    try {
      await this.connect();
    } catch (err) {
      this.say("Could not connect.");
      this.finish("failed", err.message || "The test could not connect. Try again in a minute, or try another network.");
      return;
    }
    this.setState("measuring");
    this.say("Connected. Measuring your connection…");
    let stats = null;
    for (let i = 1; i <= MAX_MEASURE_SECONDS; i++) {
      await sleep(1000);
      if (!this.pc) break;
      stats = await readStats(this.pc);
      this.show(stats);
      if (i >= MEASURE_SECONDS && stats.framesDecoded > 0) break;
    }
    this.say("Test finished.");
    this.finish(...verdictFor(stats));
  }

  async connect() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const returned = new MediaStream();
    this.returned.srcObject = returned;
    pc.addEventListener("track", (event) => returned.addTrack(event.track));
    for (const track of this.stream.getTracks()) pc.addTrack(track, this.stream);
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc); // non-trickle: the offer carries our candidates
    const headers = { "Content-Type": "application/json" };
    if (this.token) headers["X-Precall-Token"] = this.token;
    if (this.csrf) headers["X-CSRFToken"] = this.csrf;
    const response = await fetch(this.url, {
      method: "POST",
      headers,
      credentials: "same-origin",
      body: JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }),
    });
    if (response.status === 403) throw new Error("This test link has expired. Reload the page and try again.");
    if (response.status === 429 || response.status === 503) {
      const wait = response.headers.get("Retry-After") || "30";
      throw new Error(`The test is busy right now. Try again in ${wait} seconds.`);
    }
    if (!response.ok) throw new Error("The test could not start. Reload the page and try again.");
    const answer = await response.json();
    this.hangupUrl = answer.hangup_url;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    if (!(await connected(pc))) {
      throw new Error("Your browser could not reach CareLine's video service. Your network may block video calls; try another network, or the nurse can call you by phone.");
    }
  }

  show(stats) {
    const r = this.root.dataset;
    r.framesDecoded = String(stats.framesDecoded);
    if (stats.rttMs !== null) {
      r.rttMs = String(Math.round(stats.rttMs));
      this.fields.rtt.textContent = `${Math.round(stats.rttMs)} ms`;
    }
    if (stats.lossPercent !== null) {
      r.lossPercent = stats.lossPercent.toFixed(1);
      const parts = [];
      if (stats.upLossPercent !== null) parts.push(`sending ${stats.upLossPercent.toFixed(1)} %`);
      if (stats.downLossPercent !== null) parts.push(`receiving ${stats.downLossPercent.toFixed(1)} %`);
      this.fields.loss.textContent = `${stats.lossPercent.toFixed(1)} % (${parts.join(", ")})`;
    }
    if (stats.fps !== null) {
      r.fps = String(Math.round(stats.fps));
      this.fields.fps.textContent = String(Math.round(stats.fps));
    }
    const back = stats.audioPacketsBack > 0 ? ", your audio comes back" : "";
    this.fields.mic.textContent =
      stats.micEnergy > 0 ? `Sound detected${back}` : "No sound yet: speak, and check that your microphone is not muted";
  }

  stop() {
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
    if (this.hangupUrl) {
      const headers = this.token ? { "X-Precall-Token": this.token } : {};
      fetch(this.hangupUrl, { method: "POST", headers, credentials: "same-origin" }).catch(() => {});
      this.hangupUrl = null;
    }
    if (this.stream) {
      for (const track of this.stream.getTracks()) track.stop();
      this.stream = null;
    }
  }
}

export function bindAll(scope = document) {
  return [...scope.querySelectorAll("[data-precall-url][data-precall-token]")].map((root) => new PrecallTest(root));
}

bindAll();
