"""Live load: the real `slouchd run` process with N wearers at 50 Hz, real time, to Mosquitto.

For N = 1, 10, 50, 100 (then doubling while it keeps up, with ``--find-limit``) the daemon runs
against a private Mosquitto on loopback, with either

* ``simulated`` wearers (the scripted wearer generated inside the daemon: generation + pipeline), or
* ``replay`` wearers (``replay:PATH`` of a 50 Hz recording with gyro, pre-computed samples read
  from CSV at start and paced at 1x: closest to the pipeline's own cost with a real sensor).

After READY and a first state from every wearer (+ a settle), a window of ``--window`` seconds is
measured: CPU % of one core from the daemon process's own CPU time (``/proc/PID/stat``), per
wearer; RSS, open fds and threads; MQTT messages per second seen by a separate subscriber; and
the state lag (subscriber arrival time - the state's sample time ``t``). At 1x the sample clock is
the wall clock. The daemon keeps up when the state lag p99 stays under 1 s without growing and
every wearer's state still goes out about once a second (the publisher's rate limit).

An in-process breakdown then splits one 50 Hz wearer's per-second cost into generating the
simulated samples, the PostureTracker, and building state payloads (CPU per simulated second).

Budgets: <= 0.3 % of one core per 50 Hz wearer; RSS <= 120 MB with 10 wearers.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    ProcSample,
    Subscriber,
    cpu_pct,
    daemon_config,
    fmt_kv,
    parser,
    percentile,
    proc_sample,
    start_mosquitto,
    table,
    wearer_tables,
    write_results,
)

BUDGET_PCT_PER_WEARER = 0.3
BUDGET_RSS_10_MB = 120.0
LAG_KEEPS_UP_S = 1.0  # a state older than this on arrival: the daemon is behind real time
STATE_HZ_KEEPS_UP = 0.9  # each wearer's state goes out about once a second when all is well


def replay_csv(hours: float) -> Path:
    from replay import make_csv

    return make_csv(50.0, True, hours)


def one_run(work: Path, port: int, sub: Subscriber, mode: str, n: int, window_s: float,
            csv: Path | None) -> dict[str, Any]:
    from tests.daemon.harness import DaemonProcess, NotifySocket

    tag = f"{mode[0]}{n}"
    sensor = "simulated" if mode == "simulated" else f"replay:{csv}"
    cfg = daemon_config(work / f"{tag}.toml", port=port, state_dir=work / f"state-{tag}",
                        wearers=wearer_tables(n, sensor=sensor, prefix=f"{tag}w"))
    notify = NotifySocket(work / f"{tag}.sock")
    sub.clear()
    proc = DaemonProcess(cfg, notify=notify, log_path=work / f"{tag}.log")
    pid = proc.proc.pid
    try:
        notify.wait_for("READY=1", timeout_s=60)
        # Every wearer streaming (a state from each), then a settle so start-up work is over.
        deadline = time.monotonic() + 60 + n * 0.5
        prefix = f"bench/{tag}w"
        while time.monotonic() < deadline:
            seen = {m.topic for m in sub.snapshot()
                    if m.topic.startswith(prefix) and m.topic.endswith("/state")}
            if len(seen) >= n:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"only {len(seen)}/{n} wearers published a state; log:\n{proc.log()[-2000:]}")
        time.sleep(3.0 if window_s >= 10 else 1.0)
        before = len(sub.snapshot())
        a = proc_sample(pid)
        samples: list[ProcSample] = [a]
        t_end = a.at + window_s
        while time.monotonic() < t_end:
            time.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
            samples.append(proc_sample(pid))
        b = samples[-1]
        msgs = sub.snapshot()[before:]
        if proc.proc.poll() is not None:
            raise RuntimeError(f"daemon exited ({proc.proc.returncode}); log:\n{proc.log()[-2000:]}")
    finally:
        proc.stop()
        notify.close()
    states = [m for m in msgs if m.topic.endswith("/state") and m.topic.startswith(prefix)]
    lags = []
    first_half, second_half = [], []
    for i, m in enumerate(states):
        try:
            lag = m.at - float(json.loads(m.payload)["t"])
        except (ValueError, KeyError, TypeError):
            continue
        lags.append(lag)
        (first_half if i < len(states) / 2 else second_half).append(lag)
    span = max(b.at - a.at, 1e-9)
    pct = cpu_pct(a, b)
    lag_p99 = percentile(lags, 99)
    growth = (percentile(second_half, 50) - percentile(first_half, 50)) if first_half and second_half else 0.0
    keeps_up = (bool(lags) and lag_p99 < LAG_KEEPS_UP_S and growth < 0.5
                and len(states) / span >= STATE_HZ_KEEPS_UP * n)
    return {
        "mode": mode, "wearers": n, "window_s": span,
        "cpu_pct": pct, "cpu_pct_per_wearer": pct / n,
        "rss_mb": b.rss_mb, "rss_max_mb": max(s.rss_mb for s in samples), "fds": b.fds, "threads": b.threads,
        "msgs_per_s": len(msgs) / span, "states_per_s": len(states) / span,
        "state_lag_p50_s": percentile(lags, 50), "state_lag_p99_s": lag_p99, "lag_growth_s": growth,
        "keeps_up": keeps_up,
    }


def safe_run(work: Path, port: int, sub: Subscriber, mode: str, n: int, window_s: float,
             csv: Path | None) -> dict[str, Any]:
    """:func:`one_run`, with a failure (e.g. not every wearer streaming in time) kept as a row."""
    try:
        return one_run(work, port, sub, mode, n, window_s, csv)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        print(f"{mode} x{n}: FAILED: {first}", flush=True)
        return {"mode": mode, "wearers": n, "keeps_up": False, "error": first}


def breakdown(seconds: float) -> dict[str, float]:
    """CPU of one 50 Hz simulated wearer, in % of one core at real time, by stage (in-process).

    The samples come as the daemon gets them at 1x (50 ms chunks for simulated wearers, 0.1 s
    ticks for replay wearers); each stage is timed separately with process CPU time.
    """
    from slouchd.config import load_config
    from slouchd.posture.tracker import PostureTracker
    from slouchd.publish.mqtt import to_json
    from slouchd.sensors.simulated import SimSettings, SimulatedWearer

    cfg = load_config(None)
    wearer = SimulatedWearer(SimSettings(seed=1, loop=True, start_s=1.7e9))
    c0 = time.process_time()
    batches = []
    for b in wearer.batches(0.05):
        batches.append(b)
        if b.t_s[-1] - 1.7e9 >= seconds:
            break
    c1 = time.process_time()
    tracker = PostureTracker(cfg.detection, cfg.wellbeing, SimSettings().mount,
                             calibration_settings=cfg.calibration, activity=cfg.activity,
                             frame_interval_s=1.0)
    frames = []
    for b in batches:
        frames.extend(tracker.process(b).frames)
    c2 = time.process_time()
    for f in frames:
        to_json(f.to_dict())
    c3 = time.process_time()
    sim_s = float(batches[-1].t_s[-1] - batches[0].t_s[0])
    return {
        "simulated_s": sim_s, "batches_per_s": len(batches) / sim_s,
        "generate_pct": 100 * (c1 - c0) / sim_s,
        "tracker_pct": 100 * (c2 - c1) / sim_s,
        "state_json_pct": 100 * (c3 - c2) / sim_s,
    }


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--window", type=float, default=None, help="measured seconds per run (default 30)")
    p.add_argument("--wearers", default=None, help="comma-separated N (default 1,10,50,100)")
    p.add_argument("--modes", default="simulated,replay", help="simulated and/or replay")
    p.add_argument("--find-limit", action="store_true", help="then double N until it stops keeping up")
    args = p.parse_args()
    window = args.window or (3.0 if args.quick else 30.0)
    ns = [int(x) for x in (args.wearers or ("1,2" if args.quick else "1,10,50,100")).split(",")]
    modes = ["simulated"] if args.quick else args.modes.split(",")

    rows = []
    with tempfile.TemporaryDirectory(prefix="slouchd-bench-live-") as tmp:
        work = Path(tmp)
        # Short: every replay wearer parses the file (in the event loop) when it starts.
        csv = replay_csv(5 / 60) if "replay" in modes else None
        broker = start_mosquitto(work / "broker")
        sub = Subscriber(broker.host, broker.port, ("bench/#",))
        try:
            for mode in modes:
                for n in ns:
                    rows.append(safe_run(work, broker.port, sub, mode, n, window, csv))
                    print(table([rows[-1]]).splitlines()[-1], flush=True)
                if args.find_limit and mode == "simulated":
                    n = ns[-1]
                    while rows[-1]["keeps_up"] and n < 1600:
                        n *= 2
                        rows.append(safe_run(work, broker.port, sub, mode, n, window, csv))
                        print(table([rows[-1]]).splitlines()[-1], flush=True)
        finally:
            sub.close()
            broker.stop()
    parts = breakdown(20.0 if args.quick else 300.0)
    cols = ["mode", "wearers", "cpu_pct", "cpu_pct_per_wearer", "rss_mb", "fds", "threads", "msgs_per_s",
            "state_lag_p50_s", "state_lag_p99_s", "lag_growth_s", "keeps_up"]
    print(f"\nlive load, {window:g} s windows, 50 Hz wearers at 1x; "
          "CPU = % of one core (daemon process only)")
    print(table(rows, cols))
    print("\nin-process, one 50 Hz simulated wearer, % of one core at 1x: "
          + fmt_kv({k: v for k, v in parts.items() if k.endswith("_pct")}))
    ok_rows = [r for r in rows if "error" not in r]
    top = max(ok_rows, key=lambda r: (r["mode"] == "simulated", r["wearers"]))
    per = {m: [r for r in ok_rows if r["mode"] == m] for m in modes}
    biggest = {m: max(rs, key=lambda r: r["wearers"]) for m, rs in per.items() if rs}
    ten = [r for r in ok_rows if r["wearers"] == 10]
    ok_n = [r["wearers"] for r in rows if r["keeps_up"] and r["mode"] == "simulated"]
    key = {
        **{f"{m}_pct_per_wearer_at_{r['wearers']}": r["cpu_pct_per_wearer"] for m, r in biggest.items()},
        "rss_10_wearers_mb": max((r["rss_mb"] for r in ten), default=top["rss_mb"]),
        "max_wearers_keeping_up": max(ok_n, default=0),
        "generate_pct": parts["generate_pct"], "tracker_pct": parts["tracker_pct"],
    }
    path = write_results("live_load", {
        "window_s": window, "rows": rows, "breakdown": parts,
        "budget": {"pct_per_wearer": BUDGET_PCT_PER_WEARER, "rss_10_mb": BUDGET_RSS_10_MB}, "key": key,
    }, args.out, args.quick)
    print(f"results: {path}")
    print("live_load: " + fmt_kv({**key, "budget": f"<={BUDGET_PCT_PER_WEARER}%/wearer"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
