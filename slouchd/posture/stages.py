"""Small per-tick stages of the tracker's decision loop, each with its own state and tests.

:class:`CalibrationStage` takes the upright reference (requested, two-pose or automatic);
:class:`WearStage` decides whether the sensor is on a back; :func:`activity_of`,
:func:`detector_state` and :func:`posture_of` turn what the stages found into the activity, the
slouch detector's input and the reported posture; :class:`SlouchStage` runs the slouch detector
and the wellbeing counters for a tick; :class:`FrameStage` turns the tick's state into frames at
the frame interval. They run once per 0.1 s tick on plain floats
(the live daemon calls them for every radio packet), so they stay tiny.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from slouchd.model import Activity, Event, EventKind, Mount, Posture, PostureFrame
from slouchd.posture import detector as det
from slouchd.posture import wellbeing as wb
from slouchd.posture.filters import TICK_S
from slouchd.posture.orientation import Calibration, forward_from_mount, forward_from_two_poses, unit
from slouchd.posture.settings import CalibrationSettings

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

TWO_POSE_MIN_DEG = 10.0
"""A deliberate forward bend for the two-pose calibration must tilt at least this much, degrees."""

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


class CalibrationStage:
    """The upright reference: counts still ticks and takes a requested, two-pose or automatic
    reference when its window is complete (``calibrated`` / ``calibration_failed`` events).

    A declared mount always supplies the forward axis; otherwise a forward axis already known
    (learned or two-pose) is kept across a new upright reference (same sensor, same mount).
    The slouch detector's running slouch is closed whenever the reference changes.
    """

    def __init__(self, settings: CalibrationSettings, mount: Mount | None,
                 detector: det.SlouchDetector) -> None:
        self.settings = settings
        self.mount = mount
        self.detector = detector
        self.calibration: Calibration | None = None
        self.request: float | None = None
        """Sample time a calibration was asked at (-inf: wait for data); None = none asked."""
        self.forward = False
        """The request is the second pose of a two-pose calibration."""
        self.steady_ticks = 0
        self.recal_pending = False
        """The sensor was put back on: the next still upright window becomes the reference."""

    def set(self, cal: Calibration) -> None:
        """Use ``cal`` (with the mount's forward axis when one is declared)."""
        if self.mount is not None:
            cal = cal.with_forward(forward_from_mount(self.mount), "mount")
        self.calibration = cal

    def ask(self, last_t: float, forward: bool) -> None:
        """A calibration request after the sample at ``last_t`` (-inf: before any)."""
        self.request = last_t if math.isfinite(last_t) else -math.inf
        self.forward = forward
        self.steady_ticks = 0

    def gap(self) -> None:
        """The data stopped: a request waits for it to resume, and the still window restarts."""
        if self.request is not None:
            self.request = -math.inf
        self.steady_ticks = 0

    def unanswered(self, t_end: float, events: list[Event]) -> None:
        """End of the data: a request never judged still gets its answer."""
        if self.request is not None:
            events.append(Event(t_end, EventKind.CALIBRATION_FAILED, {
                "reason": "the recording ended before a still window of "
                          f"{max(self.settings.still_s, 2.0):g} s"}))
            self.request = None

    def step(self, t: float, steady: bool, worn: bool, mean_g: Any, mount_tilt: float | None,
             events: list[Event]) -> bool:
        """One tick ending at ``t``: whether it is ``steady`` (still, not jolted) and ``worn``, the
        accelerometer's mean direction over the calibration window ``mean_g`` (x, y, z) and the tilt
        from the mount's up axis (degrees, None without a mount). Returns whether the
        calibration changed at this tick."""
        # A requested calibration judges the window itself (and says why it refuses it).
        if steady and (worn or self.request is not None):
            self.steady_ticks += 1
        else:
            self.steady_ticks = 0
        if self.request is not None:
            return self._requested(t, mean_g, worn, mount_tilt, events)
        if (self.calibration is None or self.recal_pending) and self.settings.auto:
            return self._automatic(t, mean_g, worn, mount_tilt, events)
        return False

    def _still_s(self) -> float:
        """How long the window has been still (a steady tick already spans 2 s), seconds."""
        return self.steady_ticks * TICK_S + 2.0 - TICK_S

    def _requested(self, t: float, mean_g: Any, worn: bool, mount_tilt: float | None,
                   events: list[Event]) -> bool:
        cs = self.settings
        if self.request == -math.inf:
            # Requested before any sample, or the data stopped meanwhile: the wait starts with
            # the first tick of data (whose start is t - TICK_S).
            self.request = t - TICK_S
        since = t - (self.request if self.request is not None else t)
        needed = max(cs.still_s, 2.0)
        if self._still_s() >= needed - 1e-9 and since >= needed - 1e-9:
            self.request = None
            g = unit(np.asarray(mean_g, float))
            return self._two_pose(t, g, events) if self.forward else self._upright(t, g, mount_tilt, events)
        if since > cs.timeout_s:
            reason = ("sensor not worn (no body motion)" if not worn
                      else f"kept moving: no still window of {needed:g} s within {cs.timeout_s:g} s")
            events.append(Event(t, EventKind.CALIBRATION_FAILED, {"reason": reason}))
            self.request = None
        return False

    def _two_pose(self, t: float, g: np.ndarray, events: list[Event]) -> bool:
        """The second pose: a deliberate forward bend from the upright reference gives the axis."""
        self.forward = False
        cur = self.calibration
        if cur is None:
            events.append(Event(t, EventKind.CALIBRATION_FAILED,
                                {"reason": "forward pose needs an upright calibration first"}))
            return False
        bend = math.degrees(math.acos(max(-1.0, min(1.0, float(g @ np.asarray(cur.up))))))
        fwd = forward_from_two_poses(np.asarray(cur.up), g) if bend >= TWO_POSE_MIN_DEG else None
        if fwd is None:
            events.append(Event(t, EventKind.CALIBRATION_FAILED, {
                "reason": f"forward pose only {bend:.0f} deg from upright (need {TWO_POSE_MIN_DEG:g})"}))
            return False
        self.calibration = cur.with_forward(fwd, "two_pose")
        events.append(Event(t, EventKind.CALIBRATED, {**cal_data(self.calibration),
                                                      "reason": "two-pose: forward axis from a bend"}))
        return True

    def _upright(self, t: float, g: np.ndarray, mount_tilt: float | None, events: list[Event]) -> bool:
        """A requested upright reference (refused when the sensor sits far off the mount's up)."""
        if mount_tilt is not None and mount_tilt > 90.0:
            up = None if self.mount is None else self.mount.up
            events.append(Event(t, EventKind.CALIBRATION_FAILED, {
                "reason": f"sensor tilted {mount_tilt:.0f} deg from the mount's up axis {up}: "
                          "check --mount / the wearer's mount"}))
            return False
        self._take(t, g, "requested", events, "requested")
        return True

    def _automatic(self, t: float, mean_g: Any, worn: bool, mount_tilt: float | None,
                   events: list[Event]) -> bool:
        """The first reference, or again after the sensor was taken off and put back."""
        cs = self.settings
        if not worn or self._still_s() < cs.auto_still_s - 1e-9:
            return False
        g = unit(np.asarray(mean_g, float))
        prev = self.calibration
        if mount_tilt is not None:
            if mount_tilt > cs.auto_max_tilt_deg:
                return False
        elif prev is not None and float(g @ np.asarray(prev.up)) < math.cos(
                math.radians(cs.auto_max_tilt_deg)):
            return False
        self.recal_pending = False
        if prev is None:
            why = f"automatic: first still window of {cs.auto_still_s:g} s"
        else:
            why = f"automatic: sensor put back on, first still window of {cs.auto_still_s:g} s"
        self._take(t, g, "auto", events, why + ("" if mount_tilt is None else " upright for the mount"))
        return True

    def _take(self, t: float, g: np.ndarray, source: str, events: list[Event], reason: str) -> None:
        """``g`` becomes upright; a known forward axis is kept (same sensor, same mount)."""
        prev = self.calibration
        cal = Calibration((float(g[0]), float(g[1]), float(g[2])), None, t, source, "none")
        if prev is not None and prev.forward is not None and self.mount is None:
            # Same sensor, same mount: keep the learned axis, re-squared to the new upright.
            cal = cal.with_forward(np.asarray(prev.forward), prev.axis_source)
        self.set(cal)
        self.detector.end(t, events)
        events.append(Event(t, EventKind.CALIBRATED, {**cal_data(self.calibration), "reason": reason}))


def cal_data(cal: Calibration | None) -> dict[str, Any]:
    """The calibration fields carried by ``calibrated`` events (the event's own ``t`` is its time)."""
    if cal is None:
        return {}
    d = cal.to_dict()
    return {"up": d["up"], "forward": d["forward"], "source": d["source"], "axis_source": d["axis_source"]}
