"""Small per-tick stages of the tracker's decision loop, each with its own state and tests.

:class:`WearStage` decides whether the sensor is on a back; :func:`activity_of`,
:func:`detector_state` and :func:`posture_of` turn what the stages found into the activity, the
slouch detector's input and the reported posture; :class:`SlouchStage` runs the slouch detector
and the wellbeing counters for a tick; :class:`FrameStage` turns the tick's state into frames at
the frame interval. They run once per 0.1 s tick on plain floats
(the live daemon calls them for every radio packet), so they stay tiny.
"""

from __future__ import annotations

import math

from slouchd.model import Activity, Event, EventKind, Posture, PostureFrame
from slouchd.posture import detector as det
from slouchd.posture import wellbeing as wb
from slouchd.posture.filters import TICK_S

IMPOSSIBLE_TILT_DEG = 120.0
"""Tilted this far from upright (nearly upside down), the sensor cannot be on a back."""
LYING_TILT_DEG = 55.0
"""Held still this far from upright, the sensor is lying on something (a desk), not on a seated
back: deep bends are brief and moving, and slouches stay well under it, degrees."""
LYING_MOUNT_TILT_DEG = 75.0
"""The same limit before calibration, from the mount's up axis (which the stick-on tilts), degrees."""
LYING_CONFIRM_S = 3.0
"""How long the lying orientation must be held still, seconds."""
RECAL_AFTER_OFF_S = 20.0
"""Not worn at least this long means the sensor was taken off; put back on, it sits differently,
so (with ``[calibration] auto``) the next still upright window becomes the new reference, seconds."""

STILL, MOVING, WALKING, NOT_WORN = 0, 1, 2, 3
"""The activity of one tick, as a small int (the loop compares ints, not enums)."""
ACTIVITY = {STILL: Activity.STILL, MOVING: Activity.MOVING, WALKING: Activity.WALKING,
            NOT_WORN: Activity.NOT_WORN}


class WearStage:
    """Whether the sensor is worn: not when lifeless (no breathing micro-motion), held still at an
    orientation no seated back takes (lying on a desk) for LYING_CONFIRM_S, or nearly upside
    down; worn again once it is alive at a plausible angle. Remembers when it was taken off, so
    putting it back on after RECAL_AFTER_OFF_S can ask for a new upright reference."""

    def __init__(self) -> None:
        self.worn = True
        self.lying_ticks = 0
        self.off_since: float | None = None

    def step(self, t_s: float, tilt_deg: float, lying_limit_deg: float, moving: bool, lifeless: bool,
             alive: bool) -> bool:
        """One tick ending at ``t_s``: ``tilt_deg`` from upright (or the mount's up axis), the lying
        limit that applies to it, and the activity features. Returns True when the sensor has just
        been put back on after being off at least RECAL_AFTER_OFF_S."""
        self.lying_ticks = self.lying_ticks + 1 if (tilt_deg > lying_limit_deg and not moving) else 0
        was = self.worn
        if tilt_deg > IMPOSSIBLE_TILT_DEG or lifeless or self.lying_ticks * TICK_S >= LYING_CONFIRM_S:
            self.worn = False
        elif alive and tilt_deg <= lying_limit_deg:
            self.worn = True
        if self.worn == was:
            return False
        if not self.worn:
            self.off_since = t_s
            return False
        return self.off_since is not None and t_s - self.off_since >= RECAL_AFTER_OFF_S


def activity_of(worn: bool, walking: bool, moving: bool) -> int:
    """The tick's activity: not worn, walking, moving or still (in that order of precedence)."""
    if not worn:
        return NOT_WORN
    if walking:
        return WALKING
    if moving:
        return MOVING
    return STILL


def detector_state(calibrated: bool, act: int) -> int:
    """What the slouch detector is told: no usable angle (uncalibrated or not worn), a paused
    clock (moving or walking) or a usable still angle."""
    if not calibrated or act == NOT_WORN:
        return det.OFF
    return det.STILL if act == STILL else det.MOVING


def posture_of(act: int, calibrated: bool, slouching: bool) -> Posture:
    """The reported posture of a tick."""
    if act == NOT_WORN:
        return Posture.NOT_WORN
    if not calibrated:
        return Posture.UNCALIBRATED
    if act == WALKING:
        return Posture.WALKING
    if act == MOVING:
        return Posture.MOVING
    return Posture.SLOUCHING if slouching else Posture.UPRIGHT


class SlouchStage:
    """The slouch detector and the wellbeing counters for one tick.

    Alerts only in ``training`` mode with alerts enabled, outside a snooze and quiet hours;
    reminders outside a snooze and quiet hours. Delivered alerts are counted in today's totals.
    """

    def __init__(self, detector: det.SlouchDetector, wellbeing: wb.Wellbeing, clock: wb.LocalClock) -> None:
        self.detector = detector
        self.wellbeing = wellbeing
        self.clock = clock
        self.snooze_until: float | None = None

    def step(self, t: float, flex_deg: float, judged: bool, act: int, mode_training: bool,
             events: list[Event]) -> bool:
        """One tick ending at ``t`` (seconds) with flexion ``flex_deg`` (degrees; only used when the
        angle is ``judged``: calibrated with a known forward axis). Returns whether a slouch is on."""
        clock = self.clock
        free = ((self.snooze_until is None or t >= self.snooze_until)
                and not (clock.quiet and clock.is_quiet(t)))
        n_ev = len(events)
        detector = self.detector
        detector.step(t, TICK_S, flex_deg, detector_state(judged, act), mode_training and free, events)
        if len(events) > n_ev:
            for e in events[n_ev:]:
                if e.kind is EventKind.SLOUCH_ALERT:
                    self.wellbeing.totals.alerts += 1
        slouching = detector.active
        kind = wb.ABSENT if act == NOT_WORN else (wb.SEATED if act == STILL else wb.ACTIVE)
        self.wellbeing.step(t, TICK_S, kind, slouching, judged, free, events)
        return slouching


class FrameStage:
    """Frames every ``interval_s`` of sample time, at its multiples, from the latest tick state."""

    def __init__(self, interval_s: float, frame: PostureFrame) -> None:
        self.interval_s = interval_s
        self.frame = frame
        self.next_t: float | None = None

    def start(self, t0: float) -> None:
        """The first sample is at ``t0`` (seconds): the first frame is at the next multiple."""
        if self.next_t is None:
            step = self.interval_s
            self.next_t = math.floor(t0 / step) * step + step

    def due(self, t: float) -> bool:
        """Whether the tick ending at ``t`` reaches the next frame time."""
        return self.next_t is not None and t >= self.next_t - 1e-9

    def emit_until(self, t: float, out: list[PostureFrame]) -> None:
        """Append copies of the current frame for every frame time up to ``t``."""
        if self.next_t is None:
            return
        f = self.frame
        while self.next_t <= t + 1e-9:
            out.append(PostureFrame(round(self.next_t, 6), f.flexion_deg, f.lateral_deg, f.posture,
                                    f.activity, f.worn, f.calibrated, f.sitting_s, f.slouch_s,
                                    f.axis_source))
            self.next_t += self.interval_s
