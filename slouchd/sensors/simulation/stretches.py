"""A simulated wearer doing guided stretches, with ground truth, for the stretch judge's tests and
``bench/coach.py``.

``python -m slouchd.sensors.simulation.stretches --behaviour bounce --seed 3 out.csv`` writes one
session as a replay CSV (for ``slouchd stretch --recording out.csv --mount=+y,-z --start-at 8``).

The person follows the session as a person would: reacts to the judge's events (step start,
"again", "done") after a human delay, eases into the pose over a few seconds, holds it breathing and
swaying a little (sometimes shifting a degree or two, or going 2-4 degrees deeper or shallower and
back once, always inside the pose's range), and lets go when told. Behaviours:

- ``good``: every stretch done as asked;
- ``bounce``: as ``good``, but some holds contain a bout of bouncing: the angle pulsing deeper by
  ``bounce_swing_deg`` peak to peak at 1-2 Hz for 3-6 s;
- ``abandon``: the person gives up at one repetition: lets go half-way, never starts, or goes the
  wrong way.

The IMU samples come from the trunk angles through the same physics as the simulated day
(:mod:`slouchd.sensors.simulation.frames`): the sensor swings on a 0.42 m radius about the hips, so
bouncing also shakes the accelerometer; sensor noise and gyro bias are added.

Ground truth is defined on the true trunk angles only (:meth:`StretchingWearer.true_hold_s`): time
in range (the stretch's ``min_deg..max_deg``, the other axis within ``other_max_deg``), turning
slower than ``settle_dps``, and not inside a bout of bouncing.

(About 600 lines, over the project's ~400: the person's behaviour model, its three scripted
behaviours and the ground truth they produce must change together; the physics lives in
:mod:`slouchd.sensors.simulation.frames`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import numpy as np

from slouchd.model import Activity, Mount, SampleBatch
from slouchd.posture import stretch as sj
from slouchd.posture.stretch_catalog import Stretch
from slouchd.sensors.simulation.frames import G_MPS2, r_wb, stick_on_matrix, trunk_up
from slouchd.sensors.simulation.knots import Knots, eval_knots

BEHAVIOURS = ("good", "bounce", "abandon")
TRUNK_RADIUS_M = 0.42
"""Hip joint to the sensor between the shoulder blades, metres."""
FD_H_S = 1e-3
"""Half-step of the central differences for acceleration, seconds."""
CALM_S = 8.0
"""Upright and still before the session starts: the tracker calibrates on it, seconds."""
MIN_REACTION_S = 0.6
"""No reaction comes sooner than this after the event it answers, seconds (more than a chunk)."""


@dataclass(frozen=True)
class Bounce:
    """A bout of bouncing: ``start_s``.. ``end_s``, at ``freq_hz``, ``swing_deg`` peak to peak,
    deeper into the stretch with the sign ``sign`` on the ``axis`` (``flex`` or ``lat``)."""

    start_s: float
    end_s: float
    freq_hz: float
    swing_deg: float
    axis: str
    sign: float

    def offset(self, t: np.ndarray) -> np.ndarray:
        inside = (t >= self.start_s) & (t < self.end_s)
        ph = 2 * np.pi * self.freq_hz * (t - self.start_s)
        return np.where(inside, self.sign * 0.5 * self.swing_deg * (1 - np.cos(ph)), 0.0)


@dataclass
class RepTruth:
    """What the person did in one repetition (times in seconds on the sample clock)."""

    step: int
    rep: int
    target_deg: float
    bounce: Bounce | None = None
    gave_up: str = ""


@dataclass
class StretchingWearer:
    """A seeded person doing one guided session, reacting to the judge.

    Args:
        steps: the stretches of the session.
        behaviour: one of :data:`BEHAVIOURS`.
        seed: everything random follows from it.
        rate_hz: sample rate, Hz.
        gyro: whether the sensor has a gyroscope.
        bounce_swing_deg: peak-to-peak size of a bounce, degrees.
        bounce_hz: (low, high) bounce frequency range, Hz.
    """

    steps: list[Stretch]
    behaviour: str = "good"
    seed: int = 0
    rate_hz: float = 50.0
    gyro: bool = True
    bounce_swing_deg: float = 5.0
    bounce_hz: tuple[float, float] = (1.0, 2.0)
    mount: Mount = field(default_factory=lambda: Mount.parse("+y,-z"))
    reps: list[RepTruth] = field(default_factory=list)
    bounces: list[Bounce] = field(default_factory=list)
    walks: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) of walks (:meth:`walk`), seconds."""

    def __post_init__(self) -> None:
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour {self.behaviour!r}: one of {', '.join(BEHAVIOURS)}")
        rng = self.rng = np.random.default_rng([self.seed, 71])
        self.flex = Knots()
        self.lat = Knots()
        self.flex.add(0.0, 0.0)
        self.lat.add(0.0, 0.0)
        self.horizon_s = 0.0  # samples exist up to here: plans may only change the future
        self.session_start_s = CALM_S
        self.r_bs = stick_on_matrix(self.mount, rng.uniform(10, 25), rng.uniform(-5, 5))
        self.breath_hz = rng.uniform(0.2, 0.3)
        self.breath_deg = rng.uniform(0.5, 1.0)
        self.phases = rng.uniform(0, 2 * np.pi, 6)
        self.acc_bias = rng.uniform(-0.01, 0.01, 3)
        self.gyro_bias = rng.uniform(-0.8, 0.8, 3)
        n_reps = sum(s.repetitions for s in self.steps)
        # Which repetition the person gives up at, and how; which holds bounce.
        # Not at a squeeze: giving one up looks like sitting upright, which is what a squeeze is
        # judged as (all one sensor can tell), so its truth would be "done".
        choices = [i for i, st in enumerate(s for s in self.steps for _ in range(s.repetitions))
                   if st.direction != "squeeze"]
        self.give_up_at = int(rng.choice(choices)) if self.behaviour == "abandon" and choices else -1
        self.give_up_how = str(rng.choice(["let_go", "never_start", "wrong_way"]))
        self._rep_counter = -1
        self._current: RepTruth | None = None
        self._step_idx = 0
        self._bouncy = [self.behaviour == "bounce" and bool(rng.random() < 0.6) for _ in range(n_reps)]

    # ---------------------------------------------------------------------- the person's choices

    def _move(self, start_s: float, dur_s: float, flex: float, lat: float) -> None:
        if start_s < self.horizon_s + FD_H_S:
            raise RuntimeError(f"planned at {start_s:.2f} s, before the samples already made "
                               f"({self.horizon_s:.2f} s)")
        for k, v in ((self.flex, flex), (self.lat, lat)):
            k.hold_to(start_s)
            k.add(start_s + dur_s, v)

    def _pose(self, st: Stretch, angle: float) -> tuple[float, float]:
        """Trunk (flexion, lateral) for ``angle`` in the stretch's direction, with a little of the
        other axis as real people do."""
        other = float(self.rng.normal(0, 2.0))
        d = st.direction
        if d == "extension":
            return -angle, other
        if d == "flexion":
            return angle, other
        if d == "side_left":
            return other, -angle
        if d == "side_right":
            return other, angle
        return angle, 0.0  # squeeze: sitting tall, a touch of extension

    def react(self, events: list[sj.StretchEvent]) -> None:
        """What the person does about the judge's events (plans moves in the future)."""
        for ev in events:
            if ev.kind in (sj.STRETCH_STEP_START, sj.STRETCH_REP_START):
                self._start_rep(ev.t_s, int(ev.data.get("step_index", 0)) - 1, ev)
            elif (ev.kind == sj.STRETCH_REP_COMPLETE and self._current is not None
                  and not self._current.gave_up):
                t = max(ev.t_s + self.rng.uniform(0.6, 1.5), self.horizon_s + 0.05)
                self._move(t, self.rng.uniform(1.5, 3.0), self.rng.uniform(-1, 3), 0.0)

    def _start_rep(self, t_ev: float, step_idx: int, ev: sj.StretchEvent) -> None:
        if ev.kind == sj.STRETCH_STEP_START:
            self._step_idx = step_idx
        st = self.steps[self._step_idx]
        self._rep_counter += 1
        rng = self.rng
        rep = RepTruth(self._step_idx, int(ev.data.get("rep", 1)), 0.0)
        self._current = rep
        self.reps.append(rep)
        t = max(t_ev + rng.uniform(0.8, 2.0), self.horizon_s + MIN_REACTION_S)
        ramp = rng.uniform(2.0, 4.0)
        if st.direction == "squeeze":
            target = rng.uniform(-3.0, 0.0)
        else:
            bouncy = self._bouncy[self._rep_counter]
            top = st.max_deg - 4 - (self.bounce_swing_deg if bouncy else 0.0)
            target = rng.uniform(st.min_deg + 3, max(st.min_deg + 3.5, top))
        rep.target_deg = target
        if self._rep_counter == self.give_up_at:
            rep.gave_up = self.give_up_how
            if self.give_up_how == "never_start":
                return
            if self.give_up_how == "wrong_way":
                f, la = self._pose(st, -target if st.direction != "squeeze" else -25.0)
                if st.direction == "squeeze":
                    f, la = 25.0, 0.0  # slumps forward instead of sitting tall
                self._move(t, ramp, f, la)
                return
            f, la = self._pose(st, target)
            self._move(t, ramp, f, la)
            let_go = t + ramp + rng.uniform(0.3, 0.6) * st.hold_s
            self._move(let_go, rng.uniform(1.5, 3.0), rng.uniform(-1, 3), 0.0)
            return
        f, la = self._pose(st, target)
        self._move(t, ramp, f, la)
        # Shifting a little during the hold (not bouncing): a degree or two, slowly.
        hold_start = t + ramp
        if st.direction != "squeeze" and rng.random() < 0.4:
            # Half of them settle a little deeper or shallower; half go 2-4 deg deeper and come
            # back (the one-off wobble a bounce detector must not take for bouncing).
            shift_at = hold_start + rng.uniform(2.0, 6.0)
            back = rng.random() < 0.5
            d = (rng.uniform(2.0, 4.0) if back else rng.uniform(1.0, 3.0)) * rng.choice([-1.0, 1.0])
            # Stays inside the pose's range (with room for breathing): the truth is the range.
            d = float(np.clip(target + d, st.min_deg + 1.5, st.max_deg - 1.5)) - target
            sign = -1.0 if st.direction in ("extension", "side_left") else 1.0
            f2, la2 = (f + sign * d, la) if st.direction in ("extension", "flexion") else (f, la + sign * d)
            dur = rng.uniform(1.0, 1.5)
            self._move(shift_at, dur, f2, la2)
            if back:
                self._move(shift_at + dur, rng.uniform(1.0, 1.5), f, la)
        if self._bouncy[self._rep_counter] and st.direction != "squeeze":
            freq = rng.uniform(*self.bounce_hz)
            start = hold_start + rng.uniform(2.0, 5.0)
            cycles = max(3, round(rng.uniform(3.0, 6.0) * freq))
            axis, sign = {"extension": ("flex", -1.0), "flexion": ("flex", 1.0),
                          "side_left": ("lat", -1.0), "side_right": ("lat", 1.0)}[st.direction]
            b = Bounce(start, start + cycles / freq, freq, self.bounce_swing_deg, axis, sign)
            rep.bounce = b
            self.bounces.append(b)

    def walk(self, start_s: float, dur_s: float) -> None:
        """Get up and walk from ``start_s`` for ``dur_s`` (seconds): the trunk sways at the step
        rate (1.7-2 Hz, 3-4 degrees forward-back, 2-3 sideways), which the tracker sees as moving
        or walking; then sit upright again."""
        if start_s < self.horizon_s + FD_H_S:
            raise RuntimeError(f"walk planned at {start_s:.2f} s, before the samples already made")
        self.walks.append((start_s, start_s + dur_s))
        rng = self.rng
        self._walk_shape = (rng.uniform(1.7, 2.0), rng.uniform(3.0, 4.0), rng.uniform(2.0, 3.0))

    def _walk_offsets(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = np.zeros_like(t)
        la = np.zeros_like(t)
        if not self.walks:
            return f, la
        hz, fwd, side = self._walk_shape
        for a, b in self.walks:
            inside = (t >= a) & (t < b)
            ph = 2 * np.pi * hz * (t - a)
            f = f + np.where(inside, fwd * np.sin(2 * ph), 0.0)
            la = la + np.where(inside, side * np.sin(ph), 0.0)
        return f, la

    # -------------------------------------------------------------------------- angles and IMU

    def angles(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True trunk flexion and lateral lean (degrees) at times ``t``: the plan, bouncing,
        breathing and sway."""
        kt, kv = self.flex.freeze()
        flex = eval_knots(kt, kv, t)
        kt, kv = self.lat.freeze()
        lat = eval_knots(kt, kv, t)
        p = self.phases
        tau = 2 * np.pi * t
        flex = flex + self.breath_deg * np.sin(tau * self.breath_hz + p[0]) \
            + 0.15 * np.sin(tau * 0.07 + p[1]) + 0.1 * np.sin(tau * 0.19 + p[2])
        lat = lat + 0.1 * np.sin(tau * 0.05 + p[3]) + 0.08 * np.sin(tau * 0.23 + p[4])
        for b in self.bounces:
            if b.axis == "flex":
                flex = flex + b.offset(t)
            else:
                lat = lat + b.offset(t)
        wf, wl = self._walk_offsets(t)
        return flex + wf, lat + wl

    def samples(self, t0: float, t1: float) -> SampleBatch:
        """IMU samples in ``[t0, t1)``: acceleration (g) and, with ``gyro``, rate (deg/s)."""
        i0 = math.ceil(t0 * self.rate_hz - 1e-9)
        i1 = math.ceil(t1 * self.rate_hz - 1e-9)
        t = np.arange(i0, i1) / self.rate_hz
        self.horizon_s = max(self.horizon_s, t1)
        n = t.size
        if n == 0:
            return SampleBatch(t, np.empty((0, 3)), None if not self.gyro else np.empty((0, 3)))
        h = FD_H_S
        tt = np.concatenate([t - h, t, t + h])
        flex, lat = self.angles(tt)
        zero = np.zeros_like(tt)
        pos = trunk_up(zero, np.radians(lat), np.radians(flex)) * TRUNK_RADIUS_M
        acc_w = (pos[2 * n:] - 2 * pos[n:2 * n] + pos[:n]) / (h * h)
        specific = acc_w / G_MPS2
        specific[:, 2] += 1.0
        fl, la = np.radians(flex[n:2 * n]), np.radians(lat[n:2 * n])
        r_ws = r_wb(np.zeros(n), la, fl) @ self.r_bs
        rng = np.random.default_rng([self.seed, 72, i0])
        acc = np.einsum("nji,nj->ni", r_ws, specific) + self.acc_bias + rng.normal(0, 0.004, (n, 3))
        gyro = None
        if self.gyro:
            d_fl = np.radians(flex[2 * n:] - flex[:n]) / (2 * h)
            d_la = np.radians(lat[2 * n:] - lat[:n]) / (2 * h)
            w_b = np.stack([np.cos(fl) * d_la, d_fl, np.sin(fl) * d_la], -1)
            gyro = (np.degrees(np.einsum("ji,nj->ni", self.r_bs, w_b)) + self.gyro_bias
                    + rng.normal(0, 0.3, (n, 3)))
        return SampleBatch(t, acc, gyro)

    # ---------------------------------------------------------------------------- ground truth

    def in_bounce(self, t: np.ndarray) -> np.ndarray:
        out = np.zeros(t.shape, dtype=bool)
        for b in self.bounces:
            out |= (t >= b.start_s) & (t < b.end_s)
        return out

    def true_hold_s(self, st: Stretch, t0: float, t1: float, settle_dps: float) -> float:
        """True in-pose still time of stretch ``st`` between ``t0`` and ``t1``, seconds."""
        if t1 <= t0:
            return 0.0
        dt = 0.01
        t = np.arange(t0 + dt / 2, t1, dt)
        flex, lat = self.angles(t)
        f_prev, l_prev = self.angles(t - dt)
        speed = np.maximum(np.abs(flex - f_prev), np.abs(lat - l_prev)) / dt
        angle = {"extension": -flex, "flexion": flex, "side_left": -lat, "side_right": lat,
                 "squeeze": np.maximum(np.abs(flex), np.abs(lat))}[st.direction]
        other = np.abs(lat) if st.direction in ("extension", "flexion") else (
            np.abs(flex) if st.direction in ("side_left", "side_right") else np.zeros_like(t))
        if st.direction == "squeeze":
            in_range = angle <= st.max_deg
        else:
            in_range = (angle >= st.min_deg) & (angle <= st.max_deg) & (other <= st.other_max_deg)
        ok = in_range & (speed < settle_dps) & ~self.in_bounce(t)
        return float(np.count_nonzero(ok) * dt)

    def expected_steps(self) -> list[bool]:
        """Which stretches the person completes (all but the one given up on and those after)."""
        out = []
        counter = 0
        gave_up = False
        for st in self.steps:
            ok = not gave_up
            for _ in range(st.repetitions):
                if counter == self.give_up_at:
                    ok = False
                    gave_up = True
                counter += 1
            out.append(ok)
        return out


@dataclass
class SessionRun:
    """What one simulated session produced."""

    wearer: StretchingWearer
    judge: sj.StretchJudge | None
    events: list[sj.StretchEvent]
    rep_windows: list[dict[str, Any]]
    batches: list[SampleBatch] = field(default_factory=list)
    """The samples fed to the tracker (only with ``keep_samples``)."""


def run_guided_session(steps: list[Stretch], behaviour: str, seed: int, *,
                       settings: sj.StretchSettings | None = None, gyro: bool = True,
                       rate_hz: float = 50.0, bounce_swing_deg: float = 5.0,
                       bounce_hz: tuple[float, float] = (1.0, 2.0), chunk_s: float = 0.25,
                       max_s: float = 1200.0, keep_samples: bool = False,
                       runtime: bool = False, mute_s: float = 0.0,
                       buzz_on_bounce: bool = False) -> SessionRun:
    """Simulate a person doing ``steps`` through the real posture tracker and the stretch judge.

    The tracker runs with the mount declared and 0.1 s frames; its frames feed the judge
    (``still`` = activity ``still``); the person reacts to the judge's events. With ``runtime``
    the session runs end to end through :class:`slouchd.coaching.CoachRuntime` (started with
    ``start_stretch``, fed the frames with ``process``), as the daemon will run it, and
    ``mute_s`` > 0 drops the samples of that many seconds after each event asking for a buzz
    (``"haptic"``), as the BLE source does while the motor runs (``buzz_s + settle_s``).
    """
    from slouchd.posture.settings import DetectionSettings, WellbeingSettings
    from slouchd.posture.tracker import PostureTracker

    settings = settings or sj.StretchSettings()
    coach = _session_runtime(steps, settings, buzz_on_bounce) if runtime else None
    wearer = StretchingWearer(steps, behaviour, seed, rate_hz, gyro, bounce_swing_deg, bounce_hz)
    tracker = PostureTracker(DetectionSettings(), WellbeingSettings(), wearer.mount,
                             frame_interval_s=0.1, epoch_offset_s=0.0, tz=UTC)
    judge: sj.StretchJudge | None = None
    events: list[sj.StretchEvent] = []
    windows: list[dict[str, Any]] = []
    open_rep: dict[str, Any] | None = None
    kept: list[SampleBatch] = []
    t = 0.0
    mute_until = -math.inf
    while t < max_s and not (judge is not None and judge.done):
        batch = wearer.samples(t, t + chunk_s)
        if mute_until > t:
            batch = _drop_before(batch, mute_until)
        if keep_samples:
            kept.append(batch)
        out = tracker.process(batch)
        t += chunk_s
        for f in out.frames:
            if judge is None:
                if f.t_s < wearer.session_start_s or not f.calibrated:
                    continue
                judge, new = _start(coach, steps, settings, f.t_s)
            else:
                new = _feed(coach, judge, f)
            open_rep = _rep_windows(new, judge, open_rep, windows)
            events += new
            if mute_s > 0 and any("haptic" in ev.data for ev in new):
                mute_until = t + mute_s  # the buzz starts with the next samples
            wearer.react(new)
            if judge.done:
                break
    if keep_samples:  # a few seconds after the end, as a recording would go on
        kept.append(wearer.samples(t, t + 3.0))
    return SessionRun(wearer, judge, events, windows, kept)


@dataclass
class DayRun:
    """What :func:`run_coached_day` produced."""

    coach: Any
    tracker: Any
    tracker_events: list[Any]
    coach_events: list[Any]
    answers: list[str]
    """How each break reminder was answered, in order (``stretch`` / ``walk``)."""
    frame_times: list[float] = field(default_factory=list)


def run_coached_day(catalog: Any, store: Any, *, answers: tuple[str, ...] = ("stretch", "walk"),
                    seed: int = 1, start_wall_s: float, end_s: float, session: str = "quick",
                    break_after_min: float = 5.0, walk_s: float = 60.0, rate_hz: float = 25.0,
                    coach_settings: Any = None, battery: Any = None, switch_frames: bool = False) -> DayRun:
    """A short simulated work day through the real tracker and :class:`CoachRuntime`.

    The person sits upright and still; each break reminder is answered in turn by ``answers``:
    ``stretch`` starts ``session`` a second after the reminder (the person follows the judge), or
    ``walk`` gets up and walks ``walk_s``. A completed session resets sitting time as the daemon
    will (``reset_sitting``). ``start_wall_s`` is the Unix time of sample time 0 (UTC), so a day
    can be made to cross midnight. ``battery(t_s)`` gives the battery % (None: unknown).
    ``switch_frames``: frames every second, every 0.1 s only while a session runs, as the daemon
    will do with ``set_frame_interval`` (docs/coach.md, "Wiring"); else always every 0.1 s.
    """
    from datetime import UTC

    from slouchd.coaching import CoachRuntime
    from slouchd.model import EventKind
    from slouchd.posture.settings import DetectionSettings, WellbeingSettings
    from slouchd.posture.tracker import PostureTracker

    wearer = StretchingWearer(catalog.steps_of(catalog.session(session)), "good", seed, rate_hz)
    tracker = PostureTracker(DetectionSettings(), WellbeingSettings(break_after_min=break_after_min,
                                                                     break_min_s=30.0, break_repeat_min=5.0),
                             wearer.mount, frame_interval_s=1.0 if switch_frames else 0.1,
                             epoch_offset_s=start_wall_s, tz=UTC)
    coach = CoachRuntime("ana", catalog, coach=coach_settings, store=store, haptic=True, tz=UTC,
                         epoch_offset_s=start_wall_s)
    totals = tracker._wellbeing.totals  # the lead's tracker.totals will return it
    coach.observe_totals(totals)
    run = DayRun(coach, tracker, [], [], [])
    todo = list(answers)
    t = 0.0
    while t < end_s:
        out = tracker.process(wearer.samples(t, t + 0.5))
        t += 0.5
        co = coach.process(out.frames, out.events, tracker._wellbeing.totals,
                           None if battery is None else battery(t))
        if co.reset_sitting:
            tracker._wellbeing._break_taken()  # the lead's tracker.take_break()
        run.tracker_events += out.events
        run.coach_events += co.events
        run.frame_times += [f.t_s for f in out.frames]
        wearer.react(_as_stretch_events(co.events))
        if switch_frames:
            set_frame_interval(tracker, 0.1 if coach.needs_ticks else 1.0)
        for ev in out.events:
            if ev.kind is not EventKind.BREAK_REMINDER or not todo:
                continue
            how = todo.pop(0)
            run.answers.append(how)
            if how == "walk":
                wearer.walk(t + 2.0, walk_s)
            else:
                started = coach.start_stretch(t, session)
                run.coach_events += started.events
                wearer.react(_as_stretch_events(started.events))
                if switch_frames:
                    set_frame_interval(tracker, 0.1)
    return run


def set_frame_interval(tracker: Any, interval_s: float) -> None:
    """What ``PostureTracker.set_frame_interval`` is proposed to do (docs/coach.md, "Wiring"),
    from outside until it exists: frames every ``interval_s`` from the next tick."""
    from slouchd.posture.filters import TICK_S

    interval_s = max(float(interval_s), TICK_S)
    fs = tracker._frames
    if interval_s != fs.interval_s:
        fs.interval_s = interval_s
        if fs.next_t is not None and math.isfinite(tracker._last_tick_end):
            fs.next_t = math.floor(tracker._last_tick_end / interval_s + 1e-9) * interval_s + interval_s


def _rep_windows(new: list[sj.StretchEvent], judge: sj.StretchJudge, open_rep: dict[str, Any] | None,
                 windows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Follow the repetitions through ``new`` events: each closed one goes to ``windows``; returns
    the one still open."""
    for ev in new:
        if ev.kind in (sj.STRETCH_STEP_START, sj.STRETCH_REP_START):
            open_rep = {"step": judge.step_index, "rep": judge.rep, "t0": ev.t_s}
        elif ev.kind in (sj.STRETCH_REP_COMPLETE, sj.STRETCH_ABANDONED) and open_rep is not None:
            open_rep.update(t1=ev.t_s, held_s=float(ev.data.get("held_s", 0.0)),
                            complete=ev.kind == sj.STRETCH_REP_COMPLETE)
            windows.append(open_rep)
            open_rep = None
    return open_rep


def _drop_before(batch: SampleBatch, t_s: float) -> SampleBatch:
    """The samples of ``batch`` from ``t_s`` on (a buzz muted the ones before)."""
    keep = batch.t_s >= t_s
    gyro = None if batch.gyro_dps is None else batch.gyro_dps[keep]
    return SampleBatch(batch.t_s[keep], batch.acc_g[keep], gyro)


def _start(coach: Any, steps: list[Stretch], settings: sj.StretchSettings,
           t_s: float) -> tuple[sj.StretchJudge, list[sj.StretchEvent]]:
    """Start the session at ``t_s``: through the runtime when there is one, else a bare judge."""
    if coach is not None:
        new = _as_stretch_events(coach.start_stretch(t_s, "sim").events)
        assert coach.judge is not None
        return coach.judge, new
    judge = sj.StretchJudge(steps, settings, session="sim", t_start_s=t_s)
    return judge, judge.start()


def _feed(coach: Any, judge: sj.StretchJudge, f: Any) -> list[sj.StretchEvent]:
    """One frame into the runtime (or the bare judge); the stretch events it produced."""
    if coach is not None:
        return _as_stretch_events(coach.process([f], []).events)
    return judge.update(f.t_s, f.flexion_deg, f.lateral_deg, f.activity is Activity.STILL, f.worn)


def _session_runtime(steps: list[Stretch], settings: sj.StretchSettings, buzz_on_bounce: bool = False) -> Any:
    """A coach runtime whose catalogue has one session, ``sim``, of ``steps``."""
    from slouchd.coaching import CoachRuntime
    from slouchd.posture.coach import CoachSettings
    from slouchd.posture.stretch_catalog import StretchCatalog, StretchSession

    unique = list({s.name: s for s in steps}.values())
    session = StretchSession(name="sim", steps=[s.name for s in steps])
    cat = StretchCatalog(stretches=unique, sessions=[session])
    return CoachRuntime("sim", cat, stretch=settings, haptic=True,
                        coach=CoachSettings(buzz_on_bounce=buzz_on_bounce))


def _as_stretch_events(events: list[Any]) -> list[sj.StretchEvent]:
    """The runtime's stretch events as the judge's (the person and the scoring read those)."""
    names = set(sj.EVENT_NAMES)
    return [sj.StretchEvent(e.t_s, str(e.kind.value), dict(e.data)) for e in events if e.kind.value in names]


def main(argv: list[str] | None = None) -> int:
    """Write one simulated session as a replay CSV (the judge's verdict goes to stderr)."""
    import argparse
    import json
    import sys

    from slouchd.sensors.recording import RecordingWriter
    from slouchd.stretches import load_catalog

    p = argparse.ArgumentParser(prog="python -m slouchd.sensors.simulation.stretches",
                                description=main.__doc__)
    p.add_argument("out", help="CSV file to write")
    p.add_argument("--behaviour", choices=BEHAVIOURS, default="good")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--session", default=None, help="session of the built-in catalogue")
    p.add_argument("--no-gyro", action="store_true")
    a = p.parse_args(argv)
    cat = load_catalog()
    session = cat.session(a.session)
    run = run_guided_session(cat.steps_of(session), a.behaviour, a.seed, gyro=not a.no_gyro,
                             keep_samples=True)
    with RecordingWriter(a.out, gyro=not a.no_gyro) as w:
        for b in run.batches:
            w.write(b)
    assert run.judge is not None
    sys.stderr.write(json.dumps({"session": session.name, "start_at": CALM_S, "mount": str(run.wearer.mount),
                                 "result": run.judge.result()}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
