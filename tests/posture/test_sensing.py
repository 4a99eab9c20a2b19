"""Not worn, data gaps, messy timestamps, rate changes, and the angles themselves."""

from __future__ import annotations

import numpy as np
import pytest

from slouchd.model import EventKind, Mount, SampleBatch
from tests.posture.helpers import tracker
from tests.posture.synth import Step, split, wear

UPRIGHT_FIRST = [Step(20)]


def test_sensor_on_desk_is_not_worn() -> None:
    # Left lying level on a desk: no breathing micro-motion at all.
    run = tracker().feed(wear([*UPRIGHT_FIRST, Step(200, 0, 0, "desk")]))
    assert run.frame_at(30).posture.value == "upright"
    assert run.postures(110, 220) == {"not_worn"}
    assert all(f.flexion_deg is None for f in run.frames if f.posture.value == "not_worn")
    assert run.alerts == []


@pytest.mark.parametrize("noise_g", [0.002, 0.008])
def test_sitting_very_still_is_still_worn(noise_g: float) -> None:
    # Only breathing moves the sensor (0.4 deg), even on a noisy accelerometer.
    run = tracker().feed(wear([*UPRIGHT_FIRST, Step(300, 5)], noise_g=noise_g))
    assert "not_worn" not in run.postures()


@pytest.mark.parametrize("noise_g", [0.002, 0.01])
def test_a_noisy_sensor_on_a_desk_is_still_not_worn(noise_g: float) -> None:
    run = tracker().feed(wear([*UPRIGHT_FIRST, Step(200, 0, 0, "desk")], noise_g=noise_g))
    assert run.postures(110, 220) == {"not_worn"}


@pytest.mark.parametrize("flexion", [90.0, -90.0, 180.0])
def test_sensor_lying_flat_or_upside_down_is_not_worn_and_never_alerts(flexion: float) -> None:
    run = tracker(dwell_s=5).feed(wear([*UPRIGHT_FIRST, Step(60, flexion, what="desk")]))
    assert run.postures(27, 80) == {"not_worn"}
    assert run.alerts == []


def test_putting_the_sensor_back_on_recalibrates_automatically() -> None:
    script = [*UPRIGHT_FIRST, Step(120, 90, what="desk"), Step(60, 0), Step(60, 25)]
    run = tracker().feed(wear(script))
    reasons = [e.data["reason"] for e in run.of(EventKind.CALIBRATED)]
    assert any("put back on" in r for r in reasons)
    assert run.frame_at(250).posture.value == "slouching"


def test_gap_reports_unknown_and_does_not_smear() -> None:
    before = wear([*UPRIGHT_FIRST, Step(20, 25)])
    after = wear([Step(30, 25)], t0=50.0, seed=1)
    run = tracker(dwell_s=30).feed(before).feed(after)
    gap_frames = [f for f in run.frames if 41 <= f.t_s <= 49]
    assert gap_frames and {f.posture.value for f in gap_frames} == {"unknown"}
    assert all(f.flexion_deg is None for f in gap_frames)
    # 20 s before + 30 s after the gap would pass a 30 s dwell; across a gap it must not add up.
    assert run.alerts == []
    assert run.frame_at(60).flexion_deg == pytest.approx(25, abs=1.5)


def test_short_drops_are_bridged() -> None:
    batch = wear([*UPRIGHT_FIRST, Step(60, 25)])
    keep = np.ones(len(batch), dtype=bool)
    for start in range(1500, 3500, 400):  # 0.4 s holes every 8 s
        keep[start:start + 20] = False
    holed = SampleBatch(batch.t_s[keep], batch.acc_g[keep], batch.gyro_dps[keep])  # type: ignore[index]
    run = tracker(dwell_s=30).feed(holed)
    assert "unknown" not in run.postures(5, 80)
    assert len(run.alerts) == 1


