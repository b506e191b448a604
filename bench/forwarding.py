"""Forwarding benchmark: one publisher -> N subscribers through an SFU, confsvc side by side with Janus.

    python bench/forwarding.py --n 100 --seconds 20 --target both

Prints one JSON object. For each target it starts the SFU in its own process, publishes a
pre-encoded VP8 (~1 Mbps, 30 fps) + Opus stream over a real WebRTC connection, connects N light
subscribers (real ICE and DTLS; SRTP datagrams counted, 1 in 50 unprotected), and measures the SFU
process alone over a steady window: CPU per forwarded packet and per subscriber-second (from
/proc/<pid>/stat), packets and frames delivered per subscriber, loss, fan-out delay (publisher send
to the last subscriber's kernel receive timestamp) p50/p99, resident memory per subscriber.

Everything runs inside a private network namespace made for the run (``unshare --net``, root
needed) whose only address is 127.0.0.1: nothing can reach another address. In it 127.0.0.1 also
sits on an ``ifb`` device, because Janus never gathers candidates on a loopback-flagged interface
(see ``bench/_janus.py``). Janus (Debian package ``janus``) is installed with apt-get when missing.

Other load on the machine shows in every figure. Each result carries a ``noise`` section (the
machine's busy cores besides the SFU and the clients, UDP drops at the clients and at the SFU):
read it before the figures. ``--nice -10`` starts each run in its own session and gives that
session's scheduler group (autogroup) a higher weight, so the SFU and clients are shielded from
the other load; ``--repeat k`` lets the targets take turns k times and reports each one's median
run. ``--profile`` samples the SFU during the window (py-spy for the confsvc node, perf for Janus).

The confsvc target runs ``bench/_node.py`` (one ``confsvc.media.Room``) in its own process; it
imports ``confsvc.media`` from this repository, or from the tree named by ``CONFSVC_SRC``. When
that API is not there, the confsvc entry says ``"available": false`` and what it expects.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import _media  # noqa: E402

IN_NETNS = "CONFSVC_BENCH_NETNS"
EXPECTS = ("confsvc.media: Room(MediaConfig(ice_addresses=('127.0.0.1',))), room.add_participant(id) -> "
           "Participant, await p.publish(offer_sdp) -> answer_sdp, room.set_stage(id), "
           "await p.subscribe_offer() -> offer_sdp, await p.subscribe_answer(answer_sdp), room.stats(), "
           "await room.close() (see bench/_node.py); set CONFSVC_SRC to a tree that has them")


def setup_netns() -> str:
    """Bring lo up and put 127.0.0.1 on a device that is not flagged loopback (for Janus)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
    kinds = (["ifb"], ["dummy"], ["veth", "peer", "name", "bench1"])
    for kind in kinds:
        r = subprocess.run(["ip", "link", "add", "bench0", "type", *kind], capture_output=True, text=True)
        if r.returncode == 0:
            break
    else:
        raise SystemExit(f"could not make a non-loopback device in the benchmark namespace: {r.stderr.strip()}")
    if kind[0] == "veth":
        subprocess.run(["ip", "link", "set", "bench1", "up"], check=True, capture_output=True)
    subprocess.run(["ip", "addr", "add", "127.0.0.1/32", "dev", "bench0"], check=True, capture_output=True)
    subprocess.run(["ip", "link", "set", "bench0", "up"], check=True, capture_output=True)
    out = subprocess.run(["ip", "-o", "addr"], check=True, capture_output=True, text=True).stdout
    addrs = {line.split()[3] for line in out.splitlines() if " inet " in line}
    if addrs != {"127.0.0.1/8", "127.0.0.1/32"}:
        raise SystemExit(f"the benchmark namespace has unexpected addresses: {sorted(addrs)}")
    return kind[0]


def _renice(nice: int) -> None:
    """In the driver's new session (so its own scheduler autogroup, which the SFU it starts shares):
    set the autogroup's niceness (with autogroups on, a process's own niceness only counts against
    processes of its group) and the process's."""
    if not nice:
        return
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass
    os.setpriority(os.PRIO_PROCESS, 0, nice)


def run_target(name: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "bench._driver", "--target", name, "--n", str(args.n),
           "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--pacing", str(args.pacing)]
    if args.keep:
        cmd.append("--keep")
    if args.profile:
        cmd.append("--profile")
    timeout = 180 + args.seconds + args.n * 1.0
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           start_new_session=True, preexec_fn=lambda: _renice(args.nice))
    except subprocess.TimeoutExpired:
        return {"target": name, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"target": name, "error": (r.stderr or r.stdout).strip()[-3000:]}
    return json.loads(lines[-1])


def ratio(a: dict, b: dict) -> dict:
    """confsvc / janus for the figures where a ratio means something."""
    def get(d: dict, path: str):
        for p in path.split("."):
            d = d.get(p) if isinstance(d, dict) else None
        return d

    out = {}
    for path in ("sfu_pid_cpu.us_per_forwarded_packet", "sfu_pid_cpu.ms_per_subscriber_second",
                 "sfu_pid_cpu.rss_kb_per_subscriber", "fanout_delay_ms.video.p50", "fanout_delay_ms.video.p99"):
        x, y = get(a, path), get(b, path)
        out[path] = round(x / y, 3) if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y else None
    return out


