"""The guided stretch judge: one session of stretches, judged tick by tick from the trunk angles.

Called once per 0.1 s tick with the calibrated flexion (degrees, + forward), the lateral lean
(degrees, + toward the wearer's right; None while the forward axis is unknown), whether the body is
still (the tracker's activity) and the time. Pure: no I/O, no clock of its own, like the detector.

(About 600 lines, over the project's ~400: the judge's phases share one hold timer and one
bounce detector, and keeping them in one state machine keeps the step rules readable together.)

Per repetition of each stretch:

- **reach**: waiting for the pose: the angle in the stretch's direction at least ``min_deg`` (for a
  squeeze: within ``max_deg`` of upright, held still). Not reached within ``reach_timeout_s``: the
  session is abandoned.
- **hold**: the hold timer runs only while the pose is in range (down to ``min_deg -
  hysteresis_deg``, up to ``max_deg``), the trunk is settled (angle changing slower than
  ``settle_dps``), the body is still, and there is no bouncing. Past ``max_deg`` the wearer is told
  to ease off (``too_far`` cue); short of the pose for 3 s, back into it (``back_into_pose``). Out of
  the pose for ``lost_timeout_s``: abandoned.
- **bounce detection**: over the last ``bounce_window_s`` the angle's turns of direction are
  counted, each only after a swing of at least ``bounce_swing_deg`` one way and then back
  (a zig-zag with that hysteresis). ``bounce_reversals`` turns in the window is bouncing: at the
  defaults (2 turns of 3 degrees in 2.5 s, one full swing there and back and there again) an
  oscillation of about 0.5 Hz and up, while a slow ramp into or out of the pose has no turn, a
  single adjustment there and back one, and breathing's swing is too small. When the angle is
  smooth from tick to tick, smaller swings count too (down to ``bounce_min_swing_deg``): with a
  gyroscope the tracker's angle shows a 1-1.5 Hz bounce at only 0.6-0.9 of its size (its
  complementary filter keeps pulling toward the accelerometer, which the bounce's own tangential
  acceleration swings the other way), so a 5 degree bounce can read as 1.5-3.5 degrees. The swing
  needed is :data:`JITTER_SWINGS` times the angle's tick-to-tick jitter in the window (a robust
  standard deviation from its second differences), clamped between the two settings: jitter
  cannot fake a small bounce, and a smooth small oscillation is still caught. It pauses the timer,
  takes back the hold counted since the bouncing began, and emits the ``no_bouncing`` cue.
- **rest** for ``rest_s``, then the next repetition or stretch; after the last one the session is
  complete.

Two lags are undone rather than suffered: the tracker's activity stays "moving" for its motion
hold after the trunk settles, and the bounce window keeps seeing a bounce for a while after it
stops. Settled, in-range ticks withheld for those reasons only (those since the trunk last turned
faster than ``settle_dps``) are credited back, up to ``credit_max_s``, once the hold is clean
again, as the slouch detector credits a motion's tail.

No sensor data (not worn, or no angle) for ``no_data_s`` abandons the session too. Every text a
wearer sees carries :data:`SAFETY_TEXT`: a reminder, never a diagnosis.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from slouchd.model import EventKind
from slouchd.posture.stretch_catalog import SAFETY_TEXT, Stretch
from slouchd.schema import SettingsError, setting

TICK_S = 0.1
"""The decision stream's tick, seconds (the tracker's)."""
MAX_DT_S = 1.0
"""A step in time longer than this (a data gap) is counted as this much, seconds."""
SETTLE_LAG_S = 0.2
"""The trunk's angular speed is measured over this interval: short against a bounce's period
(0.3-2 s), so a bounce never looks settled, long against the angle noise, seconds."""

JITTER_SWINGS = 10.0
"""A swing smaller than ``bounce_swing_deg`` is bouncing only if it is at least this many times
the angle's tick-to-tick jitter (standard deviation, degrees): white noise of 0.3 degrees per tick
then needs the full ``bounce_swing_deg``; the tracker's own angle jitters by a few hundredths."""
MAD_TO_SD = 1.0 / (0.6745 * math.sqrt(6.0))
"""Median absolute second difference to the standard deviation of white noise (a second
difference of white noise has variance 6 sigma^2; 0.6745 is the normal MAD)."""

