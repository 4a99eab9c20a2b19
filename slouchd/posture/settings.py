"""Settings of the posture engine (the ``[detection]`` and ``[wellbeing]`` config tables).

Defaults (docs/posture.md, "Detection"): a 15 deg threshold with a few degrees of hysteresis is
what open-source monitors and clinical studies converge on; phone alerts need a dwell of 30-60 s
to avoid alert fatigue.
"""

from __future__ import annotations

from dataclasses import dataclass

from slouchd.schema import SettingsError, setting

MODES = ("training", "tracking")


@dataclass(frozen=True)
class DetectionSettings:
    """When a forward slouch becomes an alert."""

    threshold_deg: float = setting(
        15.0, min=3, max=60, doc="forward flexion beyond calibrated upright that counts as a slouch, degrees")
    hysteresis_deg: float = setting(
        3.0, min=0, max=15, doc="a slouch ends only below threshold_deg - hysteresis_deg, degrees")
    dwell_s: float = setting(
        30.0, min=1, max=3600, doc="how long a slouch must last before the first alert, seconds")
    repeat_s: float = setting(
        120.0, min=10, max=7200, doc="while the slouch goes on, alert again this often, seconds")
    max_level: int = setting(
        3, min=1, max=5, doc="escalation: each repeat raises the alert level up to this")
    mode: str = setting(
        "training", choices=MODES, doc="training = alerts; tracking = silent, statistics only")
    alerts_enabled: bool = setting(True, doc="master switch for slouch alerts")
    cumulative: bool = setting(
        False, doc="alert on accumulated slouch time (fills while slouched, drains while upright)")
    quiet_hours: list[str] = setting(
        factory=list, doc='local-time windows without alerts, "HH:MM-HH:MM", e.g. ["22:00-07:00"]')

    def validate(self) -> None:
        if self.hysteresis_deg >= self.threshold_deg:
            raise SettingsError(
                f"hysteresis_deg = {self.hysteresis_deg:g}: must be below threshold_deg "
                f"({self.threshold_deg:g})")
        self._check_quiet_hours()

    def _check_quiet_hours(self) -> None:
        # Checked with the parser the tracker uses, so what passes here cannot fail at run time.
        # Imported here: wellbeing imports this module.
        from slouchd.posture.wellbeing import parse_quiet_hours

        for i, window in enumerate(self.quiet_hours):
            try:
                parse_quiet_hours([window])
            except ValueError:
                raise SettingsError(
                    f'quiet_hours[{i}] = "{window}": must be "HH:MM-HH:MM" in local time, '
                    f'00:00..23:59, e.g. "22:00-07:00" (may wrap midnight)') from None


@dataclass(frozen=True)
class WellbeingSettings:
    """Break reminders and daily totals."""

    break_after_min: float = setting(
        50.0, min=5, max=480, doc="remind to take a break after this much unbroken sitting, minutes")
    break_min_s: float = setting(
        120.0, min=30, max=1800, doc="standing or walking this long counts as a real break, seconds")
    break_repeat_min: float = setting(
        15.0, min=1, max=240, doc="repeat the break reminder this often while still sitting, minutes")
    break_reminders: bool = setting(True, doc="send break reminders at all")


@dataclass(frozen=True)
class CalibrationSettings:
    """How the upright reference is taken (``[calibration]``)."""

    auto: bool = setting(
        True, doc="with no saved calibration, take the first still, upright-plausible window as upright")
    still_s: float = setting(
        2.0, min=2, max=30, doc="a calibration window must be still at least this long, seconds")
    auto_still_s: float = setting(
        5.0, min=2, max=120, doc="automatic calibration waits for a still window this long, seconds")
    auto_max_tilt_deg: float = setting(
        35.0, min=5, max=90,
        doc="automatic calibration only accepts a window this close to the mount's up axis "
            "(or the previous reference), degrees")
    timeout_s: float = setting(
        30.0, min=5, max=600,
        doc="a requested calibration fails if no still window comes within this time, seconds")
    learn_axis: bool = setting(
        True, doc="with no mount, learn the forward (sagittal) axis from the bends the wearer makes")


@dataclass(frozen=True)
class ActivitySettings:
    """Motion gating, walking and not-worn detection (``[activity]``)."""

    moving_g: float = setting(
        0.04, min=0.005, max=1, doc="body acceleration (RMS, gravity removed) above which you are moving, g")
    moving_dps: float = setting(
        20.0, min=2, max=500, doc="rotation rate above which you are moving (gyro sensors), deg/s")
    turning_dps: float = setting(
        12.0, min=1, max=200, doc="change of trunk tilt above which you are moving (all sensors), deg/s")
    motion_hold_s: float = setting(
        1.5, min=0, max=30,
        doc="stay 'moving' this long after motion stops, while the angle settles, seconds")
    motion_reset_s: float = setting(
        5.0, min=0.5, max=120,
        doc="motion longer than this ends a slouch (shorter motion, e.g. a reach, only pauses it), seconds")
    not_worn_s: float = setting(
        60.0, min=10, max=3600,
        doc="no breathing micro-motion for this long means the sensor is not on a body, seconds")
    micro_motion_deg: float = setting(
        0.05, min=0.001, max=2,
        doc="tilt wobble (RMS) below which the sensor is judged lifeless (on a desk), degrees")
    gap_s: float = setting(
        1.0, min=0.2, max=30, doc="no samples for longer than this is a gap: the posture is unknown, seconds")
