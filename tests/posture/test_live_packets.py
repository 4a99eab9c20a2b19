"""The live daemon feeds the tracker one radio packet (a few samples) at a time; replay feeds it a
minute at a time. Small calls take float-maths shortcuts (see ``SCALAR_MAX_*`` in
``slouchd/posture``), so these tests pin down that packet-sized input gives what one big batch
gives: the same frames, postures and events, and angles equal to far below display precision."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from slouchd.model import SampleBatch
from slouchd.posture import filters
from slouchd.posture.filters import TICK_S, LowPass, summarise_ticks
from tests.posture.helpers import Run, tracker
from tests.posture.synth import Step, wear


def _day(gyro: bool) -> SampleBatch:
    """Sitting, a slouch long enough to alert, a reach, walking, the sensor on a desk; with a short
    radio drop (0.3 s, below the gap limit: held ticks) and a 3 s gap (reported as unknown)."""
    day = wear([Step(20), Step(45, 25), Step(3, 50, what="fidget"), Step(15, 0), Step(12, 5, what="walk"),
                Step(70, 90, what="desk"), Step(10, 0)], rate_hz=50.0, gyro=gyro, seed=11)
    t = day.t_s
    keep = ~(((t >= 30.0) & (t < 30.3)) | ((t >= 100.0) & (t < 103.0)))
    return SampleBatch(t[keep], day.acc_g[keep], None if day.gyro_dps is None else day.gyro_dps[keep])


def _packets(day: SampleBatch, sizes: list[int], repeat_every: int = 0) -> list[SampleBatch]:
    """Cut into consecutive packets of the given sizes (cycled); every ``repeat_every``-th packet is
    delivered twice, as after a BLE reconnect."""
    out: list[SampleBatch] = []
    a = 0
    i = 0
    while a < len(day):
        b = min(len(day), a + sizes[i % len(sizes)])
        p = SampleBatch(day.t_s[a:b], day.acc_g[a:b], None if day.gyro_dps is None else day.gyro_dps[a:b])
        out.append(p)
        if repeat_every and i % repeat_every == repeat_every - 1:
            out.append(p)
        a, i = b, i + 1
    return out


def _run(batches: list[SampleBatch]) -> Run:
    r = tracker(dwell_s=30)
    for b in batches:
        out = r.tracker.process(b)
        r.frames += out.frames
        r.events += out.events
    out = r.tracker.flush()
    r.frames += out.frames
    r.events += out.events
    return r


def _assert_same(got: Run, ref: Run) -> None:
    assert [(f.t_s, f.posture, f.activity, f.worn, f.calibrated) for f in got.frames] == [
        (f.t_s, f.posture, f.activity, f.worn, f.calibrated) for f in ref.frames]
    for f, g in zip(got.frames, ref.frames, strict=True):
        for a, b in ((f.flexion_deg, g.flexion_deg), (f.lateral_deg, g.lateral_deg)):
            assert (a is None) == (b is None)
            if a is not None:
                assert math.isclose(a, b, abs_tol=1e-9)  # type: ignore[arg-type]
        assert math.isclose(f.sitting_s, g.sitting_s, abs_tol=1e-6)
        assert math.isclose(f.slouch_s, g.slouch_s, abs_tol=1e-6)
    assert [(e.t_s, e.kind, e.data.get("level")) for e in got.events] == [
        (e.t_s, e.kind, e.data.get("level")) for e in ref.events]


@pytest.mark.parametrize("gyro", [True, False], ids=["gyro", "accelerometer-only"])
def test_five_sample_packets_give_what_one_big_batch_gives(gyro: bool) -> None:
    day = _day(gyro)
    ref = _run([day])
    assert {"upright", "slouching", "walking", "not_worn", "unknown"} <= ref.postures()
    assert ref.alerts, "the reference day must alert, or the comparison proves little"
    live = _run(_packets(day, [5], repeat_every=97))
    _assert_same(live, ref)
    assert live.tracker.dropped.get("not_increasing", 0) > 0  # the repeats were seen and dropped


def test_packets_of_mixed_sizes_around_the_shortcut_limits_give_the_same_output() -> None:
    """Sizes straddle the per-call limits of the float-maths paths (ticks and samples per call)."""
    day = _day(True)
    sizes = [1, 2, 3, 7, 16, 24, filters.SCALAR_MAX_SAMPLES, filters.SCALAR_MAX_SAMPLES + 1, 50, 4, 240]
    _assert_same(_run(_packets(day, sizes)), _run([day]))


@given(sizes=st.lists(st.integers(1, filters.SCALAR_MAX_SAMPLES), min_size=1, max_size=40),
       rate=st.sampled_from([25.0, 50.0, 100.0]))
@settings(max_examples=40, deadline=None)
def test_low_pass_on_small_pieces_equals_scipy_to_the_bit(sizes: list[int], rate: float) -> None:
    x = np.random.default_rng(2).normal(0, 0.3, (sum(sizes), 3)) + np.array([0.1, 0.98, 0.05])
    sos = filters.butter_lowpass_sos(2, 2.0, rate)  # the design LowPass uses (scipy's, written out)
    zi = filters.steady_state_zi(sos)[:, :, None] * x[0][None, None, :]
    expected, _ = signal.sosfilt(sos, x, axis=0, zi=zi)
    lp = LowPass()
    lp.retune(rate)
    lp.reset(x[0])
    got = np.concatenate([lp(p) for p in np.split(x, np.cumsum(sizes)[:-1])])
    assert np.array_equal(got, expected)


@given(steps=st.lists(st.floats(0.004, 0.25), min_size=1, max_size=filters.SCALAR_MAX_SAMPLES),
       gyro=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=100, deadline=None)
def test_tick_summaries_of_a_few_samples_equal_the_array_version_to_the_bit(
        steps: list[float], gyro: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = 1000.0 + np.cumsum(steps)  # steps over a tick leave empty (held) ticks in between
    k = np.floor(t / TICK_S).astype(np.int64)
    acc = rng.normal(0, 1, (t.size, 3))
    lp = acc + rng.normal(0, 0.05, (t.size, 3))
    g = rng.normal(0, 20, (t.size, 3)) if gyro else None
    small = summarise_ticks(k, acc, lp, g)
    big = _array_summary(k, acc, lp, g)
    for name in ("k", "count", "acc_g", "grav_g", "dyn_g", "gyro_dps"):
        a, b = getattr(small, name), getattr(big, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype and np.array_equal(a, b), name


def _array_summary(k: np.ndarray, acc: np.ndarray, lp: np.ndarray, g: np.ndarray | None) -> filters.Ticks:
    """The whole-array summary, forced by padding the call past the float-maths limit with samples
    of a much later tick that are then cut off again."""
    pad = filters.SCALAR_MAX_SAMPLES + 1
    kk = np.concatenate((k, np.full(pad, k[-1] + 10_000)))
    aa = np.concatenate((acc, np.zeros((pad, 3))))
    ll = np.concatenate((lp, np.zeros((pad, 3))))
    gg = None if g is None else np.concatenate((g, np.zeros((pad, 3))))
    # The padding's tick is far away: drop it and the held ticks that bridge to it.
    full = summarise_ticks(kk, aa, ll, gg)
    m = int(k[-1] - k[0] + 1)
    return filters.Ticks(full.k[:m], full.count[:m], full.acc_g[:m], full.grav_g[:m], full.dyn_g[:m],
                         None if full.gyro_dps is None else full.gyro_dps[:m])


@pytest.mark.parametrize("rate", [25.0, 50.0, 100.0])
def test_low_pass_on_big_arrays_equals_scipy_to_the_bit(rate: float) -> None:
    """Replay's minute-long batches take the same float-maths filter as live packets (no
    ``scipy.signal`` import): still scipy's output to the bit, and the same split any way."""
    x = np.random.default_rng(5).normal(0, 0.3, (3000, 3)) + np.array([0.1, 0.98, 0.05])
    sos = filters.butter_lowpass_sos(2, 2.0, rate)
    zi = filters.steady_state_zi(sos)[:, :, None] * x[0][None, None, :]
    expected, _ = signal.sosfilt(sos, x, axis=0, zi=zi)
    lp = LowPass()
    lp.retune(rate)
    lp.reset(x[0])
    got = np.concatenate([lp(x[:1234]), lp(x[1234:1239]), lp(x[1239:])])
    assert np.array_equal(got, expected)
    assert got.flags.c_contiguous


