// CareLine video visit: one RTCPeerConnection between the nurse's and the patient's page, signaled over the
// visit's WebSocket (/ws/visit/<room>/, contactcenter.visit_consumers). Plain ES module, no build step.
//
// Negotiation: the "perfect negotiation" pattern (W3C WebRTC 1.0 §10.7; MDN "Establishing a connection:
// the WebRTC perfect negotiation pattern"): both sides offer whenever `negotiationneeded` fires, the polite
// side (the patient) rolls back its own offer on a collision, the impolite side (the nurse) ignores the
// other's. Either side can therefore renegotiate at any time (ICE restart, camera switched off).
//
// Presence and rejoin: each page load has an id (`pageId`). On (re)connect a page says `hello`; the other
// answers `here`. A page that learns a *new* peer id (the other page was reloaded) starts a fresh peer
// connection; the same id (only the WebSocket dropped) keeps the media flowing. Signals are tagged with the
// sender's page id and those from a previous page of the peer are dropped. The socket reconnects with
// capped backoff; messages sent while it is down are queued and flushed on reconnect.
//
// Resilience: ICE restart (`restartIce()`) when the ICE connection fails, or stays `disconnected` for 2 s.
// Metrics: every ICE connection state change is reported (`{type: "ice", state}`; with "connected" or
// "completed" also the local candidate type of the selected pair), so the server can count the visit's call
// setup, ICE failures and the TURN relay share (contactcenter.visits.video_ice_report).
// Quality: every 5 s the page summarises `getStats()` (RTT, jitter, loss, fps, frames decoded, available
// outgoing bitrate, local candidate type of the selected pair) and sends it; the server stores it and
// relays it, and the nurse's page shows the patient's figures live. When the available outgoing bitrate
// stays under the configured threshold for two reports, the page switches its camera off (audio only) and
// back on once it has recovered to twice the threshold.
//
// Chat works without video: messages go over the same socket, files are uploaded over HTTP, and the page
// re-reads the visit's history on every (re)connect (it resynchronises from the server).

const main = document.getElementById("main");
const cfg = {
  room: main.dataset.room,
  role: main.dataset.role,
  forceRelay: main.dataset.forceRelay === "true",
  audioOnlyBelowKbps: Number(main.dataset.audioOnlyBelowKbps || "150"),
  // Nurse's page only: the phone fallback when the video does not connect (budget in seconds).
  connectBudgetSeconds: Number(main.dataset.connectBudgetSeconds || "0"),
  videoFailedUrl: main.dataset.videoFailedUrl || "",
};
const polite = cfg.role === "patient";
const pageId = crypto.randomUUID();
const STATS_EVERY_MS = 5000;
const DISCONNECTED_GRACE_MS = 2000;
const PING_EVERY_MS = 15000;

const $ = (id) => document.getElementById(id);
const localVideo = $("local-video");
const remoteVideo = $("remote-video");

function setStatus(state, text) {
  const el = $("visit-status");
  if (!el) return;
  el.dataset.state = state;
  el.textContent = text;
}

const PEER_NAME = cfg.role === "nurse" ? "The patient" : "Your nurse";

// ---- state -------------------------------------------------------------------------------------------
let localStream = null;
let pc = null;
let peerPage = null;
let makingOffer = false;
let ignoreOffer = false;
let ended = false;
let audioOnly = false;
let lowReports = 0;
let highReports = 0;
let lastCounters = { lost: 0, received: 0, frames: 0, at: 0 };
let signalChain = Promise.resolve();
let disconnectedTimer = null;

// Exposed for tests and troubleshooting (no secrets: the peer connection and the last quality report).
window.careLineVisit = { get pc() { return pc; }, lastStats: null, peerStats: null, pageId, restarts: 0, connections: 0 };

// ---- phone fallback (nurse) -------------------------------------------------------------------------
// When the connection has not reached "connected" within the budget, or failed / stayed disconnected and
// did not recover within the budget after that, the nurse's page shows "Video is not connecting — call the
// patient's phone" (a form posting to the case's call endpoint with reason=video_failed) and notes the
// failure on the case timeline, once per page. A connection that comes back hides the offer again.
let everConnected = false;
let fallbackTimer = null;
let failureNoted = false;

