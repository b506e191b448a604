// The signaling socket and the two peer connections of one page (site or chair), with the
// reconnection rules of docs/protocol.md. No DOM here: pages listen to the events it emits.
//
//   const live = new LiveClient({wsUrl, layers});  live.start(localStream);
//   live.addEventListener("state" | "site" | "room" | "slots" | "track" | "status" | ..., ev => ev.detail)
//
// window.confsvc = live exposes {publish, subscribe, ws, state} to tests.

const STOP = new Set(["unknown_link", "removed", "ended", "use_chair_page", "unauthorized", "forbidden",
  "unknown_briefing", "replaced", "left"]);
const BACKOFF_MIN = 500, BACKOFF_MAX = 5000;
const LATER_MS = 20000;        // refused for now (no briefing yet, not open, locked): try again later
const TICK_MS = 5000;          // ping + quality report
const SILENCE_MS = 16000;      // nothing heard for this long: the socket is dead, reconnect
const DISCONNECTED_GRACE_MS = 6000;

export function gathered(pc, ms = 2500) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

function vp8First(transceiver) {
  if (!RTCRtpSender.getCapabilities || !transceiver.setCodecPreferences) return;
  const codecs = RTCRtpSender.getCapabilities("video").codecs;
  const vp8 = codecs.filter((c) => /vp8|rtx/i.test(c.mimeType));
  try { transceiver.setCodecPreferences(vp8); } catch (e) { /* keep the browser's order */ }
}

export class LiveClient extends EventTarget {
  /** layers: [{scale, maxBitrate, temporal}] per published video track (first = largest). */
  constructor({ wsUrl, layers = [{ scale: 1, maxBitrate: 400_000 }], maxWidth = 0, degradation = null }) {
    super();
    this.degradation = degradation;  // e.g. "maintain-resolution": drop frames, not pixels, when short
    this.wsUrl = wsUrl;
    this.layers = layers;
    this.maxWidth = maxWidth;
    this.ws = null;
    this.publish = null;
    this.subscribe = null;
    this.state = { you: null, room: null, sites: new Map(), slots: {}, mids: {} };
    this.streams = {};
    this.local = null;
    this.sendTracks = [];
    this.camOn = true;
    this.status = "idle";
    this.stopped = null;
    this.joinedOnce = false;
    this.iceServers = [];
    this.quality = null;
    this.wsRtt = null;
    this._backoff = BACKOFF_MIN;
    this._gen = 0;
    this._timers = [];
    this._sendLayers = true;
    this._last = null;
    this._lastHeard = 0;
    this._mediaTimer = null;
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  setStatus(status, code = null) {
    this.status = status;
    this.statusCode = code;
    this.emit("status", { status, code });
  }

  get me() { return this.state.you ? this.state.sites.get(this.state.you.site) : null; }
  get isChair() { return this.state.you?.role === "chair"; }

  siteName(code) { return this.state.sites.get(code)?.name || code || ""; }

  mayOpenMic() {
    const r = this.state.room;
    if (!r || !this.state.you) return false;
    return this.isChair || r.open_mics || r.floor === this.state.you.site;
  }

  start(localStream) {
    this.local = localStream;
    this.stopped = null;
    this.connect();
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  // --- the socket ------------------------------------------------------------------------
  connect() {
    if (this.stopped) return;
    clearTimeout(this._retry);
    const ws = new WebSocket(this.wsUrl);
    this.ws = ws;
    this._refusal = null;
    this.setStatus(this.joinedOnce ? "reconnecting" : "connecting");
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this._lastHeard = performance.now();
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      try { this.onMessage(m); } catch (e) { console.error("confsvc: message", m.type, e); }
    };
    ws.onclose = (ev) => { if (ws === this.ws) this.onClose(ev); };
  }

  onClose(ev) {
    this.stopTimers();
    this.closeMedia();
    if (this.stopped) return;
    const code = ev.code === 4000 ? (ev.reason || this._refusal || "refused") : null;
    if (code && STOP.has(code)) { this.stop(code); return; }
    if (code) {  // refused for now: say why, try again later
      this.setStatus("waiting", code);
      this._retry = setTimeout(() => this.connect(), LATER_MS);
      return;
    }
    this.setStatus(this.joinedOnce ? "reconnecting" : "connecting");
    const delay = this._backoff;
    this._backoff = Math.min(BACKOFF_MAX, this._backoff * 2);
    this._retry = setTimeout(() => this.connect(), delay);
  }

  stop(code) {
    this.stopped = code;
    clearTimeout(this._retry);
    this.stopTimers();
    this.closeMedia();
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
    this.setStatus("stopped", code);
  }

  leave() {
    this.send({ type: "leave" });
    this.stop("left");
  }

  /** After a stop that may be undone (left): join again. */
  rejoin() {
    this.stopped = null;
    this._backoff = BACKOFF_MIN;
    this.connect();
  }

  startTimers() {
    this.stopTimers();
    this._lastHeard = performance.now();
    this._timers.push(setInterval(() => this.tick(), TICK_MS));
  }

  stopTimers() {
    this._timers.forEach(clearInterval);
    this._timers = [];
    clearTimeout(this._mediaTimer);
  }

  tick() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (performance.now() - this._lastHeard > SILENCE_MS) {  // a dead socket: drop it, reconnect
      const ws = this.ws; this.ws = null; ws.close(); this.onClose({ code: 1006 }); return;
    }
    this.send({ type: "ping", t: performance.now() });
    this.sampleQuality().catch((e) => console.warn("confsvc: stats", e));
  }

