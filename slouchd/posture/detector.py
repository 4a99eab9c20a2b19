"""The slouch state machine: when forward flexion becomes an alert, and when a slouch ends.

Called once per 0.1 s tick with the calibrated flexion and what the body is doing.

- A slouch starts when still and flexion >= ``threshold_deg``; it ends when flexion falls below
  ``threshold_deg - hysteresis_deg`` while still, when the sensor is not worn or the data stops,
  or after ``motion_reset_s`` of continuous motion (standing up, walking away).
- Motion shorter than that (a reach for a cup, shifting in the chair) only *pauses* the slouch
  clock: the angle is not trusted while moving, but a slouch is not forgiven by a quick reach.
- The first alert comes when the slouch clock reaches ``dwell_s``, then every ``repeat_s`` with
  the level rising by one up to ``max_level``.
- Cumulative mode (after exo-pos): the clock fills while slouched and drains at the same rate while
  sitting upright, so brief corrections do not reset it; levels restart once it has drained
  below ``dwell_s``.
- A ``slouch_end`` event is emitted for every slouch that reached its first alert (whether or not
  the alert was delivered: tracking mode, quiet hours and snooze silence alerts, not statistics).
"""

from __future__ import annotations

from slouchd.model import Event, EventKind
from slouchd.posture.settings import DetectionSettings

FRESH_S = 1.0
"""A slouch at most this old when motion is flagged gets that motion's time above the limit credited
(as one starting right after motion does), seconds: the turn rate is judged on the tilt averaged
over 0.5 s against 0.5 s before, so motion is flagged up to ~1 s after the angle starts moving."""

STILL, MOVING, OFF = 0, 1, 2
"""What the tracker tells the detector about a tick: usable, moving (paused), or no usable data."""


