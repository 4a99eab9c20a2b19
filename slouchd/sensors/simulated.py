"""A simulated wearer: a seeded, scripted working day of an IMU worn between the shoulder blades.

It is the demo's sensor, the tests' ground truth and the benchmarks' load. Everything is a
deterministic function of :class:`SimSettings` (above all ``seed``): the same settings give the
same samples, whichever way they are read (``packets()``, ``batches()``, ``write_csv``).

Frames and signs (see ``docs/simulated-wearer.md`` for the full derivation)
----------------------------------------------------------------------------
World: ``x`` = the direction the wearer faces, ``y`` = the wearer's left, ``z`` = up.
Body (the upper trunk): ``up`` toward the head, ``out`` out of the back (posterior), ``right``.
Upright, ``up = +z``, ``out = -x``, ``right = -y``; ``(up, out, right)`` is right-handed.

The trunk's orientation is ``R_wb = Rz(yaw) @ Rx(lateral) @ Ry(flexion)``: flexion (+ = forward)
turns ``up`` toward the front about the left-right axis, lateral lean (+ = toward the wearer's
right) then tilts it sideways. Gravity's reaction seen in the body frame is therefore::

    up  = cos(lateral) * cos(flexion)
    out = cos(lateral) * sin(flexion)
    right = -sin(lateral)

so ``flexion = atan2(out, up)`` (the sagittal angle) and ``lateral = asin(-right)``.

The sensor sits on the body with the :class:`~slouchd.model.Mount` (which sensor axes point up and
out) and an imperfect stick-on: a mounting inclination (the upper back's kyphosis tilts the sensor
as a forward bend would, 10-30 degrees) and a small twist about the out axis. Accelerometer =
specific force in g in the sensor frame (+1 g on the up axis at rest); gyroscope = angular
velocity in deg/s in the sensor frame. Both are computed from one orientation/position
trajectory, so they agree with each other.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from slouchd.model import Mount
from slouchd.sensors.simulation.frames import (
    BODY_OUT,
    BODY_RIGHT,
    BODY_UP,
    G_MPS2,
    flexion_lateral_from_gravity,
    mount_matrix,
    stick_on_matrix,
)
from slouchd.sensors.simulation.script import (
    CLEAR_SLOUCH_MIN_DEG,
    CLEAR_SLOUCH_MIN_HOLD_S,
    FIRST_CLEAR_SLOUCH_BY_S,
    KINDS,
    Episode,
    first_alert_bound_s,
)
from slouchd.sensors.simulation.settings import SimSettings
from slouchd.sensors.simulation.source import SimulatedSensor
from slouchd.sensors.simulation.wearer import SimulatedWearer

__all__ = [
    "BODY_OUT", "BODY_RIGHT", "BODY_UP", "CLEAR_SLOUCH_MIN_DEG", "CLEAR_SLOUCH_MIN_HOLD_S",
    "FIRST_CLEAR_SLOUCH_BY_S", "G_MPS2", "KINDS", "Episode", "SimSettings", "SimulatedSensor",
    "SimulatedWearer", "first_alert_bound_s", "flexion_lateral_from_gravity", "local_time_today",
    "main", "mount_matrix", "stick_on_matrix", "write_csv",
]


def local_time_today(hour: float = 9.0) -> float:
    """Unix time (seconds) of ``hour`` o'clock today in local time: a demo day's ``start_s``."""
    midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp() + hour * 3600.0


def write_csv(wearer: SimulatedWearer, path: str | Path, *, truth: bool = True,
              hours: float | None = None) -> int:
    """Write the replay CSV: ``t,ax,ay,az[,gx,gy,gz]`` (seconds from the first sample, g, deg/s)
    then, with ``truth``, ``true_flexion_deg,true_lateral_deg,label``. Returns the rows written.

    Args:
        wearer: the simulated wearer.
        path: output file.
        truth: add the ground-truth columns (``slouchd replay`` ignores them).
        hours: stop after this much recording time; None = the whole day (must not loop forever).
    """
    if hours is None and wearer.settings.loop:
        raise ValueError("a looping wearer needs hours= to end")
    limit = math.inf if hours is None else hours * 3600.0
    header = ["t", "ax", "ay", "az"]
    if wearer.settings.gyro:
        header += ["gx", "gy", "gz"]
    if truth:
        header += ["true_flexion_deg", "true_lateral_deg", "label"]
    formats = ["%.4f", "%.5f", "%.5f", "%.5f"]
    if wearer.settings.gyro:
        formats += ["%.4f"] * 3
    if truth:
        formats += ["%.3f", "%.3f", "%s"]
    row_format = ",".join(formats) + "\n"
    rows = 0
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for t, true_t, acc, gyro in wearer.recording():
            m = t < limit
            if not m.any():
                break
            columns: list[np.ndarray] = [t[m], acc[m, 0], acc[m, 1], acc[m, 2]]
            if gyro is not None:
                columns += [gyro[m, 0], gyro[m, 1], gyro[m, 2]]
            if truth:
                columns += list(wearer.truth(true_t[m] + wearer.settings.start_s))
            table = np.empty((int(m.sum()), len(columns)), dtype=object)
            for i, column in enumerate(columns):
                table[:, i] = column.tolist()
            # One formatting pass per block: far faster than a csv.writer row by row.
            f.write((row_format * len(table)) % tuple(table.ravel().tolist()))
            rows += len(table)
            if not m.all():
                break
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m slouchd.sensors.simulated --seed 3 --rate 50 --hours 1 out.csv``"""
    p = argparse.ArgumentParser(prog="python -m slouchd.sensors.simulated",
                                description="Write a simulated wearer's day as a replay CSV.")
    p.add_argument("out", help="CSV file to write")
    p.add_argument("--seed", type=int, default=1, help="which scripted day (default 1)")
    p.add_argument("--rate", type=float, default=50.0, help="sample rate, Hz, 25..100 (default 50)")
    p.add_argument("--hours", type=float, default=None, help="recording length, hours (default: the day)")
    p.add_argument("--day-hours", type=float, default=8.0, help="scripted day length, hours (default 8)")
    p.add_argument("--no-gyro", action="store_true", help="accelerometer only")
    p.add_argument("--mount", default="+y,-z", help="sensor axes UP,OUT (default +y,-z)")
    p.add_argument("--no-truth", action="store_true", help="leave out the ground-truth columns")
    p.add_argument("--desk-vibration", action="store_true",
                   help="shake the sensor while seated as typing does (model of a real desk recording)")
    p.add_argument("--fast-moves", action="store_true",
                   help="add fast bends and twists (150-400 deg/s) to seated stretches")
    args = p.parse_args(argv)
    try:
        settings = SimSettings(seed=args.seed, rate_hz=args.rate, gyro=not args.no_gyro,
                               mount=Mount.parse(args.mount), day_s=args.day_hours * 3600.0,
                               desk_vibration=args.desk_vibration, fast_moves=args.fast_moves)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    wearer = SimulatedWearer(settings)
    t0 = time.perf_counter()
    rows = write_csv(wearer, args.out, truth=not args.no_truth, hours=args.hours)
    print(f"{args.out}: {rows} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
