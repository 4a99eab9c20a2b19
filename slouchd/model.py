"""Small value types shared by every part of slouchd.

Units are in the names: ``t_s`` seconds, ``acc_g`` standard gravity (g), ``gyro_dps`` degrees per
second, ``*_deg`` degrees. Sensor samples follow one convention whatever the source: at rest, the
sensor axis that points up reads +1 g.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """A run of consecutive IMU samples from one sensor.

    Attributes:
        t_s: sample times in seconds, shape (n,), non-decreasing within a batch. The clock is the
            sensor's own when its protocol has one, else host arrival time corrected for batching.
            Sources agree on one epoch per stream; consumers only rely on differences.
        acc_g: acceleration in g, shape (n, 3), sensor frame (x, y, z).
        gyro_dps: angular rate in deg/s, shape (n, 3), or None for accelerometer-only sensors.
    """

    t_s: np.ndarray
    acc_g: np.ndarray
    gyro_dps: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.t_s.shape[0]
        if self.t_s.ndim != 1:
            raise ValueError(f"t_s must be 1-D, got shape {self.t_s.shape}")
        if self.acc_g.shape != (n, 3):
            raise ValueError(f"acc_g must have shape ({n}, 3), got {self.acc_g.shape}")
        if self.gyro_dps is not None and self.gyro_dps.shape != (n, 3):
            raise ValueError(f"gyro_dps must have shape ({n}, 3), got {self.gyro_dps.shape}")

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @property
    def has_gyro(self) -> bool:
        return self.gyro_dps is not None

    @staticmethod
    def concat(batches: list[SampleBatch]) -> SampleBatch:
        """Join batches in order; gyro is kept only if every batch has it."""
        if not batches:
            return SampleBatch(np.empty(0), np.empty((0, 3)), None)
        gyro = None
        if all(b.gyro_dps is not None for b in batches):
            gyro = np.concatenate([b.gyro_dps for b in batches])  # type: ignore[misc]
        return SampleBatch(
            np.concatenate([b.t_s for b in batches]),
            np.concatenate([b.acc_g for b in batches]),
            gyro,
        )


Row3 = tuple[float, float, float]


class SampleRows:
    """Consecutive samples kept as Python floats until someone takes them as a :class:`SampleBatch`.

    A sensor that sends one sample per notification delivers 50-100 a second; making arrays of
    each costs about ten numpy calls, while appending floats costs none, and the consumer takes
    them about once a second (docs/performance.md, "Session 7"). Same units as
    :class:`SampleBatch`: ``t_s`` seconds, ``acc_g`` g, ``gyro_dps`` deg/s or None.
    """

    __slots__ = ("acc_g", "gyro_dps", "t_s")

    def __init__(self, t_s: list[float], acc_g: list[Row3], gyro_dps: list[Row3] | None) -> None:
        self.t_s = t_s
        self.acc_g = acc_g
        self.gyro_dps = gyro_dps

    def __len__(self) -> int:
        return len(self.t_s)

    @property
    def t_last_s(self) -> float:
        """The newest sample's time, seconds."""
        return self.t_s[-1]

    def extend(self, other: SampleRows) -> bool:
        """Append ``other``'s samples; False (nothing appended) if only one of the two has gyro."""
        if (self.gyro_dps is None) != (other.gyro_dps is None):
            return False
        self.t_s += other.t_s
        self.acc_g += other.acc_g
        if self.gyro_dps is not None and other.gyro_dps is not None:
            self.gyro_dps += other.gyro_dps
        return True

    def batch(self) -> SampleBatch:
        """The samples as one :class:`SampleBatch` (the same floats)."""
        n = len(self.t_s)
        return SampleBatch(
            np.array(self.t_s, dtype=float),
            np.array(self.acc_g, dtype=float).reshape(n, 3),
            None if self.gyro_dps is None else np.array(self.gyro_dps, dtype=float).reshape(n, 3),
        )


class Posture(StrEnum):
    """What the wearer's posture is reported as (the `posture` field everywhere)."""

    UPRIGHT = "upright"
    SLOUCHING = "slouching"
    MOVING = "moving"
    WALKING = "walking"
    NOT_WORN = "not_worn"
    UNKNOWN = "unknown"
    UNCALIBRATED = "uncalibrated"


