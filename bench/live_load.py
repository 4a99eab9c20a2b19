"""Live load: the real `slouchd run` process with N wearers in real time, to Mosquitto.

Measured as issue 11 asks and as it is re-measured from outside: the daemon's own CPU time
(``/proc/PID/stat``) over ``--window`` seconds (default 30) after a ``--settle`` (default 10 s
after READY, and not before every wearer published a state), default config (Home Assistant
discovery on), 50 Hz recordings with gyro paced at 1x. Rows:

* ``idle``: no wearers at all (the daemon's fixed cost: MQTT session, housekeeping).
* ``replay``: N ``replay:PATH`` wearers, exactly as a user configures them (the paced source
  hands over 0.1 s of samples at a time, i.e. 5 samples at 50 Hz).
* ``notify``: N wearers whose recording arrives like a BLE sensor's notifications of 1, 5 or 36
  samples at 50 or 100 Hz (``bench/_packet_daemon.py``: the real daemon, only the source swapped).
* with ``--find-limit``: ``replay`` wearers from 100 up in steps until the daemon stops keeping up.

It keeps up when the state lag (subscriber arrival time - the state's sample time ``t``) p99 stays
under 1 s without growing and every wearer's state goes out about once a second.

``batch`` is what the same maths costs in batch: the tracker over the same recording in 60 s
batches, in-process CPU time (``batch_pct_per_wearer``), and ``slouchd replay`` end to end on a
60-minute recording, a child process's CPU time including its start-up (``replay_cli_pct_per_wearer``,
the issue's own "0.04 % of a core per wearer-equivalent"). The live/batch ratio is live CPU per
wearer over each (``live_batch_ratio`` against the tracker alone, ``live_replay_ratio`` against
``slouchd replay``).

Budgets (issue 11): <= 0.3 % of one core per 50 Hz wearer (stretch 0.15 %) at 10 and 40 wearers;
live/batch <= 5; idle <= 0.2 %; >= 300 wearers on one core; RSS <= 120 MB with 10 wearers.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
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
STRETCH_PCT_PER_WEARER = 0.15
BUDGET_RATIO = 5.0
BUDGET_IDLE_PCT = 0.2
BUDGET_WEARERS = 300
BUDGET_RSS_10_MB = 120.0
LAG_KEEPS_UP_S = 1.0  # a state older than this on arrival: the daemon is behind real time
STATE_HZ_KEEPS_UP = 0.9  # each wearer's state goes out about once a second when all is well


def recording(rate_hz: float, minutes: float) -> Path:
    """A simulated wearer's recording with gyro (cached in bench/results/cache)."""
    from replay import make_csv

    return make_csv(rate_hz, True, minutes / 60.0)


