// The site page /s/<token>: checks before joining, the coming briefings, the briefing itself.
import { LiveClient, linkVerdict } from "./client.js";
import { cameraVerdict, chime, meter, micVerdict, networkCheck, openCamera } from "./checks.js";
import { watchConnection } from "./banner.js";
import { $, fmtDuration, t } from "./strings.js";

const root = $("site-app");
const token = root.dataset.token;
const base = `/s/${token}`;
const JOINED_KEY = `confsvc-joined-${token}`;
const proto = location.protocol === "https:" ? "wss:" : "ws:";

// One modest layer (at most 640 px wide, 400 kbps). On a short uplink the browser drops frames rather
// than pixels: a hall's picture stays legible (the stage is shown large everywhere).
const live = new LiveClient({ wsUrl: `${proto}//${location.host}/ws?site=${encodeURIComponent(token)}`, maxWidth: 640,
  degradation: "maintain-resolution", layers: [{ scale: 1, maxBitrate: 400_000 }] });
window.confsvc = live;

let local = null;
let current = root.dataset.current ? { id: root.dataset.current } : null;  // the briefing open now (then /status)

function setVerdict(card, verdict, text) {
  const p = card.querySelector(".verdict");
  p.dataset.verdict = verdict;
  p.textContent = text;
}

// --- before joining -----------------------------------------------------------------------
let cameraReady = null;  // joining waits for the camera and microphone (a quick click must not join without them)

async function initChecks() {
  cameraReady = openCamera(1280);
  const { stream, error } = await cameraReady;
  local = stream;
  const preview = $("preview");
  preview.srcObject = stream;
  const cam = cameraVerdict(stream);
  setVerdict($("check-camera"), cam.verdict, `${t("verdict." + cam.verdict)} — ${t("advice." + cam.advice, { w: cam.width, h: cam.height })}`);
  if (error && !stream.getTracks().length) console.warn("confsvc: no camera or microphone", error);
  // microphone level: judged over the first 4 s, the meter keeps going
  let peak = 0;
  const micCard = $("check-mic");
  if (!stream.getAudioTracks().length) {
    setVerdict(micCard, "none", `${t("verdict.none")} — ${t("advice.mic_none")}`);
  } else {
    const fill = $("mic-meter");
    meter(stream, (level) => {
      peak = Math.max(peak, level);
      fill.style.width = `${Math.round(level * 100)}%`;
      fill.dataset.level = level > 0.08 ? "good" : level > 0.015 ? "fair" : "low";
    });
    const judge = () => { const v = micVerdict(peak); setVerdict(micCard, v.verdict, `${t("verdict." + v.verdict)} — ${t("advice." + v.advice)}`); };
    setTimeout(judge, 4000);
    setInterval(judge, 10000);
  }
  runNetwork();
}

async function runNetwork() {
  const card = $("check-network");
  setVerdict(card, "", t("checking"));
  try {
    const r = await networkCheck(base);
    $("net-rtt").textContent = `${r.rtt} ms`;
    $("net-speed").textContent = `${r.mbps} Mbps`;
    setVerdict(card, r.verdict, `${t("verdict." + r.verdict)} — ${t("advice." + r.advice)}`);
  } catch (e) {
    setVerdict(card, "poor", `${t("verdict.poor")} — ${t("advice.net_none")}`);
  }
}

$("btn-net").addEventListener("click", runNetwork);
$("btn-chime").addEventListener("click", () => { chime(); $("chime-ask").hidden = false; });
$("btn-heard-yes").addEventListener("click", () => setVerdict($("check-speaker"), "good", `${t("verdict.good")} — ${t("advice.speaker_good")}`));
$("btn-heard-no").addEventListener("click", () => setVerdict($("check-speaker"), "poor", `${t("verdict.poor")} — ${t("advice.speaker_poor")}`));

// --- the coming briefings: countdowns, and polling for the one that opens ----------------
function tickCountdowns() {
  const now = Date.now();
  document.querySelectorAll("#upcoming li[data-starts]").forEach((li) => {
    const starts = Date.parse(li.dataset.starts), lobby = Date.parse(li.dataset.lobby), ends = Date.parse(li.dataset.ends);
    const out = li.querySelector(".countdown");
    if (now >= ends) { out.textContent = t("count.over"); li.dataset.phase = "over"; }
    else if (now >= starts) { out.textContent = t("count.running"); li.dataset.phase = "live"; }
    else if (now >= lobby) { out.textContent = t("count.lobby", { left: fmtDuration(starts - now) }); li.dataset.phase = "lobby"; }
    else {
      const at = new Date(lobby).toLocaleTimeString("vi-VN", { hour: "2-digit", minute: "2-digit", timeZone: "Asia/Ho_Chi_Minh" });
      out.textContent = t("count.starts_in", { left: fmtDuration(starts - now), lobby: at });
      li.dataset.phase = "later";
    }
  });
}
setInterval(tickCountdowns, 1000);
tickCountdowns();

