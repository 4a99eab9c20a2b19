"""``slouchd replay FILE.csv``: run the posture engine over a recording, for tuning thresholds.

Output (JSON Lines on stdout, documented in docs/posture.md):
- posture records ``{"t", "flexion_deg", "lateral_deg", "posture"}`` every ``--every`` seconds of
  recording time;
- event records ``{"t", "event", ...}`` stamped with the recording time at which the live daemon
  would have emitted them.

``--summary`` prints a human summary instead, with a what-if table over a few thresholds.
Bad input (CSV line, option, config) is one line on stderr and exit code 2.

(About 450 lines, over the ~400 the project aims for: the two outputs share one pass over the
recording, its calibration cut and its warnings; ``stretch`` reuses the input half.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any, TextIO

import numpy as np

from slouchd.cli import CliError
from slouchd.config import Config, load_config
from slouchd.model import EventKind, Mount, Posture, SampleBatch
from slouchd.plot import Collector
from slouchd.posture.tracker import PostureTracker, TrackerOutput
from slouchd.sensors.paced import on_grid, slice_batch
from slouchd.sensors.recording import (
    ACC_UNITS,
    GYRO_UNITS,
    ReadReport,
    Recording,
    RecordingError,
    RecordingReader,
)

CHUNK_S = 60.0
"""Recording seconds fed to the tracker per call: large batches keep replay fast."""
WHAT_IF_THRESHOLDS = (10.0, 12.0, 15.0, 18.0, 20.0, 25.0)
PROGRESS_EVERY_S = 0.5
"""Wall seconds between progress updates on a terminal."""
LONG_FILE_BYTES = 64 * 1024 * 1024
"""Files at least this large report progress on stderr even when it is not a terminal."""
MAX_LISTED_CALIBRATIONS = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="run the posture engine over a CSV recording (JSON Lines out)",
        description="Run the posture engine over a recording (CSV with header t,ax,ay,az[,gx,gy,gz]; "
                    "seconds, g, deg/s) and print JSON Lines: posture records every --every seconds "
                    "and events (slouch_alert, slouch_end, break_reminder, calibrated, ...).")
    p.add_argument("file", help="the recording, CSV with header t,ax,ay,az[,gx,gy,gz] (- = standard input)")
    add_input_options(p, "detection.dwell_s=30",
                      "sensor axes toward the head and out of the back, each of +x -x +y -y +z -z "
                      "(default: learn the forward axis from the recording)")
    p.add_argument("--calibrate-at", metavar="SECONDS", type=seconds_arg, dest="calibrate_at",
                   help="the upright calibration window starts at this recording time "
                        "(default: the first still window)")
    p.add_argument("--every", metavar="SECONDS", type=_positive, default=1.0,
                   help="posture record interval in recording seconds (default 1, minimum 0.1)")
    p.add_argument("--summary", action="store_true",
                   help="print a human summary (alerts, slouched minutes, what-if thresholds) instead")
    p.add_argument("--plot", metavar="OUT.svg",
                   help="also draw flexion over time with threshold, alerts, slouches, breaks and gaps "
                        "into this SVG file (and a one-line sparkline on stderr)")
    p.add_argument("--acc-unit", choices=tuple(ACC_UNITS), dest="acc_unit",
                   help="unit of ax,ay,az (default g; milli-g and m/s2 files are recognised and refused "
                        "without this option)")
    p.add_argument("--gyro-unit", choices=tuple(GYRO_UNITS), dest="gyro_unit",
                   help="unit of gx,gy,gz (default deg/s; rad/s files are recognised and refused "
                        "without this option)")
    p.set_defaults(func=run)


def add_input_options(p: argparse.ArgumentParser, set_example: str, mount_help: str) -> None:
    """``--config``, ``--set`` (e.g. ``set_example``) and ``--mount``: what a command over a
    recording reads with :func:`load_inputs`."""
    p.add_argument("--config", metavar="FILE", help="TOML configuration (default: built-in defaults)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help=f"override a config key, repeatable, e.g. --set {set_example}")
    p.add_argument("--mount", metavar="UP,OUT", help=mount_help)


def load_inputs(args: argparse.Namespace) -> tuple[Config, Mount | None]:
    """The configuration and the mount (None: learnt from the recording) that
    :func:`add_input_options` asked for. Raises CliError naming the option."""
    cfg = load_config(args.config, args.overrides)
    if args.mount is None:
        return cfg, None
    try:
        return cfg, Mount.parse(args.mount)
    except ValueError as err:
        raise CliError(f"--mount: {err}") from None


def seconds_arg(text: str) -> float:
    """argparse type: a finite number of seconds >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return v


