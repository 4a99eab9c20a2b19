"""Replay speed: `slouchd replay` end to end on simulated recordings, and the tracker in-process.

For 25, 50 and 100 Hz, with and without gyroscope, a simulated wearer's recording (CSV, no
ground-truth columns) is written once (cached in bench/results/cache/) and then:

* ``slouchd replay FILE > /dev/null`` runs as a child process (the CLI a user runs, JSON Lines
  written to /dev/null): wall time, and CPU time of the child (rusage), best of ``--repeat``;
  the real-time factor is recording seconds / seconds taken. "net" subtracts the CPU of the same
  command on a 10 s recording (interpreter start, imports: a fixed cost, not a per-sample one).
* in-process: CSV parsing (``read_recording``) and the PostureTracker alone (``process`` on 60 s
  batches, as ``slouchd replay`` feeds it), by process CPU time.

Budget: >= 2,000x real time at 50 Hz.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS, ROOT, children_cpu_s, fmt_kv, parser, table, write_results

BUDGET_RTF_50HZ = 2000.0


def make_csv(rate: float, gyro: bool, hours: float) -> Path:
    """A simulated wearer's recording, cached by its parameters."""
    from slouchd.sensors.simulated import SimSettings, SimulatedWearer, write_csv

    cache = RESULTS / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"sim-{rate:g}hz-{'gyro' if gyro else 'acc'}-{hours:g}h.csv"
    if not path.exists():
        wearer = SimulatedWearer(SimSettings(seed=1, rate_hz=rate, gyro=gyro))
        tmp = path.with_suffix(".tmp")
        write_csv(wearer, tmp, truth=False, hours=hours)
        tmp.rename(path)
    return path


def run_cli(path: Path) -> tuple[float, float]:
    """``slouchd replay PATH > /dev/null`` as a child: (wall s, CPU s)."""
    cpu0 = children_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "slouchd.cli", "replay", str(path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    wall = time.perf_counter() - t0
    cpu = children_cpu_s() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"slouchd replay {path} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return wall, cpu


def in_process(path: Path) -> dict[str, float]:
    """CPU seconds to parse the CSV and to run the tracker over it (as the replay command does)."""
    from slouchd.commands.replay import make_tracker, run_tracker
    from slouchd.config import load_config
    from slouchd.sensors.recording import read_recording

    c0 = time.process_time()
    rec = read_recording(path)
    c1 = time.process_time()
    tracker = make_tracker(load_config(None), None, 1.0, None)
    frames = events = 0
    for out in run_tracker(rec, tracker, None):
        frames += len(out.frames)
        events += len(out.events)
    c2 = time.process_time()
    return {"samples": len(rec), "duration_s": rec.duration_s, "parse_cpu_s": c1 - c0,
            "tracker_cpu_s": c2 - c1, "frames": frames, "events": events}


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=None, help="recording length (default 1; --quick 0.05)")
    p.add_argument("--repeat", type=int, default=None, help="CLI runs per recording, best kept (default 3)")
    args = p.parse_args()
    hours = args.hours or (0.05 if args.quick else 1.0)
    repeat = args.repeat or (1 if args.quick else 3)

    tiny = make_csv(50.0, True, 10 / 3600)
    base_wall, base_cpu = min(run_cli(tiny) for _ in range(repeat))
    rows = []
    combos = [(50.0, True)] if args.quick else [(r, g) for r in (25.0, 50.0, 100.0) for g in (True, False)]
    for rate, gyro in combos:
        path = make_csv(rate, gyro, hours)
        ip = in_process(path)
        runs = [run_cli(path) for _ in range(repeat)]
        wall = min(r[0] for r in runs)
        cpu = min(r[1] for r in runs)
        dur = ip["duration_s"]
        rows.append({
            "rate_hz": rate, "gyro": gyro, "samples": ip["samples"], "rec_s": dur,
            "cli_wall_s": wall, "cli_cpu_s": cpu,
            "rtf_wall": dur / wall, "rtf_cpu": dur / cpu,
            "rtf_cpu_net": dur / max(cpu - base_cpu, 1e-9),
            "samples_per_s_cpu": ip["samples"] / cpu,
            "parse_rtf": dur / max(ip["parse_cpu_s"], 1e-9),
            "tracker_rtf": dur / max(ip["tracker_cpu_s"], 1e-9),
            "tracker_samples_per_s": ip["samples"] / max(ip["tracker_cpu_s"], 1e-9),
            "events": ip["events"],
        })
    print(f"slouchd replay on simulated recordings of {hours:g} h; fixed cost of the command "
          f"(10 s recording): {base_wall:.2f} s wall, {base_cpu:.2f} s CPU")
    print(table(rows, ["rate_hz", "gyro", "samples", "cli_wall_s", "cli_cpu_s", "rtf_wall", "rtf_cpu",
                       "rtf_cpu_net", "samples_per_s_cpu", "parse_rtf", "tracker_rtf"]))
    r50 = [r for r in rows if r["rate_hz"] == 50.0]
    worst50 = min(r["rtf_cpu"] for r in r50)
    path = write_results("replay", {
        "hours": hours, "repeat": repeat, "fixed_cost": {"wall_s": base_wall, "cpu_s": base_cpu},
        "rows": rows, "budget": {"rtf_50hz": BUDGET_RTF_50HZ},
        "key": {"rtf_cpu_50hz_worst": worst50, "rtf_wall_50hz_worst": min(r["rtf_wall"] for r in r50),
                "tracker_rtf_50hz_worst": min(r["tracker_rtf"] for r in r50)},
    }, args.out, args.quick)
    print(f"results: {path}")
    print("replay: " + fmt_kv({
        "50Hz_rtf_cpu": worst50, "50Hz_rtf_wall": min(r["rtf_wall"] for r in r50),
        "50Hz_rtf_cpu_net": min(r["rtf_cpu_net"] for r in r50),
        "50Hz_tracker_rtf": min(r["tracker_rtf"] for r in r50),
        "budget": f">={BUDGET_RTF_50HZ:g}x", "met(cpu)": worst50 >= BUDGET_RTF_50HZ}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
