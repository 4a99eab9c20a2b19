"""Upright reference: requested, automatic, two-pose, learned axis, saved and restored."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slouchd.model import EventKind, Mount
from slouchd.posture.orientation import Calibration, forward_from_two_poses
from slouchd.posture.settings import DetectionSettings, WellbeingSettings
from slouchd.posture.tracker import PostureTracker
from tests.posture.helpers import tracker
from tests.posture.synth import BACK, Step, trunk_to_sensor, wear


def test_first_still_window_becomes_upright_automatically() -> None:
    run = tracker().feed(wear([Step(30, 0), Step(60, 25)]))
    (cal,) = run.of(EventKind.CALIBRATED)
    assert cal.t_s == pytest.approx(5.0, abs=0.3)
    assert "automatic" in cal.data["reason"]
    assert run.frame_at(20).posture.value == "upright"
    assert len(run.alerts) == 1


def test_automatic_calibration_waits_for_an_upright_plausible_window_with_a_mount() -> None:
    # Sitting hunched 45 deg at first: not plausible as upright for this mount.
    run = tracker().feed(wear([Step(30, 45), Step(30, 0), Step(60, 25)]))
    (cal,) = run.of(EventKind.CALIBRATED)
    assert cal.t_s > 30
    assert run.frame_at(100).flexion_deg == pytest.approx(25, abs=1.5)


def test_requested_calibration_makes_the_current_posture_upright() -> None:
    run = tracker(cal={"auto": False}).feed(wear([Step(10, 8)]))
    run.tracker.request_calibration()
    run.feed(wear([Step(10, 8), Step(30, 28)], t0=10.0))
    (cal,) = run.of(EventKind.CALIBRATED)
    assert 12 <= cal.t_s <= 13
    assert cal.data["reason"] == "requested"
    assert run.frame_at(18).flexion_deg == pytest.approx(0, abs=1.0)
    assert run.frame_at(45).flexion_deg == pytest.approx(20, abs=1.0)


def test_calibration_is_refused_while_moving_with_the_reason() -> None:
    run = tracker(cal={"auto": False, "timeout_s": 10}).feed(wear([Step(5, 0)]))
    run.tracker.request_calibration()
    run.feed(wear([Step(20, 5, what="walk")], t0=5.0))
    assert run.of(EventKind.CALIBRATED) == []
    (failed,) = run.of(EventKind.CALIBRATION_FAILED)
    assert "moving" in failed.data["reason"]
    assert run.tracker.calibration is None


def test_calibration_against_the_declared_mount_is_refused_when_upside_down() -> None:
    run = tracker(cal={"auto": False}).feed(wear([Step(5, 0)]))
    run.tracker.request_calibration()
    run.feed(wear([Step(10, 150, what="desk")], t0=5.0, ramp_s=0.01))
    (failed,) = run.of(EventKind.CALIBRATION_FAILED)
    assert "mount" in failed.data["reason"]


def test_two_pose_calibration_finds_the_forward_axis_without_a_mount() -> None:
    mount = Mount.parse("-x,+y")  # forward is -y in the sensor frame
    run = tracker(None, cal={"auto": False, "learn_axis": False}).feed(wear([Step(5, 0)], mount=mount))
    run.tracker.request_calibration()
    run.feed(wear([Step(10, 0)], t0=5.0, mount=mount))
    run.tracker.request_calibration(forward=True)
    run.feed(wear([Step(10, 30), Step(30, -15)], t0=15.0, mount=mount))
    cal = run.tracker.calibration
    assert cal is not None and cal.axis_source == "two_pose"
    assert np.dot(cal.forward, [0, -1, 0]) > 0.99
    assert run.frame_at(50).flexion_deg == pytest.approx(-15, abs=1.0)


def test_two_pose_needs_a_real_bend() -> None:
    assert forward_from_two_poses(np.array([0, 1.0, 0]), np.array([0, 1.0, 0.02])) is None


def test_unknown_mount_learns_the_forward_axis_from_the_bends_observed() -> None:
    mount = Mount.parse("+z,+x")  # forward = -x
    day = [Step(20)] + [Step(40, 22), Step(30, 2), Step(20, -8), Step(30, 1), Step(20, 0, 6)] * 6
    run = tracker(None).feed(wear(day, mount=mount))
    learned = [e for e in run.of(EventKind.CALIBRATED) if e.data["axis_source"] == "learned"]
    assert learned, "the forward axis should have been learned"
    fwd = np.array(learned[0].data["forward"])
    assert np.degrees(np.arccos(np.clip(fwd @ [-1.0, 0, 0], -1, 1))) < 5.0
    # Afterwards leaning back reads negative, as with a declared mount.
    end = learned[0].t_s
    later = [f for f in run.frames if f.t_s > end + 1 and f.posture.value in ("upright", "slouching")]
    assert min(f.flexion_deg for f in later) < -5  # type: ignore[type-var]


def test_without_a_learned_axis_the_angle_is_the_unsigned_tilt() -> None:
    run = tracker(None, cal={"learn_axis": False}).feed(wear([Step(20), Step(30, -20)]))
    assert run.frame_at(45).flexion_deg == pytest.approx(20, abs=1.0)
    assert run.frame_at(45).lateral_deg is None


def test_calibration_round_trips_through_json() -> None:
    cal = Calibration((0.1, 0.99, 0.05), (0.0, -0.05, 1.0), 12.5, "requested", "learned")
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert np.allclose(back.up, np.array(cal.up) / np.linalg.norm(cal.up), atol=1e-6)
    assert abs(np.dot(back.forward, back.up)) < 1e-9
    assert (back.source, back.axis_source, back.t_s) == ("requested", "learned", 12.5)


@pytest.mark.parametrize(
    "bad", [{}, {"up": [0, 0, 0]}, {"up": [1, 0]}, {"up": [0, 1, 0], "forward": [0, 2, 0]}, {"up": "x"}]
)
def test_malformed_calibration_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        Calibration.from_dict(bad)


def test_a_restored_calibration_is_used_at_once() -> None:
    up = trunk_to_sensor(np.array([0.0]), np.array([0.0]), BACK)[0]
    tr = PostureTracker(DetectionSettings(), WellbeingSettings(), BACK, calibration=Calibration(tuple(up)))
    out = tr.process(wear([Step(10, 20)]))
    assert {f.posture.value for f in out.frames} <= {"slouching", "moving"}
    assert out.frames[-1].flexion_deg == pytest.approx(20, abs=1.0)


def test_exported_state_restores_calibration_and_todays_totals() -> None:
    run = tracker(mode="tracking").feed(wear([Step(20), Step(60, 25)]))
    state = json.loads(json.dumps(run.tracker.export_state()))
    fresh = tracker(mode="tracking")
    fresh.tracker.restore_state(state)
    a, b = fresh.tracker.calibration, run.tracker.calibration
    assert a is not None and b is not None
    assert np.allclose(a.up, b.up, atol=1e-5) and np.allclose(a.forward, b.forward, atol=1e-5)  # type: ignore[arg-type]
    assert fresh.tracker.stats() == run.tracker.stats()