def test_replay_never_imports_scipy_signal() -> None:
    """``scipy.signal`` costs ~0.9 s of start-up: a tracker run on big batches must not load it."""
    import subprocess
    import sys

    code = """
import sys
import numpy as np
from slouchd.model import SampleBatch
from tests.posture.helpers import tracker
t = np.arange(0, 120, 0.02)
acc = np.tile([0.0, 0.0, 1.0], (t.size, 1)) + np.random.default_rng(1).normal(0, 0.01, (t.size, 3))
r = tracker(dwell_s=30)
r.tracker.process(SampleBatch(t, acc, np.zeros((t.size, 3))))
r.tracker.flush()
print("scipy.signal" in sys.modules)
"""
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert res.stdout.strip() == "False"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "inf-inf"])
def test_non_finite_values_in_small_packets_are_dropped_and_counted_as_in_one_batch(bad: object) -> None:
    """The live path checks finiteness on plain lists (a column sum): a NaN, an infinity or a pair
    of opposite infinities in one packet must still be dropped and counted like the batch path."""
    day = _day(True)
    acc = day.acc_g.copy()
    gyro = day.gyro_dps.copy()  # type: ignore[union-attr]
    rows = [1003, 2507, 4001]
    for r in rows:
        if bad == "inf-inf":
            acc[r, 0], acc[r + 1, 0] = math.inf, -math.inf
        else:
            acc[r, 1] = bad  # type: ignore[assignment]
    gyro[3002, 2] = math.nan
    dirty = SampleBatch(day.t_s, acc, gyro)
    ref = _run([dirty])
    got = _run(_packets(dirty, [5]))
    _assert_same(got, ref)
    n_bad = (2 if bad == "inf-inf" else 1) * len(rows) + 1
    assert ref.tracker.dropped.get("non_finite") == n_bad
    assert got.tracker.dropped.get("non_finite") == n_bad


