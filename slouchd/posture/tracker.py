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
"""

from __future__ import annotations

import itertools
import math
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
    summarise_ticks,
)
from slouchd.posture.orientation import (
    AxisLearner,
    Calibration,
    OrientationFilter,
    angles,
    forward_from_mount,
    forward_from_two_poses,
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
TWO_POSE_MIN_DEG = 10.0
"""A deliberate forward bend for the two-pose calibration must tilt at least this much, degrees."""


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
        self.calibration: Calibration | None = None
        if calibration is not None:
            self._set_calibration(calibration)
        self._frames = st.FrameStage(self.frame_interval_s, PostureFrame(
            0.0, None, None, Posture.UNKNOWN, Activity.UNKNOWN, False, self.calibration is not None))
        self.dropped: dict[str, int] = {}

        self._lp = LowPass()
        self._rate = RateEstimator()
        self._orient = OrientationFilter(TICK_S)
        self._activity = ActivityClassifier(self.activity_settings, TICK_S)
        self._learner = AxisLearner()
        self._detector = det.SlouchDetector(detection, self.activity_settings.motion_reset_s,
                                            self.activity_settings.motion_hold_s + 0.5)
        self._wellbeing = wb.Wellbeing(wellbeing)
        self._slouch = st.SlouchStage(self._detector, self._wellbeing, self.clock)
        self._last_t = -math.inf
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self._last_tick_end = -math.inf
        self._cal_request: float | None = None
        self._cal_forward = False
        self._steady_ticks = 0
        self._wear = st.WearStage()
        self._recal_pending = False
        self._seen_data = False
        self._lp_reset_pending = True
        self._prebuf: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self._last_tick: Ticks | None = None  # the last tick decided in this segment (held over drops)

    # ----------------------------------------------------------------------------- public API

    @property
    def frame(self) -> PostureFrame:
        """The latest posture state (what the next frame will carry)."""
        return self._frames.frame

    @frame.setter
    def frame(self, frame: PostureFrame) -> None:
        self._frames.frame = frame

    def process(self, batch: SampleBatch) -> TrackerOutput:
        """Consume one batch of samples; return the frames and events it completes."""
        out = TrackerOutput()
        if len(batch) == 0:
            return out
        t = np.asarray(batch.t_s, dtype=float)
        acc = np.asarray(batch.acc_g, dtype=float)
        gyro = None if batch.gyro_dps is None else np.asarray(batch.gyro_dps, dtype=float)
        if self._clean_continuation(t, acc, gyro):
            # The live case (a radio packet following on from the last): nothing to drop or split.
            if self._pending is not None and (self._pending[3] is None) != (gyro is None):
                self._flush(out)
            self._segment(t, acc, gyro, out)
            self._last_t = float(t[-1])
            return out
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
            return out
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
        return out

    def flush(self) -> TrackerOutput:
        """Close the last, partial tick (end of a recording)."""
        out = TrackerOutput()
        self._flush(out)
        if self._cal_request is not None:
            # A calibration asked for and never judged must still get its answer.
            t_end = self._last_tick_end if math.isfinite(self._last_tick_end) else 0.0
            out.events.append(Event(t_end, EventKind.CALIBRATION_FAILED, {
                "reason": "the recording ended before a still window of "
                          f"{max(self.cal_settings.still_s, 2.0):g} s"}))
            self._cal_request = None
        return out

    def request_calibration(self, forward: bool = False) -> None:
        """The next still window (>= ``[calibration] still_s``) becomes upright.

        With ``forward=True`` it is the second pose of a two-pose calibration instead: a
        deliberate forward bend (>= 10 deg) whose direction defines the forward axis. Either way
        the outcome is a ``calibrated`` or ``calibration_failed`` event (with ``reason``).
        """
        self._cal_request = self._last_t if math.isfinite(self._last_t) else -math.inf
        self._cal_forward = forward
        self._steady_ticks = 0

    def set_detection(self, detection: DetectionSettings) -> None:
        """New ``[detection]`` settings, applied from the next tick."""
        self.detection = detection
        self._detector.set_settings(detection)
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
            self._set_calibration(Calibration.from_dict(cal))
        if d.get("totals"):
            self._wellbeing.totals = wb.DayTotals.from_dict(d["totals"])
            self.clock.hold_day(self._wellbeing.totals.date)
        self._wellbeing.restore(d, self.clock.epoch_offset_s)

    # ------------------------------------------------------------------------------ internals

    def _clean_continuation(self, t: np.ndarray, acc: np.ndarray, gyro: np.ndarray | None) -> bool:
        """Whether the batch is all finite, strictly increasing from the last sample and without a
        gap: then the general path would keep every sample and make one segment of them."""
        if t.size > SCALAR_MAX_SAMPLES:
            return False
        prev = self._last_t
        gap = self.activity_settings.gap_s
        for x in t.tolist():
            # Written so that NaN fails too.
            if not (x > prev and x - prev <= gap):
                return False
            prev = x
        return bool(np.isfinite(acc).all() and (gyro is None or np.isfinite(gyro).all()))

    def _count(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def _set_calibration(self, cal: Calibration) -> None:
        if self.mount is not None:
            cal = cal.with_forward(forward_from_mount(self.mount), "mount")
        self.calibration = cal

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
        if self._cal_request is not None:
            self._cal_request = -math.inf  # a requested calibration waits for the data to resume
        self._orient.reset()
        self._activity.reset()
        self._rate.reset()
        self._steady_ticks = 0
        self._lp_reset_pending = True

    def _flush(self, out: TrackerOutput) -> None:
        if self._pending is None:
            return
        t, acc, lp, gyro = self._pending
        self._pending = None
        k = np.floor(t / TICK_S).astype(np.int64)
        self._ticks(summarise_ticks(k, acc, lp, gyro), out)

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
            times = t.tolist()
            if self._pending is not None:
                times.insert(0, float(self._pending[0][-1]))
            rate = self._rate.update([b - a for a, b in itertools.pairwise(times)])
        elif self._pending is None:
            rate = self._rate.update(np.diff(t))
        else:
            rate = self._rate.update(np.diff(t, prepend=self._pending[0][-1]))
        if rate is not None:
            self._lp.retune(rate)
        if self._lp_reset_pending:
            self._lp.reset(acc[0])
            self._lp_reset_pending = False
        lp = self._lp(acc)
        self._frames.start(float(t[0]))
        if self._pending is not None:
            pt, pa, pl, pg = self._pending
            t = np.concatenate((pt, t))
            acc = np.concatenate((pa, acc))
            lp = np.concatenate((pl, lp))
            gyro = None if gyro is None or pg is None else np.concatenate((pg, gyro))
        k = np.floor(t / TICK_S).astype(np.int64)
        last = k[-1]
        cut = int(np.searchsorted(k, last, side="left"))
        self._pending = (t[cut:], acc[cut:], lp[cut:], None if gyro is None else gyro[cut:])
        if cut > 0:
            gyro_done = None if gyro is None else gyro[:cut]
            self._ticks(summarise_ticks(k[:cut], acc[:cut], lp[:cut], gyro_done), out)

    def _ticks(self, ticks: Ticks, out: TrackerOutput) -> None:
        """Run the per-tick decisions over consecutive ticks."""
        if len(ticks) == 0:
            return
        ticks = bridge_ticks(self._last_tick, ticks)
        n = len(ticks)
        self._last_tick = Ticks(ticks.k[-1:], ticks.count[-1:], ticks.acc_g[-1:], ticks.grav_g[-1:],
                                ticks.dyn_g[-1:], None if ticks.gyro_dps is None else ticks.gyro_dps[-1:])
        act_s = self.activity_settings
        t_end = ticks.t_end_s
        g, gyro_mag = self._orient.run(ticks.grav_g, ticks.dyn_g, ticks.gyro_dps, act_s.moving_g)
        if n <= SCALAR_MAX_TICKS:
            g_acc = _unit_rows(ticks.grav_g)
            amag = np.array([math.sqrt(x * x + y * y + z * z) for x, y, z in ticks.acc_g.tolist()])
        else:
            g_acc = unit(ticks.grav_g)
            amag = np.linalg.norm(ticks.acc_g, axis=1)
        spt = (self._lp.rate_hz or 50.0) * TICK_S
        feats = self._activity.update(g_acc, ticks.dyn_g, amag, gyro_mag, spt, g)
        moving = feats.moving.tolist()
        walking = feats.walking.tolist()
        lifeless = feats.lifeless.tolist()
        alive = feats.alive.tolist()
        steady = feats.steady.tolist()

        cal = self.calibration
        flex_l, lat_l, tilt_l = self._angles(g, cal)
        if self.mount is not None:
            up_m = self.mount.up_vector
            mount_tilt = np.degrees(np.arccos(np.clip(g_acc @ up_m, -1, 1))).tolist()
        else:
            mount_tilt = None

        clock = self.clock
        d_set = self.detection
        training = d_set.mode == "training" and d_set.alerts_enabled
        events = out.events
        t_list = t_end.tolist()
        frames = self._frames
        wear = self._wear
        slouch = self._slouch
        learn = (self.cal_settings.learn_axis and self.mount is None)
        learn_mask = np.zeros(n, dtype=bool) if learn else None
        for i in range(n):
            t = t_list[i]
            if not (clock.day_start_s <= t < clock.day_end_s):
                clock.advance(t)
                self._roll_day(t, events)
            # --- worn or not
            if cal is not None:
                tilt_now, lying_limit = tilt_l[i], st.LYING_TILT_DEG
            elif mount_tilt is not None:
                tilt_now, lying_limit = mount_tilt[i], st.LYING_MOUNT_TILT_DEG
            else:
                tilt_now, lying_limit = 0.0, 180.0
            if wear.step(t, tilt_now, lying_limit, moving[i], lifeless[i], alive[i]) and cal is not None:
                self._recal_pending = self.cal_settings.auto  # put back on: it sits differently
            worn = wear.worn
            # --- calibration
            if self._calibration_step(t, steady[i], worn, feats.mean_g[i], mount_tilt, i, events):
                cal = self.calibration
                flex_l, lat_l, tilt_l = self._angles(g, cal)
            # --- activity, the slouch detector and wellbeing
            act = st.activity_of(worn, walking[i], moving[i])
            # Without a forward axis the tilt has no sign (leaning back would read as a slouch):
            # the angle is not judged, shown or counted until the axis is declared or learned.
            judged = cal is not None and cal.forward is not None
            flex = flex_l[i] if judged else 0.0
            slouching = slouch.step(t, flex, judged, act, training, events)
            if learn_mask is not None and act == st.STILL and cal is not None:
                learn_mask[i] = True
            # --- frame
            if frames.due(t):
                show = judged and act != st.NOT_WORN
                frames.frame = PostureFrame(
                    t, flex if show else None, lat_l[i] if (show and lat_l is not None) else None,
                    st.posture_of(act, judged, slouching), st.ACTIVITY[act], worn, cal is not None,
                    self._wellbeing.sitting_s, self._detector.clock_s,
                    None if cal is None else cal.axis_source)
                frames.emit_until(t, out.frames)
        self._last_tick_end = float(t_end[-1])
        if learn_mask is not None and cal is not None and cal.forward is None and learn_mask.any():
            up = np.asarray(cal.up)
            self._learner.add(g[learn_mask], up)
            fwd = self._learner.propose(up)
            if fwd is not None:
                self.calibration = cal.with_forward(fwd, "learned")
                events.append(Event(float(t_end[-1]), EventKind.CALIBRATED, {
                    **_cal_data(self.calibration), "reason": "forward axis learned from the bends observed"}))

    def _calibration_step(self, t: float, steady: bool, worn: bool, mean_g: np.ndarray,
                          mount_tilt: list[float] | None, i: int, events: list[Event]) -> bool:
        """Count still ticks and take a requested or automatic upright reference when its window
        is complete. Returns whether the calibration changed at this tick."""
        # A requested calibration judges the window itself (and says why it refuses it).
        if steady and (worn or self._cal_request is not None):
            self._steady_ticks += 1
        else:
            self._steady_ticks = 0
        auto_due = (self.calibration is None or self._recal_pending) and self.cal_settings.auto
        if self._cal_request is not None or auto_due:
            return self._try_calibrate(t, mean_g, worn, mount_tilt, i, events) is not None
        return False

    def _angles(self, g: np.ndarray,
                cal: Calibration | None) -> tuple[list[float], list[float] | None, list[float]]:
        if cal is None:
            z = [0.0] * g.shape[0]
            return z, None, z
        flex, lat, tilt = angles(g, cal)
        return flex.tolist(), None if lat is None else lat.tolist(), tilt.tolist()

    def _try_calibrate(self, t: float, mean_g: np.ndarray, worn: bool, mount_tilt: list[float] | None,
                       i: int, events: list[Event]) -> Calibration | None:
        cs = self.cal_settings
        requested = self._cal_request is not None
        if requested:
            if self._cal_request == -math.inf:
                # Requested before any sample, or the data stopped meanwhile: the wait starts
                # with the first tick of data (whose start is t - TICK_S).
                self._cal_request = t - TICK_S
            since = t - (self._cal_request if self._cal_request is not None else t)
            needed = max(cs.still_s, 2.0)
            if self._steady_ticks * TICK_S + 2.0 - TICK_S >= needed - 1e-9 and since >= needed - 1e-9:
                return self._calibrate_now(t, mean_g, mount_tilt, i, events)
            if since > cs.timeout_s:
                reason = ("sensor not worn (no body motion)" if not worn
                          else f"kept moving: no still window of {needed:g} s within {cs.timeout_s:g} s")
                events.append(Event(t, EventKind.CALIBRATION_FAILED, {"reason": reason}))
                self._cal_request = None
            return None
        # Automatic: the first calibration, or again after the sensor was taken off and put back.
        if not worn or self._steady_ticks * TICK_S + 2.0 - TICK_S < cs.auto_still_s - 1e-9:
            return None
        up = unit(np.asarray(mean_g, float))
        prev = self.calibration
        if mount_tilt is not None:
            if mount_tilt[i] > cs.auto_max_tilt_deg:
                return None
        elif prev is not None and float(up @ np.asarray(prev.up)) < math.cos(
                math.radians(cs.auto_max_tilt_deg)):
            return None
        cal = Calibration(tuple(float(x) for x in up), None, t, "auto", "none")  # type: ignore[arg-type]
        if prev is not None and prev.forward is not None and self.mount is None:
            cal = cal.with_forward(np.asarray(prev.forward), prev.axis_source)
        self._set_calibration(cal)
        self._recal_pending = False
        self._detector.end(t, events)
        if prev is None:
            why = f"automatic: first still window of {cs.auto_still_s:g} s"
        else:
            why = f"automatic: sensor put back on, first still window of {cs.auto_still_s:g} s"
        events.append(Event(t, EventKind.CALIBRATED, {
            **_cal_data(self.calibration),
            "reason": why + ("" if mount_tilt is None else " upright for the mount")}))
        return self.calibration

    def _calibrate_now(self, t: float, mean_g: np.ndarray, mount_tilt: list[float] | None, i: int,
                       events: list[Event]) -> Calibration | None:
        self._cal_request = None
        g = unit(np.asarray(mean_g, float))
        if self._cal_forward:
            self._cal_forward = False
            cur = self.calibration
            if cur is None:
                events.append(Event(t, EventKind.CALIBRATION_FAILED,
                                    {"reason": "forward pose needs an upright calibration first"}))
                return None
            bend = math.degrees(math.acos(max(-1.0, min(1.0, float(g @ np.asarray(cur.up))))))
            fwd = forward_from_two_poses(np.asarray(cur.up), g) if bend >= TWO_POSE_MIN_DEG else None
            if fwd is None:
                events.append(Event(t, EventKind.CALIBRATION_FAILED, {
                    "reason": f"forward pose only {bend:.0f} deg from upright (need {TWO_POSE_MIN_DEG:g})"}))
                return None
            self.calibration = cur.with_forward(fwd, "two_pose")
            events.append(Event(t, EventKind.CALIBRATED, {**_cal_data(self.calibration),
                                                          "reason": "two-pose: forward axis from a bend"}))
            return self.calibration
        if mount_tilt is not None and mount_tilt[i] > 90.0:
            events.append(Event(t, EventKind.CALIBRATION_FAILED, {
                "reason": f"sensor tilted {mount_tilt[i]:.0f} deg from the mount's up axis {self.mount.up}: "  # type: ignore[union-attr]
                          "check --mount / the wearer's mount"}))
            return None
        prev = self.calibration
        cal = Calibration(tuple(float(x) for x in g), None, t, "requested", "none")  # type: ignore[arg-type]
        if prev is not None and prev.forward is not None and self.mount is None:
            # Same sensor, same mount: keep the learned axis, re-squared to the new upright.
            cal = cal.with_forward(np.asarray(prev.forward), prev.axis_source)
        self._set_calibration(cal)
        self._detector.end(t, events)
        events.append(Event(t, EventKind.CALIBRATED, {**_cal_data(self.calibration),  # type: ignore[union-attr]
                                                      "reason": "requested"}))
        return self.calibration

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


def _cal_data(cal: Calibration | None) -> dict[str, Any]:
    """The calibration fields carried by ``calibrated`` events (the event's own ``t`` is its time)."""
    if cal is None:
        return {}
    d = cal.to_dict()
    return {"up": d["up"], "forward": d["forward"], "source": d["source"], "axis_source": d["axis_source"]}


def _unit_rows(v: np.ndarray) -> np.ndarray:
    """:func:`unit` for a few (x, y, z) rows in float maths (the same operations, same result)."""
    out = []
    for x, y, z in v.tolist():
        n = math.sqrt(x * x + y * y + z * z)
        out.append((x / n, y / n, z / n) if n > 0 else (0.0, 0.0, 0.0))
    return np.array(out, dtype=float).reshape(-1, 3)


def _guess_rate(t: np.ndarray) -> float:
    """A first rate guess from a handful of samples (Hz); 50 Hz if there is too little to tell."""
    if t.size >= 2:
        dt = float(np.median(np.diff(t)))
        if dt > 0:
            return 1.0 / dt
    return 50.0
