"""Small per-tick stages of the tracker's decision loop, each with its own state and tests.

:class:`WearStage` decides whether the sensor is on a back; :func:`activity_of`,
:func:`detector_state` and :func:`posture_of` turn what the stages found into the activity, the
slouch detector's input and the reported posture. They run once per 0.1 s tick on plain floats
(the live daemon calls them for every radio packet), so they stay tiny.
"""

from __future__ import annotations

from slouchd.model import Activity, Posture
from slouchd.posture import detector as det
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
