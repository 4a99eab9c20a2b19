"""Desk work (typing, mouse, shifting in the chair) and fast trunk moves, on the simulated wearer
with desk vibration fitted to a real recording: slouches while typing alert on time, motion is
still motion, and the angle is tracked exactly through fast bends and twists."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slouchd.model import EventKind, Mount
from slouchd.posture.orientation import OrientationFilter
from slouchd.posture.settings import DetectionSettings, WellbeingSettings
from slouchd.posture.tracker import PostureTracker
from slouchd.sensors.simulated import SimSettings, SimulatedWearer


def _run(wearer: SimulatedWearer, mount: Mount | None, frame_interval_s: float = 1.0):
    tracker = PostureTracker(DetectionSettings(), WellbeingSettings(), mount,
                             frame_interval_s=frame_interval_s)
    frames, events = [], []
    for batch in wearer.batches(60.0):
        out = tracker.process(batch)
        frames += out.frames
        events += out.events
    return frames, events


@pytest.mark.parametrize("gyro", [True, False], ids=["gyro", "accelerometer-only"])
def test_a_slouch_while_typing_alerts_within_dwell_plus_2_s(gyro: bool) -> None:
    s = SimSettings(seed=5, day_s=900.0, gyro=gyro, desk_vibration=True, gaps_per_hour=0.0)
    wearer = SimulatedWearer(s)
    slouch = wearer.first_clear_slouch
    grid = np.arange(slouch.start_s, slouch.end_s, 0.1)
    flex, _, _ = wearer.truth(grid)
    due = float(grid[np.flatnonzero(flex >= 15.0)[0]]) + 30.0
    _, events = _run(wearer, s.mount)
    alerts = [e.t_s for e in events if e.kind is EventKind.SLOUCH_ALERT]
    assert alerts, "the slouch was never alerted"
    first = alerts[0]
    assert due - 1.0 <= first <= due + 2.0, (first, due)


def test_desk_vibration_does_not_read_as_motion_but_reaching_and_standing_up_do() -> None:
    s = SimSettings(seed=6, day_s=2 * 3600.0, gyro=False, desk_vibration=True, gaps_per_hour=0.0)
    wearer = SimulatedWearer(s)
    frames, events = _run(wearer, s.mount)
    t = np.array([f.t_s for f in frames])
    _, _, label = wearer.truth(t)
    posture = np.array([f.posture.value for f in frames])
    calm = np.isin(label, ("upright", "type_arms")) & (posture != "uncalibrated")
    assert np.mean(posture[calm] == "moving") < 0.03
    for kind in ("reach", "stand_up"):
        eps = [e for e in wearer.episodes if e.kind == kind]
        assert eps
        seen = [any(p in ("moving", "walking") for p, tt in zip(posture, t, strict=True)
                    if e.start_s <= tt <= e.end_s + 1.5) for e in eps]
        assert np.mean(seen) > 0.9, kind
    # Reaching and standing up never alert.
    starts = np.array([e.start_s for e in wearer.episodes])
    for e in events:
        if e.kind is EventKind.SLOUCH_ALERT:
            ep = wearer.episodes[int(np.searchsorted(starts, e.t_s, side="right") - 1)]
            assert ep.kind == "slouch", ep


def test_the_angle_is_tracked_through_fast_bends_and_twists_with_a_gyro() -> None:
    s = SimSettings(seed=8, day_s=2 * 3600.0, fast_moves=True, desk_vibration=True, gaps_per_hour=0.0)
    wearer = SimulatedWearer(s)
    frames, _ = _run(wearer, s.mount, frame_interval_s=0.2)
    t = np.array([f.t_s for f in frames])
    flex = np.array([np.nan if f.flexion_deg is None else f.flexion_deg for f in frames])
    true_flex, _, _ = wearer.truth(t)
    near = np.zeros(t.shape, dtype=bool)
    for e in wearer.episodes:
        if e.kind == "fast_move":
            near |= (t >= e.start_s) & (t < e.end_s + 5.0)
    ok = near & ~np.isnan(flex) & ~np.isnan(true_flex)
    assert ok.sum() > 100
    rmse = math.sqrt(float(np.mean((flex[ok] - true_flex[ok]) ** 2)))
    assert rmse < 1.5, rmse


def _rot(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    k = axis / np.linalg.norm(axis)
    return v * math.cos(angle) + np.cross(k, v) * math.sin(angle) + k * (k @ v) * (1 - math.cos(angle))


@pytest.mark.parametrize("ticks", [1, 50])
def test_the_gyro_turns_gravity_exactly_even_at_38_degrees_per_tick(ticks: int) -> None:
    """380 deg/s about an axis across gravity for 0.5 s, accelerometer rejected throughout (as
    during a fast move): the estimate must follow the rotation exactly, not to first order."""
    f = OrientationFilter(0.1)
    g0 = np.array([0.0, 1.0, 0.0])
    f.run(g0[None, :], np.zeros(1), np.zeros((1, 3)), 0.04)
    axis = np.array([0.3, 0.2, 1.0])
    axis /= np.linalg.norm(axis)
    rate = 380.0
    n = 5
    w = np.tile(axis * rate, (n, 1))
    # A sensor turning at w sees a world-fixed vector turn the other way.
    truth = np.array([_rot(g0, axis, -math.radians(rate) * 0.1 * (i + 1)) for i in range(n)])
    rejected = truth * 1.5  # not 1 g: ignored
    out = np.concatenate([f.run(rejected[i:i + ticks], np.zeros(len(rejected[i:i + ticks])),
                                w[i:i + ticks], 0.04)[0] for i in range(0, n, ticks)])
    err = np.degrees(np.arccos(np.clip(np.sum(out * truth, axis=1), -1, 1)))
    assert err.max() < 0.01


def test_without_a_gyro_the_estimate_follows_the_low_passed_tilt_during_motion() -> None:
    f = OrientationFilter(0.1)
    up = np.array([0.0, 1.0, 0.0])
    f.run(np.tile(up, (20, 1)), np.zeros(20), None, 0.04)
    tilted = np.array([0.0, math.cos(math.radians(30)), math.sin(math.radians(30))]) * 1.3  # accelerating
    out, _ = f.run(np.tile(tilted, (20, 1)), np.full(20, 0.3), None, 0.04)
    angle = math.degrees(math.acos(float(out[-1] @ up)))
    assert angle == pytest.approx(30.0, abs=0.5)


def test_gyro_bias_is_learned_while_the_accelerometer_vibrates() -> None:
    rng = np.random.default_rng(1)
    f = OrientationFilter(0.1)
    n = 1200
    acc = np.array([0.0, 1.0, 0.0]) + rng.normal(0, 0.01, (n, 3))  # desk vibration (low-passed tick means)
    bias = np.array([0.4, -0.3, 0.2])
    f.run(acc, np.full(n, 0.06), np.tile(bias, (n, 1)), 0.04)
    assert np.allclose(np.degrees(f.bias) / 0.1, bias, atol=0.02)