BACK_INTO_POSE_S = 3.0
"""Out of the pose this long during a hold (not past it: that is ``too_far``), the wearer is asked
back into it, seconds."""

# Event names (the ``event`` field of :meth:`StretchEvent.to_dict`): the model's EventKind values,
# so the judge's events and the daemon's are one set of names.
STRETCH_START = EventKind.STRETCH_START.value
STRETCH_STEP_START = EventKind.STRETCH_STEP_START.value
STRETCH_REP_START = EventKind.STRETCH_REP_START.value
STRETCH_POSE_REACHED = EventKind.STRETCH_POSE_REACHED.value
STRETCH_CUE = EventKind.STRETCH_CUE.value
STRETCH_REP_COMPLETE = EventKind.STRETCH_REP_COMPLETE.value
STRETCH_STEP_COMPLETE = EventKind.STRETCH_STEP_COMPLETE.value
STRETCH_COMPLETE = EventKind.STRETCH_COMPLETE.value
STRETCH_ABANDONED = EventKind.STRETCH_ABANDONED.value
EVENT_NAMES = (STRETCH_START, STRETCH_STEP_START, STRETCH_REP_START, STRETCH_POSE_REACHED, STRETCH_CUE,
               STRETCH_REP_COMPLETE, STRETCH_STEP_COMPLETE, STRETCH_COMPLETE, STRETCH_ABANDONED)

CUES = {
    "no_bouncing": "Slow down, no bouncing: ease into the stretch and hold it still.",
    "too_far": "Ease off a little: the stretch should feel like mild tightness, never pain.",
    "back_into_pose": "Come back into the stretch gently and hold it.",
}
"""Short cues during a hold; each is sent with :data:`SAFETY_TEXT`."""

# Phases (the ``status`` field of :meth:`StretchJudge.state`).
REACH, HOLD, REST, COMPLETE, ABANDONED = "reaching", "holding", "resting", "complete", "abandoned"


@dataclass(frozen=True)
class StretchSettings:
    """How strictly stretches are judged (``[stretch]``)."""

    hysteresis_deg: float = setting(
        2.0, min=0, max=10, doc="once reached, the pose holds down to min_deg minus this, degrees")
    settle_dps: float = setting(
        6.0, min=1, max=60, doc="the trunk turning faster than this is not holding still, deg/s")
    reach_timeout_s: float = setting(
        30.0, min=5, max=600, doc="a pose not reached within this abandons the session, seconds")
    lost_timeout_s: float = setting(
        20.0, min=3, max=600, doc="out of the pose this long during a hold abandons the session, seconds")
    no_data_s: float = setting(
        10.0, min=1, max=600, doc="sensor not worn or no angle this long abandons the session, seconds")
    bounce_window_s: float = setting(
        2.5, min=1, max=10, doc="bouncing is looked for over this much recent angle, seconds")
    bounce_swing_deg: float = setting(
        3.0, min=1, max=30, doc="swings this large (peak to peak), repeated, are bouncing, degrees")
    bounce_min_swing_deg: float = setting(
        1.2, min=0.5, max=30,
        doc="smaller swings, repeated, are bouncing too when the angle is otherwise smooth "
            "(see bounce_swing_deg), degrees")
    bounce_reversals: int = setting(
        2, min=1, max=20,
        doc="turns of direction, each after a swing of bounce_swing_deg, within the window that "
            "make a bounce")
    credit_max_s: float = setting(
        3.0, min=0, max=10,
        doc="settled in-range time withheld only because the motion flag or bounce window lagged "
            "is credited back up to this, seconds")
    cue_repeat_s: float = setting(
        6.0, min=1, max=120, doc="the same cue is not repeated sooner than this, seconds")

    def validate(self) -> None:
        if self.bounce_min_swing_deg > self.bounce_swing_deg:
            raise SettingsError(f"bounce_min_swing_deg = {self.bounce_min_swing_deg:g}: must not exceed "
                                f"bounce_swing_deg ({self.bounce_swing_deg:g})")
        if self.credit_max_s > self.lost_timeout_s:
            raise SettingsError(f"credit_max_s = {self.credit_max_s:g}: must not exceed lost_timeout_s "
                                f"({self.lost_timeout_s:g})")