  // --- messages --------------------------------------------------------------------------
  onMessage(m) {
    const st = this.state;
    switch (m.type) {
      case "welcome":
        st.you = m.you;
        this.iceServers = m.ice_servers || [];
        this.setSnapshot(m.state);
        st.grid = m.grid;
        this._backoff = BACKOFF_MIN;
        this.joinedOnce = true;
        this.setStatus("joined");
        this.startTimers();
        this.send({ type: "media_state", cam: this.camOn });
        this.startMedia();
        break;
      case "state": this.setSnapshot(m.state); break;
      case "site": this.setSite(m.site); break;
      case "sites": m.sites.forEach((s) => this.setSite(s)); this.emit("sites", m.sites); break;
      case "room": st.room = m.room; this.applyMic(); this.emit("room", st.room); break;
      case "publish_answer": this.onPublishAnswer(m.sdp); break;
      case "subscribe_offer": this.onSubscribeOffer(m); break;
      case "slots": st.slots = m.slots; this.emit("slots", st.slots); break;
      case "speaker": if (st.room) st.room.speaker = m.site; this.emit("speaker", m.site); break;
      case "rollcall": this.emit("rollcall", m.rollcall); break;
      case "ask_unmute": this.emit("ask_unmute", m.reason); break;
      case "mute": this.setMicTrack(false); this.emit("mute", m.reason); break;
      case "removed": this.stop("removed"); break;
      case "ended":
        if (st.room) { st.room.phase = "ended"; this.emit("room", st.room); }
        this.stop("ended");
        break;
      case "pong": if (typeof m.t === "number") this.wsRtt = performance.now() - m.t; break;
      case "error": this.onError(m); break;
      default: break;
    }
  }

  onError(m) {
    if (!this.state.you) this._refusal = m.code;  // a refusal at the door; the close follows
    if (m.code === "replaced") { this.stop("replaced"); return; }
    if (m.ref === "publish" && this._sendLayers && /field/.test(m.code)) {
      // an older node that does not know the "layers" field: publish the tracks without it
      this._sendLayers = false;
      if (this._pendingOffer) this.send({ type: "publish", sdp: this._pendingOffer });
      return;
    }
    if (m.code === "media") this.mediaFailed(3000);
    this.emit("error", m);
  }

  setSnapshot(s) {
    this.state.room = s.room;
    this.state.sites = new Map(s.sites.map((x) => [x.code, x]));
    this.applyMic();
    this.emit("state", this.state);
  }

  setSite(site) {
    this.state.sites.set(site.code, site);
    if (this.state.you && site.code === this.state.you.site) this.applyMic();
    this.emit("site", site);
  }

  // --- own microphone and camera ---------------------------------------------------------
  applyMic() { const me = this.me; this.setMicTrack(!!(me && me.mic)); }

  setMicTrack(on) {
    if (!this.local) return;
    this.local.getAudioTracks().forEach((t) => { t.enabled = on; });
  }

  /** Ask to open or close the microphone; the server answers with our site entry. */
  setMic(on) {
    if (!on) this.setMicTrack(false);
    return this.send({ type: "media_state", mic: on });
  }

