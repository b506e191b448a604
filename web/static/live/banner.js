// The connection pill and the trouble banner, the same on every live page (site and chair).
import { $, t } from "./strings.js";

const STATUS_TEXT = { idle: "status.idle", connecting: "status.connecting", joined: "status.joined", reconnecting: "status.reconnecting", waiting: "status.waiting", stopped: "status.stopped" };

function show(kind, text) {
  const banner = $("banner");
  banner.textContent = text;
  banner.dataset.kind = kind;
  banner.hidden = false;
}

// `stoppedInBanner`: a stopped page says why in the banner (the chair's page); otherwise the page
// shows its own stopped panel and the banner goes away (the site's page).
export function watchConnection(live, { stoppedInBanner = false } = {}) {
  live.addEventListener("status", ({ detail }) => {
    const pill = $("conn-pill");
    pill.dataset.status = detail.status;
    pill.textContent = t(STATUS_TEXT[detail.status] || detail.status);
    if (detail.status === "reconnecting") show("bad", t("banner.reconnecting"));
    else if (detail.status === "waiting") show("warn", t("refused." + detail.code));
    else if (detail.status === "stopped" && stoppedInBanner) show("warn", `${t("stop." + detail.code + ".title")} — ${t("stop." + detail.code + ".text")}`);
    else $("banner").hidden = true;
  });
  live.addEventListener("media", ({ detail }) => {
    if (live.status !== "joined") return;
    if (!detail.up && (detail.trouble || detail.restarting)) show("bad", t("banner.media"));
    else if (detail.up) $("banner").hidden = true;
  });
}