@dataclass(frozen=True, slots=True)
class StretchEvent:
    """Something the stretch judge tells the wearer or the system, at sample-clock time ``t_s``."""

    t_s: float
    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t_s, 3), "event": self.kind, **self.data}


def with_safety(text: str) -> str:
    """``text`` followed by the safety reminder, as every wearer-facing line is sent."""
    return f"{text} {SAFETY_TEXT}"


def direction_angle(stretch: Stretch, flexion_deg: float, lateral_deg: float | None) -> float | None:
    """The angle in the stretch's direction, degrees (for a squeeze: the larger lean from upright).

    None when it cannot be known: a direction other than flexion needs the lateral angle, which
    exists only once the forward axis is known (without it, flexion is the unsigned tilt).
    """
    d = stretch.direction
    if d == "flexion":
        return flexion_deg
    if lateral_deg is None:
        return None
    if d == "extension":
        return -flexion_deg
    if d == "side_left":
        return -lateral_deg
    if d == "side_right":
        return lateral_deg
    return max(abs(flexion_deg), abs(lateral_deg))  # squeeze


def other_angle(stretch: Stretch, flexion_deg: float, lateral_deg: float | None) -> float:
    """The lean on the axis the stretch should leave alone, degrees (0 when unknown or a squeeze)."""
    d = stretch.direction
    if d in ("side_left", "side_right"):
        return abs(flexion_deg)
    if d == "squeeze" or lateral_deg is None:
        return 0.0
    return abs(lateral_deg)


class BounceDetector:
    """Repeated swings of one angle over a sliding window (see the module docstring)."""

    def __init__(self, window_s: float, swing_deg: float, reversals: int,
                 min_swing_deg: float | None = None) -> None:
        self.window_s = window_s
        self.swing_deg = swing_deg
        self.min_swing_deg = swing_deg if min_swing_deg is None else min(min_swing_deg, swing_deg)
        self.reversals = reversals
        self.samples: deque[tuple[float, float]] = deque()

    def swing_needed(self) -> float:
        """The swing (degrees) that counts in the current window: JITTER_SWINGS times the angle's
        jitter, between ``min_swing_deg`` and ``swing_deg``."""
        if self.min_swing_deg >= self.swing_deg:
            return self.swing_deg
        ys = [y for _, y in self.samples]
        d2 = sorted(abs(ys[i + 1] - 2.0 * ys[i] + ys[i - 1]) for i in range(1, len(ys) - 1))
        m = len(d2) // 2
        mad = d2[m] if len(d2) % 2 else 0.5 * (d2[m - 1] + d2[m])
        return min(self.swing_deg, max(self.min_swing_deg, JITTER_SWINGS * MAD_TO_SD * mad))

    def reset(self) -> None:
        self.samples.clear()

    def update(self, t_s: float, angle_deg: float) -> bool:
        """Add a sample (time in seconds, angle in degrees); True while the window holds a bounce."""
        s = self.samples
        s.append((t_s, angle_deg))
        while s and s[0][0] <= t_s - self.window_s - 1e-9:
            s.popleft()
        if len(s) < 5:
            return False
        # Zig-zag: a reversal is a turn after moving at least swing_deg one way, then at least
        # swing_deg back. A slow ramp (into or out of the pose) has none; breathing's swing is
        # smaller than swing_deg; a bounce has one every half period.
        h = self.swing_needed()
        first = s[0][1]
        hi = lo = first
        direction = 0
        reversals = 0
        for _, y in s:
            if direction >= 0:
                if y > hi:
                    hi = y
                elif hi - y >= h:
                    reversals += direction == 1
                    direction, lo = -1, y
                    continue
            if direction <= 0:
                if y < lo:
                    lo = y
                elif y - lo >= h:
                    reversals += direction == -1
                    direction, hi = 1, y
        return reversals >= self.reversals


