"""Where the SFU's time goes, sampled during the window (``forwarding.py --profile``).

confsvc (Python): py-spy, non-blocking, so the node is never paused; collapsed stacks are summed
into self time (the leaf frame) and inclusive time per function. Janus (C): ``perf record`` of its
pid, summed per shared object and symbol. A profiled run perturbs the CPU figures a little (the
sampler runs beside the SFU): compare CPU per packet from runs without ``--profile``.

py-spy is looked up on PATH, then in ``bench/.cache/tools`` (where
``python -m pip install --target bench/.cache/tools py-spy`` puts it).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

TOOLS = Path(__file__).resolve().parent / ".cache" / "tools"


def py_spy() -> str | None:
    path = shutil.which("py-spy")
    if path:
        return path
    cand = TOOLS / "bin" / "py-spy"
    return str(cand) if cand.exists() else None


class Profiler:
    def __init__(self, kind: str, pid: int, seconds: float, folder: Path) -> None:
        self.kind, self.pid, self.seconds, self.folder = kind, pid, seconds, folder
        self.proc: asyncio.subprocess.Process | None = None
        self.error: str | None = None
        self.out = folder / ("pyspy.txt" if kind == "python" else "perf.data")

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.kind == "python":
            exe = py_spy()
            if not exe:
                self.error = "py-spy not found (pip install --target bench/.cache/tools py-spy)"
                return
            cmd = [exe, "record", "--pid", str(self.pid), "--duration", str(max(1, int(self.seconds))),
                   "--rate", "250", "--nonblocking", "--format", "raw", "--output", str(self.out)]
        else:
            if not shutil.which("perf"):
                self.error = "perf not found (apt-get install linux-perf)"
                return
            cmd = ["perf", "record", "-q", "-F", "499", "-g", "-p", str(self.pid), "-o", str(self.out),
                   "--", "sleep", str(self.seconds)]
        self.proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL,
                                                         stderr=subprocess.PIPE)

    async def finish(self) -> dict:
        if self.error:
            return {"error": self.error}
        assert self.proc is not None
        try:
            _, err = await asyncio.wait_for(self.proc.communicate(), self.seconds + 30)
        except TimeoutError:
            self.proc.kill()
            return {"error": "the profiler did not finish"}
        if not self.out.exists():
            return {"error": (err or b"").decode(errors="replace")[-500:]}
        if self.kind == "python":
            return summarize_collapsed(self.out.read_text(), self.seconds, 250)
        return await asyncio.to_thread(summarize_perf, self.out)


_LINE = re.compile(r":\d+\)$")


def _frame(name: str) -> str:
    # "send_rtp (confsvc/media/forwarder.py:123)" -> "send_rtp (confsvc/media/forwarder.py)"
    return _LINE.sub(")", name.strip())


def summarize_collapsed(text: str, seconds: float, rate: int, top: int = 25) -> dict:
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        self_t[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return {"error": "no samples"}

    def table(c: Counter[str]) -> list:
        return [[name, round(100 * v / total, 1)] for name, v in c.most_common(top)]

    return {"tool": "py-spy (non-blocking, 250 Hz)", "samples": total,
            "busy_fraction_of_one_core": round(total / (seconds * rate), 3),
            "self_pct": table(self_t), "inclusive_pct": table(incl)}


def summarize_perf(path: Path, top: int = 30) -> dict:
    r = subprocess.run(["perf", "report", "-i", str(path), "--stdio", "--no-children", "-g", "none",
                        "--sort", "dso,sym", "--percent-limit", "0.5"], capture_output=True, text=True)
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if m:
            rows.append([f"{m.group(3).strip()} ({m.group(2)})", float(m.group(1))])
    by_dso: Counter[str] = Counter()
    for name, pct in rows:
        by_dso[name.rsplit("(", 1)[1].rstrip(")")] += pct
    if not rows:
        return {"error": (r.stderr or r.stdout)[-500:]}
    return {"tool": "perf record -F 499 -g", "self_pct": rows[:top],
            "by_object_pct": [[k, round(v, 1)] for k, v in by_dso.most_common(12)]}