function armFallback(why) {
  if (!cfg.connectBudgetSeconds || cfg.role !== "nurse" || ended) return;
  clearTimeout(fallbackTimer);
  fallbackTimer = setTimeout(() => showFallback(why), cfg.connectBudgetSeconds * 1000);
}

function videoConnected() {
  everConnected = true;
  clearTimeout(fallbackTimer);
  const box = $("video-fallback");
  if (box) box.hidden = true;
}

function showFallback(why) {
  const box = $("video-fallback");
  if (!box || ended) return;
  if (pc && pc.connectionState === "connected") return;
  box.hidden = false;
  window.careLineVisit.fallback = why;
  if (failureNoted || !cfg.videoFailedUrl) return;
  failureNoted = true;
  const form = $("video-fallback-form");
  const token = form ? form.querySelector("input[name=csrfmiddlewaretoken]").value : "";
  const data = new FormData();
  data.append("why", why);
  fetch(cfg.videoFailedUrl, { method: "POST", body: data, credentials: "same-origin", headers: { "X-CSRFToken": token } })
    .catch((err) => console.warn("video failed note", err));
}

// ---- socket ------------------------------------------------------------------------------------------
let socket = null;
let backoff = 500;
const outbox = [];

function send(message) {
  const data = JSON.stringify({ ...message, pc: pageId });
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(data);
  else if (outbox.length < 500) outbox.push(data);
}