def _positive(text: str) -> float:
    v = seconds_arg(text)
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


def run_tracker(rec: Recording | Iterable[SampleBatch], tracker: PostureTracker,
                calibrate_at: float | None) -> Iterator[TrackerOutput]:
    """Feed the recording (or its batches, in order) to the tracker, requesting calibration at
    ``calibrate_at``; the last output is the tracker's flush."""
    batches = rec.batches(CHUNK_S) if isinstance(rec, Recording) else rec
    for outputs in _fan_out(batches, [tracker], calibrate_at):
        yield outputs[0]


def _split_at(batches: Iterable[SampleBatch], calibrate_at: float | None) -> Iterator[SampleBatch | None]:
    """The batches, cut at recording time ``calibrate_at`` (seconds) where None stands for "request
    calibration now"; a time past the end gives that None last (answered by the flush with
    calibration_failed)."""
    pending_cal = calibrate_at
    for batch in batches:
        if pending_cal is not None and batch.t_s[-1] >= pending_cal:
            cut = int(np.searchsorted(batch.t_s, pending_cal, side="left"))
            pending_cal = None
            if cut:
                yield slice_batch(batch, 0, cut)
            yield None
            if cut < len(batch):
                yield slice_batch(batch, cut, len(batch))
        else:
            yield batch
    if pending_cal is not None:
        yield None


def chunks(samples: Iterable[SampleBatch], chunk_s: float = CHUNK_S) -> Iterator[SampleBatch]:
    """Regroup streamed blocks into batches of ``chunk_s`` seconds on a grid from the first sample
    (as :meth:`Recording.batches` cuts a whole recording)."""
    return on_grid(samples, chunk_s)


def posture_record(frame: Any) -> dict[str, Any]:
    return {
        "t": round(frame.t_s, 3),
        # + 0.0 turns -0.0 into 0.0
        "flexion_deg": None if frame.flexion_deg is None else round(frame.flexion_deg, 1) + 0.0,
        "lateral_deg": None if frame.lateral_deg is None else round(frame.lateral_deg, 1) + 0.0,
        "posture": frame.posture.value,
    }


def run(args: argparse.Namespace) -> int:
    cfg, mount = load_inputs(args)
    try:
        reader = RecordingReader(args.file, acc_unit=args.acc_unit, gyro_unit=args.gyro_unit)
    except RecordingError as err:
        raise CliError(str(err)) from None
    with reader:
        if args.calibrate_at is not None:
            end = last_time(args.file, reader)
            if end is not None and args.calibrate_at > end:
                raise CliError(f"--calibrate-at {args.calibrate_at:g}: the recording ends at t = {end:g} s")
        # --summary always ends with the run's sparkline; --plot also draws the picture.
        wants_plot = args.plot is not None or args.summary
        plot = Collector.for_settings(cfg.detection, title=str(args.file)) if wants_plot else None
        progress = Progress(args.file, reader)
        batches = progress.wrap(chunks(reader.samples()))
        try:
            if args.summary:
                _summary(batches, reader.report, cfg, mount, args, sys.stdout, plot)
                written = 1
            else:
                written = _json_lines(batches, cfg, mount, args, sys.stdout, plot)
        except RecordingError as err:
            progress.done()
            raise CliError(str(err)) from None
        progress.done()
    rep = reader.report
    for line in rep.warnings():
        sys.stderr.write(f"slouchd replay: warning: {line}\n")
    _warn_about_timing(rep, cfg.activity.gap_s, args.file)
    if args.calibrate_at is not None and rep.t_last_s is not None and args.calibrate_at > rep.t_last_s:
        raise CliError(f"--calibrate-at {args.calibrate_at:g}: the recording ends at t = {rep.t_last_s:g} s")
    _finish_plot(plot, args.plot, sys.stdout if args.summary else sys.stderr)
    if not written:
        sys.stderr.write(f"slouchd replay: warning: {args.file}: no records: {rep.samples} sample(s) over "
                         f"{rep.duration_s:g} s are too few to judge any posture\n")
    return 0


