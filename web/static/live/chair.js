// The chair's control page: the wall of every invited site (rows updated in place), the actions,
// the chair's own camera (three layers) and microphone, the stage preview and the grid of thumbnails.
import { LiveClient } from "./client.js";
import { openCamera } from "./checks.js";
import { watchConnection } from "./banner.js";
import { $, t } from "./strings.js";

const root = $("chair-app");
const occ = root.dataset.occ;
const chairCode = root.dataset.chair;
const proto = location.protocol === "https:" ? "wss:" : "ws:";

// The chair's camera as three tracks (about 1280x720 / 640x360 / 320x180), VP8 temporal layers where
// the browser allows; `publish` says which m-line is which layer, and the node gives each site the
// layer its link carries (the grid thumbnails take the lowest).
const live = new LiveClient({
  wsUrl: `${proto}//${location.host}/ws?briefing=${encodeURIComponent(occ)}`,
  maxWidth: 1280,
  degradation: "maintain-resolution",
  layers: [
    { scale: 1, maxBitrate: 1_500_000, temporal: true },
    { scale: 2, maxBitrate: 500_000, temporal: true },
    { scale: 4, maxBitrate: 150_000, temporal: true },
  ],
});
window.confsvc = live;

// --- the wall: one row per site, found once, updated in place ------------------------------
const rows = new Map();
document.querySelectorAll("tr.site-row").forEach((tr) => {
  rows.set(tr.dataset.code, {
    tr,
    state: tr.querySelector(".c-state .st"),
    link: tr.querySelector(".c-link"),
    mic: tr.querySelector(".mic"),
    cam: tr.querySelector(".cam"),
    flags: tr.querySelector(".flags"),
    hand: tr.querySelector(".c-hand"),
    tile: document.querySelector(`#mosaic .tile[data-code="${CSS.escape(tr.dataset.code)}"]`),
    last: "",
  });
});

const PROBLEM = new Set(["poor", "dropped"]);
let filter = "all";
let search = "";

function fmtKbps(k) { return k >= 1000 ? `${(k / 1000).toFixed(1)} Mbps` : `${Math.round(k)} kbps`; }

function updateRow(s) {
  const r = rows.get(s.code);
  if (!r) return;
  const q = s.quality || {};
  const room = live.state.room || {};
  const key = JSON.stringify([s.state, s.mic, s.cam, s.hand, s.low_data, s.pin, q, s.rollcall, room.floor === s.code, room.rollcall?.id, room.speaker === s.code]);
  if (key === r.last) return;
  r.last = key;
  const tr = r.tr;
  tr.dataset.state = s.state;
  tr.dataset.hand = String(!!s.hand);
  tr.dataset.floor = String(room.floor === s.code);
  tr.dataset.speaking = String(room.speaker === s.code);
  r.state.textContent = t("state." + s.state);
  r.state.className = "st st-" + s.state;
  const live_ = s.state === "connected" || s.state === "poor" || s.state === "lobby";
  if (live_ && q.rtt_ms !== undefined) {
    r.link.textContent = `↓${fmtKbps(q.bitrate_out || 0)} ↑${fmtKbps(q.bitrate_in || 0)} · ${((q.loss || 0) * 100).toFixed(1)}% · ${Math.round(q.rtt_ms || 0)} ms`;
    r.link.dataset.bad = String(s.state === "poor");
  } else {
    r.link.textContent = "";
  }
  r.mic.dataset.on = String(!!s.mic);
  r.mic.textContent = s.mic ? t("wall.mic_on") : t("wall.mic_off");
  r.cam.dataset.on = String(!!s.cam);
  r.cam.textContent = s.cam ? t("wall.cam_on") : t("wall.cam_off");
  const flags = [];
  if (room.floor === s.code) flags.push(t("wall.floor"));
  if (s.low_data) flags.push(t("wall.low_data"));
  if (s.pin) flags.push(t("wall.pin", { layer: t("pin." + s.pin) }));
  if (room.rollcall && s.rollcall === room.rollcall.id) flags.push(t("wall.present"));
  r.flags.textContent = flags.join(" · ");
  r.hand.textContent = s.hand ? t("wall.hand") : "";
  if (r.tile) {
    r.tile.dataset.state = s.state;
    r.tile.dataset.hand = String(!!s.hand);
    r.tile.dataset.floor = tr.dataset.floor;
    r.tile.title = `${s.name} · ${t("state." + s.state)}${s.hand ? " · " + t("wall.hand") : ""}`;
  }
  applyFilter(r);
}

