// CareLine phone simulator: plays the part of Twilio and the caller's phone in the browser.
//
// Every webhook goes through the server (`data-endpoint`), which adds the Twilio parameters, signs the
// request like Twilio and returns the TwiML as JSON actions: say, play, pause, gather, enqueue, dial,
// redirect, hangup. This module shows each <Say>, collects keypad digits for <Gather>, follows <Redirect>,
// polls the <Enqueue> waitUrl while on hold, shows <Dial> as a transfer, and posts the status callback
// when the call ends.

const root = document.getElementById("simulator");
const endpoint = root.dataset.endpoint;
const voicePath = root.dataset.voicePath;
const statusPath = root.dataset.statusPath;
const csrfToken = root.dataset.csrf;

const el = {
  from: document.getElementById("sim-from"),
  fromCustom: document.getElementById("sim-from-custom"),
  to: document.getElementById("sim-to"),
  call: document.getElementById("sim-call"),
  hangup: document.getElementById("sim-hangup"),
  state: document.getElementById("sim-state"),
  callSid: document.getElementById("sim-callsid"),
  digits: document.getElementById("sim-digits"),
  send: document.getElementById("sim-send"),
  noInput: document.getElementById("sim-noinput"),
  log: document.getElementById("sim-log"),
};

const HOLD_POLL_MS = 5000;

let call = null; // {sid, from, to, startedAt}
let gather = null; // {action, numDigits}
let buffer = "";
let holdTimer = null;
let waitUrl = null;

function setState(state) {
  el.state.textContent = state;
  el.state.dataset.state = state;
  const live = call !== null && state !== "ended";
  el.call.disabled = live;
  el.hangup.disabled = !live;
}

function logLine(kind, text, language) {
  const item = document.createElement("li");
  item.className = kind;
  item.dataset.testid = kind === "say" ? "sim-say" : `sim-${kind}`;
  item.textContent = text;
  if (language) {
    item.lang = language;
    item.dataset.language = language;
    const tag = document.createElement("span");
    tag.className = "lang";
    tag.textContent = language;
    item.appendChild(tag);
  }
  el.log.appendChild(item);
  el.log.scrollTop = el.log.scrollHeight;
}

async function post(path, params = {}) {
  const response = await fetch(endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
    body: JSON.stringify({ path, params, call: { sid: call.sid, from: call.from, to: call.to } }),
  });
  const data = await response.json();
  if (data.callSid && !call.sid) {
    call.sid = data.callSid;
    el.callSid.textContent = data.callSid;
  }
  if (!response.ok || data.error) {
    logLine("error", `Webhook ${path} answered ${data.status || response.status}: ${data.error || ""}`);
  }
  return data;
}

// Run a TwiML document's actions until one waits for the caller (gather), the call leaves the flow
// (enqueue, dial) or ends (hangup).
async function run(data) {
  for (const action of data.actions || []) {
    switch (action.verb) {
      case "say":
        logLine("say", action.text, action.language);
        break;
      case "play":
        logLine("event", `♪ playing ${action.url}`);
        break;
      case "pause":
        break;
      case "gather":
        gather = { action: action.action, numDigits: action.numDigits };
        setState("in-call");
        return;
      case "enqueue":
        startHold(action.waitUrl, action.queue);
        return;
      case "dial":
        logLine("event", `Transferred to on-call ${action.number}`);
        setState("transferred");
        return;
      case "redirect":
        return run(await post(action.url));
      case "hangup":
        await end("completed");
        return;
      default:
        logLine("event", `<${action.verb}> not simulated`);
    }
  }
  if (call && el.state.dataset.state !== "ended" && !gather) {
    await end("completed"); // a document without a waiting verb ends the call, as on Twilio
  }
}

async function submit(digits) {
  if (!gather) return;
  const { action } = gather;
  gather = null;
  buffer = "";
  el.digits.textContent = "";
  logLine("you", digits === "" ? "(no input)" : digits);
  await run(await post(action, { Digits: digits }));
}

function press(key) {
  if (!gather) return;
  if (key === "#") {
    submit(buffer);
    return;
  }
  buffer += key;
  el.digits.textContent = buffer;
  if (gather.numDigits && buffer.length >= gather.numDigits) submit(buffer);
}

function startHold(url, queue) {
  waitUrl = url;
  setState("on-hold");
  logLine("event", `On hold in queue ${queue}`);
  pollWait();
  holdTimer = setInterval(pollWait, HOLD_POLL_MS);
}

async function pollWait() {
  if (!waitUrl || !call) return;
  const data = await post(waitUrl);
  for (const action of data.actions || []) {
    if (action.verb === "say") logLine("say", action.text, action.language);
    if (action.verb === "hangup") await end("completed");
  }
}

function stopHold() {
  if (holdTimer) clearInterval(holdTimer);
  holdTimer = null;
  waitUrl = null;
}

async function end(status) {
  if (!call || el.state.dataset.state === "ended") return;
  stopHold();
  gather = null;
  const seconds = Math.round((Date.now() - call.startedAt) / 1000);
  await post(statusPath, { CallStatus: status, CallDuration: String(seconds) });
  logLine("event", `Call ended (${status}, ${seconds} s)`);
  setState("ended");
}

async function dial() {
  const from = el.from.value || el.fromCustom.value.trim();
  if (!from || !el.to.value) {
    logLine("error", "Choose a caller ID and a clinic number first.");
    return;
  }
  el.log.replaceChildren();
  call = { sid: "", from, to: el.to.value, startedAt: Date.now() };
  el.callSid.textContent = "–";
  setState("ringing");
  await run(await post(voicePath));
}

el.from.addEventListener("change", () => {
  el.fromCustom.hidden = el.from.value !== "";
});
el.call.addEventListener("click", dial);
el.hangup.addEventListener("click", () => end("completed"));
el.send.addEventListener("click", () => submit(buffer));
el.noInput.addEventListener("click", () => submit(""));
for (const key of document.querySelectorAll(".sim-key")) {
  key.addEventListener("click", () => press(key.dataset.digit));
}
document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) return;
  if (/^[0-9*#]$/.test(event.key)) press(event.key);
  else if (event.key === "Enter") submit(buffer);
});
setState("idle");
