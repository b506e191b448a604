// The page's texts from the catalogue (web/i18n/<lang>/live.json, keys "live.js.*").
const el = document.getElementById("live-strings");
const T = el ? JSON.parse(el.textContent) : {};

export function t(key, vars = {}) {
  const text = T["live.js." + key] || key;
  return text.replace(/\{(\w+)\}/g, (_, n) => (vars[n] ?? ""));
}

export function fmtDuration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (d > 0) return t("dur.days", { d, h });
  if (h > 0) return t("dur.hours", { h, m });
  if (m > 0) return t("dur.minutes", { m, s: sec });
  return t("dur.seconds", { s: sec });
}

export function $(id) { return document.getElementById(id); }
