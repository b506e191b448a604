// The checks a hall runs before joining: camera, microphone level, speakers, network.
// Each ends in a plain verdict: "good" | "fair" | "poor" | "none" (+ an advice key).

let audioCtx = null;
export function audioContext() {
  if (!audioCtx) audioCtx = new (window.AudioContext || window.webkitAudioContext)();
  if (audioCtx.state === "suspended") audioCtx.resume().catch(() => {});
  return audioCtx;
}
// browsers start audio only after a click: resume on the first one
document.addEventListener("pointerdown", () => { if (audioCtx && audioCtx.state === "suspended") audioCtx.resume(); }, true);

export async function openCamera(maxWidth = 1280) {
  const want = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  const video = { width: { max: maxWidth }, frameRate: { ideal: 25, max: 30 } };
  const tries = [{ audio: want, video }, { audio: want, video: false }, { audio: false, video }];
  let lastError = null;
  for (const constraints of tries) {
    try { return { stream: await navigator.mediaDevices.getUserMedia(constraints), error: lastError }; }
    catch (e) { lastError = e; }
  }
  return { stream: new MediaStream(), error: lastError };
}

export function cameraVerdict(stream) {
  const v = stream.getVideoTracks()[0];
  if (!v || v.readyState !== "live") return { verdict: "none", advice: "camera_none" };
  const s = v.getSettings();
  if ((s.width || 0) < 320) return { verdict: "fair", advice: "camera_small", width: s.width, height: s.height };
  return { verdict: "good", advice: "camera_good", width: s.width, height: s.height };
}

/** Drive a level meter from the microphone; calls onLevel(0..1) ~15 times a second. */
export function meter(stream, onLevel) {
  const track = stream.getAudioTracks()[0];
  if (!track) return () => {};
  const ctx = audioContext();
  // a clone that is always enabled: the sent track stays muted until the chair allows it
  const probe = track.clone();
  probe.enabled = true;
  const src = ctx.createMediaStreamSource(new MediaStream([probe]));
  const an = ctx.createAnalyser();
  an.fftSize = 1024;
  src.connect(an);
  const buf = new Float32Array(an.fftSize);
  const timer = setInterval(() => {
    an.getFloatTimeDomainData(buf);
    let sum = 0;
    for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
    const rms = Math.sqrt(sum / buf.length);
    onLevel(Math.min(1, rms * 4));
  }, 66);
  return () => { clearInterval(timer); src.disconnect(); probe.stop(); };
}

export function micVerdict(peak) {
  if (peak >= 0.08) return { verdict: "good", advice: "mic_good" };
  if (peak >= 0.015) return { verdict: "fair", advice: "mic_fair" };
  return { verdict: "poor", advice: "mic_poor" };
}

/** A short two-note chime on the speakers. */
export function chime() {
  const ctx = audioContext();
  const t0 = ctx.currentTime + 0.05;
  [[660, 0], [880, 0.35], [660, 0.7]].forEach(([hz, at]) => {
    const o = ctx.createOscillator(), g = ctx.createGain();
    o.frequency.value = hz;
    g.gain.setValueAtTime(0, t0 + at);
    g.gain.linearRampToValueAtTime(0.3, t0 + at + 0.03);
    g.gain.exponentialRampToValueAtTime(0.001, t0 + at + 0.32);
    o.connect(g).connect(ctx.destination);
    o.start(t0 + at);
    o.stop(t0 + at + 0.34);
  });
}

/** Round trip (median of 5 small requests) and a rough downlink (a random blob) to the node. */
export async function networkCheck(base) {
  const rtts = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const r = await fetch(`${base}/probe?bytes=0&n=${i}-${Date.now()}`, { cache: "no-store" });
    await r.arrayBuffer();
    rtts.push(performance.now() - t);
  }
  rtts.sort((a, b) => a - b);
  const rtt = rtts[2];
  let mbps = 0;
  for (const size of [256 * 1024, 2 * 1024 * 1024]) {
    const t = performance.now();
    const r = await fetch(`${base}/probe?bytes=${size}&t=${Date.now()}`, { cache: "no-store" });
    const got = (await r.arrayBuffer()).byteLength;
    const secs = Math.max(0.001, (performance.now() - t - rtt) / 1000);
    mbps = got * 8 / 1e6 / secs;
    if (performance.now() - t > 1500) break;  // a slow line: the small blob says enough
  }
  let verdict = "good", advice = "net_good";
  if (rtt > 400 || mbps < 0.8) { verdict = "poor"; advice = "net_poor"; }
  else if (rtt > 150 || mbps < 2) { verdict = "fair"; advice = "net_fair"; }
  return { rtt: Math.round(rtt), mbps: Math.round(mbps * 10) / 10, verdict, advice };
}