async function pollStatus() {
  try {
    const r = await fetch(`${base}/status`, { cache: "no-store" });
    if (r.status === 404) { showStopped("unknown_link"); return; }
    const s = await r.json();
    current = s.current;
    const btn = $("btn-join");
    if (live.status === "idle" || live.status === "stopped" && live.stopped === "left") {
      btn.disabled = !current;
      $("join-hint").textContent = current ? t("join.ready", { title: current.title }) : t("join.wait");
    }
    $("btn-arm").hidden = !!current || !s.next || live.status !== "idle";
    if (current && live.status === "idle" && (armed || sessionStorage.getItem(JOINED_KEY) === current.id)) join();
    // look again just after the next lobby opens, not up to 30 s later
    clearTimeout(pollStatus.soon);
    const opens = s.next && !current ? Date.parse(s.next.lobby_opens_at) - Date.now() + 1500 : -1;
    if (opens > 0 && opens < 30000) pollStatus.soon = setTimeout(pollStatus, opens);
  } catch (e) { /* the node is away: try again at the next round */ }
}
setInterval(pollStatus, 30000);

// "join by itself when the lobby opens": for a hall that opens the page early
const ARM_KEY = `confsvc-armed-${token}`;
let armed = sessionStorage.getItem(ARM_KEY) === "1";
function showArmed() {
  const b = $("btn-arm");
  b.dataset.armed = String(armed);
  b.textContent = armed ? t("arm.on") : t("arm.off");
}
$("btn-arm").addEventListener("click", () => {
  armed = !armed;
  if (armed) sessionStorage.setItem(ARM_KEY, "1"); else sessionStorage.removeItem(ARM_KEY);
  showArmed();
});
showArmed();

// --- joining -------------------------------------------------------------------------------
async function join() {
  if (joining || live.status !== "idle" && !(live.status === "stopped" && live.stopped === "left")) return;
  joining = true;
  if (current) sessionStorage.setItem(JOINED_KEY, current.id);
  $("btn-join").disabled = true;
  try {
    if (!local) local = (await cameraReady).stream;
  } finally {
    joining = false;
  }
  $("self").srcObject = local;
  if (live.stopped === "left") live.rejoin(); else live.start(local);
}
let joining = false;
$("btn-join").addEventListener("click", join);
$("btn-rejoin").addEventListener("click", () => { $("stopped").hidden = true; join(); });

watchConnection(live);
live.addEventListener("status", ({ detail }) => {
  if (detail.status === "joined") { $("prejoin").hidden = true; $("stopped").hidden = true; $("room").hidden = false; }
  if (detail.status === "stopped") showStopped(detail.code);
  if (detail.status === "waiting" && !live.joinedOnce) { $("prejoin").hidden = false; $("room").hidden = true; }
});

function showStopped(code) {
  $("room").hidden = true;
  $("prejoin").hidden = code !== "left";
  $("stopped").hidden = false;
  $("stopped-title").textContent = t(`stop.${code}.title`);
  $("stopped-text").textContent = t(`stop.${code}.text`);
  $("btn-rejoin").hidden = code !== "left";
  if (code !== "left") sessionStorage.removeItem(JOINED_KEY);
  $("link-pill").hidden = true;
}

live.addEventListener("media", ({ detail }) => {
  if (!detail.up) { $("link-pill").hidden = true; $("link-text").dataset.verdict = ""; $("link-text").textContent = "–"; $("link-figures").textContent = ""; }
});

// --- in the briefing -------------------------------------------------------------------------
live.addEventListener("track", ({ detail }) => {
  if (detail.slot === "stage") { $("stage").srcObject = detail.stream; }
  else if (detail.slot.startsWith("audio")) {
    let a = document.querySelector(`audio[data-slot="${detail.slot}"]`);
    if (!a) { a = document.createElement("audio"); a.autoplay = true; a.dataset.slot = detail.slot; $("audio-sink").append(a); }
    a.srcObject = detail.stream;
    a.play().catch(() => {});
  }
});

function renderStage() {
  const st = live.state, room = st.room;
  if (!room || !st.you) return;
  const shows = st.slots.stage;
  const label = $("stage-label");
  $("stage-empty").hidden = !!shows;
  if (!shows) label.textContent = "";
  else if (shows === room.chair) label.textContent = t("stage.chair", { name: live.siteName(shows) });
  else label.textContent = t("stage.floor", { name: live.siteName(shows) });
  label.dataset.shows = shows || "";
  const floorNote = $("floor-note");
  const mine = room.floor === st.you.site;
  floorNote.hidden = !mine && !room.open_mics;
  floorNote.textContent = mine ? t("floor.yours") : room.open_mics ? t("floor.open_mics") : "";
}