def test_duplicated_and_replayed_packets_change_nothing() -> None:
    batch = wear([*UPRIGHT_FIRST, Step(60, 25), Step(20, 0)])
    clean = tracker(dwell_s=30).feed(batch)
    messy = tracker(dwell_s=30)
    packets = []
    for i, p in enumerate(split(batch, 0.1)):
        packets.append(p)
        if i % 7 == 3:
            packets.append(p)  # delivered twice
        if i % 11 == 5 and len(packets) > 3:
            packets.append(packets[-3])  # an old packet replayed late
    for p in packets:
        out = messy.tracker.process(p)
        messy.frames += out.frames
        messy.events += out.events
    assert [(f.t_s, f.posture) for f in messy.frames] == [(f.t_s, f.posture) for f in clean.frames]
    assert [f.flexion_deg for f in messy.frames] == pytest.approx([f.flexion_deg for f in clean.frames])
    assert [e.to_dict() for e in messy.events] == [e.to_dict() for e in clean.events]
    assert messy.tracker.dropped["not_increasing"] > 0


def test_timestamp_jitter_does_not_move_the_angle() -> None:
    batch = wear([*UPRIGHT_FIRST, Step(60, 20)], rate_hz=50)
    rng = np.random.default_rng(3)
    t = batch.t_s + rng.uniform(0, 0.008, len(batch))
    t = np.maximum.accumulate(t + np.arange(len(batch)) * 1e-9)
    run = tracker().feed(SampleBatch(t, batch.acc_g, batch.gyro_dps))
    assert run.frame_at(70).flexion_deg == pytest.approx(20, abs=1.0)


def test_a_sample_rate_change_keeps_the_angle_right() -> None:
    slow = wear([*UPRIGHT_FIRST, Step(40, 20)], rate_hz=25)
    fast = wear([Step(60, 20)], rate_hz=100, t0=60.0)
    run = tracker().feed(slow).feed(fast)
    assert run.tracker._lp.rate_hz == pytest.approx(100, rel=0.05)
    for t in (55, 80, 115):
        assert run.frame_at(t).flexion_deg == pytest.approx(20, abs=1.0)


def test_nan_rows_are_dropped_and_counted() -> None:
    batch = wear([*UPRIGHT_FIRST, Step(20, 10)])
    acc = batch.acc_g.copy()
    acc[500:510] = np.nan
    run = tracker().feed(SampleBatch(batch.t_s, acc, batch.gyro_dps))
    assert run.tracker.dropped["non_finite"] == 10
    assert run.frame_at(35).flexion_deg == pytest.approx(10, abs=1.0)


@pytest.mark.parametrize("mount", ["+y,-z", "-x,+z", "+z,+y", "-y,-x"])
@pytest.mark.parametrize("gyro", [True, False])
def test_flexion_and_lateral_are_right_for_any_mount(mount: str, gyro: bool) -> None:
    m = Mount.parse(mount)
    script = [*UPRIGHT_FIRST, Step(20, 20), Step(20, -10), Step(20, 0, 15), Step(20, 10, -10)]
    run = tracker(m).feed(wear(script, mount=m, gyro=gyro))
    for t, flex, lat in ((38, 20, 0), (58, -10, 0), (78, 0, 15), (98, 10, -10)):
        frame = run.frame_at(t)
        assert frame.flexion_deg == pytest.approx(flex, abs=1.0)
        assert frame.lateral_deg == pytest.approx(lat, abs=1.0)


def test_walking_is_walking_a_bend_is_moving_and_shaking_without_a_bend_is_not() -> None:
    """Shaking (0.12 g per axis of random body acceleration, no change of the trunk angle) is what
    typing and mouse work do to a trunk sensor: it must not read as motion, or slouches while
    typing would never alert. Changing the trunk angle quickly (a reach) is motion."""
    script = [*UPRIGHT_FIRST, Step(60, 3, what="walk"), Step(30, 0, what="fidget"), Step(20, 0),
              Step(2, 40, what="fidget"), Step(20, 0)]
    for gyro in (True, False):
        run = tracker().feed(wear(script, gyro=gyro))
        assert run.frame_at(60).posture.value == "walking"
        shaking = [f.posture.value for f in run.frames if 95 <= f.t_s <= 110]
        assert set(shaking) == {"upright"}, shaking
        assert run.frame_at(132).posture.value == "moving"


def test_frames_come_every_frame_interval_of_sample_time() -> None:
    run = tracker(frame_interval_s=0.5).feed(wear([Step(10)]))
    times = [f.t_s for f in run.frames]
    assert np.allclose(np.diff(times), 0.5)
    assert times[0] <= 1.0 and times[-1] >= 9.0