function applyFilter(r) {
  const tr = r.tr, st = tr.dataset.state;
  let show = true;
  if (filter === "problems") show = PROBLEM.has(st);
  else if (filter === "hands") show = tr.dataset.hand === "true";
  else if (filter === "absent") show = st === "not_joined" || st === "left" || st === "dropped";
  else if (filter !== "all") show = st === filter;
  if (show && search) show = tr.dataset.name.includes(search) || tr.dataset.code.toLowerCase().includes(search);
  tr.hidden = !show;
}

function refilter() {
  rows.forEach(applyFilter);
  document.querySelectorAll("tbody.wall-group").forEach((g) => {
    const visible = [...g.querySelectorAll("tr.site-row")].filter((tr) => !tr.hidden).length;
    g.hidden = visible === 0;
  });
}

// a tile of the mosaic shows its row (and flashes it), whatever the filter
document.getElementById("mosaic").addEventListener("click", (ev) => {
  const a = ev.target.closest(".tile");
  if (!a) return;
  ev.preventDefault();
  const r = rows.get(a.dataset.code);
  if (!r) return;
  if (r.tr.hidden) { filter = "all"; search = ""; $("wall-search").value = ""; document.querySelector("input[name=filter][value=all]").checked = true; refilter(); }
  r.tr.scrollIntoView({ block: "center" });
  r.tr.classList.add("flash");
  setTimeout(() => r.tr.classList.remove("flash"), 1500);
});

document.querySelectorAll("input[name=filter]").forEach((i) => i.addEventListener("change", () => { filter = i.value; refilter(); }));
$("wall-search").addEventListener("input", (ev) => { search = ev.target.value.trim().toLowerCase(); refilter(); });
document.querySelectorAll("#summary .count").forEach((b) => b.addEventListener("click", () => {
  filter = b.dataset.filter;
  const radio = document.querySelector(`input[name=filter][value=${filter}]`);
  if (radio) radio.checked = true; else document.querySelectorAll("input[name=filter]").forEach((i) => { i.checked = false; });
  refilter();
}));

// --- summary and everything room-wide: at most once a frame ----------------------------------
let pending = false;
function scheduleSummary() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; renderSummary(); });
}

function renderSummary() {
  const n = { connected: 0, lobby: 0, poor: 0, dropped: 0, not_joined: 0, left: 0, removed: 0, hands: 0 };
  live.state.sites.forEach((s) => {
    if (s.code === chairCode) return;
    n[s.state] = (n[s.state] || 0) + 1;
    if (s.hand) n.hands++;
  });
  for (const k of ["connected", "lobby", "poor", "dropped", "not_joined", "hands"]) $("n-" + k).textContent = n[k];
  document.querySelectorAll("tbody.wall-group").forEach((g) => {
    const trs = [...g.querySelectorAll("tr.site-row")];
    const on = trs.filter((tr) => ["connected", "poor", "lobby"].includes(tr.dataset.state)).length;
    const c = g.querySelector(".group-count");
    if (c) c.textContent = t("wall.group_count", { on, all: trs.length });
  });
  if (filter !== "all" || search) refilter();
}