class SlouchDetector:
    """Slouch episodes, alert scheduling and escalation for one wearer."""

    def __init__(self, settings: DetectionSettings, motion_reset_s: float, credit_max_s: float = 2.0) -> None:
        self.settings = settings
        self.motion_reset_s = motion_reset_s
        self.credit_max_s = credit_max_s
        self.active = False
        self.t_start = 0.0
        self.slouch_s = 0.0
        self.exposure_s = 0.0
        self.level = 1
        self.next_alert_s = settings.dwell_s
        self.max_flexion = 0.0
        self.alerts_due = 0
        self.motion_s = 0.0
        self.moving_over_s = 0.0
        self.since_alert_s = 0.0
        self.fresh_motion = False
        self.credited_s = 0.0

    def set_settings(self, settings: DetectionSettings) -> None:
        """New thresholds apply from the next tick; a running slouch keeps its clock."""
        self.settings = settings
        if self.alerts_due == 0:
            self.next_alert_s = settings.dwell_s

    @property
    def clock_s(self) -> float:
        """The slouch clock compared with the dwell: continuous slouch time, or the exposure, seconds."""
        return self.exposure_s if self.settings.cumulative else self.slouch_s

    def could_alert_within(self, horizon_s: float) -> bool:
        """Whether an alert could come within the next ``horizon_s`` seconds of ticks: motion above
        the limit is pending as credit for a slouch that starts on the next still tick; a new
        slouch would reach ``dwell_s`` that soon; a slouch is on whose clock is within
        ``horizon_s`` of its next alert (the clock grows at most one tick per tick: credit is
        only ever motion time); or (cumulative mode) a slouch is on or exposure is left that a
        new slouch adds to. Otherwise no alert can come sooner: a slouch held for minutes does
        not hurry its caller between its alerts (``tests/posture/test_slouch_alerts.py`` checks
        the promise on random ticks)."""
        s = self.settings
        if self.moving_over_s > 0.0 or s.dwell_s <= horizon_s + 1e-6:
            return True
        if s.cumulative:
            return self.active or self.exposure_s > 0.0
        return self.active and self.next_alert_s - self.slouch_s <= horizon_s + 1e-6

    def end(self, t_s: float, out: list[Event]) -> None:
        """Close the running slouch (if any)."""
        if self.active:
            if self.alerts_due:
                out.append(Event(t_s, EventKind.SLOUCH_END, {
                    "duration_s": round(t_s - self.t_start, 1),
                    "max_flexion_deg": round(self.max_flexion, 1)}))
            self.active = False
            self.slouch_s = 0.0
            if not self.settings.cumulative:
                self.alerts_due = 0
                self.level = 1
                self.next_alert_s = self.settings.dwell_s

    def resume(self, t_start: float, slouch_s: float, max_flexion_deg: float) -> None:
        """A slouch found to have been going on since ``t_start`` (seconds) for ``slouch_s`` of still
        time while the angle could not be judged (the forward axis was just learned): it goes on
        from there, so its alert is not a whole dwell late. Ignored while a slouch is on."""
        if self.active:
            return
        self.active = True
        self.t_start = t_start
        self.slouch_s = slouch_s
        self.max_flexion = max_flexion_deg
        if self.settings.cumulative:
            self.exposure_s = min(self.exposure_s + slouch_s, self.settings.dwell_s + self.settings.repeat_s)

    def _moving(self, t_s: float, dt_s: float, over: bool, out: list[Event]) -> None:
        """A moving tick (``over``: the angle is at or above the limit): the slouch clock pauses;
        long motion ends the slouch."""
        if self.motion_s == 0.0:
            # A slouch only just begun when the motion is flagged is still being sunk into
            # (motion is judged on a smoothed tilt, a few ticks after the angle moves).
            self.fresh_motion = self.active and self.slouch_s <= FRESH_S + 1e-9
        self.motion_s += dt_s
        # Motion that ends in a slouch is part of it (sitting down into a slump): keep the
        # trailing stretch spent above the limit, credited only if the slouch follows.
        self.moving_over_s = self.moving_over_s + dt_s if over else 0.0
        if self.motion_s >= self.motion_reset_s:
            self.end(t_s, out)
            self.moving_over_s = 0.0

    def _credit(self) -> float:
        """The first still tick after motion: the motion's tail above the limit, seconds, given
        back only to a slouch that starts now (or had only just started when the motion began),
        and no more than ``credit_max_s`` (what the motion hold delayed) in all; pauses inside a
        slouch stay pauses."""
        if not self.active:
            self.credited_s = 0.0
        credit = 0.0
        if not self.active or self.fresh_motion:
            credit = max(0.0, min(self.moving_over_s, self.credit_max_s - self.credited_s))
        self.credited_s += credit
        self.fresh_motion = False
        self.moving_over_s = 0.0
        return credit

    def step(self, t_s: float, dt_s: float, flexion_deg: float, state: int, may_alert: bool,
             out: list[Event]) -> None:
        """Advance one tick ending at ``t_s`` lasting ``dt_s``; events are appended to ``out``."""
        s = self.settings
        if state == OFF:
            self.end(t_s, out)
            self.motion_s = 0.0
            self.moving_over_s = 0.0
            return
        limit = s.threshold_deg - s.hysteresis_deg if self.active else s.threshold_deg
        if state == MOVING:
            self._moving(t_s, dt_s, flexion_deg >= limit, out)
            return
        self.motion_s = 0.0
        credit = self._credit()
        if flexion_deg >= limit:
            if not self.active:
                self.active = True
                self.t_start = t_s - dt_s - credit
                self.slouch_s = 0.0
                self.max_flexion = flexion_deg
            self.max_flexion = max(self.max_flexion, flexion_deg)
            self.slouch_s += dt_s + credit
            if s.cumulative:
                # Exposure fills while slouched (capped, so a long slouch is forgiven after
                # dwell_s + repeat_s of good posture); repeats count slouched time since the last alert.
                self.exposure_s = min(self.exposure_s + dt_s + credit, s.dwell_s + s.repeat_s)
                if self.alerts_due:
                    self.since_alert_s += dt_s + credit
                    due = self.since_alert_s >= s.repeat_s - 1e-6
                else:
                    due = self.exposure_s >= s.dwell_s - 1e-6
                clock = self.exposure_s
            else:
                clock = self.slouch_s
                due = clock >= self.next_alert_s - 1e-6
            if due:
                self.alerts_due += 1
                self.since_alert_s = 0.0
                if may_alert:
                    out.append(Event(t_s, EventKind.SLOUCH_ALERT, {
                        "level": self.level, "flexion_deg": round(flexion_deg, 1),
                        "slouch_s": round(clock, 1)}))
                self.level = min(self.level + 1, s.max_level)
                self.next_alert_s += s.repeat_s
        else:
            self.end(t_s, out)
            if s.cumulative and self.exposure_s > 0.0:
                self.exposure_s = max(0.0, self.exposure_s - dt_s)
                if self.exposure_s < s.dwell_s and self.alerts_due:
                    self.alerts_due = 0
                    self.level = 1
                    self.next_alert_s = s.dwell_s
