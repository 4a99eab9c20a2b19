"""Property tests: filters and the tracker do not care how the stream is cut into batches, and the
slouch state machine keeps its promises for any sequence of ticks."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slouchd.model import EventKind, SampleBatch
from slouchd.posture import detector as det
from slouchd.posture.filters import LowPass, increasing_mask
from slouchd.posture.settings import DetectionSettings
from tests.posture.helpers import tracker
from tests.posture.synth import Step, wear

cuts = st.lists(st.integers(min_value=1, max_value=4999), max_size=12).map(lambda xs: sorted(set(xs)))


@given(cuts=cuts, rate=st.sampled_from([25.0, 50.0, 100.0]))
@settings(max_examples=60, deadline=None)
def test_low_pass_state_carries_across_any_batch_split(cuts: list[int], rate: float) -> None:
    x = np.random.default_rng(1).normal(0, 1, (5000, 3)) + np.array([0, 1, 0])
    whole = LowPass()
    whole.retune(rate)
    expected = whole(x)
    pieces = LowPass()
    pieces.retune(rate)
    got = np.concatenate([pieces(p) for p in np.split(x, cuts)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@given(
    t=st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=40),
    last=st.floats(min_value=-1, max_value=50),
)
def test_increasing_mask_keeps_a_strictly_increasing_subsequence(t: list[float], last: float) -> None:
    arr = np.array(t, dtype=float)
    kept = arr[increasing_mask(arr, last)]
    assert np.all(np.diff(kept) > 0)
    assert np.all(kept > last)
    # Nothing later than everything before it is ever dropped.
    running = last
    for v in arr:
        if v > running:
            assert v in kept
            running = v


_DAY = wear(
    [
        Step(20),
        Step(45, 25),
        Step(3, 50, what="fidget"),
        Step(20, 0),
        Step(10, 90, what="desk"),
        Step(10, 0),
        Step(15, 5, what="walk"),
    ],
    rate_hz=50.0,
    seed=4,
)


@given(
    cuts=st.lists(st.integers(min_value=1, max_value=len(_DAY) - 1), max_size=25).map(
        lambda xs: sorted(set(xs))
    )
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_tracker_output_does_not_depend_on_how_the_stream_is_cut(cuts: list[int]) -> None:
    def run(parts: list[tuple[int, int]]) -> tuple[list, list]:
        r = tracker(dwell_s=30)
        for a, b in parts:
            out = r.tracker.process(SampleBatch(_DAY.t_s[a:b], _DAY.acc_g[a:b], _DAY.gyro_dps[a:b]))  # type: ignore[index]
            r.frames += out.frames
            r.events += out.events
        return r.frames, r.events

    bounds = [0, *cuts, len(_DAY)]
    frames, events = run(list(itertools.pairwise(bounds)))
    ref_frames, ref_events = _REFERENCE
    assert [(f.t_s, f.posture, f.activity) for f in frames] == [
        (f.t_s, f.posture, f.activity) for f in ref_frames
    ]
    for f, g in zip(frames, ref_frames, strict=True):
        assert (f.flexion_deg is None) == (g.flexion_deg is None)
        if f.flexion_deg is not None:
            assert math.isclose(f.flexion_deg, g.flexion_deg, abs_tol=1e-9)  # type: ignore[arg-type]
    assert [(e.t_s, e.kind) for e in events] == [(e.t_s, e.kind) for e in ref_events]


def _reference() -> tuple[list, list]:
    r = tracker(dwell_s=30)
    out = r.tracker.process(_DAY)
    return out.frames, out.events


_REFERENCE = _reference()


def test_the_reference_day_exercises_alerts_and_not_worn() -> None:
    frames, events = _REFERENCE
    assert any(e.kind is EventKind.SLOUCH_ALERT for e in events)
    assert {"not_worn", "moving", "slouching", "upright"} <= {f.posture.value for f in frames}


ticks = st.lists(
    st.tuples(
        st.floats(min_value=-40, max_value=60),
        st.sampled_from([det.STILL, det.MOVING, det.OFF]),
        st.booleans(),
    ),
    min_size=1,
    max_size=400,
)
detections = st.builds(
    DetectionSettings,
    threshold_deg=st.floats(5, 30),
    hysteresis_deg=st.floats(0, 4),
    dwell_s=st.floats(1, 20),
    repeat_s=st.floats(10, 30),
    max_level=st.integers(1, 5),
    cumulative=st.booleans(),
)


@given(seq=ticks, s=detections)
@settings(max_examples=200, deadline=None)
def test_detector_keeps_its_promises(seq: list[tuple[float, int, bool]], s: DetectionSettings) -> None:
    d = det.SlouchDetector(s, motion_reset_s=5.0, credit_max_s=2.0)
    dt = 0.5
    events: list = []
    still_above = 0.0  # time spent still at or above the hysteresis limit since the last OFF
    for i, (flex, state, may) in enumerate(seq):
        before = len(events)
        d.step((i + 1) * dt, dt, flex, state, may, events)
        new = events[before:]
        if state == det.STILL and flex >= s.threshold_deg - s.hysteresis_deg:
            still_above += dt
        if state == det.OFF:
            assert not d.active  # no data, no slouch
            still_above = 0.0
        for e in new:
            if e.kind is EventKind.SLOUCH_ALERT:
                assert may, "an alert only when alerts may be delivered"
                assert state == det.STILL, "never an alert while moving or without data"
                assert flex >= s.threshold_deg - s.hysteresis_deg, "an alert only while slouched"
                assert 1 <= e.data["level"] <= s.max_level
                assert e.data["slouch_s"] >= s.dwell_s - 1e-6, "never before the dwell"
                assert still_above + 2.0 + 1e-6 >= s.dwell_s  # at most the motion credit on top
    if all(flex < s.threshold_deg for flex, _, _ in seq):
        assert not any(e.kind is EventKind.SLOUCH_ALERT for e in events)


@given(duration=st.floats(min_value=0, max_value=600), s=detections)
@settings(max_examples=100, deadline=None)
def test_one_steady_slouch_alerts_at_dwell_then_every_repeat(duration: float, s: DetectionSettings) -> None:
    d = det.SlouchDetector(s, motion_reset_s=5.0)
    events: list = []
    dt = 0.1
    n = round(duration / dt)
    for i in range(n):
        d.step((i + 1) * dt, dt, s.threshold_deg + 5, det.STILL, True, events)
    alerts = [e for e in events if e.kind is EventKind.SLOUCH_ALERT]
    expected = 0 if n * dt < s.dwell_s - 1e-6 else 1 + math.floor((n * dt - s.dwell_s + 1e-6) / s.repeat_s)
    assert abs(len(alerts) - expected) <= 1  # tick rounding at the very edge
    assert [e.data["level"] for e in alerts] == [min(k + 1, s.max_level) for k in range(len(alerts))]
