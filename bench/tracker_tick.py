"""The tracker's per-tick cost, in-process: what one 50 Hz wearer costs the live daemon's maths.

A simulated wearer's day (50 Hz, gyroscope, desk vibration and fast moves as in
``bench/accuracy.py``) is cut into radio notifications of 1, 5 or 36 samples and fed through the
daemon's own :class:`~slouchd.sample_buffer.SampleBuffer`, which hands the tracker one call per
completed 0.1 s decision tick, exactly as ``slouchd run`` does. Printed per notification size:
microseconds of CPU per decision tick and the implied % of one core per 50 Hz wearer (CPU time /
recording time). The same recording fed in 60 s batches (as ``slouchd replay`` feeds it) gives the
tracker's batch speed (x real time); ``--cli`` also runs ``slouchd replay FILE > /dev/null`` end to
end on a cached CSV of the same length (best of ``--repeat``).

CPU time is this process's own (``time.process_time``), best of ``--repeat`` runs: the machine is
shared, and contention only ever adds time.

    python bench/tracker_tick.py            # 20 simulated minutes, best of 3
    python bench/tracker_tick.py --quick    # a smoke run in seconds (CI)
"""

from __future__ import annotations

import itertools
import sys
import time

import numpy as np
from _common import fmt_kv, parser, table, write_results

from slouchd.model import SampleBatch

TICK_S = 0.1
BUDGET_PCT = 0.3  # % of one core per 50 Hz wearer, the whole daemon (issue 11)
BUDGET_RTF = 2000.0  # slouchd replay, x real time at 50 Hz (issue 10/11)


def recording(minutes: float, seed: int = 1) -> SampleBatch:
    """A simulated wearer's first ``minutes`` at 50 Hz with gyroscope, as one batch."""
    from slouchd.sensors.simulated import SimSettings, SimulatedWearer

    wearer = SimulatedWearer(SimSettings(seed=seed, rate_hz=50.0, gyro=True, desk_vibration=True,
                                         fast_moves=True))
    parts = list(wearer.batches(60.0, end_s=minutes * 60.0))
    return SampleBatch.concat(parts)


def _tracker():  # type: ignore[no-untyped-def]
    from slouchd.commands.replay import make_tracker
    from slouchd.config import load_config

    return make_tracker(load_config(None), None, 1.0, None)


def packets(rec: SampleBatch, size: int) -> list[SampleBatch]:
    """Consecutive notifications of ``size`` samples (views, no copies)."""
    g = rec.gyro_dps
    return [SampleBatch(rec.t_s[a:a + size], rec.acc_g[a:a + size], None if g is None else g[a:a + size])
            for a in range(0, len(rec), size)]


def live_cpu(pkts: list[SampleBatch]) -> tuple[float, int, int]:
    """CPU seconds to run the notifications through a SampleBuffer and a tracker, tracker calls,
    frames+events (to check the work was done)."""
    from slouchd.sample_buffer import SampleBuffer

    tracker = _tracker()
    buf = SampleBuffer()
    calls = out_n = 0
    c0 = time.process_time()
    for p in pkts:
        for b in buf.add(p):
            out = tracker.process(b)
            calls += 1
            out_n += len(out.frames) + len(out.events)
    for b in buf.take():
        out = tracker.process(b)
        calls += 1
        out_n += len(out.frames) + len(out.events)
    out_n += len(tracker.flush().frames)
    return time.process_time() - c0, calls, out_n


def batch_cpu(rec: SampleBatch, chunk_s: float = 60.0) -> float:
    """CPU seconds for the tracker on ``chunk_s`` batches (as ``slouchd replay`` feeds it)."""
    tracker = _tracker()
    k = np.floor(rec.t_s / chunk_s).astype(np.int64)
    cuts = [0, *(np.flatnonzero(np.diff(k)) + 1).tolist(), len(rec)]
    g = rec.gyro_dps
    parts = [SampleBatch(rec.t_s[a:b], rec.acc_g[a:b], None if g is None else g[a:b])
             for a, b in itertools.pairwise(cuts)]
    c0 = time.process_time()
    for p in parts:
        tracker.process(p)
    tracker.flush()
    return time.process_time() - c0


def cli_rtf(minutes: float, repeat: int) -> dict[str, float]:
    """``slouchd replay FILE > /dev/null`` end to end (bench/replay.py's cached CSV)."""
    from replay import make_csv, run_cli

    path = make_csv(50.0, True, minutes / 60.0)
    tiny = make_csv(50.0, True, 10 / 3600)
    base_cpu = min(run_cli(tiny)[1] for _ in range(repeat))
    cpu = min(run_cli(path)[1] for _ in range(repeat))
    dur = minutes * 60.0
    return {"cli_rtf_cpu": dur / cpu, "cli_rtf_cpu_net": dur / max(cpu - base_cpu, 1e-9),
            "cli_cpu_s": cpu, "cli_fixed_cpu_s": base_cpu}


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=None, help="simulated minutes (default 20; --quick 2)")
    p.add_argument("--repeat", type=int, default=None, help="runs per row, best kept (default 3; --quick 1)")
    p.add_argument("--cli", action="store_true", help="also time `slouchd replay` end to end")
    args = p.parse_args()
    minutes = args.minutes or (2.0 if args.quick else 20.0)
    repeat = args.repeat or (1 if args.quick else 3)

    rec = recording(minutes)
    dur = float(rec.t_s[-1] - rec.t_s[0])
    ticks = dur / TICK_S
    rows = []
    for size in (1, 5, 36):
        pkts = packets(rec, size)
        best = min(live_cpu(pkts) for _ in range(repeat))
        cpu, calls, n_out = best
        rows.append({"samples_per_notification": size, "tracker_calls": calls, "outputs": n_out,
                     "us_per_tick": 1e6 * cpu / ticks, "us_per_call": 1e6 * cpu / calls,
                     "pct_core_per_wearer": 100.0 * cpu / dur})
    bcpu = min(batch_cpu(rec) for _ in range(repeat))
    batch_row = {"tracker_rtf": dur / bcpu, "us_per_tick_batch": 1e6 * bcpu / ticks}
    cli = cli_rtf(minutes, repeat) if args.cli else {}

    print(f"tracker per tick: {minutes:g} simulated minutes at 50 Hz with gyro, best of {repeat}")
    print(table(rows, ["samples_per_notification", "tracker_calls", "us_per_tick", "us_per_call",
                       "pct_core_per_wearer"]))
    print(fmt_kv({**batch_row, **cli}))
    key = {f"pct_{r['samples_per_notification']}": r["pct_core_per_wearer"] for r in rows}
    key |= {f"us_tick_{r['samples_per_notification']}": r["us_per_tick"] for r in rows}
    key |= {"tracker_rtf": batch_row["tracker_rtf"], **cli}
    path = write_results("tracker_tick", {"minutes": minutes, "repeat": repeat, "rows": rows,
                                          "batch": batch_row, "cli": cli, "key": key}, args.out, args.quick)
    print(f"results: {path}")
    print("tracker_tick: " + fmt_kv({**key, "budget_pct(daemon)": BUDGET_PCT, "budget_rtf": BUDGET_RTF}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