  setCam(on) {
    this.camOn = on;
    this.sendTracks.filter((t) => t.kind === "video").forEach((t) => { t.enabled = on; });
    if (this.local) this.local.getVideoTracks().forEach((t) => { t.enabled = on; });
    this.send({ type: "media_state", cam: on });
  }

  // --- media -----------------------------------------------------------------------------
  closeMedia() {
    this._gen++;
    clearTimeout(this._mediaTimer);
    for (const pc of [this.publish, this.subscribe]) {
      if (pc) { pc.onconnectionstatechange = null; pc.ontrack = null; try { pc.close(); } catch (e) { /* closed */ } }
    }
    this.sendTracks.filter((t) => !this.local || !this.local.getTracks().includes(t)).forEach((t) => t.stop());
    this.sendTracks = [];
    this.publish = null;
    this.subscribe = null;
    this.streams = {};
    this.state.slots = {};
    this._pendingOffer = null;
    this._last = null;
    this.quality = null;
    this.emit("slots", this.state.slots);
    this.emit("media", { up: false });
  }

  watch(pc) {
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      if (s === "failed") this.mediaFailed(0);
      else if (s === "disconnected") { this.emit("media", { up: false, trouble: true }); this.mediaFailed(DISCONNECTED_GRACE_MS, pc); }
      else if (s === "connected") {
        clearTimeout(this._mediaTimer);
        const both = [this.publish, this.subscribe].every((p) => p && p.connectionState === "connected");
        if (both) this.emit("media", { up: true });
      }
    };
  }

  /** ICE failed (aiortc has no ICE restart): close both connections, publish and subscribe again. */
  mediaFailed(delay, pc = null) {
    clearTimeout(this._mediaTimer);
    this._mediaTimer = setTimeout(() => {
      if (pc && pc.connectionState === "connected") return;
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state.you && !this.stopped) {
        this.emit("media", { up: false, restarting: true });
        this.startMedia();
      }
    }, delay);
  }

  async startMedia() {
    this.closeMedia();
    const gen = this._gen;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this.publish = pc;
    this.watch(pc);
    const stream = this.local;
    const audio = stream ? stream.getAudioTracks()[0] : null;
    if (audio) {
      audio.enabled = false;  // the microphone starts closed; the server's word opens it
      pc.addTransceiver(audio, { direction: "sendonly", streams: [stream] });
      this.sendTracks.push(audio);
    }
    const video = stream ? stream.getVideoTracks()[0] : null;
    const layers = [];
    if (video) {
      const w = video.getSettings().width || 640, h = video.getSettings().height || 360;
      const base = this.maxWidth && w > this.maxWidth ? w / this.maxWidth : 1;
      this.layers.forEach((layer, i) => {
        const track = i === 0 ? video : video.clone();
        track.enabled = this.camOn;
        const scale = base * (layer.scale || 1);
        const enc = { maxBitrate: layer.maxBitrate, scaleResolutionDownBy: scale };
        let t;
        try {
          t = pc.addTransceiver(track, { direction: "sendonly", streams: [stream], sendEncodings: [{ ...enc, ...(layer.temporal ? { scalabilityMode: "L1T3" } : {}) }] });
        } catch (e) {
          t = pc.addTransceiver(track, { direction: "sendonly", streams: [stream], sendEncodings: [enc] });
        }
        vp8First(t);
        this.sendTracks.push(track);
        layers.push({ transceiver: t, rid: "hml"[i] || String(i), width: Math.round(w / scale), height: Math.round(h / scale),
          max_kbps: Math.round(layer.maxBitrate / 1000), ...(layer.temporal ? { temporal: 3 } : {}) });
      });
    }
    if (!audio && !video) pc.addTransceiver("audio", { direction: "sendonly" });
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await gathered(pc);
    if (gen !== this._gen) return;
    this._pendingOffer = pc.localDescription.sdp;
    const msg = { type: "publish", sdp: pc.localDescription.sdp };
    if (this._sendLayers && layers.length > 1) {
      // which m-line carries which layer of the camera (docs/protocol.md): the node forwards each
      // subscriber the layer its link carries
      msg.layers = layers.map(({ transceiver, ...l }) => ({ mid: transceiver.mid, ...l }));
    }
    this.send(msg);
  }

  async onPublishAnswer(sdp) {
    const pc = this.publish;
    if (!pc) return;
    const gen = this._gen;
    this._pendingOffer = null;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp });
    } catch (e) {
      console.error("confsvc: publish answer", e);
      this.mediaFailed(2000);
      return;
    }
    if (gen !== this._gen) return;
    if (this.degradation) {
      for (const sender of pc.getSenders()) {
        if (!sender.track || sender.track.kind !== "video") continue;
        try {
          const p = sender.getParameters();
          p.degradationPreference = this.degradation;
          await sender.setParameters(p);
        } catch (e) { /* not supported: the browser's default */ }
      }
    }
    this.send({ type: "subscribe" });
  }

  async onSubscribeOffer(m) {
    const gen = this._gen;
    if (this.subscribe) { try { this.subscribe.close(); } catch (e) { /* closed */ } }
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this.subscribe = pc;
    this.watch(pc);
    this.state.mids = m.mids;
    this.state.slots = m.slots || {};
    const byMid = Object.fromEntries(Object.entries(m.mids).map(([slot, mid]) => [mid, slot]));
    pc.ontrack = (ev) => {
      const slot = byMid[ev.transceiver.mid];
      if (!slot) return;
      const stream = new MediaStream([ev.track]);
      this.streams[slot] = stream;
      this.emit("track", { slot, stream });
    };
    try {
      await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await gathered(pc);
    } catch (e) {
      console.error("confsvc: subscribe offer", e);
      this.mediaFailed(2000);
      return;
    }
    if (gen !== this._gen) return;
    this.send({ type: "subscribe_answer", sdp: pc.localDescription.sdp });
    this.emit("slots", this.state.slots);
  }

  // --- link quality (getStats), sent as `quality` every 5 s --------------------------------
  async sampleQuality() {
    const now = performance.now();
    let bytesIn = 0, bytesOut = 0, lost = 0, recv = 0, fps = 0, rtt = null, remoteLoss = 0;
    if (this.subscribe) {
      (await this.subscribe.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp") {
          bytesIn += s.bytesReceived || 0; lost += Math.max(0, s.packetsLost || 0); recv += s.packetsReceived || 0;
          if (s.kind === "video" && s.framesPerSecond) fps = Math.max(fps, s.framesPerSecond);
        }
        if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime != null) rtt = s.currentRoundTripTime * 1000;
      });
    }
    if (this.publish) {
      (await this.publish.getStats()).forEach((s) => {
        if (s.type === "outbound-rtp") bytesOut += s.bytesSent || 0;
        if (s.type === "remote-inbound-rtp" && s.fractionLost != null) remoteLoss = Math.max(remoteLoss, s.fractionLost);
        if (rtt == null && s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime != null) rtt = s.currentRoundTripTime * 1000;
      });
    }
    const last = this._last;
    this._last = { now, bytesIn, bytesOut, lost, recv };
    if (!last) return;
    const dt = (now - last.now) / 1000;
    if (dt <= 0) return;
    const dLost = Math.max(0, lost - last.lost), dRecv = Math.max(0, recv - last.recv);
    const q = {
      rtt_ms: Math.round(rtt != null ? rtt : (this.wsRtt || 0)),
      loss: Math.min(1, Math.max(remoteLoss, dLost + dRecv > 0 ? dLost / (dLost + dRecv) : 0)),
      bitrate_in: Math.max(0, Math.round((bytesIn - last.bytesIn) * 8 / 1000 / dt)),
      bitrate_out: Math.max(0, Math.round((bytesOut - last.bytesOut) * 8 / 1000 / dt)),
      fps: Math.min(240, Math.round(fps)),
    };
    q.loss = Math.round(q.loss * 10000) / 10000;
    q.rtt_ms = Math.min(60000, q.rtt_ms);
    this.quality = q;
    this.send({ type: "quality", ...q });
    this.emit("quality", q);
  }
}

/** "good" | "fair" | "poor" for a link: loss and round trip (the wall's "poor" is > 5 % or > 600 ms). */
export function linkVerdict(q) {
  if (!q) return null;
  if (q.loss > 0.05 || q.rtt_ms > 600) return "poor";
  if (q.loss > 0.02 || q.rtt_ms > 250) return "fair";
  return "good";
}
