// The briefing form: a tree picker (ticking a district ticks its communes), a live count, a
// filter, and showing only the recurrence fields that matter. Plain ES module, no build step;
// the form works without it.

const form = document.getElementById("briefing-form");
const picker = document.getElementById("picker");

function fold(text) {
  return text.replace(/đ/g, "d").replace(/Đ/g, "D").normalize("NFD").replace(/\p{Mn}/gu, "").toLowerCase().trim();
}

function boxes(selector = "") {
  return [...picker.querySelectorAll(`input[type=checkbox][name=site]${selector}`)];
}

function communesOf(code) {
  return boxes(`[data-parent="${CSS.escape(code)}"]`);
}

function refresh() {
  for (const group of picker.querySelectorAll("details[data-district]")) {
    const code = group.dataset.district;
    const district = group.querySelector('input[data-kind="district"]');
    const communes = communesOf(code);
    const ticked = communes.filter((c) => c.checked).length;
    district.indeterminate = !district.checked && ticked > 0;
    const out = group.querySelector(`[data-picked="${CSS.escape(code)}"]`);
    if (out) out.textContent = `${ticked}/${communes.length}`;
  }
  const n = boxes().filter((b) => b.checked).length;
  const out = document.getElementById("picker-count");
  if (out) out.textContent = `${n} / ${boxes().length}`;
}

picker.addEventListener("change", (ev) => {
  const box = ev.target;
  if (!(box instanceof HTMLInputElement) || box.name !== "site") return;
  if (box.dataset.kind === "district") {
    for (const c of communesOf(box.value)) c.checked = box.checked;
  } else if (box.dataset.kind === "province" && box.checked) {
    // the province hall alone: nothing else changes; "whole province" is its own button
  }
  refresh();
});

picker.addEventListener("click", (ev) => {
  const button = ev.target.closest("button[data-pick]");
  if (!button) return;
  const how = button.dataset.pick;
  for (const b of boxes()) {
    if (how === "all") b.checked = true;
    else if (how === "none") b.checked = false;
    else if (how === "districts") b.checked = b.dataset.kind === "district" || b.dataset.kind === "province";
  }
  refresh();
});

const filter = document.getElementById("picker-filter");
filter?.addEventListener("input", () => {
  const q = fold(filter.value);
  for (const group of picker.querySelectorAll("details[data-district]")) {
    let any = false;
    for (const label of group.querySelectorAll("label.commune")) {
      const hit = !q || fold(label.dataset.name || "").includes(q);
      label.hidden = !hit;
      any ||= hit && !!q;
    }
    const name = fold(group.querySelector("summary").textContent);
    group.hidden = !!q && !any && !name.includes(q);
    if (q && any) group.open = true;
  }
});

// recurrence: show the fields of the chosen kind only
const kind = document.getElementById("repeat-kind");
function showRepeat() {
  for (const el of form.querySelectorAll("[data-show]")) {
    el.hidden = !el.dataset.show.split(" ").includes(kind.value);
  }
}
kind?.addEventListener("change", showRepeat);
showRepeat();
refresh();