function renderRoom() {
  const st = live.state, room = st.room, me = live.me;
  if (!room || !me) return;
  $("room-title").textContent = room.title;
  $("room-phase").textContent = t("phase." + room.phase);
  $("room-phase").dataset.phase = room.phase;
  const mic = $("btn-mic"), allowed = live.mayOpenMic();
  mic.dataset.on = String(me.mic);
  mic.dataset.allowed = String(allowed);
  mic.textContent = me.mic ? t("mic.on") : allowed ? t("mic.off_allowed") : t("mic.off_locked");
  const cam = $("btn-cam");
  cam.dataset.on = String(live.camOn);
  cam.textContent = live.camOn ? t("cam.on") : t("cam.off");
  const hand = $("btn-hand");
  hand.dataset.on = String(me.hand);
  hand.textContent = me.hand ? t("hand.down") : t("hand.up");
  $("low-data").checked = !!me.low_data;
  const rc = room.rollcall;
  $("rollcall").hidden = !(rc && rc.open && me.rollcall !== rc.id);
  const speaking = $("speaking");
  speaking.hidden = !room.speaker;
  speaking.textContent = room.speaker ? t("speaking", { name: live.siteName(room.speaker) }) : "";
  if (me.mic) { $("ask").hidden = true; $("notice").hidden = true; }
  renderStage();
}

live.addEventListener("state", renderRoom);
live.addEventListener("room", renderRoom);
live.addEventListener("site", ({ detail }) => { if (live.state.you && detail.code === live.state.you.site) renderRoom(); });
live.addEventListener("slots", renderStage);
live.addEventListener("speaker", renderRoom);
live.addEventListener("rollcall", renderRoom);

function notice(text) {
  const n = $("notice");
  n.textContent = text;
  n.hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => { n.hidden = true; }, 8000);
}

live.addEventListener("ask_unmute", ({ detail }) => {
  $("ask-text").textContent = detail === "floor" ? t("ask.floor") : t("ask.chair");
  $("ask").hidden = false;
});
live.addEventListener("mute", ({ detail }) => {
  $("ask").hidden = true;  // an invitation to speak is over
  notice(detail === "floor_taken" ? t("muted.floor_taken") : t("muted.chair"));
});
live.addEventListener("error", ({ detail }) => {
  if (detail.code === "not_allowed") notice(t("mic.not_allowed"));
  else if (detail.code === "no_rollcall") notice(t("rollcall.closed"));
});

$("btn-mic").addEventListener("click", () => {
  const me = live.me;
  if (!me) return;
  if (me.mic) live.setMic(false);
  else if (!live.mayOpenMic()) notice(t("mic.not_allowed"));
  else live.setMic(true);
});
$("btn-ask-open").addEventListener("click", () => { $("ask").hidden = true; live.setMic(true); });
$("btn-ask-later").addEventListener("click", () => { $("ask").hidden = true; });
$("btn-cam").addEventListener("click", () => { live.setCam(!live.camOn); renderRoom(); });
$("btn-hand").addEventListener("click", () => { const me = live.me; if (me) live.send({ type: "raise_hand", raised: !me.hand }); });
$("btn-present").addEventListener("click", () => {
  const rc = live.state.room?.rollcall;
  if (rc) live.send({ type: "rollcall_answer", rollcall: rc.id });
  $("rollcall").hidden = true;
  notice(t("rollcall.thanks"));
});
$("low-data").addEventListener("change", (ev) => live.send({ type: "low_data", on: ev.target.checked }));
$("btn-leave").addEventListener("click", () => {
  if (!confirm(t("leave.confirm"))) return;
  sessionStorage.removeItem(JOINED_KEY);
  live.leave();
});

live.addEventListener("quality", ({ detail }) => {
  const v = linkVerdict(detail);
  const pill = $("link-pill");
  pill.hidden = false;
  pill.dataset.verdict = v;
  pill.textContent = t("link." + v);
  const text = $("link-text");
  text.dataset.verdict = v;
  text.textContent = `${t("verdict." + v)} — ${t("link_advice." + v)}`;
  $("link-figures").textContent = t("link.figures", { rtt: detail.rtt_ms, loss: (detail.loss * 100).toFixed(1), kin: detail.bitrate_in, kout: detail.bitrate_out });
});

window.addEventListener("pagehide", () => { if (live.ws && live.ws.readyState === WebSocket.OPEN) live.send({ type: "leave" }); });

const checks = initChecks();
checks.then(() => pollStatus());
