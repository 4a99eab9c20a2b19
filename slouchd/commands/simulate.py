"""``slouchd simulate OUT.csv``: a simulated wearer's recording, for tuning without a sensor.

Writes the same CSV that ``slouchd record`` writes and ``slouchd replay`` reads
(``t,ax,ay,az[,gx,gy,gz]``; seconds from the first sample, g, deg/s), from the scripted working
day of :mod:`slouchd.sensors.simulated` (slouches, reaching, typing, breaks, walking, taking the
sensor off, radio gaps). ``--truth FILE`` adds what really happened, sample by sample.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, TextIO

import numpy as np

from slouchd.cli import CliError
from slouchd.model import Mount, SampleBatch
from slouchd.sensors.recording import RecordingWriter

if TYPE_CHECKING:  # imported when the command runs: the simulation pulls in scipy
    from slouchd.sensors.simulated import SimSettings

DEFAULT_HOURS = 2.0
"""Long enough for slouch alerts, breaks and a break reminder; about 10 s to write at 50 Hz."""
TRUTH_HEADER = "t,true_flexion_deg,true_lateral_deg,label"
PROGRESS_EVERY_S = 1.0
"""Wall seconds between progress lines on a terminal."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="write a simulated wearer's recording (CSV for replay), no sensor needed",
        description="Write a simulated wearer's scripted working day (slouches, reaching, typing, "
                    "breaks, walking, taking the sensor off, radio gaps) as a recording in the "
                    "replay CSV format (t,ax,ay,az[,gx,gy,gz]; seconds, g, deg/s). Then: "
                    "slouchd replay OUT.csv --summary --plot OUT.svg")
    p.add_argument("out", help="CSV file to write (- = standard output)")
    p.add_argument("--hours", type=_hours, default=DEFAULT_HOURS,
                   help=f"recording length, hours, up to one scripted day of 8 (default {DEFAULT_HOURS:g})")
    p.add_argument("--rate", type=float, default=50.0, metavar="HZ",
                   help="sample rate, Hz, 25..100 (default 50)")
    p.add_argument("--gyro", action=argparse.BooleanOptionalAction, default=True,
                   help="with a gyroscope (default) or accelerometer only (--no-gyro)")
    p.add_argument("--seed", type=int, default=1, help="which scripted day (default 1)")
    p.add_argument("--mount", metavar="UP,OUT", default="+y,-z",
                   help="sensor axes toward the head and out of the back (default +y,-z); replay "
                        "with the same --mount, or without it to test learning the axis")
    p.add_argument("--truth", metavar="FILE",
                   help="also write the ground truth per sample: t,true_flexion_deg,"
                        "true_lateral_deg,label (degrees; NaN while not worn; label = what the "
                        "wearer was doing: upright, slouch, reach, walk, ...)")
    # --desk-vibration (issue 10, item 1) goes here: a flag mapped onto SimSettings in sim_settings().
    p.set_defaults(func=run)


def _hours(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not 0 < v <= 8.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 and at most 8 (one scripted day)")
    return v


def sim_settings(args: argparse.Namespace) -> SimSettings:
    """The SimSettings the options ask for (CliError naming the option when one is wrong)."""
    from slouchd.sensors.simulated import SimSettings

    try:
        mount = Mount.parse(args.mount)
    except ValueError as err:
        raise CliError(f"--mount: {err}") from None
    if not 25.0 <= args.rate <= 100.0:
        raise CliError(f"--rate {args.rate:g}: must be 25..100 Hz")
    return SimSettings(seed=args.seed, rate_hz=args.rate, gyro=args.gyro, mount=mount)


def run(args: argparse.Namespace) -> int:
    from slouchd.sensors.simulated import SimulatedWearer

    settings = sim_settings(args)
    wearer = SimulatedWearer(settings)
    limit_s = args.hours * 3600.0
    to_stdout = args.out == "-"
    try:
        out: TextIO = sys.stdout if to_stdout else open(args.out, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        truth: TextIO | None = None if args.truth is None else open(  # noqa: SIM115
            args.truth, "w", encoding="utf-8", newline="\n")
    except OSError as err:
        raise CliError(f"cannot write {err.filename}: {err.strerror}") from None
    show_progress = sys.stderr.isatty()
    t0 = time.monotonic()
    last_progress = t0
    try:
        with RecordingWriter(out, gyro=args.gyro) as writer:
            if truth is not None:
                truth.write(TRUTH_HEADER + "\n")
            for t, true_t, acc, gyro in wearer.recording():
                keep = t < limit_s
                if keep.any():
                    writer.write(SampleBatch(t[keep], acc[keep], None if gyro is None else gyro[keep]))
                    if truth is not None:
                        _write_truth(truth, t[keep], wearer.truth(true_t[keep] + wearer.settings.start_s))
                if not keep.all():
                    break
                if show_progress and time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                    last_progress = time.monotonic()
                    sys.stderr.write(f"\rslouchd simulate: {float(t[-1]) / 3600:.2f} of {args.hours:g} h")
                    sys.stderr.flush()
    finally:
        if not to_stdout:
            out.close()
        if truth is not None:
            truth.close()
    if show_progress:
        sys.stderr.write("\r\033[K")
    sys.stderr.write(f"slouchd simulate: {'<stdout>' if to_stdout else args.out}: {writer.rows} samples, "
                     f"{args.hours:g} h at {args.rate:g} Hz, {'with' if args.gyro else 'no'} gyro, "
                     f"seed {args.seed}, mount {args.mount}"
                     f"{'' if truth is None else f'; ground truth in {args.truth}'} "
                     f"({time.monotonic() - t0:.1f} s)\n")
    return 0


def _write_truth(fh: TextIO, t: np.ndarray, truth: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    flex, lat, label = truth
    rows = zip(t.tolist(), flex.tolist(), lat.tolist(), label.tolist(), strict=True)
    fh.write("".join(f"{a:.4f},{b:.3f},{c:.3f},{d}\n" for a, b, c, d in rows))