def _cpu(r: dict) -> float:
    v = r.get("sfu_pid_cpu", {}).get("us_per_forwarded_packet")
    return v if isinstance(v, (int, float)) else float("inf")


def _median_run(rs: list[dict]) -> dict:
    ok = sorted((r for r in rs if "error" not in r), key=_cpu)
    return ok[(len(ok) - 1) // 2] if ok else rs[-1]


def _brief(r: dict) -> dict:
    if "error" in r:
        return {"error": r["error"][:300]}
    c, d, f, nz = r["sfu_pid_cpu"], r["delivery"], r["fanout_delay_ms"]["video"], r["noise"]
    return {"us_per_packet": c["us_per_forwarded_packet"], "cores": c["cores"],
            "rss_kb_per_sub": c["rss_kb_per_subscriber"], "loss_pct": d["loss_pct"],
            "min_fps": d["video_fps_per_subscriber"].get("min"), "fanout_p50_ms": f["p50"],
            "fanout_p99_ms": f["p99"], "other_cores": nz["other_cores"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="number of subscribers (default 50)")
    ap.add_argument("--seconds", type=float, default=20, help="length of the measured window (default 20)")
    ap.add_argument("--warmup", type=float, default=3, help="seconds between the last join and the window")
    ap.add_argument("--pacing", type=float, default=2.5,
                    help="publisher video pacing rate as a multiple of its 1 Mbps (libwebrtc: 2.5); 0 = bursts")
    ap.add_argument("--profile", action="store_true",
                    help="sample where the SFU's time goes during the window (py-spy for confsvc, perf for Janus)")
    ap.add_argument("--keep", action="store_true", help="keep each SFU's config and log under bench/.cache")
    ap.add_argument("--nice", type=int, default=0,
                    help="niceness of the SFU and the clients' scheduler group (e.g. -10 to shield them "
                         "from other load on the machine); default 0")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per target, taking turns; full figures from each target's median run")
    ap.add_argument("--target", choices=("confsvc", "janus", "both"), default="both")
    args = ap.parse_args()
    if args.n < 1:
        ap.error("--n must be at least 1")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    targets = ["janus", "confsvc"] if args.target == "both" else [args.target]

    if os.environ.get(IN_NETNS) != "1":
        # Outside the namespace (the network is reachable here): install, build the media cache.
        if "janus" in targets:
            from bench._janus import ensure_installed

            ensure_installed()
        _media.load_or_build()
        if os.geteuid() != 0 or not shutil.which("unshare"):
            raise SystemExit("forwarding.py needs root and unshare(1) to make its private network namespace")
        env = dict(os.environ, **{IN_NETNS: "1"})
        os.execvpe("unshare", ["unshare", "--net", "--", sys.executable, str(Path(__file__).resolve()),
                               *sys.argv[1:]], env)

    device = setup_netns()
    media = _media.load_or_build()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    unavailable = {}
    if "confsvc" in targets:
        from bench._confsvc import media_api_status, source_root

        why = media_api_status()
        if why:
            unavailable["confsvc"] = {"target": "confsvc", "available": False, "reason": why,
                                      "expects": EXPECTS, "source": str(source_root())}
    # With --repeat, the targets take turns (janus, confsvc, janus, ...) so that slow changes in the
    # machine's other load fall on both alike; each target's full figures are from its median run.
    runs: dict[str, list[dict]] = {t: [] for t in targets if t not in unavailable}
    for _ in range(args.repeat):
        for name in runs:
            runs[name].append(run_target(name, args))
    results = dict(unavailable)
    for name, rs in runs.items():
        results[name] = _median_run(rs)
    out = {
        "bench": "forwarding",
        "started": started,
        "n": args.n,
        "seconds": args.seconds,
        "machine": {"cores": os.cpu_count(), "loadavg_at_end": open("/proc/loadavg").read().split()[:3]},
        "niceness": args.nice,
        "network": f"private netns (unshare --net): lo + {device} device, both 127.0.0.1 only",
        "media": media.stats(),
        **results,
    }
    if "janus" in results and "confsvc" in results:
        if any("error" in r or r.get("available") is False for r in results.values()):
            out["ratio_confsvc_over_janus"] = None
        else:
            out["ratio_confsvc_over_janus"] = ratio(results["confsvc"], results["janus"])
    if args.repeat > 1:
        out["repeats"] = {name: [_brief(r) for r in rs] for name, rs in runs.items()}
        if len(runs) == 2 and all("error" not in r for rs in runs.values() for r in rs):
            out["repeats"]["ratio_us_per_packet_each_turn"] = [
                ratio(c, j)["sfu_pid_cpu.us_per_forwarded_packet"]
                for j, c in zip(runs["janus"], runs["confsvc"], strict=True)]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
