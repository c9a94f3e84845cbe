// CareLine nurse console: the live feed (WebSocket) and keyboard shortcuts. Plain ES module, no build step
// (DESIGN §8).
//
// The feed only says *that* something changed. On every event, and on every (re)connect, the page asks the
// server again for what it shows (htmx re-fetches the partials listening for `careline:*` events on
// <body>): it resynchronises from the server, never from its own memory, so a missed message costs
// freshness for at most one reconnect.

const BACKOFF_START_MS = 500;
// Close codes a draining server sends (careline/drain.py): 4012 "service restart", 4013 "try again later"
// (private-use mirrors of RFC 6455's 1012/1013, which daphne cannot send; those are accepted too). The proxy
// routes the next attempt to another node, so these retry soon (jittered to spread the herd).
const SERVER_RESTART_CODES = new Set([1012, 1013, 4012, 4013]);
const REDIRECT_DELAY_MS = 250;
const BACKOFF_MAX_MS = 15000;
const HEARTBEAT_MS = 20000;

// Supervisor alerts (sent to supervisors' and admins' sockets only): shown in the banner until dismissed.
const ALERT_EVENTS = {
  "case.escalated": (p) =>
    p.reason === "callback_unreached"
      ? `Case ${p.case_id}: patient not reached by callback; on-call paged.`
      : p.reason === "red_flag_while_waiting"
        ? `Case ${p.case_id}: red flag while waiting; transferred to on-call.`
        : `Case ${p.case_id} (acuity ${p.acuity}) is past its target wait; on-call paged.`,
  "slo.breached": (p) => `SLO breached: ${p.kind} is ${p.value} (objective ${p.threshold}).`,
  "slo.cleared": (p) => `SLO met again: ${p.kind} is ${p.value} (objective ${p.threshold}).`,
  "surge.started": (p) => `Surge: acuity ${p.acuity} estimated wait ${Math.round(p.estimated_wait_seconds / 60)} min; ${p.paged} off-shift nurse(s) paged.`,
};

function showAlert(message) {
  const banner = document.getElementById("alert-banner");
  const make = ALERT_EVENTS[message.event];
  if (!banner || !make) return;
  document.getElementById("alert-text").textContent = make(message.payload || {});
  banner.hidden = false;
}

const statusEl = document.getElementById("ws-status");

function setStatus(state, text) {
  if (!statusEl) return;
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

function signal(name, detail = {}) {
  document.body.dispatchEvent(new CustomEvent(name, { detail }));
}

/**
 * Keep one WebSocket open to `path`, reconnecting with capped exponential backoff and jitter.
 * `onOpen()` runs on every (re)connect; `onEvent({event, payload})` on every console event.
 */
const SESSION_ENDED = 4401;

export function connectFeed({ path = "/ws/console/", onOpen, onEvent }) {
  let attempt = 0;
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${window.location.host}${path}`;

  function open() {
    setStatus("connecting", attempt === 0 ? "Connecting…" : "Reconnecting…");
    const socket = new WebSocket(url);
    let heartbeat = null;
    socket.addEventListener("open", () => {
      attempt = 0;
      setStatus("live", "Live");
      // Presence heartbeat: the server marks a console silent for PRESENCE_OFFLINE_SECONDS offline.
      heartbeat = window.setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
      }, HEARTBEAT_MS);
      onOpen?.();
    });
    socket.addEventListener("message", (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      if (data && data.event === "reconnect") {
        // The node is draining: leave it now; the close handler reconnects (through the proxy, elsewhere).
        socket.close(4000, "reconnect");
        return;
      }
      if (data && typeof data.event === "string" && data.event !== "pong") onEvent?.(data);
    });
    socket.addEventListener("close", (closeEvent) => {
      if (heartbeat) window.clearInterval(heartbeat);
      // 4401: the session ended (sign-out elsewhere, expiry, account disabled). Reloading leads to sign-in.
      if (closeEvent.code === SESSION_ENDED) {
        setStatus("offline", "Signed out");
        window.location.reload();
        return;
      }
      const redirected = SERVER_RESTART_CODES.has(closeEvent.code) || closeEvent.code === 4000;
      // A draining node's redirect starts at REDIRECT_DELAY_MS; repeated refusals still back off (capped).
      const base = redirected ? REDIRECT_DELAY_MS : BACKOFF_START_MS;
      const delay = Math.min(BACKOFF_MAX_MS, base * 2 ** attempt) * (0.75 + Math.random() * 0.5);
      attempt += 1;
      setStatus("offline", `Offline — retrying in ${Math.ceil(delay / 1000)} s`);
      window.setTimeout(open, delay);
    });
  }

  open();
}

// Single-key shortcuts (N next case, A accept, D disposition): an element with data-shortcut="<key>" is
// clicked (buttons) or focused (fields). Ignored while typing in a field or with a modifier held.
function onKeydown(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const target = event.target;
  if (target instanceof Element && target.closest("input, textarea, select, [contenteditable]")) return;
  const element = document.querySelector(`[data-shortcut="${CSS.escape(event.key.toLowerCase())}"]`);
  if (!element) return;
  event.preventDefault();
  if (element instanceof HTMLButtonElement) element.click();
  else element.focus();
}

// Ctrl/Cmd+Enter in the note completes the case without reaching for the mouse.
function onNoteKeydown(event) {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    document.getElementById("complete-case")?.click();
  }
}

function init() {
  document.addEventListener("keydown", onKeydown);
  document.getElementById("disposition-note")?.addEventListener("keydown", onNoteKeydown);

  const main = document.getElementById("main");
  const page = main?.dataset.consolePage;
  document.getElementById("alert-dismiss")?.addEventListener("click", () => {
    document.getElementById("alert-banner").hidden = true;
  });
  if (page === "queue" || page === "dashboard") {
    connectFeed({
      onOpen: () => signal("careline:resync"),
      onEvent: (message) => {
        showAlert(message);
        signal("careline:resync", message);
      },
    });
  } else if (page === "case") {
    const caseId = Number(main.dataset.caseId);
    connectFeed({
      onOpen: () => signal("careline:case-changed"),
      onEvent: (message) => {
        if (Number(message.payload?.case_id) === caseId) signal("careline:case-changed", message);
      },
    });
  }
}

init();