function renderRoom() {
  const room = live.state.room;
  if (!room) return;
  const pill = $("phase-pill");
  pill.dataset.phase = room.phase;
  pill.textContent = t("phase." + room.phase);
  $("btn-start").disabled = room.phase !== "lobby";
  $("btn-end").disabled = room.phase === "ended";
  $("btn-take").disabled = !room.floor;
  $("open-mics").checked = room.open_mics;
  $("lock").checked = room.locked;
  const rc = room.rollcall;
  const btn = $("btn-rollcall");
  btn.textContent = rc && rc.open ? t("rollcall.end") : t("rollcall.start");
  btn.dataset.open = String(!!(rc && rc.open));
  const tally = $("rollcall-tally");
  tally.hidden = !rc;
  if (rc) tally.textContent = t(rc.open ? "rollcall.tally_open" : "rollcall.tally_closed", { n: rc.answered, all: rc.invited });
  // hands in the order raised
  const hands = $("hands");
  hands.replaceChildren(...room.hands.map((code) => {
    const li = document.createElement("li");
    li.dataset.code = code;
    const name = document.createElement("span");
    name.textContent = live.siteName(code);
    const give = document.createElement("button");
    give.type = "button"; give.className = "small"; give.dataset.act = "give_floor"; give.dataset.code = code; give.textContent = t("act.floor");
    const lower = document.createElement("button");
    lower.type = "button"; lower.className = "small"; lower.dataset.act = "lower_hand"; lower.dataset.code = code; lower.textContent = t("act.lower");
    li.append(name, " ", give, " ", lower);
    return li;
  }));
  if (!room.hands.length) { const li = document.createElement("li"); li.className = "muted empty"; li.textContent = t("hands.none"); hands.append(li); }
  $("speaking").textContent = room.speaker ? t("speaking", { name: live.siteName(room.speaker) }) : "";
  renderStage();
  renderMe();
  live.state.sites.forEach(updateRow);  // floor and roll-call flags are room-wide
  scheduleSummary();
}

function renderStage() {
  // #stage always carries the stage slot (so its decoder runs before the floor moves);
  // while the chair holds the floor, #stage-self shows the chair's own camera over it
  const room = live.state.room;
  const stage = $("stage"), own = $("stage-self"), label = $("stage-label");
  const s = live.streams.stage;
  if (s && stage.srcObject !== s) stage.srcObject = s;
  if (own.srcObject !== live.local) own.srcObject = live.local;
  if (!room) return;
  own.hidden = !!room.floor;
  stage.hidden = !room.floor;
  $("self").hidden = !room.floor;  // the chair's own picture is already the stage
  label.textContent = room.floor ? t("stage.floor", { name: live.siteName(room.floor) }) : t("stage.chair_self");
}

function renderMe() {
  const me = live.me;
  const mic = $("btn-mic");
  mic.dataset.on = String(!!me?.mic);
  mic.textContent = me?.mic ? t("mic.on") : t("mic.off_allowed");
  const cam = $("btn-cam");
  cam.dataset.on = String(live.camOn);
  cam.textContent = live.camOn ? t("cam.on") : t("cam.off");
}

live.addEventListener("state", () => { live.state.sites.forEach(updateRow); renderRoom(); renderGrid(); });
live.addEventListener("site", ({ detail }) => { updateRow(detail); if (detail.code === chairCode) renderMe(); scheduleSummary(); });
live.addEventListener("sites", scheduleSummary);
live.addEventListener("room", renderRoom);
live.addEventListener("speaker", renderRoom);

// --- actions --------------------------------------------------------------------------------
function toast(text, kind = "info") {
  const el = $("toast");
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

function act(type, code) {
  if (type === "remove" && !confirm(t("confirm.remove", { name: live.siteName(code) }))) return;
  if (!live.send(code ? { type, site: code } : { type })) toast(t("not_connected"), "bad");
}

root.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-act]");
  if (!b) return;
  const code = b.dataset.code || b.closest("tr.site-row")?.dataset.code;
  if (b.dataset.act === "more") { openMenu(code, b); return; }
  act(b.dataset.act, code);
});

$("btn-start").addEventListener("click", () => act("start"));
$("btn-end").addEventListener("click", () => { if (confirm(t("confirm.end"))) act("end"); });
$("btn-take").addEventListener("click", () => act("take_floor"));
$("btn-mute-all").addEventListener("click", () => act("mute_all"));
$("open-mics").addEventListener("change", (ev) => live.send({ type: "open_mics", on: ev.target.checked }));
$("lock").addEventListener("change", (ev) => live.send({ type: "lock", locked: ev.target.checked }));
$("btn-rollcall").addEventListener("click", (ev) => act(ev.currentTarget.dataset.open === "true" ? "rollcall_end" : "rollcall_start"));
$("btn-mic").addEventListener("click", () => { live.setMic(!live.me?.mic); });
$("btn-cam").addEventListener("click", () => { live.setCam(!live.camOn); renderMe(); });