class Activity(StrEnum):
    """What the wearer's body is doing, independent of posture."""

    STILL = "still"
    MOVING = "moving"
    WALKING = "walking"
    NOT_WORN = "not_worn"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PostureFrame:
    """The posture state at one instant, as published (about 1 Hz) and printed by `replay`.

    Attributes:
        t_s: sample-clock time of the frame, seconds.
        flexion_deg: thoracic flexion relative to calibrated upright, degrees, + = forward;
            None when unknown or uncalibrated.
        lateral_deg: sideways lean, degrees, + = toward the wearer's right; None when unknown.
        posture: the reported posture.
        activity: still / moving / walking / not_worn / unknown.
        worn: whether the sensor is judged to be on a back.
        calibrated: whether an upright reference exists.
        sitting_s: time seated since the last real break, seconds.
        slouch_s: how long the current slouch has lasted (or the cumulative exposure), seconds.
        axis_source: where the forward axis came from (``mount``, ``learned``, ``two_pose``), or
            ``none`` while it is not known yet (mount undeclared, not learned): the tilt then has
            no sign, so flexion is not reported and nothing alerts; None when uncalibrated.
    """

    t_s: float
    flexion_deg: float | None
    lateral_deg: float | None
    posture: Posture
    activity: Activity
    worn: bool
    calibrated: bool
    sitting_s: float = 0.0
    slouch_s: float = 0.0
    axis_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "t": round(self.t_s, 3),
            "flexion_deg": None if self.flexion_deg is None else round(self.flexion_deg, 1),
            "lateral_deg": None if self.lateral_deg is None else round(self.lateral_deg, 1),
            "posture": self.posture.value,
            "activity": self.activity.value,
            "worn": self.worn,
            "calibrated": self.calibrated,
            "sitting_min": round(self.sitting_s / 60.0, 1),
            "slouch_s": round(self.slouch_s, 1),
        }
        if self.axis_source is not None:
            d["axis_source"] = self.axis_source
        return d


class EventKind(StrEnum):
    """Kinds of event the posture engine emits."""

    SLOUCH_ALERT = "slouch_alert"
    SLOUCH_END = "slouch_end"
    BREAK_REMINDER = "break_reminder"
    CALIBRATED = "calibrated"
    CALIBRATION_FAILED = "calibration_failed"
    DAY_SUMMARY = "day_summary"
    # The coach (slouchd/coaching.py, docs/coach.md): guided stretch sessions ...
    STRETCH_START = "stretch_start"
    STRETCH_STEP_START = "stretch_step_start"
    STRETCH_REP_START = "stretch_rep_start"
    STRETCH_POSE_REACHED = "stretch_pose_reached"
    STRETCH_CUE = "stretch_cue"
    STRETCH_REP_COMPLETE = "stretch_rep_complete"
    STRETCH_STEP_COMPLETE = "stretch_step_complete"
    STRETCH_COMPLETE = "stretch_complete"
    STRETCH_ABANDONED = "stretch_abandoned"
    # ... breaks that count, the daily goal, and notices.
    BREAK_TAKEN = "break_taken"
    GOAL_MET = "goal_met"
    LOW_BATTERY = "low_battery"
    NOT_WORN_MORNING = "not_worn_morning"


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth telling the wearer, stamped with the sample-clock time it happened.

    Attributes:
        t_s: sample-clock time, seconds.
        kind: what happened.
        data: extra fields (e.g. ``level``, ``flexion_deg``, ``duration_s``, ``reason``).
    """

    t_s: float
    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t_s, 3), "event": self.kind.value, **self.data}


AXES = ("+x", "-x", "+y", "-y", "+z", "-z")


@dataclass(frozen=True, slots=True)
class Mount:
    """How the sensor sits on the back, as two of its own signed axes.

    Attributes:
        up: the sensor axis pointing toward the wearer's head, one of ``AXES``.
        out: the sensor axis pointing out of the back (away from the body), one of ``AXES``.
    """

    up: str
    out: str

    @classmethod
    def parse(cls, text: str) -> Mount:
        """Parse ``"UP,OUT"`` such as ``"+z,-x"``. Raises ValueError with the reason."""
        parts = [p.strip().lower() for p in text.split(",")]
        if len(parts) != 2 or any(p not in AXES for p in parts):
            raise ValueError(f"mount must be UP,OUT with each one of {' '.join(AXES)}, got {text!r}")
        if parts[0][1] == parts[1][1]:
            raise ValueError(f"mount {text!r}: up and out must be different axes")
        return cls(parts[0], parts[1])

    def __str__(self) -> str:
        return f"{self.up},{self.out}"

    @staticmethod
    def axis_vector(axis: str) -> np.ndarray:
        """Unit vector in the sensor frame for a signed axis name like ``"-y"``."""
        v = np.zeros(3)
        v["xyz".index(axis[1])] = 1.0 if axis[0] == "+" else -1.0
        return v

    @property
    def up_vector(self) -> np.ndarray:
        return self.axis_vector(self.up)

    @property
    def out_vector(self) -> np.ndarray:
        return self.axis_vector(self.out)
