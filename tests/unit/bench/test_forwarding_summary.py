"""forwarding.py's summaries: the median run of a target and the confsvc/Janus ratios."""

from __future__ import annotations

from bench.forwarding import _brief, _median_run, ratio


def run(us: float, p99: float = 5.0) -> dict:
    return {
        "sfu_pid_cpu": {"us_per_forwarded_packet": us, "ms_per_subscriber_second": us / 5, "cores": 0.3,
                        "rss_kb_per_subscriber": 200.0},
        "delivery": {"loss_pct": 0.0, "video_fps_per_subscriber": {"min": 30.0}},
        "fanout_delay_ms": {"video": {"p50": 2.0, "p99": p99}},
        "noise": {"other_cores": 0.5},
    }


def test_median_run_ignores_failed_runs():
    runs = [run(30), {"error": "boom"}, run(10), run(20)]
    assert _median_run(runs)["sfu_pid_cpu"]["us_per_forwarded_packet"] == 20
    assert _median_run([{"error": "x"}]) == {"error": "x"}


def test_ratio_confsvc_over_janus():
    r = ratio(run(15, p99=10), run(12, p99=20))
    assert r["sfu_pid_cpu.us_per_forwarded_packet"] == 1.25
    assert r["fanout_delay_ms.video.p99"] == 0.5
    assert ratio({}, run(12))["sfu_pid_cpu.us_per_forwarded_packet"] is None


def test_brief():
    b = _brief(run(12))
    assert b["us_per_packet"] == 12 and b["min_fps"] == 30.0
    assert _brief({"error": "e" * 1000})["error"] == "e" * 300