class StretchJudge:
    """One guided session: a list of stretches judged in order.

    Args:
        steps: the stretches, in order (``StretchCatalog.steps_of(session)``).
        settings: how strictly to judge.
        session: the session's name (carried in events and state).
        t_start_s: sample-clock time the session starts, seconds.
    """

    def __init__(self, steps: list[Stretch], settings: StretchSettings | None = None, *,
                 session: str = "", t_start_s: float = 0.0) -> None:
        if not steps:
            raise ValueError("a stretch session needs at least one stretch")
        self.steps = list(steps)
        self.settings = settings or StretchSettings()
        self.session = session
        self.t_start_s = t_start_s
        self.t_s = t_start_s
        self.status = REACH
        self.step_index = 0
        self.rep = 1
        self.held_s = 0.0
        self.reason = ""
        self.results: list[dict[str, Any]] = [self._new_result(s) for s in self.steps]
        self._phase_since = t_start_s
        self._out_since: float | None = None
        self._no_data_since: float | None = None
        self._pending: list[tuple[float, float]] = []  # (t, dt) settled in-range ticks withheld
        self._recent: deque[tuple[float, float]] = deque()  # (t, dt) ticks counted lately
        self._bouncing = False
        self._unsettled: deque[float] = deque()  # times of unsettled ticks in this hold
        self._last_cue: dict[str, float] = {}
        self._angles: deque[tuple[float, float, float]] = deque()  # (t, flexion, lateral) for settling
        self._angle: float | None = None
        self._in_pose = False
        self._bounce = self._new_bounce_detector()
        self._started = False

    # ----------------------------------------------------------------------------- public API

    @property
    def done(self) -> bool:
        return self.status in (COMPLETE, ABANDONED)

    @property
    def stretch(self) -> Stretch:
        return self.steps[min(self.step_index, len(self.steps) - 1)]

    def start(self) -> list[StretchEvent]:
        """The opening events (session and first step); :meth:`update` sends them if not asked."""
        if self._started:
            return []
        self._started = True
        out = [StretchEvent(self.t_start_s, STRETCH_START, {
            "session": self.session, "steps": [s.name for s in self.steps],
            "text": with_safety("Guided stretches: move slowly and hold each stretch still."),
            "safety": SAFETY_TEXT})]
        self._step_start(self.t_start_s, out)
        return out

    def update(self, t_s: float, flexion_deg: float | None, lateral_deg: float | None, still: bool,
               worn: bool = True) -> list[StretchEvent]:
        """Advance to tick time ``t_s`` (seconds) with the calibrated angles (degrees) and return the
        events this tick produced.

        Args:
            t_s: sample-clock time of the tick's end, seconds; a time before the last tick's is
                ignored.
            flexion_deg: calibrated flexion, + forward, degrees; None when unknown.
            lateral_deg: calibrated lateral lean, + toward the right, degrees; None when unknown.
            still: the body is still (the tracker's activity is ``still``).
            worn: the sensor is judged to be on a back.
        """
        out = self.start()
        if self.done or not t_s >= self.t_s:
            return out  # a tick from before the last one (or NaN time) is ignored
        dt = min(t_s - self.t_s, MAX_DT_S)
        self.t_s = t_s
        usable = worn and flexion_deg is not None and math.isfinite(flexion_deg)
        if lateral_deg is not None and not math.isfinite(lateral_deg):
            lateral_deg = None
        angle = direction_angle(self.stretch, flexion_deg, lateral_deg) if usable else None  # type: ignore[arg-type]
        if angle is None:
            self._no_data(t_s, usable, out)
            return out
        self._no_data_since = None
        assert flexion_deg is not None
        self._angle = angle
        settled = self._settled(t_s, flexion_deg, lateral_deg)
        if self.status == REST:
            if t_s - self._phase_since >= self._rest_s() - 1e-9:
                self._next_rep(t_s, out)
            else:
                return out
        st = self.stretch
        other_ok = other_angle(st, flexion_deg, lateral_deg) <= st.other_max_deg
        if self.status == REACH:
            self._reach(t_s, angle, other_ok, settled, still, out)
            return out
        # A squeeze's angle is the larger lean from upright, |flexion| or |lateral|: folded at 0, a
        # smooth drift through upright would zig-zag. Its bouncing is looked for on the signed
        # flexion instead.
        swing = flexion_deg if st.direction == "squeeze" else angle
        self._hold(t_s, dt, angle, swing, other_ok, settled, still, out)
        return out

    def stop(self, t_s: float, reason: str = "stopped") -> list[StretchEvent]:
        """End the session early (the wearer or a command stopped it)."""
        out = self.start()
        if not self.done:
            self._abandon(t_s, reason, out)
        return out

    def state(self) -> dict[str, Any]:
        """The current step as JSON-able data (for the MQTT ``stretch`` state)."""
        st = self.stretch
        return {
            "session": self.session,
            "status": self.status,
            "step": st.name,
            "title": st.shown_title,
            "step_index": self.step_index + 1,
            "steps": len(self.steps),
            "rep": self.rep,
            "reps": st.repetitions,
            "held_s": round(self.held_s, 1),
            "hold_s": st.hold_s,
            "angle_deg": None if self._angle is None else round(self._angle, 1),
            "target_deg": [st.min_deg, st.max_deg],
            "in_pose": self._in_pose,
            "bouncing": self._bouncing,
            "instruction": with_safety(st.instruction),
            "reason": self.reason,
        }

    def result(self) -> dict[str, Any]:
        """The whole session so far, JSON-able: for the history and the coach."""
        done = [r for r in self.results if r["complete"]]
        return {
            "session": self.session,
            "status": self.status,
            "complete": self.status == COMPLETE,
            "reason": self.reason,
            "t_start": round(self.t_start_s, 3),
            "duration_s": round(self.t_s - self.t_start_s, 1),
            "steps_complete": len(done),
            "steps": [dict(r) for r in self.results],
            "bounce_cues": sum(r["bounce_cues"] for r in self.results),
        }

    # ------------------------------------------------------------------------------ internals

    @staticmethod
    def _new_result(st: Stretch) -> dict[str, Any]:
        return {"name": st.name, "complete": False, "reps_done": 0, "held_s": [], "bounce_cues": 0}

    def _new_bounce_detector(self) -> BounceDetector:
        s = self.settings
        return BounceDetector(s.bounce_window_s, s.bounce_swing_deg, s.bounce_reversals,
                              s.bounce_min_swing_deg)

    def _rest_s(self) -> float:
        # Resting after the last repetition of a stretch leads into the next stretch.
        return self.steps[self.step_index].rest_s

    def _settled(self, t_s: float, flexion_deg: float, lateral_deg: float | None) -> bool:
        a = self._angles
        lat = 0.0 if lateral_deg is None else lateral_deg
        a.append((t_s, flexion_deg, lat))
        while len(a) > 1 and a[1][0] <= t_s - SETTLE_LAG_S + 1e-9:
            a.popleft()
        t0, f0, l0 = a[0]
        span = t_s - t0
        if span < SETTLE_LAG_S - 1e-9:
            return False  # too little history (just started, or after a gap)
        speed = max(abs(flexion_deg - f0), abs(lat - l0)) / span
        return speed < self.settings.settle_dps

    def _cue(self, t_s: float, cue: str, out: list[StretchEvent], **extra: Any) -> bool:
        """Emit ``cue`` unless it was sent less than ``cue_repeat_s`` ago; True if sent."""
        if t_s - self._last_cue.get(cue, -math.inf) < self.settings.cue_repeat_s - 1e-9:
            return False
        self._last_cue[cue] = t_s
        out.append(StretchEvent(t_s, STRETCH_CUE, {
            "session": self.session, "step": self.stretch.name, "cue": cue,
            "text": with_safety(CUES[cue]), **extra}))
        return True

    def _step_start(self, t_s: float, out: list[StretchEvent]) -> None:
        st = self.stretch
        out.append(StretchEvent(t_s, STRETCH_STEP_START, {
            "session": self.session, "step": st.name, "title": st.shown_title,
            "step_index": self.step_index + 1, "steps": len(self.steps), "direction": st.direction,
            "target_deg": [st.min_deg, st.max_deg], "hold_s": st.hold_s, "reps": st.repetitions,
            "instruction": st.instruction, "text": with_safety(st.instruction), "safety": SAFETY_TEXT}))

    def _enter(self, status: str, t_s: float) -> None:
        self.status = status
        self._phase_since = t_s
        self._out_since = None
        self._pending.clear()
        self._recent.clear()
        self._bounce.reset()
        self._bouncing = False
        self._unsettled.clear()
        self._in_pose = False

    def _no_data(self, t_s: float, usable: bool, out: list[StretchEvent]) -> None:
        self._pending.clear()
        self._angles.clear()
        self._bounce.reset()
        self._angle = None
        self._in_pose = False
        if self._no_data_since is None:
            self._no_data_since = t_s
        elif t_s - self._no_data_since >= self.settings.no_data_s - 1e-9:
            if not usable:
                why = "sensor not worn or no data"
            else:
                why = ("sideways lean unknown: the forward axis is not known yet (set the mount or "
                       "do the two-pose calibration)")
            self._abandon(t_s, why, out)

    def _reach(self, t_s: float, angle: float, other_ok: bool, settled: bool, still: bool,
               out: list[StretchEvent]) -> None:
        st = self.stretch
        if st.direction == "squeeze":
            reached = angle <= st.max_deg and settled and still
        else:
            reached = angle >= st.min_deg and other_ok
        if reached:
            self._enter(HOLD, t_s)
            self._in_pose = True
            out.append(StretchEvent(t_s, STRETCH_POSE_REACHED, {
                "session": self.session, "step": st.name, "rep": self.rep, "angle_deg": round(angle, 1)}))
            return
        if t_s - self._phase_since >= self.settings.reach_timeout_s - 1e-9:
            self._abandon(t_s, f"pose not reached within {self.settings.reach_timeout_s:g} s", out)

    def _in_range(self, angle: float, other_ok: bool) -> bool:
        st = self.stretch
        if not other_ok:
            return False
        if st.direction == "squeeze":
            return angle <= st.max_deg
        return st.min_deg - self.settings.hysteresis_deg <= angle <= st.max_deg

    def _hold(self, t_s: float, dt: float, angle: float, swing: float, other_ok: bool, settled: bool,
              still: bool, out: list[StretchEvent]) -> None:
        s = self.settings
        st = self.stretch
        in_range = self._in_range(angle, other_ok)
        self._in_pose = in_range
        bouncing = self._bounce_check(t_s, angle, swing, settled, out)
        # --- too far
        if other_ok and st.direction != "squeeze" and angle > st.max_deg:
            self._cue(t_s, "too_far", out, angle_deg=round(angle, 1), max_deg=st.max_deg)
        # --- out of the pose
        if in_range:
            self._out_since = None
        else:
            if self._out_since is None:
                self._out_since = t_s
            elif t_s - self._out_since >= s.lost_timeout_s - 1e-9:
                self._abandon(t_s, f"left the stretch for {s.lost_timeout_s:g} s", out)
                return
            elif t_s - self._out_since >= BACK_INTO_POSE_S - 1e-9 and not (angle > st.max_deg and other_ok):
                self._cue(t_s, "back_into_pose", out, angle_deg=round(angle, 1))
        # --- the hold timer
        ok = in_range and settled and dt > 0
        if not ok:
            self._pending.clear()
        elif bouncing or not still:
            self._pending.append((t_s, dt))
        else:
            # Withheld ticks are only those since the trunk last moved (an unsettled tick clears
            # them), so after a bounce they start where the bouncing stopped.
            credit = sum(d for t, d in self._pending if t > t_s - s.credit_max_s - 1e-9)
            self._pending.clear()
            self._count(t_s, dt + credit)
        if self.held_s >= st.hold_s - 1e-6:
            self._rep_complete(t_s, out)

    def _bounce_check(self, t_s: float, angle: float, swing: float, settled: bool,
                      out: list[StretchEvent]) -> bool:
        """Whether the hold is bouncing now; at its start, take back the seconds counted since it
        began and cue "no bouncing"."""
        s = self.settings
        if not settled:
            self._unsettled.append(t_s)
            while self._unsettled[0] < t_s - s.bounce_window_s - 1.0:
                self._unsettled.popleft()
        bouncing = self._bounce.update(t_s, swing)
        if bouncing and not self._bouncing:
            # Take back what was counted since the bouncing began: its first unsettled moment.
            onset = self._bounce_onset(t_s)
            self.held_s = max(self.held_s - sum(d for t, d in self._recent if t >= onset - 1e-9), 0.0)
            self._recent.clear()
            if self._cue(t_s, "no_bouncing", out, angle_deg=round(angle, 1)):
                self.results[self.step_index]["bounce_cues"] += 1
        self._bouncing = bouncing
        return bouncing

    def _bounce_onset(self, t_s: float) -> float:
        """When the bouncing that is being flagged began: the first unsettled tick of the run of
        unsettled ticks (none more than a second apart) leading up to now, seconds."""
        onset = t_s
        for t in reversed(self._unsettled):
            if onset - t > 1.0:
                break
            onset = t
        return onset

    def _count(self, t_s: float, seconds: float) -> None:
        self.held_s += seconds
        r = self._recent
        r.append((t_s, seconds))
        while r and r[0][0] < t_s - self.settings.bounce_window_s - 1.0:
            r.popleft()

    def _rep_complete(self, t_s: float, out: list[StretchEvent]) -> None:
        st = self.stretch
        res = self.results[self.step_index]
        res["reps_done"] += 1
        res["held_s"].append(round(self.held_s, 1))
        out.append(StretchEvent(t_s, STRETCH_REP_COMPLETE, {
            "session": self.session, "step": st.name, "rep": self.rep, "reps": st.repetitions,
            "held_s": round(self.held_s, 1)}))
        last_rep = self.rep >= st.repetitions
        if last_rep:
            res["complete"] = True
            out.append(StretchEvent(t_s, STRETCH_STEP_COMPLETE, {
                "session": self.session, "step": st.name, "step_index": self.step_index + 1,
                "steps": len(self.steps), "reps": st.repetitions}))
            if self.step_index + 1 >= len(self.steps):
                self._enter(COMPLETE, t_s)
                out.append(StretchEvent(t_s, STRETCH_COMPLETE, {
                    "session": self.session, "steps": len(self.steps),
                    "duration_s": round(t_s - self.t_start_s, 1),
                    "bounce_cues": sum(r["bounce_cues"] for r in self.results),
                    "text": with_safety("Well done: session complete.")}))
                return
        self._enter(REST, t_s)
        if self._rest_s() <= 0:
            self._next_rep(t_s, out)

    def _next_rep(self, t_s: float, out: list[StretchEvent]) -> None:
        st = self.stretch
        self.held_s = 0.0
        if self.rep >= st.repetitions:
            self.step_index += 1
            self.rep = 1
            self._enter(REACH, t_s)
            self._step_start(t_s, out)
        else:
            self.rep += 1
            self._enter(REACH, t_s)
            out.append(StretchEvent(t_s, STRETCH_REP_START, {
                "session": self.session, "step": st.name, "rep": self.rep, "reps": st.repetitions,
                "text": with_safety(f"Again ({self.rep} of {st.repetitions}): {st.instruction}")}))

    def _abandon(self, t_s: float, reason: str, out: list[StretchEvent]) -> None:
        st = self.stretch
        res = self.results[self.step_index]
        if self.status in (HOLD, REACH) and not res["complete"]:
            res["held_s"].append(round(self.held_s, 1))
        self.reason = reason
        self._enter(ABANDONED, t_s)
        out.append(StretchEvent(t_s, STRETCH_ABANDONED, {
            "session": self.session, "step": st.name, "step_index": self.step_index + 1,
            "rep": self.rep, "held_s": round(self.held_s, 1), "reason": reason,
            "steps_complete": sum(1 for r in self.results if r["complete"])}))
