"""CI smoke run of every benchmark: each runs with ``--quick`` (seconds) so none of them rots.

It checks that a script runs, prints its table and final line, and writes JSON results with
numbers in them. It never asserts a timing: speed is judged by reading the figures, on a known
machine, not by a test on a shared CI runner.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHES = [
    "tracker_tick", "replay", "startup", "live_load", "alert_latency", "soak", "coach", "ble_packets"]


def _numbers(obj: object) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    return []


@pytest.mark.parametrize("name", BENCHES)
def test_benchmark_runs_quick_and_reports_numbers(name: str, tmp_path: Path) -> None:
    script = ROOT / "bench" / f"{name}.py"
    proc = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith(f"{name}: "), lines[-5:]
    assert any(set(line) <= {"-", " "} and "--" in line for line in lines), "no table printed"
    doc = json.loads((tmp_path / f"{name}-latest-quick.json").read_text())
    assert doc["bench"] == name and doc["quick"] is True
    key = doc["key"]
    values = _numbers(key)
    assert values, f"no figures in {key}"
    assert all(math.isfinite(v) for v in values), key
    assert _numbers(doc["rows"]), "no measured rows"
    if name == "live_load":
        # Issue 11's figures: the idle daemon, replay wearers, notifications of 1 and 36 samples
        # (the quick run's sizes), the live/batch ratio; every row measured (none failed).
        rows = doc["rows"]
        assert not [r for r in rows if "error" in r], rows
        assert {(r["mode"], r["samples"]) for r in rows} >= {("idle", None), ("replay", 5), ("notify", 1),
                                                              ("notify", 36)}
        assert all(r["cpu_pct"] >= 0 and r["rss_mb"] > 0 for r in rows), rows
        # Every daemon really ran its wearers: states came out (a source that fails to start
        # shows as 0 states per second, not as an error).
        assert all(r["states_per_s"] > 0 for r in rows if r["mode"] != "idle"), rows
        assert key["batch_pct_per_wearer"] > 0 and key["live_batch_ratio"] > 0
        assert key["replay_cli_pct_per_wearer"] > 0 and key["live_replay_ratio"] > 0
        assert {"idle_pct", "replay_pct_per_wearer_at_1", "notify1_pct_per_wearer_at_1"} <= set(key)