def test_the_forward_axis_is_learned_at_the_same_tick_live_and_in_replay() -> None:
    """With the mount unknown, the learner is asked at every still tick where it could succeed,
    so live packets and replay's minute-long batches learn the axis at the same moment (replay
    used to ask once per batch: up to 60 s later, and the first slouch alerted that much later)."""
    from slouchd.commands.replay import make_tracker
    from slouchd.config import load_config
    from slouchd.model import EventKind
    from slouchd.sensors.simulated import SimSettings, SimulatedWearer

    wearer = SimulatedWearer(SimSettings(seed=2, rate_hz=50.0, gyro=False, day_s=3600.0))
    day = SampleBatch.concat(list(wearer.batches(60.0, end_s=420.0)))

    def learned(batches: list[SampleBatch]) -> list[tuple[float, list[float]]]:
        tr = make_tracker(load_config(None), None, 1.0, None)
        events = [e for b in batches for e in tr.process(b).events] + tr.flush().events
        return [(e.t_s, e.data["forward"]) for e in events
                if e.kind is EventKind.CALIBRATED and e.data.get("axis_source") == "learned"]

    minutes = [SampleBatch(day.t_s[m], day.acc_g[m], None)
               for m in (((day.t_s >= a) & (day.t_s < a + 60.0)) for a in range(0, 420, 60)) if m.any()]
    ref = learned(minutes)
    got = learned(_packets(day, [5]))
    assert ref, "the axis must be learned within 7 minutes for this to test anything"
    assert [t for t, _ in got] == [t for t, _ in ref]
    assert min(ref[0][0] % 60.0, 60.0 - ref[0][0] % 60.0) > 0.15  # not at a batch end
    np.testing.assert_allclose(got[0][1], ref[0][1], atol=1e-6)