function connectSocket() {
  if (ended) return;
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${window.location.host}/ws/visit/${cfg.room}/`);
  let ping = null;
  socket.addEventListener("open", () => {
    backoff = 500;
    window.careLineVisit.connections += 1;
    socket.send(JSON.stringify({ type: "hello", pc: pageId }));
    while (outbox.length) socket.send(outbox.shift());
    loadHistory();
    ping = setInterval(() => send({ type: "ping" }), PING_EVERY_MS);
    if (!peerPage) setStatus("waiting", `${PEER_NAME} will join shortly.`);
  });
  socket.addEventListener("message", (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    onMessage(message);
  });
  socket.addEventListener("close", (event) => {
    clearInterval(ping);
    if (event.code === 4403) { setStatus("refused", "This visit could not be opened. Use the link from your text message."); return; }
    if (event.code === 4409) { setStatus("moved", "This visit is open in another window."); return; }
    if (event.code === 4410 || ended) { onEnded(); return; }
    setStatus("reconnecting", "Reconnecting…");
    setTimeout(connectSocket, backoff + Math.random() * 250);
    backoff = Math.min(backoff * 2, 5000);
  });
}

function onMessage(message) {
  switch (message.type) {
    case "peer":
      if (message.state === "left") {
        setStatus("peer-left", `${PEER_NAME} lost the connection. Waiting for them to rejoin…`);
        return;
      }
      if (message.state === "joined") send({ type: "here" });
      if (message.pc !== peerPage) {
        peerPage = message.pc;
        // Through the same chain as the signals: an offer that arrives while the new connection is being
        // set up (ICE configuration fetch) waits for it instead of being lost.
        enqueue(() => startPeerConnection());
      } else if (pc && ["failed", "disconnected"].includes(pc.iceConnectionState)) {
        restartIce();
      }
      return;
    case "signal":
      if (message.pc !== peerPage) return; // from a previous page of the peer
      enqueue(() => (pc && message.pc === peerPage ? onSignal(message) : undefined));
      return;
    case "quality":
      if (message.role !== cfg.role) {
        window.careLineVisit.peerStats = message;
        showQuality("peer", message);
      }
      return;
    case "chat":
    case "attachment":
      showChatItem(message);
      return;
    case "ended":
      onEnded();
      return;
    default:
      return;
  }
}

// Peer-connection set-up and incoming signals run one at a time, in arrival order.
function enqueue(step) {
  signalChain = signalChain.then(step).catch((err) => console.warn("signaling", err));
}

// ---- peer connection ---------------------------------------------------------------------------------
async function iceConfiguration() {
  const response = await fetch(`/visit/${cfg.room}/ice/`, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(`ICE configuration: HTTP ${response.status}`);
  const body = await response.json();
  return {
    iceServers: body.iceServers,
    iceTransportPolicy: cfg.forceRelay || body.iceTransportPolicy === "relay" ? "relay" : "all",
  };
}

async function startPeerConnection() {
  const forPeer = peerPage;
  const configuration = await iceConfiguration();
  if (forPeer !== peerPage || ended) return; // the peer changed again while we fetched
  if (pc) pc.close();
  makingOffer = false;
  ignoreOffer = false;
  lastCounters = { lost: 0, received: 0, frames: 0, at: 0 };
  const connection = new RTCPeerConnection(configuration);
  pc = connection;
  setStatus("connecting", `Connecting to ${PEER_NAME.toLowerCase()}…`);

  connection.onnegotiationneeded = async () => {
    try {
      makingOffer = true;
      await connection.setLocalDescription();
      if (connection === pc) send({ type: "signal", description: connection.localDescription.toJSON() });
    } catch (err) {
      console.warn("negotiation", err);
    } finally {
      makingOffer = false;
    }
  };
  connection.onicecandidate = ({ candidate }) => {
    if (connection === pc) send({ type: "signal", candidate: candidate ? candidate.toJSON() : null });
  };
  connection.ontrack = ({ streams, track }) => {
    const stream = streams[0] || new MediaStream([track]);
    if (remoteVideo.srcObject !== stream) {
      remoteVideo.srcObject = stream;
      remoteVideo.play().catch(() => {
        // Autoplay with sound refused: play muted and offer to unmute.
        remoteVideo.muted = true;
        remoteVideo.play().catch(() => {});
        const unmute = $("unmute");
        if (unmute) unmute.hidden = false;
      });
    }
  };
  connection.onconnectionstatechange = () => {
    if (connection !== pc) return;
    const state = connection.connectionState;
    if (state === "connected") videoConnected();
    // Before the first connection the budget armed at start keeps running (a failure does not extend it).
    else if ((state === "failed" || state === "disconnected") && everConnected) armFallback("failed");
  };
  connection.oniceconnectionstatechange = () => {
    if (connection !== pc) return;
    const state = connection.iceConnectionState;
    reportIce(connection, state);
    clearTimeout(disconnectedTimer);
    if (state === "connected" || state === "completed") {
      setStatus("connected", `Connected with ${PEER_NAME.toLowerCase()}.`);
    } else if (state === "failed") {
      restartIce();
    } else if (state === "disconnected") {
      setStatus("reconnecting", "Connection unstable, reconnecting…");
      disconnectedTimer = setTimeout(() => {
        if (connection === pc && connection.iceConnectionState === "disconnected") restartIce();
      }, DISCONNECTED_GRACE_MS);
    }
  };
  if (localStream) {
    for (const track of localStream.getTracks()) connection.addTrack(track, localStream);
  } else {
    // No camera/microphone here: still receive the other side.
    connection.addTransceiver("audio", { direction: "recvonly" });
    connection.addTransceiver("video", { direction: "recvonly" });
  }
}

// The local candidate of the selected candidate pair: "host", "srflx", "prflx", "relay" ("" if unknown).
async function selectedCandidateType(connection) {
  const report = await connection.getStats();
  let pair = null;
  report.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || pair; });
  if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
  const local = pair ? report.get(pair.localCandidateId) : null;
  return local && local.candidateType ? local.candidateType : "";
}

function reportIce(connection, state) {
  if (state !== "connected" && state !== "completed") { send({ type: "ice", state }); return; }
  selectedCandidateType(connection)
    .catch(() => "")
    .then((type) => { if (connection === pc) send({ type: "ice", state, candidate_type: type }); });
}

function restartIce() {
  if (!pc || ended) return;
  window.careLineVisit.restarts += 1;
  setStatus("reconnecting", "Reconnecting the call…");
  pc.restartIce();
}

async function onSignal({ description, candidate }) {
  const connection = pc;
  if (description) {
    const collision = description.type === "offer" && (makingOffer || connection.signalingState !== "stable");
    ignoreOffer = !polite && collision;
    if (ignoreOffer) return;
    await connection.setRemoteDescription(description); // a polite side rolls its own offer back implicitly
    if (description.type === "offer") {
      await connection.setLocalDescription();
      send({ type: "signal", description: connection.localDescription.toJSON() });
    }
  } else if (candidate !== undefined) {
    try {
      await connection.addIceCandidate(candidate === null ? undefined : candidate);
    } catch (err) {
      if (!ignoreOffer) console.warn("candidate", err);
    }
  }
}

// ---- quality -----------------------------------------------------------------------------------------
async function collectStats() {
  if (!pc || ended) return;
  const report = await pc.getStats();
  let pair = null;
  let lost = 0;
  let received = 0;
  let frames = 0;
  let fps = null;
  let jitter = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || pair;
    if (s.type === "inbound-rtp") {
      lost += s.packetsLost || 0;
      received += s.packetsReceived || 0;
      if (s.kind === "video") {
        frames += s.framesDecoded || 0;
        if (typeof s.framesPerSecond === "number") fps = s.framesPerSecond;
      }
      if (s.kind === "audio" && typeof s.jitter === "number") jitter = s.jitter * 1000;
    }
  });
  if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
  const local = pair ? report.get(pair.localCandidateId) : null;
  const dLost = Math.max(0, lost - lastCounters.lost);
  const dReceived = Math.max(0, received - lastCounters.received);
  lastCounters = { lost, received, frames, at: Date.now() };
  const outgoingKbps = pair && typeof pair.availableOutgoingBitrate === "number" ? pair.availableOutgoingBitrate / 1000 : null;
  adaptToBandwidth(outgoingKbps);
  const stats = {
    rtt_ms: pair && typeof pair.currentRoundTripTime === "number" ? pair.currentRoundTripTime * 1000 : null,
    jitter_ms: jitter,
    packet_loss_pct: dLost + dReceived > 0 ? (100 * dLost) / (dLost + dReceived) : null,
    fps,
    frames_decoded: frames,
    outgoing_kbps: outgoingKbps,
    candidate_type: local ? local.candidateType : "",
    audio_only: audioOnly,
  };
  window.careLineVisit.lastStats = stats;
  showQuality("self", stats);
  send({ type: "stats", ...stats });
}

function adaptToBandwidth(kbps) {
  if (kbps === null || !localStream) return;
  if (kbps < cfg.audioOnlyBelowKbps) { lowReports += 1; highReports = 0; } else if (kbps > 2 * cfg.audioOnlyBelowKbps) { highReports += 1; lowReports = 0; }
  const video = localStream.getVideoTracks();
  if (!audioOnly && lowReports >= 2) {
    audioOnly = true;
    video.forEach((t) => { t.enabled = false; });
  } else if (audioOnly && highReports >= 2) {
    audioOnly = false;
    video.forEach((t) => { t.enabled = true; });
  }
  const notice = $("audio-only");
  if (notice) notice.hidden = !audioOnly;
}

function level(stats) {
  const rtt = stats.rtt_ms ?? 0;
  const loss = stats.packet_loss_pct ?? 0;
  if (rtt > 400 || loss > 5) return ["poor", "poor"];
  if (rtt > 200 || loss > 2) return ["fair", "fair"];
  return ["good", "good"];
}

function fmt(value, unit, digits = 0) {
  return typeof value === "number" ? `${value.toFixed(digits)} ${unit}` : "?";
}

function showQuality(who, stats) {
  const el = $(who === "self" ? "quality-self" : "quality-peer");
  if (!el) return;
  const [state, word] = level(stats);
  el.dataset.level = state;
  el.dataset.candidate = stats.candidate_type || "";
  el.textContent =
    `${word}: RTT ${fmt(stats.rtt_ms, "ms")}, jitter ${fmt(stats.jitter_ms, "ms", 1)}, loss ${fmt(stats.packet_loss_pct, "%", 1)}, ` +
    `${fmt(stats.fps, "fps")}, ${stats.candidate_type || "?"}${stats.audio_only ? ", audio only" : ""}`;
}

// ---- chat and attachments (work without video) -------------------------------------------------------
const chatLog = $("chat-log");
const shown = new Set();

function showChatItem(item) {
  if (!chatLog) return;
  const key = `${item.type}:${item.id}`;
  if (shown.has(key)) return;
  shown.add(key);
  const li = document.createElement("li");
  li.dataset.role = item.role;
  li.dataset.type = item.type;
  const who = document.createElement("strong");
  who.textContent = item.role === cfg.role ? "You: " : item.role === "nurse" ? "Nurse: " : "Patient: ";
  li.append(who);
  if (item.type === "chat") {
    li.append(document.createTextNode(item.body));
  } else if (cfg.role === "nurse" && chatLog.dataset.caseId) {
    const link = document.createElement("a");
    link.href = `/console/cases/${chatLog.dataset.caseId}/attachments/${item.id}/`;
    link.textContent = `${item.filename} (${Math.ceil(item.size / 1024)} KB)`;
    li.append(link);
  } else {
    li.append(document.createTextNode(`sent ${item.filename} (${Math.ceil(item.size / 1024)} KB)`));
  }
  chatLog.append(li);
}

async function loadHistory() {
  if (!chatLog) return;
  try {
    const response = await fetch(`/visit/${cfg.room}/history/`, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) return;
    const body = await response.json();
    body.items.forEach(showChatItem);
  } catch (err) {
    console.warn("history", err);
  }
}

function setUpChat() {
  const form = $("chat-form");
  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("chat-input");
      const text = input.value.trim();
      if (!text) return;
      send({ type: "chat", body: text });
      input.value = "";
    });
  }
  const upload = $("attachment-form");
  if (upload) {
    upload.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("attachment-input");
      const status = $("attachment-status");
      if (!input.files.length) return;
      const data = new FormData();
      data.append("file", input.files[0]);
      status.textContent = "Sending…";
      const token = upload.querySelector("input[name=csrfmiddlewaretoken]").value;
      try {
        const response = await fetch(upload.dataset.uploadUrl, {
          method: "POST", body: data, credentials: "same-origin", headers: { "X-CSRFToken": token },
        });
        const body = await response.json();
        if (response.ok) { status.textContent = "Sent."; input.value = ""; showChatItem(body); }
        else status.textContent = body.error || "Could not send the file.";
      } catch {
        status.textContent = "Could not send the file. Check your connection.";
      }
    });
  }
}

// ---- end ---------------------------------------------------------------------------------------------
let endShown = false;

function onEnded() {
  ended = true;
  clearTimeout(fallbackTimer);
  if (endShown) return;
  endShown = true;
  if (pc) pc.close();
  pc = null;
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  if (socket && socket.readyState === WebSocket.OPEN) socket.close();
  setStatus("ended", "The video visit has ended.");
}

// ---- start -------------------------------------------------------------------------------------------
const MEDIA_HELP = {
  NotAllowedError: "Camera or microphone access was blocked. Allow them in your browser's site settings (the camera icon in the address bar), then reload this page.",
  NotFoundError: "No camera or microphone was found. You can still talk with your nurse by phone.",
  NotReadableError: "Your camera is used by another app. Close it, then reload this page.",
};

async function start() {
  setUpChat();
  const unmute = $("unmute");
  if (unmute) unmute.addEventListener("click", () => { remoteVideo.muted = false; unmute.hidden = true; });
  try {
    localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    localVideo.srcObject = localStream;
    localVideo.muted = true;
    localVideo.play().catch(() => {});
    const check = $("device-check");
    if (check) { check.dataset.state = "ok"; check.textContent = "Your camera and microphone work."; }
  } catch (err) {
    const help = $("device-check");
    if (help) { help.dataset.state = "error"; help.textContent = MEDIA_HELP[err.name] || `Camera or microphone unavailable (${err.name}).`; }
    localStream = null; // join anyway: the nurse can still see that the patient is here
  }
  armFallback("budget");
  connectSocket();
  setInterval(() => { collectStats().catch((err) => console.warn("stats", err)); }, STATS_EVERY_MS);
}

start();