let menuCode = null;
function openMenu(code, anchor) {
  menuCode = code;
  const m = $("row-menu");
  $("menu-title").textContent = live.siteName(code) || code;
  const r = anchor.getBoundingClientRect();
  m.style.top = `${window.scrollY + r.bottom + 4}px`;
  m.style.left = `${Math.max(8, window.scrollX + r.right - 260)}px`;
  m.hidden = false;
}
$("row-menu").addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  const m = $("row-menu");
  if (b.dataset.pin !== undefined) live.send({ type: "pin_quality", site: menuCode, layer: b.dataset.pin || null });
  else if (b.dataset.menu === "remove") act("remove", menuCode);
  else if (b.dataset.menu === "grid") lookAt(menuCode);
  m.hidden = true;
});
document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") $("row-menu").hidden = true; });

live.addEventListener("error", ({ detail }) => {
  if (live.state.you) toast(t("error." + detail.code) !== "error." + detail.code ? t("error." + detail.code) : detail.detail, "bad");
});

// --- status banner --------------------------------------------------------------------------
watchConnection(live, { stoppedInBanner: true });

// --- media: stage preview, audio, the grid of thumbnails ------------------------------------
let gridPage = 0;
live.addEventListener("track", ({ detail }) => {
  const { slot, stream } = detail;
  if (slot === "stage") renderStage();
  else if (slot.startsWith("audio")) {
    let a = document.querySelector(`audio[data-slot="${slot}"]`);
    if (!a) { a = document.createElement("audio"); a.autoplay = true; a.dataset.slot = slot; $("audio-sink").append(a); }
    a.srcObject = stream;
    a.play().catch(() => {});
  } else if (slot.startsWith("grid")) renderGrid();
});
live.addEventListener("slots", () => { renderStage(); renderGrid(); });

function connectedSites() {
  return [...live.state.sites.values()].filter((s) => s.code !== chairCode && ["connected", "poor", "lobby"].includes(s.state));
}

function renderGrid() {
  const grid = $("grid");
  const slots = Object.keys(live.state.mids || {}).filter((k) => k.startsWith("grid")).sort((a, b) => parseInt(a.slice(4)) - parseInt(b.slice(4)));
  const size = live.state.grid?.size || slots.length || 9;
  const pages = Math.max(1, Math.ceil(connectedSites().length / size));
  $("grid-page").textContent = t("grid.page", { page: gridPage + 1, pages });
  for (const slot of slots) {
    let tile = grid.querySelector(`[data-slot="${slot}"]`);
    if (!tile) {
      tile = document.createElement("figure");
      tile.className = "thumb";
      tile.dataset.slot = slot;
      const v = document.createElement("video");
      v.autoplay = true; v.muted = true; v.playsInline = true;
      const cap = document.createElement("figcaption");
      tile.append(v, cap);
      grid.append(tile);
    }
    const code = live.state.slots[slot];
    const v = tile.querySelector("video");
    const stream = live.streams[slot];
    if (stream && v.srcObject !== stream) v.srcObject = stream;
    tile.hidden = !code;
    tile.dataset.code = code || "";
    tile.querySelector("figcaption").textContent = code ? live.siteName(code) : "";
  }
}

function setGridPage(page) {
  const size = live.state.grid?.size || 9;
  const pages = Math.max(1, Math.ceil(connectedSites().length / size));
  gridPage = Math.min(Math.max(0, page), pages - 1);
  live.send({ type: "grid_page", page: gridPage });
  renderGrid();
}
$("grid-prev").addEventListener("click", () => setGridPage(gridPage - 1));
$("grid-next").addEventListener("click", () => setGridPage(gridPage + 1));

function lookAt(code) {
  const size = live.state.grid?.size || 9;
  const i = connectedSites().findIndex((s) => s.code === code);
  if (i >= 0) setGridPage(Math.floor(i / size));
}

// --- go -------------------------------------------------------------------------------------
(async () => {
  const { stream } = await openCamera(1280);
  $("self").srcObject = stream;
  live.start(stream);
  renderStage();
  renderMe();
})();