def start_daemon(cfg: Path, log_path: Path, notify_path: Path,
                 samples: int | None) -> subprocess.Popen[bytes]:
    """``slouchd run`` (``samples`` None) or the notification-packet variant, as a child."""
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    env["NOTIFY_SOCKET"] = str(notify_path)
    cmd = ([sys.executable, "-m", "slouchd.cli"] if samples is None
           else [sys.executable, str(ROOT / "bench" / "_packet_daemon.py"), str(samples)])
    with log_path.open("ab") as log:
        return subprocess.Popen([*cmd, "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=ROOT)


def one_run(work: Path, port: int, sub: Subscriber, mode: str, n: int, window_s: float, settle_s: float,
            csv: Path | None, rate_hz: float = 50.0, samples: int | None = None) -> dict[str, Any]:
    from tests.daemon.harness import NotifySocket

    tag = f"{mode[0]}{n}s{samples or 0}r{rate_hz:g}".replace(".", "_")
    while (work / f"{tag}.toml").exists():  # --find-limit repeats a row: its own files, fresh state
        tag += "x"
    prefix = f"bench/{tag}w"
    sensor = "simulated" if mode == "simulated" else f"replay:{csv}"
    wearers = wearer_tables(n, sensor=sensor, prefix=f"{tag}w") if n else ""
    cfg = daemon_config(work / f"{tag}.toml", port=port, state_dir=work / f"state-{tag}", wearers=wearers)
    if n == 0:  # no [[wearers]] at all would mean the built-in demo wearer
        cfg.write_text("wearers = []\n" + cfg.read_text())
    notify = NotifySocket(work / f"{tag}.sock")
    sub.clear()
    log_path = work / f"{tag}.log"
    t0 = time.monotonic()
    proc = start_daemon(cfg, log_path, notify.path, samples)
    seen: set[str] = set()
    try:
        notify.wait_for("READY=1", timeout_s=60)
        ready_s = time.monotonic() - t0
        deadline = time.monotonic() + 60 + n * 0.5
        while n and time.monotonic() < deadline:
            seen = {m.topic for m in sub.snapshot()
                    if m.topic.startswith(prefix) and m.topic.endswith("/state")}
            if len(seen) >= n:
                break
            time.sleep(0.2)
        if n and len(seen) < n:
            raise RuntimeError(f"only {len(seen)}/{n} wearers published a state; log:\n"
                               f"{log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(max(0.0, t0 + ready_s + settle_s - time.monotonic()))
        before = len(sub.snapshot())
        a = proc_sample(proc.pid)
        samples_: list[ProcSample] = [a]
        t_end = a.at + window_s
        while time.monotonic() < t_end:
            time.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
            samples_.append(proc_sample(proc.pid))
        b = samples_[-1]
        msgs = sub.snapshot()[before:]
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited ({proc.returncode}); log:\n"
                               f"{log_path.read_text(errors='replace')[-2000:]}")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        notify.close()
    states = [m for m in msgs if m.topic.endswith("/state") and m.topic.startswith(prefix)]
    lags: list[float] = []
    first_half: list[float] = []
    second_half: list[float] = []
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
    keeps_up = n == 0 or (bool(lags) and lag_p99 < LAG_KEEPS_UP_S and growth < 0.5
                          and len(states) / span >= STATE_HZ_KEEPS_UP * n)
    return {
        "mode": mode, "rate_hz": rate_hz if n else None, "samples": samples or (5 if n else None),
        "wearers": n, "window_s": span, "ready_s": ready_s,
        "cpu_pct": pct, "cpu_pct_per_wearer": pct / n if n else None,
        "rss_mb": b.rss_mb, "rss_max_mb": max(s.rss_mb for s in samples_), "fds": b.fds, "threads": b.threads,
        "msgs_per_s": len(msgs) / span, "states_per_s": len(states) / span,
        "state_lag_p50_s": percentile(lags, 50), "state_lag_p99_s": lag_p99, "lag_growth_s": growth,
        "keeps_up": keeps_up,
    }


def safe_run(*args: Any, **kw: Any) -> dict[str, Any]:
    """:func:`one_run`, with a failure (e.g. not every wearer streaming in time) kept as a row."""
    try:
        return one_run(*args, **kw)
    except (RuntimeError, AssertionError) as err:
        first = str(err).splitlines()[0]
        print(f"{args[3]} x{args[4]}: FAILED: {first}", flush=True)
        return {"mode": args[3], "wearers": args[4], "rate_hz": kw.get("rate_hz", 50.0),
                "samples": kw.get("samples"), "keeps_up": False, "error": first}


def batch_pct(csv: Path, repeat: int = 3) -> float:
    """% of one core per wearer-equivalent of the tracker fed 60 s batches (as ``slouchd replay``)."""
    from slouchd.config import load_config
    from slouchd.daemon import new_tracker
    from slouchd.sensors.recording import read_recording

    cfg = load_config(None)
    rec = read_recording(csv)
    batches = list(rec.batches(60.0))
    seconds = float(rec.t_s[-1] - rec.t_s[0])
    best = float("inf")
    for _ in range(repeat):
        tracker = new_tracker(cfg, cfg.detection, None)
        c0 = time.process_time()
        for b in batches:
            tracker.process(b)
        best = min(best, time.process_time() - c0)
    return 100.0 * best / seconds


def replay_cli_pct(hours: float = 1.0, repeat: int = 2) -> float:
    """% of one core per 50 Hz wearer-equivalent of ``slouchd replay`` on a recording of
    ``hours`` (CPU time of the child process, start-up included; bench/replay.py's cached CSV)."""
    from replay import make_csv, run_cli

    path = make_csv(50.0, True, hours)
    cpu = min(run_cli(path)[1] for _ in range(repeat))
    return 100.0 * cpu / (hours * 3600.0)


def in_process(csv: Path, sizes: list[int]) -> dict[str, float]:
    """% of one core per 50 Hz wearer for the tracker alone, in-process, fed notifications of
    each size through the daemon's SampleBuffer with its dispatch (every 0.1 s tick while the
    tracker is urgent, else every ``CALM_DISPATCH_TICKS``), and (``direct_1``) 1-sample ones
    straight to the tracker."""
    from slouchd.config import load_config
    from slouchd.daemon import CALM_DISPATCH_TICKS, DISPATCH_TICKS, new_tracker
    from slouchd.model import SampleBatch
    from slouchd.sample_buffer import SampleBuffer
    from slouchd.sensors.recording import read_recording

    cfg = load_config(None)
    rec = read_recording(csv)
    t = rec.t_s + 1.7e9
    seconds = float(t[-1] - t[0])
    out: dict[str, float] = {}
    for size, buffered in [*((s, True) for s in sizes), (1, False)]:
        packets = [SampleBatch(t[a:a + size], rec.acc_g[a:a + size],
                               None if rec.gyro_dps is None else rec.gyro_dps[a:a + size])
                   for a in range(0, len(t), size)]
        tracker = new_tracker(cfg, cfg.detection, None)
        buf = SampleBuffer(DISPATCH_TICKS)
        c0 = time.process_time()
        for p in packets:
            if buffered:
                for b in buf.add(p):
                    tracker.process(b)
                    buf.ticks = DISPATCH_TICKS if tracker.urgent else CALM_DISPATCH_TICKS
            else:
                tracker.process(p)
        cpu = time.process_time() - c0
        out[f"{'buffered' if buffered else 'direct'}_{size}_pct"] = 100.0 * cpu / seconds
    return out


@dataclass
class Settings:
    window_s: float
    """Measured seconds per run."""
    settle_s: float
    """Seconds after READY before measuring."""
    ns: list[int]
    """Wearer counts."""
    sizes: list[int]
    """Samples per notification."""
    rates: list[float]
    """Sample rates, Hz."""
    minutes: float
    """Length of the looped recording, minutes."""


def arguments() -> tuple[Any, Settings]:
    """The command line, and the run's settings (``--quick`` shrinks every default)."""
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--window", type=float, default=None, help="measured seconds per run (default 30)")
    p.add_argument("--settle", type=float, default=None,
                   help="seconds after READY before measuring (default 10)")
    p.add_argument("--wearers", default=None, help="comma-separated N (default 1,10,40,100)")
    p.add_argument("--samples", default=None, help="samples per notification (default 1,5,36)")
    p.add_argument("--rates", default=None, help="sample rates, Hz (default 50,100)")
    p.add_argument("--no-notify", action="store_true", help="only the idle and replay rows")
    p.add_argument("--simulated", action="store_true",
                   help="also N simulated wearers (the simulator runs inside the daemon)")
    p.add_argument("--find-limit", action="store_true",
                   help="then replay wearers from 100 up (100, 200, 300, 400, 600...) until it falls behind")
    args = p.parse_args()
    q = args.quick
    return args, Settings(
        window_s=args.window or (3.0 if q else 30.0),
        settle_s=args.settle if args.settle is not None else (1.0 if q else 10.0),
        ns=[int(x) for x in (args.wearers or ("1,2" if q else "1,10,40,100")).split(",")],
        sizes=[int(x) for x in (args.samples or ("1,36" if q else "1,5,36")).split(",")],
        rates=[float(x) for x in (args.rates or ("50" if q else "50,100")).split(",")],
        minutes=1.0 if q else 5.0)


def live_rows(args: Any, st: Settings, work: Path, csvs: dict[float, Path]) -> list[dict[str, Any]]:
    """Every live run the options ask for, each row printed as it is measured."""
    rows: list[dict[str, Any]] = []
    broker = start_mosquitto(work / "broker")
    sub = Subscriber(broker.host, broker.port, ("bench/#",))

    def run(mode: str, n: int, csv: Path | None, **kw: Any) -> bool:
        rows.append(safe_run(work, broker.port, sub, mode, n, st.window_s, st.settle_s, csv, **kw))
        print(table([rows[-1]], COLS).splitlines()[-1], flush=True)
        return bool(rows[-1]["keeps_up"])

    print(table([{c: "" for c in COLS}], COLS).splitlines()[0], flush=True)
    try:
        run("idle", 0, None)
        for n in st.ns:
            run("replay", n, csvs[50.0])
        for n in st.ns if args.simulated else []:
            run("simulated", n, None)
        for rate, size, n in ([] if args.no_notify else itertools.product(st.rates, st.sizes, st.ns)):
            run("notify", n, csvs[rate], rate_hz=rate, samples=size)
        for n in (100, 200, 300, 400, 600, 800, 1200) if args.find_limit else ():
            if not run("replay", n, csvs[50.0]):
                break
    finally:
        sub.close()
        broker.stop()
    return rows


def key_numbers(rows: list[dict[str, Any]], ns: list[int], batch: float, replay_cli: float) -> dict[str, Any]:
    """The headline numbers of the run (the worst measured where there are several)."""
    ok = [r for r in rows if "error" not in r]

    def per(mode: str, n: int, samples: int | None = None) -> float | None:
        for r in ok:
            if (r["mode"] == mode and r["wearers"] == n and r["rate_hz"] == 50.0
                    and (samples is None or r["samples"] == samples)):
                return float(r["cpu_pct_per_wearer"])
        return None

    kept = [r["wearers"] for r in ok if r["mode"] == "replay" and r["keeps_up"]]
    replay_rows = [r for r in ok if r["mode"] == "replay"]
    small = [r for r in replay_rows if r["wearers"] <= 10]  # (--quick runs fewer than 10)
    ten = [max(small, key=lambda r: r["wearers"])["rss_mb"]] if small else []
    ratios = [r["live_batch_ratio"] for r in replay_rows if r["wearers"] >= 10]
    ratios = ratios or [r["live_batch_ratio"] for r in replay_rows]
    per_wearer = [r["cpu_pct_per_wearer"] for r in replay_rows if r["wearers"] >= 10]
    per_wearer = per_wearer or [r["cpu_pct_per_wearer"] for r in replay_rows if r["wearers"]]
    key: dict[str, Any] = {
        "idle_pct": next((r["cpu_pct"] for r in ok if r["mode"] == "idle"), float("nan")),
        **{f"replay_pct_per_wearer_at_{n}": per("replay", n) for n in ns},
        **{f"notify1_pct_per_wearer_at_{n}": per("notify", n, 1) for n in ns},
        "live_batch_ratio": max(ratios) if ratios else float("nan"),  # the worst measured
        "batch_pct_per_wearer": batch,
        "live_replay_ratio": max(per_wearer) / replay_cli if per_wearer else float("nan"),
        "replay_cli_pct_per_wearer": replay_cli,
        "rss_10_wearers_mb": max(ten) if ten else float("nan"),
        "max_wearers_keeping_up": max(kept, default=0),
    }
    return {k: v for k, v in key.items() if v is not None}


def main() -> int:
    args, st = arguments()
    with tempfile.TemporaryDirectory(prefix="slouchd-bench-live-") as tmp:
        work = Path(tmp)
        csvs = {r: recording(r, st.minutes) for r in sorted({50.0, *st.rates})}
        rows = live_rows(args, st, work, csvs)
        batch = batch_pct(csvs[50.0])
        replay_cli = replay_cli_pct(0.05, 1) if args.quick else replay_cli_pct()
        parts = in_process(csvs[50.0], st.sizes)

    for r in rows:
        if "error" not in r and r["wearers"]:
            r["live_batch_ratio"] = r["cpu_pct_per_wearer"] / batch if r["rate_hz"] == 50.0 else None
    print(f"\nlive load, {st.window_s:g} s windows after {st.settle_s:g} s, wearers at 1x; "
          "CPU = % of one core (daemon process CPU time)")
    print(table(rows, [*COLS, "live_batch_ratio"]))
    print(f"\nbatch (slouchd replay's tracker, 60 s batches): {batch:.4f} % of a core per 50 Hz wearer; "
          f"`slouchd replay` end to end (60 min file, start-up included): {replay_cli:.4f} %")
    print("in-process tracker, 50 Hz, % of a core per wearer: " + fmt_kv(parts))
    key = key_numbers(rows, st.ns, batch, replay_cli)
    path = write_results("live_load", {
        "window_s": st.window_s, "settle_s": st.settle_s, "rows": rows, "batch_pct_per_wearer": batch,
        "replay_cli_pct_per_wearer": replay_cli,
        "in_process": parts,
        "budget": {"pct_per_wearer": BUDGET_PCT_PER_WEARER, "stretch_pct_per_wearer": STRETCH_PCT_PER_WEARER,
                   "live_batch_ratio": BUDGET_RATIO, "idle_pct": BUDGET_IDLE_PCT,
                   "wearers": BUDGET_WEARERS, "rss_10_mb": BUDGET_RSS_10_MB},
        "key": key,
    }, args.out, args.quick)
    print(f"results: {path}")
    budget = f"<={BUDGET_PCT_PER_WEARER}%/wearer,ratio<={BUDGET_RATIO:g},idle<={BUDGET_IDLE_PCT}%"
    print("live_load: " + fmt_kv({**key, "budget": budget}))
    return 0


COLS = ["mode", "rate_hz", "samples", "wearers", "cpu_pct", "cpu_pct_per_wearer", "rss_mb", "ready_s",
        "states_per_s", "state_lag_p50_s", "state_lag_p99_s", "keeps_up"]


if __name__ == "__main__":
    sys.exit(main())