def _json_lines(batches: Iterable[SampleBatch], cfg: Config, mount: Mount | None, args: argparse.Namespace,
                out: TextIO, plot: Collector | None) -> int:
    tracker = make_tracker(cfg, mount, args.every, args.calibrate_at)
    written = 0
    for chunk in run_tracker(batches, tracker, args.calibrate_at):
        if plot is not None:
            plot.add(chunk)
        lines = _merge(chunk)
        if lines:
            out.write("\n".join(lines) + "\n")
            written += len(lines)
    out.flush()
    return written


def last_time(path: str, reader: RecordingReader) -> float | None:
    """``t`` of the file's last data row, read from its end (None for standard input or when the
    last line cannot be read: then the end is known only after the stream)."""
    if path == "-":
        return None
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 4096))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        cells = line.split("#", 1)[0].split(",")
        if len(cells) == reader.ncol:
            try:
                return float(cells[reader.t_column])
            except ValueError:
                return None
    return None


class Progress:
    """Progress on stderr for long files: updated in place on a terminal, else a line per 10 %
    for files of at least ``LONG_FILE_BYTES``; nothing for short files piped elsewhere."""

    def __init__(self, path: str, reader: RecordingReader) -> None:
        self._tty = sys.stderr.isatty()
        self._fd: int | None = None
        self._size = 0
        try:
            if path != "-":
                self._fd = reader.fileno()
                self._size = os.fstat(self._fd).st_size
        except (OSError, ValueError, AttributeError):
            self._fd = None
        self._on = self._tty or self._size >= LONG_FILE_BYTES
        self._last = time.monotonic()
        self._decile = 0
        self._shown = False
        self._name = path

    def wrap(self, batches: Iterable[SampleBatch]) -> Iterator[SampleBatch]:
        for b in batches:
            if self._on:
                self._update(float(b.t_s[-1]))
            yield b

    def _update(self, t_s: float) -> None:
        pct = None
        if self._fd is not None and self._size:
            try:
                pct = 100.0 * os.lseek(self._fd, 0, os.SEEK_CUR) / self._size
            except OSError:
                pct = None
        where = f"{t_s / 3600:.2f} h of recording" + ("" if pct is None else f", {pct:.0f} % of the file")
        if self._tty:
            now = time.monotonic()
            if now - self._last >= PROGRESS_EVERY_S:
                self._last = now
                sys.stderr.write(f"\rslouchd replay: {self._name}: {where}\033[K")
                sys.stderr.flush()
                self._shown = True
        elif pct is not None and pct >= 10 * (self._decile + 1):
            self._decile = int(pct // 10)
            sys.stderr.write(f"slouchd replay: {self._name}: {where}\n")

    def done(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False


def _finish_plot(plot: Collector | None, path: str | None, tty: TextIO) -> None:
    """Write the picture (with ``path``) and show the sparkline (on stderr when stdout carries
    JSON Lines)."""
    if plot is None:
        return
    if path is not None:
        try:
            plot.write_svg(path)
        except OSError as err:
            raise CliError(f"--plot {path}: cannot write it ({err.strerror or err})") from None
    tty.write(f"flexion: {plot.sparkline(60)}\n" + ("" if path is None else f"picture: {path}\n"))


def _warn_about_timing(rep: ReadReport, gap_s: float, name: str) -> None:
    """One stderr line when ``t`` cannot be seconds (every sample would be its own data gap)."""
    if rep.period_s is not None and rep.period_s > gap_s:
        sys.stderr.write(f"slouchd replay: warning: {name}: samples are {rep.period_s:g} s apart (median), "
                         f"more than a data gap ({gap_s:g} s): is t in seconds? Nothing can be "
                         "judged at that rate.\n")


def _merge(chunk: TrackerOutput) -> list[str]:
    """Frames and events of one chunk as JSON lines in time order (events first on a tie)."""
    items = [(e.t_s, 0, i, e.to_dict()) for i, e in enumerate(chunk.events)]
    items += [(f.t_s, 1, i, posture_record(f)) for i, f in enumerate(chunk.frames)]
    # Compared at the millisecond the records print: 296.40000000000003 and 296.4 are a tie.
    items.sort(key=lambda x: (round(x[0], 3), x[1], x[2]))
    return [json.dumps(d, separators=(", ", ": ")) for *_, d in items]


class _Tally:
    """What one tracker produced over the recording: counts only, so memory stays bounded."""

    def __init__(self, tracker: PostureTracker, every_s: float) -> None:
        self.tracker = tracker
        self.every_s = every_s
        self.postures: dict[str, int] = {}
        self.events: dict[str, int] = {}
        self.calibrations: list[dict[str, Any]] = []

    def add(self, chunk: TrackerOutput, keep_calibrations: bool = False) -> None:
        for f in chunk.frames:
            self.postures[f.posture.value] = self.postures.get(f.posture.value, 0) + 1
        for e in chunk.events:
            self.events[e.kind.value] = self.events.get(e.kind.value, 0) + 1
            if keep_calibrations and e.kind in (EventKind.CALIBRATED, EventKind.CALIBRATION_FAILED):
                self.calibrations.append(e.to_dict())

    def minutes(self, posture: Posture) -> float:
        return self.postures.get(posture.value, 0) * self.every_s / 60.0

    @property
    def alerts(self) -> int:
        return self.events.get(EventKind.SLOUCH_ALERT.value, 0)

    @property
    def upright_pct(self) -> float | None:
        up = self.postures.get(Posture.UPRIGHT.value, 0)
        seated = up + self.postures.get(Posture.SLOUCHING.value, 0)
        return None if seated == 0 else 100.0 * up / seated


def _summary(batches: Iterable[SampleBatch], rep: ReadReport, cfg: Config, mount: Mount | None,
             args: argparse.Namespace, out: TextIO, plot: Collector | None = None) -> None:
    """One pass over the recording with the configured tracker and every what-if tracker side by
    side: the file is read once and only counts are kept."""
    det = cfg.detection
    main = _Tally(make_tracker(cfg, mount, 1.0, args.calibrate_at), 1.0)
    dwells = sorted({det.dwell_s, 30.0, 60.0})
    what_if: list[tuple[float, float, _Tally]] = []
    for thr in WHAT_IF_THRESHOLDS:
        for dwell in dwells:
            hyst = min(det.hysteresis_deg, thr - 1.0)
            c = dataclasses.replace(cfg, detection=dataclasses.replace(
                det, threshold_deg=thr, dwell_s=dwell, hysteresis_deg=hyst, mode="training"))
            what_if.append((thr, dwell, _Tally(make_tracker(c, mount, 1.0, args.calibrate_at), 1.0)))
    tallies = [main, *(t for *_, t in what_if)]
    streams = _fan_out(batches, [t.tracker for t in tallies], args.calibrate_at)
    for outputs in streams:
        main.add(outputs[0], keep_calibrations=True)
        if plot is not None:
            plot.add(outputs[0])
        for tally, chunk in zip(tallies[1:], outputs[1:], strict=True):
            tally.add(chunk)
    stats = main.tracker.stats()
    w = out.write
    w(f"recording: {args.file}: {rep.duration_s / 60:.1f} min, {rep.samples} samples"
      f"{'' if rep.rate_hz is None else f' at {rep.rate_hz:.3g} Hz'}, "
      f"{'with' if rep.gyro else 'no'} gyro"
      f"{'' if rep.acc_unit == 'g' else f', acceleration read as {rep.acc_unit}'}"
      f"{'' if not rep.gyro or rep.gyro_unit == 'deg/s' else f', gyro read as {rep.gyro_unit}'}\n")
    w(f"input: {rep.dropped} row(s) dropped (empty or non-finite cell), {rep.retimed} row(s) re-timed "
      f"(equal or slightly earlier t){', last line cut short' if rep.truncated_line else ''}\n")
    _calibration_lines(main.calibrations, w)
    w(f"settings: threshold {det.threshold_deg:g} deg, hysteresis {det.hysteresis_deg:g} deg, "
      f"dwell {det.dwell_s:g} s, repeat {det.repeat_s:g} s, mode {det.mode}"
      f"{', cumulative' if det.cumulative else ''}\n")
    up = main.upright_pct
    w(f"alerts: {main.alerts}   slouches that reached the dwell: "
      f"{main.events.get(EventKind.SLOUCH_END.value, 0)}   "
      f"slouched: {main.minutes(Posture.SLOUCHING):.1f} min   upright: "
      f"{'-' if up is None else format(up, '.0f') + ' %'}\n")
    w("time by posture (min): " + ", ".join(f"{k} {v * main.every_s / 60.0:.1f}"
                                            for k, v in sorted(main.postures.items())) + "\n")
    w(f"break reminders: {main.events.get(EventKind.BREAK_REMINDER.value, 0)}   "
      f"longest sitting: {stats['longest_sitting_min']:.1f} min\n")
    w("\nwhat if (same recording, other thresholds):\n")
    w(f"  {'threshold_deg':>13} {'dwell_s':>8} {'alerts':>7} {'slouched_min':>13}\n")
    for thr, dwell, r in what_if:
        mark = "  <- current" if (thr == det.threshold_deg and dwell == det.dwell_s) else ""
        w(f"  {thr:>13g} {dwell:>8g} {r.alerts:>7} {r.minutes(Posture.SLOUCHING):>13.1f}{mark}\n")


def _fan_out(batches: Iterable[SampleBatch], trackers: list[PostureTracker],
             calibrate_at: float | None) -> Iterator[list[TrackerOutput]]:
    """Each batch through every tracker (calibration requested at the same point in each); the
    last outputs are the trackers' flushes."""
    for part in _split_at(batches, calibrate_at):
        if part is None:
            for tr in trackers:
                tr.request_calibration()
        else:
            yield [tr.process(part) for tr in trackers]
    yield [tr.flush() for tr in trackers]


def _calibration_lines(cals: list[dict[str, Any]], w: Any) -> None:
    """Every calibration of the run, in order (the first ``MAX_LISTED_CALIBRATIONS``)."""
    done = [c for c in cals if c["event"] == EventKind.CALIBRATED.value]
    if not cals:
        w("calibration: none (no still window found)\n")
        return
    w(f"calibrations: {len(done)}" + (f", {len(cals) - len(done)} failed" if len(cals) > len(done) else "")
      + "\n")
    for c in cals[:MAX_LISTED_CALIBRATIONS]:
        t = float(c["t"])
        at = f"t={t:.1f} s ({int(t) // 3600}:{int(t) // 60 % 60:02d}:{int(t) % 60:02d})"
        if c["event"] == EventKind.CALIBRATED.value:
            w(f"  {at}: {c.get('source', '?')}, forward axis: {c.get('axis_source', '?')}\n")
        else:
            w(f"  {at}: failed ({c.get('reason', '')})\n")
    if len(cals) > MAX_LISTED_CALIBRATIONS:
        w(f"  ... and {len(cals) - MAX_LISTED_CALIBRATIONS} more\n")
