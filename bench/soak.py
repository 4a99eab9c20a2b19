"""Soak: 24 simulated hours through the real daemon, accelerated; nothing may grow.

The real `slouchd run` process runs simulated wearers (scripted days, one after another, with
radio gaps, lost and duplicated packets) at ``--speed`` simulated seconds per second, publishing
to a private Mosquitto with a subscriber attached. Every ``--every`` seconds the benchmark reads
``/proc/PID`` (RSS, open fds, threads, CPU time) and sends SIGUSR1, on which the daemon logs a
``health:`` line (asyncio tasks, the MQTT event queue depth, background tasks, counters).

The first sample is taken after a warm-up (imports done, first day under way); growth is the end
minus that start, and a least-squares slope over the second half shows whether it still climbs.
The simulated time covered is read from the wearers' published states (their sample time ``t``).

Budget: RSS growth < 1 MB over 24 simulated hours.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    Subscriber,
    cpu_pct,
    daemon_config,
    fmt_kv,
    parser,
    proc_sample,
    start_mosquitto,
    table,
    wearer_tables,
    write_results,
)

BUDGET_GROWTH_MB = 1.0
HEALTH = re.compile(r"health: (.*)")


def slope_per_hour(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope dy/dx times 3600 (x in seconds)."""
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else 3600.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=None, help="simulated hours (default 24; --quick 1)")
    p.add_argument("--speed", type=float, default=600.0, help="simulated seconds per second (default 600)")
    p.add_argument("--wearers", type=int, default=2, help="simulated wearers (default 2)")
    p.add_argument("--every", type=float, default=None, help="sampling interval, s (default 5; --quick 1)")
    p.add_argument("--warmup", type=float, default=None,
                   help="wall seconds before the first sample (default: past the first simulated "
                        "8 h day, where the simulated wearer builds its next day's script)")
    args = p.parse_args()
    hours = args.hours or (1.0 if args.quick else 24.0)
    every = args.every or (1.0 if args.quick else 5.0)
    # The load generator (not the daemon) keeps two scripted days; the second is built at the first
    # simulated midnight. Start measuring after it so growth is the daemon's, not the script's.
    first_day_wall_s = 8 * 3600.0 / args.speed + 10.0
    warmup = args.warmup if args.warmup is not None else (3.0 if args.quick else first_day_wall_s)
    target_s = hours * 3600.0
    wall_cap = 4 * (target_s / args.speed) + warmup + 60

    from tests.daemon.harness import DaemonProcess, NotifySocket

    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="slouchd-bench-soak-") as tmp:
        work = Path(tmp)
        broker = start_mosquitto(work / "broker")
        sub = Subscriber(broker.host, broker.port, ("bench/#",))
        cfg = daemon_config(work / "soak.toml", port=broker.port, state_dir=work / "state",
                            wearers=wearer_tables(args.wearers, speed=args.speed), log_level="info")
        notify = NotifySocket(work / "notify.sock")
        proc = DaemonProcess(cfg, notify=notify, log_path=work / "soak.log")
        pid = proc.proc.pid
        t_first: float | None = None
        sim_s = 0.0
        try:
            notify.wait_for("READY=1", timeout_s=60)
            t_start = time.monotonic()
            time.sleep(warmup)
            while True:
                s = proc_sample(pid)
                proc.signal(signal.SIGUSR1)
                ts = [float(json.loads(m.payload)["t"]) for m in sub.snapshot()
                      if m.topic == "bench/w001/state"]
                sub.clear()  # keep the subscriber's memory flat too
                if ts:
                    t_first = min(ts) if t_first is None else t_first
                    sim_s = max(sim_s, max(ts) - t_first)
                samples.append({"wall_s": s.at - t_start, "sim_h": sim_s / 3600.0, "rss_mb": s.rss_mb,
                                "fds": s.fds, "threads": s.threads, "cpu_s": s.cpu_s, "_s": s})
                # The window is `hours` of simulated time measured from the first sample.
                if sim_s - samples[0]["sim_h"] * 3600.0 >= target_s or \
                        time.monotonic() - t_start > wall_cap:
                    break
                if proc.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited; log:\n{proc.log()[-2000:]}")
                time.sleep(every)
            time.sleep(0.3)
            log = proc.log()
        finally:
            proc.stop()
            notify.close()
            sub.close()
            broker.stop()
    health = [dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
              for m in HEALTH.finditer(log)]
    for row, h in zip(samples, health, strict=False):
        row["tasks"] = int(h["tasks"])
        row["mqtt_queue"] = int(h["mqtt_queue"])
        row["background"] = int(h["background_tasks"])
    first, last = samples[0], samples[-1]
    cpu = cpu_pct(first.pop("_s"), last.pop("_s")) if len(samples) > 1 else 0.0
    for r in samples:
        r.pop("_s", None)
    half = samples[len(samples) // 2:]
    growth = last["rss_mb"] - first["rss_mb"]
    slope = slope_per_hour([r["sim_h"] * 3600 for r in half], [r["rss_mb"] for r in half])
    shown = samples if len(samples) <= 12 else [samples[i * (len(samples) - 1) // 11] for i in range(12)]
    print(f"soak: {args.wearers} simulated wearer(s) at {args.speed:g}x, sampled every {every:g} s")
    print(table(shown, ["wall_s", "sim_h", "rss_mb", "fds", "threads", "tasks", "mqtt_queue", "background"]))
    key = {
        "sim_hours": last["sim_h"] - first["sim_h"],
        "rss_start_mb": first["rss_mb"], "rss_end_mb": last["rss_mb"],
        "rss_growth_mb": growth, "rss_slope_2nd_half_mb_per_sim_h": slope,
        "fds_start": first["fds"], "fds_end": last["fds"],
        "tasks_start": first.get("tasks", -1), "tasks_end": last.get("tasks", -1),
        "mqtt_queue_max": max((r.get("mqtt_queue", 0) for r in samples), default=0),
        "cpu_pct": cpu,
    }
    path = write_results("soak", {"speed": args.speed, "wearers": args.wearers, "target_hours": hours,
                                  "rows": samples, "budget": {"rss_growth_mb": BUDGET_GROWTH_MB},
                                  "key": key}, args.out, args.quick)
    print(f"results: {path}")
    print("soak: " + fmt_kv({**key, "budget": f"growth<{BUDGET_GROWTH_MB:g}MB",
                             "met": growth < BUDGET_GROWTH_MB
                             and last["sim_h"] - first["sim_h"] >= hours * 0.99}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
