"""``slouchd replay FILE.csv``: run the posture engine over a recording, for tuning thresholds.

Output (JSON Lines on stdout, documented in docs/posture.md):
- posture records ``{"t", "flexion_deg", "lateral_deg", "posture"}`` every ``--every`` seconds of
  recording time;
- event records ``{"t", "event", ...}`` stamped with the recording time at which the live daemon
  would have emitted them.

``--summary`` prints a human summary instead, with a what-if table over a few thresholds.
Bad input (CSV line, option, config) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator
from datetime import UTC
from typing import Any, TextIO

import numpy as np

from slouchd.cli import CliError
from slouchd.config import Config, load_config
from slouchd.model import EventKind, Mount, Posture
from slouchd.plot import Collector
from slouchd.posture.tracker import PostureTracker, TrackerOutput
from slouchd.sensors.recording import Recording, RecordingError, read_recording

CHUNK_S = 60.0
"""Recording seconds fed to the tracker per call: large batches keep replay fast."""
WHAT_IF_THRESHOLDS = (10.0, 12.0, 15.0, 18.0, 20.0, 25.0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="run the posture engine over a CSV recording (JSON Lines out)",
        description="Run the posture engine over a recording (CSV with header t,ax,ay,az[,gx,gy,gz]; "
                    "seconds, g, deg/s) and print JSON Lines: posture records every --every seconds "
                    "and events (slouch_alert, slouch_end, break_reminder, calibrated, ...).")
    p.add_argument("file", help="the recording, CSV with header t,ax,ay,az[,gx,gy,gz]")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (default: built-in defaults)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override a config key, repeatable, e.g. --set detection.dwell_s=30")
    p.add_argument("--mount", metavar="UP,OUT",
                   help="sensor axes toward the head and out of the back, each of +x -x +y -y +z -z "
                        "(default: learn the forward axis from the recording)")
    p.add_argument("--calibrate-at", metavar="SECONDS", type=_seconds, dest="calibrate_at",
                   help="the upright calibration window starts at this recording time "
                        "(default: the first still window)")
    p.add_argument("--every", metavar="SECONDS", type=_positive, default=1.0,
                   help="posture record interval in recording seconds (default 1, minimum 0.1)")
    p.add_argument("--summary", action="store_true",
                   help="print a human summary (alerts, slouched minutes, what-if thresholds) instead")
    p.add_argument("--plot", metavar="OUT.svg",
                   help="also draw flexion over time with threshold, alerts, slouches, breaks and gaps "
                        "into this SVG file (and a one-line sparkline on stderr)")
    p.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return v


def _positive(text: str) -> float:
    v = _seconds(text)
    if v < 0.1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 0.1")
    return v


def make_tracker(cfg: Config, mount: Mount | None, every_s: float,
                 calibrate_at: float | None) -> PostureTracker:
    """The tracker replay runs: config settings, recording time as UTC wall time from 0."""
    cal_settings = cfg.calibration
    if calibrate_at is not None:
        cal_settings = dataclasses.replace(cal_settings, auto=False)
    return PostureTracker(cfg.detection, cfg.wellbeing, mount, calibration_settings=cal_settings,
                          activity=cfg.activity, frame_interval_s=every_s, epoch_offset_s=0.0, tz=UTC)


def run_tracker(rec: Recording, tracker: PostureTracker,
                calibrate_at: float | None) -> Iterator[TrackerOutput]:
    """Feed the recording in chunks, requesting calibration at ``calibrate_at``."""
    if calibrate_at is None:
        for batch in rec.batches(CHUNK_S):
            yield tracker.process(batch)
    else:
        for batch in rec.batches(CHUNK_S, end_s=calibrate_at):
            yield tracker.process(batch)
        tracker.request_calibration()
        for batch in rec.batches(CHUNK_S, start_s=calibrate_at):
            yield tracker.process(batch)
    yield tracker.flush()


def posture_record(frame: Any) -> dict[str, Any]:
    return {
        "t": round(frame.t_s, 3),
        # + 0.0 turns -0.0 into 0.0
        "flexion_deg": None if frame.flexion_deg is None else round(frame.flexion_deg, 1) + 0.0,
        "lateral_deg": None if frame.lateral_deg is None else round(frame.lateral_deg, 1) + 0.0,
        "posture": frame.posture.value,
    }


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    mount = None
    if args.mount is not None:
        try:
            mount = Mount.parse(args.mount)
        except ValueError as err:
            raise CliError(f"--mount: {err}") from None
    try:
        rec = read_recording(args.file)
    except RecordingError as err:
        raise CliError(str(err)) from None
    if args.calibrate_at is not None and args.calibrate_at > rec.t_s[-1]:
        raise CliError(f"--calibrate-at {args.calibrate_at:g}: the recording ends at t = {rec.t_s[-1]:g} s")
    _warn_about_timing(rec, cfg.activity.gap_s, args.file)
    plot = None if args.plot is None else Collector.for_settings(cfg.detection, title=str(args.file))
    if args.summary:
        _summary(rec, cfg, mount, args, sys.stdout, plot)
        _finish_plot(plot, args.plot, sys.stdout)
        return 0
    out = sys.stdout
    tracker = make_tracker(cfg, mount, args.every, args.calibrate_at)
    written = 0
    for chunk in run_tracker(rec, tracker, args.calibrate_at):
        if plot is not None:
            plot.add(chunk)
        lines = _merge(chunk)
        if lines:
            out.write("\n".join(lines) + "\n")
            written += len(lines)
    out.flush()
    _finish_plot(plot, args.plot, sys.stderr)
    if not written:
        sys.stderr.write(f"slouchd replay: warning: {args.file}: no records: {len(rec)} sample(s) over "
                         f"{rec.duration_s:g} s are too few to judge any posture\n")
    return 0


def _finish_plot(plot: Collector | None, path: str | None, tty: TextIO) -> None:
    """Write the picture and show its sparkline (on stderr when stdout carries JSON Lines)."""
    if plot is None or path is None:
        return
    try:
        plot.write_svg(path)
    except OSError as err:
        raise CliError(f"--plot {path}: cannot write it ({err.strerror or err})") from None
    tty.write(f"flexion: {plot.sparkline(60)}\npicture: {path}\n")


def _warn_about_timing(rec: Recording, gap_s: float, name: str) -> None:
    """One stderr line when ``t`` cannot be seconds (every sample would be its own data gap)."""
    if len(rec) < 2:
        return
    median_dt = float(np.median(np.diff(rec.t_s)))
    if median_dt > gap_s:
        sys.stderr.write(f"slouchd replay: warning: {name}: samples are {median_dt:g} s apart (median), "
                         f"more than a data gap ({gap_s:g} s): is t in seconds? Nothing can be "
                         "judged at that rate.\n")


def _merge(chunk: TrackerOutput) -> list[str]:
    """Frames and events of one chunk as JSON lines in time order (events first on a tie)."""
    items = [(e.t_s, 0, i, e.to_dict()) for i, e in enumerate(chunk.events)]
    items += [(f.t_s, 1, i, posture_record(f)) for i, f in enumerate(chunk.frames)]
    # Compared at the millisecond the records print: 296.40000000000003 and 296.4 are a tie.
    items.sort(key=lambda x: (round(x[0], 3), x[1], x[2]))
    return [json.dumps(d, separators=(", ", ": ")) for *_, d in items]


def _summarise(rec: Recording, cfg: Config, mount: Mount | None, every: float,
               calibrate_at: float | None, plot: Collector | None = None) -> dict[str, Any]:
    tracker = make_tracker(cfg, mount, every, calibrate_at)
    counts: dict[str, int] = {}
    events: dict[str, int] = {}
    for chunk in run_tracker(rec, tracker, calibrate_at):
        if plot is not None:
            plot.add(chunk)
        for f in chunk.frames:
            counts[f.posture.value] = counts.get(f.posture.value, 0) + 1
        for e in chunk.events:
            events[e.kind.value] = events.get(e.kind.value, 0) + 1
    seated = counts.get(Posture.UPRIGHT.value, 0) + counts.get(Posture.SLOUCHING.value, 0)
    return {
        "alerts": events.get(EventKind.SLOUCH_ALERT.value, 0),
        "slouches": events.get(EventKind.SLOUCH_END.value, 0),
        "slouched_min": counts.get(Posture.SLOUCHING.value, 0) * every / 60.0,
        "upright_pct": None if seated == 0 else 100.0 * counts.get(Posture.UPRIGHT.value, 0) / seated,
        "postures_min": {k: v * every / 60.0 for k, v in sorted(counts.items())},
        "events": events,
        "calibration": None if tracker.calibration is None else tracker.calibration.to_dict(),
        "stats": tracker.stats(),
    }


def _summary(rec: Recording, cfg: Config, mount: Mount | None, args: argparse.Namespace, out: TextIO,
             plot: Collector | None = None) -> None:
    s = _summarise(rec, cfg, mount, 1.0, args.calibrate_at, plot)
    det = cfg.detection
    w = out.write
    w(f"recording: {args.file}: {rec.duration_s / 60:.1f} min, {len(rec)} samples, "
      f"{'with' if rec.gyro_dps is not None else 'no'} gyro\n")
    cal = s["calibration"]
    if cal is None:
        w("calibration: none (no still window found)\n")
    else:
        w(f"calibration: {cal['source']} at t={cal['t']:.1f} s, forward axis: {cal['axis_source']}\n")
    w(f"settings: threshold {det.threshold_deg:g} deg, hysteresis {det.hysteresis_deg:g} deg, "
      f"dwell {det.dwell_s:g} s, repeat {det.repeat_s:g} s, mode {det.mode}"
      f"{', cumulative' if det.cumulative else ''}\n")
    w(f"alerts: {s['alerts']}   slouches that reached the dwell: {s['slouches']}   "
      f"slouched: {s['slouched_min']:.1f} min   upright: "
      f"{'-' if s['upright_pct'] is None else format(s['upright_pct'], '.0f') + ' %'}\n")
    w("time by posture (min): " + ", ".join(f"{k} {v:.1f}" for k, v in s["postures_min"].items()) + "\n")
    w(f"break reminders: {s['events'].get('break_reminder', 0)}   "
      f"longest sitting: {s['stats']['longest_sitting_min']:.1f} min\n")
    w("\nwhat if (same recording, other thresholds):\n")
    w(f"  {'threshold_deg':>13} {'dwell_s':>8} {'alerts':>7} {'slouched_min':>13}\n")
    dwells = sorted({det.dwell_s, 30.0, 60.0})
    for thr in WHAT_IF_THRESHOLDS:
        for dwell in dwells:
            hyst = min(det.hysteresis_deg, thr - 1.0)
            c = dataclasses.replace(cfg, detection=dataclasses.replace(
                det, threshold_deg=thr, dwell_s=dwell, hysteresis_deg=hyst, mode="training"))
            r = _summarise(rec, c, mount, 1.0, args.calibrate_at)
            mark = "  <- current" if (thr == det.threshold_deg and dwell == det.dwell_s) else ""
            w(f"  {thr:>13g} {dwell:>8g} {r['alerts']:>7} {r['slouched_min']:>13.1f}{mark}\n")
