"""PostureTracker: sample batches in, posture frames and events out. Pure and synchronous.

The live daemon, the demo and ``slouchd replay`` all run this class. The pipeline, per batch:

1. drop non-finite rows and samples not later than the last one (duplicates, replays);
2. split at gaps longer than ``[activity] gap_s``: across a gap nothing is smeared: the filters
   restart from the first sample after it and the gap is reported as ``unknown``;
3. low-pass the acceleration (Butterworth designed for the measured rate, state carried);
4. summarise samples into 0.1 s ticks (the decision stream) and estimate gravity per tick
   (complementary filter with the gyroscope, else the filtered accelerometer);
5. activity features on the tick stream (moving, walking, not worn);
6. per tick: calibration, calibrated flexion and lateral angles, the slouch detector, wellbeing,
   and a :class:`PostureFrame` every ``frame_interval_s`` of sample time.

Times of frames and events are sample-clock times: the moment the live daemon would have emitted
them. Wall-clock rules (quiet hours, midnight) use ``t_s + epoch_offset_s`` in ``tz``.

Why over ~400 lines: steps 1-4 exist twice, on whole arrays (replay's minutes) and on plain lists
(the live daemon calls once per 0.1 s tick, where numpy's per-call overhead used to be most of the
cost: ``bench/tracker_tick.py``); both paths and the loop that joins them stay together.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

import numpy as np

from slouchd.model import Activity, Event, EventKind, Mount, Posture, PostureFrame, SampleBatch
from slouchd.posture import detector as det
from slouchd.posture import stages as st
from slouchd.posture import wellbeing as wb
from slouchd.posture.activity import ActivityClassifier
from slouchd.posture.filters import (
    SCALAR_MAX_SAMPLES,
    SCALAR_MAX_TICKS,
    TICK_S,
    LowPass,
    RateEstimator,
    Ticks,
    bridge_ticks,
    gap_starts,
    increasing_mask,
    summarise_columns,
    summarise_ticks,
)
from slouchd.posture.orientation import (
    AxisLearner,
    Calibration,
    OrientationFilter,
    angle_rows,
    angles,
    unit,
)
from slouchd.posture.settings import (
    ActivitySettings,
    CalibrationSettings,
    DetectionSettings,
    WellbeingSettings,
)

RATE_MIN_SAMPLES = 8
"""Samples needed before the first filter design (the rate is measured from them)."""
TWO_POSE_MIN_DEG = st.TWO_POSE_MIN_DEG
URGENT_HORIZON_S = 1.0
"""While :attr:`PostureTracker.urgent` is False, no alert is due within this much sample time
(seconds): it equals the least ``dwell_s`` the settings allow."""
URGENT_MARGIN_S = 2 * TICK_S
"""Added to :data:`URGENT_HORIZON_S` when asking whether an alert could come (seconds): a calm
hand-over may end a tick or two past the horizon."""


@dataclass
class TrackerOutput:
    """What one :meth:`PostureTracker.process` call produced, in time order."""

    frames: list[PostureFrame] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class PostureTracker:
    """The posture engine for one wearer.

    Args:
        detection: ``[detection]`` settings (replace at run time with :meth:`set_detection`).
        wellbeing: ``[wellbeing]`` settings.
        mount: the sensor axes as worn, or None when unknown (the forward axis is then learned).
        calibration: a saved upright reference to start from.
        calibration_settings: ``[calibration]`` settings.
        activity: ``[activity]`` settings.
        frame_interval_s: a frame every this many seconds of sample time (>= 0.1), seconds.
        epoch_offset_s: sample time + this = Unix time, for quiet hours and midnight, seconds.
        tz: the wearer's time zone; None = the system's local time.
    """

    def __init__(self, detection: DetectionSettings, wellbeing: WellbeingSettings, mount: Mount | None, *,
                 calibration: Calibration | None = None,
                 calibration_settings: CalibrationSettings | None = None,
                 activity: ActivitySettings | None = None,
                 frame_interval_s: float = 1.0, epoch_offset_s: float = 0.0,
                 tz: tzinfo | None = None) -> None:
        self.detection = detection
        self.wellbeing_settings = wellbeing
        self.mount = mount
        self.cal_settings = calibration_settings or CalibrationSettings()
        self.activity_settings = activity or ActivitySettings()
        self.frame_interval_s = max(float(frame_interval_s), TICK_S)
        self.clock = wb.LocalClock(epoch_offset_s, tz, list(detection.quiet_hours))
        self._detector = det.SlouchDetector(detection, self.activity_settings.motion_reset_s,
                                            self.activity_settings.motion_hold_s + 0.5)
        self._cal = st.CalibrationStage(self.cal_settings, mount, self._detector)
        if calibration is not None:
            self._cal.set(calibration)
        self._frames = st.FrameStage(self.frame_interval_s, PostureFrame(
            0.0, None, None, Posture.UNKNOWN, Activity.UNKNOWN, False, self.calibration is not None))
        self.dropped: dict[str, int] = {}

        self._lp = LowPass()
        self._rate = RateEstimator()
        self._orient = OrientationFilter(TICK_S)
        self._activity = ActivityClassifier(self.activity_settings, TICK_S)
        self._learner = AxisLearner()
        # Ticks (time, gravity, activity) while the forward axis is unknown, one dwell's worth:
        # once it is learned, a slouch already going on keeps the time it has lasted.
        self._unjudged: deque[tuple[float, Any, int]] = deque(maxlen=_unjudged_len(detection))
        self._wellbeing = wb.Wellbeing(wellbeing)
        self._slouch = st.SlouchStage(self._detector, self._wellbeing, self.clock)
        self._last_t = -math.inf
        # Samples of the tick not yet complete: times, and columns (x, y, z lists) of raw and
        # low-passed acceleration and of the gyro (None without).
        self._pending: tuple[list[float], Cols, Cols, Cols | None] | None = None
        self._last_tick_end = -math.inf
        self._wear = st.WearStage()
        self._seen_data = False
        self._lp_reset_pending = True
        self._prebuf: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self._last_tick: Ticks | None = None  # the last tick decided in this segment (held over drops)

    # ----------------------------------------------------------------------------- public API

    @property
    def calibration(self) -> Calibration | None:
        """The upright reference in force (None before the first)."""
        return self._cal.calibration

    @calibration.setter
    def calibration(self, cal: Calibration | None) -> None:
        self._cal.calibration = cal

    @property
    def frame(self) -> PostureFrame:
        """The latest posture state (what the next frame will carry)."""
        return self._frames.frame

    @frame.setter
    def frame(self, frame: PostureFrame) -> None:
        self._frames.frame = frame

    @property
    def urgent(self) -> bool:
        """Whether an alert or an answer could come within the next :data:`URGENT_HORIZON_S` of
        ticks, so the caller must feed the tracker every tick: a slouch is about to start with
        credit or is on with its next alert within the horizon plus :data:`URGENT_MARGIN_S`
        (:meth:`SlouchDetector.could_alert_within`), a calibration was asked for (the user waits
        for its answer), or the forward axis could be learned that soon (a slouch that went on
        unjudged may then alert at once). When False the next alert is more than the horizon
        away, and the caller may hand over a whole :data:`URGENT_HORIZON_S` at a time (the
        daemon then runs the tracker once a second, and its event loop may nap longer)."""
        if (self._detector.could_alert_within(URGENT_HORIZON_S + URGENT_MARGIN_S)
                or self._cal.request is not None):
            return True
        cal = self.calibration
        return (self.cal_settings.learn_axis and self.mount is None and cal is not None
                and cal.forward is None
                and self._learner.n + round(URGENT_HORIZON_S / TICK_S) >= self._learner.min_ticks)

    def process(self, batch: SampleBatch) -> TrackerOutput:
        """Consume one batch of samples; return the frames and events it completes."""
        out = TrackerOutput()
        if len(batch) == 0:
            return out
        t = np.asarray(batch.t_s, dtype=float)
        acc = np.asarray(batch.acc_g, dtype=float)
        gyro = None if batch.gyro_dps is None else np.asarray(batch.gyro_dps, dtype=float)
        if t.size <= SCALAR_MAX_SAMPLES and self._lp.rate_hz is not None:
            cols = self._clean_continuation(t, acc, gyro)
            if cols is not None:
                # The live case (a radio packet following on from the last): nothing to drop or
                # split, and plain lists from here on.
                if self._pending is not None and (self._pending[3] is None) != (gyro is None):
                    self._flush(out)
                self._segment_small(*cols, out)
                self._last_t = cols[0][-1]
                return out
        self._general(t, acc, gyro, out)
        return out

    def _general(self, t: np.ndarray, acc: np.ndarray, gyro: np.ndarray | None, out: TrackerOutput) -> None:
        """:meth:`process` for any batch: drop non-finite and not-increasing samples, split at gaps."""
        finite = np.isfinite(t) & np.all(np.isfinite(acc), axis=1)
        if gyro is not None:
            finite &= np.all(np.isfinite(gyro), axis=1)
        keep = finite.copy()
        keep[finite] = increasing_mask(t[finite], self._last_t)
        self._count("non_finite", int(np.count_nonzero(~finite)))
        self._count("not_increasing", int(np.count_nonzero(finite & ~keep)))
        if not keep.all():
            t, acc = t[keep], acc[keep]
            gyro = None if gyro is None else gyro[keep]
        if t.size == 0:
            return
        if self._pending is not None and (self._pending[3] is None) != (gyro is None):
            self._flush(out)  # the sensor switched gyro on/off: close the tick without mixing
        starts = gap_starts(t, self._last_t, self.activity_settings.gap_s)
        bounds = [*starts.tolist(), t.size]
        if bounds[0] != 0:
            bounds.insert(0, 0)
        for a, b in itertools.pairwise(bounds):
            if a in starts:
                self._gap(float(t[a]), out)
            self._segment(t[a:b], acc[a:b], None if gyro is None else gyro[a:b], out)
        self._last_t = float(t[-1])

    def flush(self) -> TrackerOutput:
        """Close the last, partial tick (end of a recording)."""
        out = TrackerOutput()
        self._flush(out)
        # A calibration asked for and never judged must still get its answer.
        self._cal.unanswered(self._last_tick_end if math.isfinite(self._last_tick_end) else 0.0, out.events)
        return out

    def request_calibration(self, forward: bool = False) -> None:
        """The next still window (>= ``[calibration] still_s``) becomes upright.

        With ``forward=True`` it is the second pose of a two-pose calibration instead: a
        deliberate forward bend (>= 10 deg) whose direction defines the forward axis. Either way
        the outcome is a ``calibrated`` or ``calibration_failed`` event (with ``reason``).
        """
        self._cal.ask(self._last_t, forward)

    def set_detection(self, detection: DetectionSettings) -> None:
        """New ``[detection]`` settings, applied from the next tick."""
        self.detection = detection
        self._detector.set_settings(detection)
        self._unjudged = deque(self._unjudged, maxlen=_unjudged_len(detection))
        self.clock.set_quiet_hours(list(detection.quiet_hours))

    def snooze_until(self, t_s: float | None) -> None:
        """No alerts or reminders before sample time ``t_s`` (None ends a snooze)."""
        self._slouch.snooze_until = t_s

    def stats(self) -> dict[str, Any]:
        """Today's totals: upright_pct, slouched_min, alerts, break_reminders, longest_sitting_min,
        sitting_min, date (local, ISO)."""
        return self._wellbeing.totals.to_stats()

    def export_state(self) -> dict[str, Any]:
        """Calibration, today's totals and the sitting stretch as JSON-able data (see
        :meth:`restore_state`). Times in it are Unix seconds."""
        return {
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "totals": self._wellbeing.totals.to_dict(),
            **self._wellbeing.export(self.clock.epoch_offset_s, self._last_t),
        }

    def restore_state(self, d: dict[str, Any]) -> None:
        """Restore :meth:`export_state` output.

        Totals of an earlier day are closed (a ``day_summary``) at the first tick; totals of a
        later day than the clock's (the wall clock went back) are kept. The sitting stretch goes
        on only when the first tick is on the saved day and less than ``break_min_s`` after the
        save; otherwise a fresh stretch starts. Its next reminder is the next one due on the
        schedule, never one already passed.

        Raises:
            ValueError, TypeError, KeyError: a value of the wrong type or out of range.
        """
        cal = d.get("calibration")
        if cal is not None:
            self._cal.set(Calibration.from_dict(cal))
        if d.get("totals"):
            self._wellbeing.totals = wb.DayTotals.from_dict(d["totals"])
            self.clock.hold_day(self._wellbeing.totals.date)
        self._wellbeing.restore(d, self.clock.epoch_offset_s)

    # ------------------------------------------------------------------------------ internals

    def _clean_continuation(self, t: np.ndarray, acc: np.ndarray, gyro: np.ndarray | None
                            ) -> tuple[list[float], Cols, Cols | None] | None:
        """A few samples as lists (times; x, y, z columns of acceleration and gyro) if they are all
        finite, strictly increasing from the last sample and without a gap (then the general
        path would keep every sample and make one segment of them); else None."""
        times = t.tolist()
        prev = self._last_t
        gap = self.activity_settings.gap_s
        for x in times:
            # Written so that NaN fails too.
            if not (x > prev and x - prev <= gap):
                return None
            prev = x
        acc_c = acc.T.tolist()
        gyro_c = None if gyro is None else gyro.T.tolist()
        # A sum is finite only if every term is (or overflowed: then the general path decides).
        isfinite = math.isfinite
        for col in acc_c if gyro_c is None else acc_c + gyro_c:
            if not isfinite(sum(col)):
                return None
        return times, acc_c, gyro_c

    def _count(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def _gap(self, t_next: float, out: TrackerOutput) -> None:
        """Samples resume at ``t_next`` after a gap (or for the first time): close what came before,
        report the gap as unknown, and restart the filters."""
        self._flush(out)
        if self._prebuf is not None:
            self._count("too_few_before_gap", int(self._prebuf[0].size))
            self._prebuf = None
        if self._seen_data:
            gap_start = self._last_tick_end
            ev: list[Event] = []
            self._detector.end(gap_start, ev)
            out.events.extend(ev)
            gap_end = math.floor(t_next / TICK_S) * TICK_S
            if gap_end > gap_start:
                self._wellbeing.step(gap_end, gap_end - gap_start, wb.ABSENT, False, False, False, out.events)
            cal = self.calibration
            self.frame = PostureFrame(gap_start, None, None, Posture.UNKNOWN, Activity.UNKNOWN, False,
                                      cal is not None, self._wellbeing.sitting_s, 0.0,
                                      None if cal is None else cal.axis_source)
            self._frames.emit_until(gap_end, out.frames)
        self._seen_data = True
        self._last_tick = None
        self._cal.gap()  # a requested calibration waits for the data to resume
        self._unjudged.clear()
        self._orient.reset()
        self._activity.reset()
        self._rate.reset()
        self._lp_reset_pending = True

    def _flush(self, out: TrackerOutput) -> None:
        if self._pending is None:
            return
        t, acc, lp, gyro = self._pending
        self._pending = None
        self._ticks(summarise_columns([math.floor(x / TICK_S) for x in t], acc, lp, gyro), out)

    def _segment(self, t: np.ndarray, acc: np.ndarray, gyro: np.ndarray | None, out: TrackerOutput) -> None:
        """Samples with no gap inside (and none since the previous call)."""
        if self._lp.rate_hz is None:
            # The very first samples wait until the rate can be measured, so the first filter
            # design does not depend on how the stream was cut into batches.
            if self._prebuf is not None:
                pt, pa, pg = self._prebuf
                t = np.concatenate((pt, t))
                acc = np.concatenate((pa, acc))
                gyro = None if gyro is None or pg is None else np.concatenate((pg, gyro))
            if t.size < RATE_MIN_SAMPLES:
                self._prebuf = (t, acc, gyro)
                return
            self._prebuf = None
            self._lp.retune(_guess_rate(t))
        if t.size <= SCALAR_MAX_SAMPLES:
            self._segment_small(t.tolist(), acc.T.tolist(), None if gyro is None else gyro.T.tolist(), out)
        else:
            self._segment_big(t, acc, gyro, out)

    def _segment_small(self, t: list[float], acc: Cols, gyro: Cols | None, out: TrackerOutput) -> None:
        """:meth:`_segment` for a radio packet or a tick's worth of samples, on plain lists (times;
        x, y, z columns): the same arithmetic as the array path without its per-call overhead."""
        pend = self._pending
        times = t if pend is None else [pend[0][-1], *t]
        rate = self._rate.update([b - a for a, b in itertools.pairwise(times)])
        if rate is not None:
            self._lp.retune(rate)
        if self._lp_reset_pending:
            self._lp.reset([c[0] for c in acc])
            self._lp_reset_pending = False
        lp = self._lp.columns(acc)
        self._frames.start(t[0])
        if pend is not None:
            pt, pa, pl, pg = pend
            t = pt + t
            acc = [a + b for a, b in zip(pa, acc, strict=True)]
            lp = [a + b for a, b in zip(pl, lp, strict=True)]
            gyro = None if gyro is None or pg is None else [a + b for a, b in zip(pg, gyro, strict=True)]
        k = [math.floor(x / TICK_S) for x in t]  # the same as np.floor(t / TICK_S)
        cut = bisect.bisect_left(k, k[-1])
        self._pending = (t[cut:], [c[cut:] for c in acc], [c[cut:] for c in lp],
                         None if gyro is None else [c[cut:] for c in gyro])
        if cut > 0:
            self._ticks(summarise_columns(k[:cut], [c[:cut] for c in acc], [c[:cut] for c in lp],
                                          None if gyro is None else [c[:cut] for c in gyro]), out)

    def _segment_big(self, t: np.ndarray, acc: np.ndarray, gyro: np.ndarray | None,
                     out: TrackerOutput) -> None:
        """:meth:`_segment` for many samples (replay's minute-long batches) on whole arrays."""
        pend = self._pending
        rate = self._rate.update(np.diff(t) if pend is None else np.diff(t, prepend=pend[0][-1]))
        if rate is not None:
            self._lp.retune(rate)
        if self._lp_reset_pending:
            self._lp.reset(acc[0])
            self._lp_reset_pending = False
        lp = self._lp(acc)
        self._frames.start(float(t[0]))
        if pend is not None:
            pt, pa, pl, pg = pend
            t = np.concatenate((pt, t))
            acc = np.concatenate((np.array(pa).T, acc))
            lp = np.concatenate((np.array(pl).T, lp))
            gyro = None if gyro is None or pg is None else np.concatenate((np.array(pg).T, gyro))
        k = np.floor(t / TICK_S).astype(np.int64)
        cut = int(np.searchsorted(k, k[-1], side="left"))
        self._pending = (t[cut:].tolist(), acc[cut:].T.tolist(), lp[cut:].T.tolist(),
                         None if gyro is None else gyro[cut:].T.tolist())
        if cut > 0:
            gyro_done = None if gyro is None else gyro[:cut]
            self._ticks(summarise_ticks(k[:cut], acc[:cut], lp[:cut], gyro_done), out)

    def _ticks(self, ticks: Ticks, out: TrackerOutput) -> None:
        """Run the per-tick decisions over consecutive ticks."""
        if len(ticks) == 0:
            return
        ticks = bridge_ticks(self._last_tick, ticks)
        self._last_tick = Ticks(ticks.k[-1:], ticks.count[-1:], ticks.acc_g[-1:], ticks.grav_g[-1:],
                                ticks.dyn_g[-1:], None if ticks.gyro_dps is None else ticks.gyro_dps[-1:])
        inp = self._inputs(ticks)
        cal = self.calibration
        flex_l, lat_l, tilt_l = self._angles(inp.g, cal)
        mount_tilt = inp.mount_tilt
        d_set = self.detection
        training = d_set.mode == "training" and d_set.alerts_enabled
        events = out.events
        learn = self.cal_settings.learn_axis and self.mount is None
        learned: list[int] = []
        for i, t in enumerate(inp.t):
            # --- worn or not
            if cal is not None:
                tilt_now, lying_limit = tilt_l[i], st.LYING_TILT_DEG
            elif mount_tilt is not None:
                tilt_now, lying_limit = mount_tilt[i], st.LYING_MOUNT_TILT_DEG
            else:
                tilt_now, lying_limit = 0.0, 180.0
            worn = self._wear_step(t, tilt_now, lying_limit, inp, i, events)
            # --- calibration
            if self._cal.step(t, inp.steady[i], worn, inp.mean_g[i],
                              None if mount_tilt is None else mount_tilt[i], events):
                cal = self.calibration
                flex_l, lat_l, tilt_l = self._angles(inp.g, cal)
            # --- activity, the slouch detector and wellbeing
            act = st.activity_of(worn, inp.walking[i], inp.moving[i])
            # Without a forward axis the tilt has no sign (leaning back would read as a slouch):
            # the angle is not judged, shown or counted until the axis is declared or learned.
            judged = cal is not None and cal.forward is not None
            flex = flex_l[i] if judged else 0.0
            slouching = self._slouch.step(t, flex, judged, act, training, events)
            if learn and cal is not None and cal.forward is None:
                self._unjudged.append((t, inp.g[i], act))
            if learn and act == st.STILL and cal is not None and cal.forward is None:
                learned.append(i)
                # Judged at every tick where it could succeed, so the axis is learned at the same
                # tick however the stream was cut (live packets or replay's minutes).
                if self._learner.n + len(learned) >= self._learner.min_ticks:
                    self._learn(inp.g, learned, cal, t, events)
                    learned = []
                    if self.calibration is not cal and self.calibration is not None:
                        cal = self.calibration
                        flex_l, lat_l, tilt_l = self._angles(inp.g, cal)
                        self._resume_slouch(cal)
            # --- frame
            if self._frames.due(t):
                self._frame(t, flex, None if lat_l is None else lat_l[i], judged, act, slouching, worn,
                            cal, out)
        self._last_tick_end = inp.t[-1]
        if learned and cal is not None:
            self._learn(inp.g, learned, cal, None, events)  # too few yet to propose

    def _resume_slouch(self, cal: Calibration) -> None:
        """The forward axis was just learned: a slouch that has been going on while the angle could
        not be judged (still, at or above threshold, back to a tick at or above threshold; short
        motion as pauses) resumes with the time it has lasted, as if it had been judged all along."""
        hist = list(self._unjudged)
        self._unjudged.clear()
        if not hist:
            return
        flex, _, _ = angle_rows([[float(x) for x in g] for _, g, _ in hist], cal)
        d = self.detection
        max_moving = round(self.activity_settings.motion_reset_s / TICK_S)
        run: list[tuple[float, float]] = []  # (t, flexion) of the still ticks of the run, newest first
        moving = 0
        for (t, _, act), f in zip(reversed(hist), reversed(flex), strict=True):
            if act == st.MOVING and moving + 1 < max_moving:
                moving += 1
                continue
            if act != st.STILL or f < d.threshold_deg - d.hysteresis_deg:
                break
            moving = 0
            run.append((t, f))
        while run and run[-1][1] < d.threshold_deg:  # a slouch starts at the threshold
            run.pop()
        if run:
            self._detector.resume(run[-1][0] - TICK_S, len(run) * TICK_S, max(f for _, f in run))

    def _wear_step(self, t: float, tilt_now: float, lying_limit: float, inp: _TickInputs, i: int,
                   events: list[Event]) -> bool:
        """The local day and the worn state at the tick ending at ``t``."""
        clock = self.clock
        if not (clock.day_start_s <= t < clock.day_end_s):
            clock.advance(t)
            self._roll_day(t, events)
        wear = self._wear
        if (wear.step(t, tilt_now, lying_limit, inp.moving[i], inp.lifeless[i], inp.alive[i])
                and self.calibration is not None):
            self._cal.recal_pending = self.cal_settings.auto  # put back on: it sits differently
        return wear.worn

    def _frame(self, t: float, flex: float, lat: float | None, judged: bool, act: int, slouching: bool,
               worn: bool, cal: Calibration | None, out: TrackerOutput) -> None:
        """The tick ending at ``t`` reached a frame time: the frame's state, and the frames due."""
        show = judged and act != st.NOT_WORN
        self._frames.frame = PostureFrame(
            t, flex if show else None, lat if show else None,
            st.posture_of(act, judged, slouching), st.ACTIVITY[act], worn, cal is not None,
            self._wellbeing.sitting_s, self._detector.clock_s,
            None if cal is None else cal.axis_source)
        self._frames.emit_until(t, out.frames)

    def _learn(self, g: np.ndarray | list[list[float]], rows: list[int], cal: Calibration, t: float | None,
               events: list[Event]) -> None:
        """Still ticks ``rows`` of gravity ``g`` (n, 3) for the forward-axis learner; at tick time
        ``t`` (None: not yet) a proposal, and a calibration once learned."""
        up = np.asarray(cal.up)
        self._learner.add([g[i] for i in rows] if isinstance(g, list) else g[rows], up)
        fwd = None if t is None else self._learner.propose(up)
        if fwd is not None and t is not None:
            self.calibration = cal.with_forward(fwd, "learned")
            events.append(Event(t, EventKind.CALIBRATED, {
                **st.cal_data(self.calibration), "reason": "forward axis learned from the bends observed"}))

    def _inputs(self, ticks: Ticks) -> _TickInputs:
        """Gravity, activity features and mount tilt per tick, as lists of floats. A few ticks
        (the live path) in float maths; many (replay) on whole arrays."""
        spt = (self._lp.rate_hz or 50.0) * TICK_S
        t_end = [(k + 1) * TICK_S for k in _as_list(ticks.k)]
        up_m = None if self.mount is None else self.mount.up_vector
        if len(ticks) <= SCALAR_MAX_TICKS:
            grav = _as_list(ticks.grav_g)
            gyro = None if ticks.gyro_dps is None else _as_list(ticks.gyro_dps)
            g, gyro_mag = self._orient.run_rows(grav, gyro)
            g_acc = _unit_rows(grav)
            amag = [math.sqrt(x * x + y * y + z * z) for x, y, z in _as_list(ticks.acc_g)]
            f = self._activity.update_rows(g_acc, _as_list(ticks.dyn_g), amag, gyro_mag, spt, g)
            mount_tilt = None if up_m is None else _tilt_from(g_acc, up_m.tolist())
            return _TickInputs(t_end, g, *f, mount_tilt)
        grav_arr = np.asarray(ticks.grav_g, dtype=float)
        dyn_arr = np.asarray(ticks.dyn_g, dtype=float)
        gyro_in = None if ticks.gyro_dps is None else np.asarray(ticks.gyro_dps, dtype=float)
        g_arr, gyro_arr = self._orient.run(grav_arr, dyn_arr, gyro_in, self.activity_settings.moving_g)
        g_acc_arr = unit(grav_arr)
        amag_arr = np.linalg.norm(np.asarray(ticks.acc_g, dtype=float), axis=1)
        feats = self._activity.update(g_acc_arr, dyn_arr, amag_arr, gyro_arr, spt, g_arr)
        mount_tilt = (None if up_m is None
                      else np.degrees(np.arccos(np.clip(g_acc_arr @ up_m, -1, 1))).tolist())
        return _TickInputs(t_end, g_arr, feats.moving.tolist(), feats.walking.tolist(),
                           feats.lifeless.tolist(), feats.alive.tolist(), feats.steady.tolist(),
                           feats.mean_g, mount_tilt)

    def _angles(self, g: np.ndarray | list[list[float]],
                cal: Calibration | None) -> tuple[list[float], list[float] | None, list[float]]:
        if cal is None:
            z = [0.0] * len(g)
            return z, None, z
        if isinstance(g, list):
            return angle_rows(g, cal)
        flex, lat, tilt = angles(g, cal)
        return flex.tolist(), None if lat is None else lat.tolist(), tilt.tolist()

    def _roll_day(self, t: float, events: list[Event]) -> None:
        tot = self._wellbeing.totals
        new_date = self.clock.day.isoformat() if self.clock.day else ""
        if tot.date and tot.date != new_date:
            events.append(Event(t, EventKind.DAY_SUMMARY, tot.to_stats()))
            self._wellbeing.totals = wb.DayTotals(date=new_date)
        else:
            tot.date = new_date

    # ----- coach (docs/coach.md, "Wiring") --------------------------------------------------
    @property
    def totals(self) -> wb.DayTotals:
        """Today's totals, live (replaced by a new object at midnight)."""
        return self._wellbeing.totals

    def take_break(self) -> None:
        """A break that counts happened outside the tracker's view (a completed stretch session):
        the sitting stretch restarts now."""
        self._wellbeing.take_break()

    def set_frame_interval(self, interval_s: float) -> None:
        """Frames every ``interval_s`` seconds of sample time from the next tick on (0.1 while a
        stretch session runs, 1 otherwise)."""
        interval_s = max(float(interval_s), TICK_S)
        fs = self._frames
        if interval_s != fs.interval_s:
            fs.interval_s = interval_s
            if fs.next_t is not None and math.isfinite(self._last_tick_end):
                fs.next_t = math.floor(self._last_tick_end / interval_s + 1e-9) * interval_s + interval_s


Cols = list[list[float]]
"""Samples as columns: x, y and z, each a list of floats."""


def _as_list(x: Any) -> Any:
    """A :class:`Ticks` field as lists (they are arrays on the whole-array path)."""
    return x.tolist() if isinstance(x, np.ndarray) else x


@dataclass(slots=True)
class _TickInputs:
    """What the per-tick loop reads, per tick (lists: the loop works on floats)."""

    t: list[float]  # the tick's end, seconds
    g: np.ndarray | list[list[float]]  # the orientation filter's gravity (n, 3)
    moving: list[bool]
    walking: list[bool]
    lifeless: list[bool]
    alive: list[bool]
    steady: list[bool]
    mean_g: Any  # (n, 3) rows: the accelerometer's mean direction over the calibration window
    mount_tilt: list[float] | None  # degrees from the mount's up axis; None without a mount


def _unjudged_len(d: DetectionSettings) -> int:
    """Ticks to keep while the forward axis is unknown: a dwell and some, at most 10 minutes."""
    return round(min(d.dwell_s + 10.0, 600.0) / TICK_S)


def _unit_rows(v: list[list[float]]) -> list[list[float]]:
    """:func:`unit` for a few (x, y, z) rows in float maths (the same operations, same result)."""
    out = []
    for x, y, z in v:
        n = math.sqrt(x * x + y * y + z * z)
        out.append([x / n, y / n, z / n] if n > 0 else [0.0, 0.0, 0.0])
    return out


def _tilt_from(rows: list[list[float]], up: list[float]) -> list[float]:
    """Degrees between unit rows and ``up`` (float maths)."""
    ux, uy, uz = up
    out = []
    for x, y, z in rows:
        c = x * ux + y * uy + z * uz
        out.append(math.degrees(math.acos(-1.0 if c < -1.0 else (1.0 if c > 1.0 else c))))
    return out


def _guess_rate(t: np.ndarray) -> float:
    """A first rate guess from a handful of samples (Hz); 50 Hz if there is too little to tell."""
    if t.size >= 2:
        dt = float(np.median(np.diff(t)))
        if dt > 0:
            return 1.0 / dt
    return 50.0
