"""The tracker's per-tick stages on their own: wear detection and the activity/posture mapping."""

from __future__ import annotations

import pytest

from slouchd.model import Posture
from slouchd.posture import detector as det
from slouchd.posture import stages as st


def _ticks(stage: st.WearStage, t0: float, n: int, **kw) -> list[bool]:
    args = {"tilt_deg": 5.0, "lying_limit_deg": st.LYING_TILT_DEG, "moving": False, "lifeless": False,
            "alive": True, **kw}
    return [stage.step(t0 + 0.1 * (i + 1), **args) for i in range(n)]


def test_held_still_beyond_the_lying_limit_is_not_worn_after_3_s_but_a_deep_moving_bend_is() -> None:
    stage = st.WearStage()
    _ticks(stage, 0.0, 30, tilt_deg=70.0, moving=True)
    assert stage.worn  # a deep bend while moving
    _ticks(stage, 3.0, 29, tilt_deg=70.0)
    assert stage.worn  # 2.9 s still: not yet
    _ticks(stage, 5.9, 1, tilt_deg=70.0)
    assert not stage.worn


def test_upside_down_or_lifeless_is_off_at_once_and_alive_at_a_plausible_angle_is_on_again() -> None:
    stage = st.WearStage()
    _ticks(stage, 0.0, 1, tilt_deg=130.0)
    assert not stage.worn
    _ticks(stage, 0.1, 1, alive=False)
    assert not stage.worn  # not alive yet
    _ticks(stage, 0.2, 1)
    assert stage.worn
    _ticks(stage, 0.3, 1, lifeless=True)
    assert not stage.worn


def test_put_back_on_after_20_s_off_asks_for_a_new_reference_and_not_sooner() -> None:
    stage = st.WearStage()
    _ticks(stage, 0.0, 1, lifeless=True)
    assert _ticks(stage, 0.1, 150, lifeless=True, alive=False) == [False] * 150  # off 15 s
    assert _ticks(stage, 15.1, 1) == [False]  # back on after 15 s: same reference
    _ticks(stage, 15.2, 1, lifeless=True)
    _ticks(stage, 15.3, 200, lifeless=True, alive=False)
    assert _ticks(stage, 35.3, 1) == [True]  # off 20 s or more
    assert _ticks(stage, 35.4, 5) == [False] * 5


def test_activity_detector_state_and_posture_mapping() -> None:
    assert st.activity_of(False, True, True) == st.NOT_WORN
    assert st.activity_of(True, True, False) == st.WALKING
    assert st.activity_of(True, False, True) == st.MOVING
    assert st.activity_of(True, False, False) == st.STILL
    assert st.detector_state(False, st.STILL) == det.OFF
    assert st.detector_state(True, st.NOT_WORN) == det.OFF
    assert st.detector_state(True, st.WALKING) == det.MOVING
    assert st.detector_state(True, st.STILL) == det.STILL
    assert st.posture_of(st.NOT_WORN, True, True) is Posture.NOT_WORN
    assert st.posture_of(st.STILL, False, False) is Posture.UNCALIBRATED
    assert st.posture_of(st.WALKING, True, True) is Posture.WALKING
    assert st.posture_of(st.MOVING, True, True) is Posture.MOVING
    assert st.posture_of(st.STILL, True, True) is Posture.SLOUCHING
    assert st.posture_of(st.STILL, True, False) is Posture.UPRIGHT


def _slouch_stage(**detection) -> st.SlouchStage:
    from slouchd.posture.settings import DetectionSettings, WellbeingSettings
    from slouchd.posture.wellbeing import LocalClock, Wellbeing
    d = DetectionSettings(**detection)
    return st.SlouchStage(det.SlouchDetector(d, 5.0, 2.0), Wellbeing(WellbeingSettings()),
                          LocalClock(0.0, None, []))


def _run(stage: st.SlouchStage, t0: float, seconds: float, flex: float, judged: bool = True,
         act: int = st.STILL, training: bool = True) -> list:
    events: list = []
    for i in range(round(seconds / 0.1)):
        stage.step(t0 + 0.1 * (i + 1), flex, judged, act, training, events)
    return events


def test_slouch_stage_alerts_after_the_dwell_and_counts_the_alert() -> None:
    from slouchd.model import EventKind
    stage = _slouch_stage(dwell_s=30.0)
    events = _run(stage, 0.0, 40.0, 25.0)
    (alert,) = [e for e in events if e.kind is EventKind.SLOUCH_ALERT]
    assert alert.t_s == pytest.approx(30.0, abs=0.15)
    assert stage.wellbeing.totals.alerts == 1 and stage.detector.active


def test_slouch_stage_judges_nothing_without_a_known_axis_and_is_silent_when_snoozed() -> None:
    from slouchd.model import EventKind
    stage = _slouch_stage(dwell_s=30.0)
    assert _run(stage, 0.0, 60.0, 25.0, judged=False) == [] and not stage.detector.active
    stage.snooze_until = 200.0
    events = _run(stage, 60.0, 60.0, 25.0)
    assert not [e for e in events if e.kind is EventKind.SLOUCH_ALERT] and stage.detector.active
    assert stage.wellbeing.totals.alerts == 0


def test_frame_stage_emits_at_the_multiples_of_the_interval() -> None:
    from slouchd.model import Activity, PostureFrame
    f0 = PostureFrame(0.0, None, None, Posture.UNKNOWN, Activity.UNKNOWN, False, False)
    stage = st.FrameStage(1.0, f0)
    assert not stage.due(5.0)  # not started
    stage.start(12.34)
    assert stage.next_t == pytest.approx(13.0)
    assert not stage.due(12.9) and stage.due(13.0)
    out: list = []
    stage.frame = PostureFrame(15.2, 3.0, 0.5, Posture.UPRIGHT, Activity.STILL, True, True,
                               axis_source="mount")
    stage.emit_until(15.2, out)
    assert [f.t_s for f in out] == [13.0, 14.0, 15.0]
    assert all(f.flexion_deg == 3.0 and f.axis_source == "mount" for f in out)
    assert stage.next_t == pytest.approx(16.0)


def _cal_stage(mount: str | None = None, **settings) -> st.CalibrationStage:  # type: ignore[no-untyped-def]
    from slouchd.model import Mount
    from slouchd.posture.settings import CalibrationSettings, DetectionSettings

    return st.CalibrationStage(CalibrationSettings(**settings), None if mount is None else Mount.parse(mount),
                               det.SlouchDetector(DetectionSettings(), 5.0))


def _cal_ticks(stage: st.CalibrationStage, t0: float, n: int, mean_g: tuple[float, float, float],
               steady: bool = True, worn: bool = True, mount_tilt: float | None = None) -> list:
    from slouchd.model import Event

    events: list[Event] = []
    for i in range(n):
        stage.step(round(t0 + 0.1 * (i + 1), 6), steady, worn, mean_g, mount_tilt, events)
    return events


def test_calibration_stage_takes_the_first_still_window_of_auto_still_s_as_upright() -> None:
    stage = _cal_stage(auto_still_s=5.0)
    # A steady tick already spans the 2 s window: 5 s still = 31 steady ticks.
    assert _cal_ticks(stage, 0.0, 30, (0.0, 0.1, 0.99)) == []
    ev = _cal_ticks(stage, 3.0, 1, (0.0, 0.1, 0.99))
    assert [e.kind.value for e in ev] == ["calibrated"] and ev[0].data["source"] == "auto"
    assert stage.calibration is not None and stage.calibration.forward is None
    assert abs(sum(x * x for x in stage.calibration.up) - 1.0) < 1e-12


def test_calibration_stage_with_a_mount_declares_the_forward_axis_and_refuses_a_tilted_request() -> None:
    stage = _cal_stage("+z,-x", auto=False)
    stage.ask(10.0, forward=False)
    ev = _cal_ticks(stage, 10.0, 25, (1.0, 0.0, 0.0), mount_tilt=95.0)
    assert [e.kind.value for e in ev] == ["calibration_failed"] and "tilted 95 deg" in ev[0].data["reason"]
    stage.ask(20.0, forward=False)
    ev = _cal_ticks(stage, 20.0, 25, (0.0, 0.0, 1.0), mount_tilt=0.0)
    assert [e.kind.value for e in ev] == ["calibrated"]
    assert stage.calibration is not None and stage.calibration.axis_source == "mount"


def test_calibration_stage_two_pose_needs_upright_first_then_a_bend_of_10_deg() -> None:
    stage = _cal_stage(auto=False)
    stage.ask(0.0, forward=True)
    ev = _cal_ticks(stage, 0.0, 25, (0.0, 0.0, 1.0))
    assert ev[0].data["reason"] == "forward pose needs an upright calibration first"
    stage.ask(5.0, forward=False)
    _cal_ticks(stage, 5.0, 25, (0.0, 0.0, 1.0))
    stage.ask(10.0, forward=True)
    ev = _cal_ticks(stage, 10.0, 25, (0.0, -0.1, 0.995))  # ~6 deg: refused
    assert ev[0].kind.value == "calibration_failed" and "only 6 deg" in ev[0].data["reason"]
    stage.ask(15.0, forward=True)
    ev = _cal_ticks(stage, 15.0, 25, (0.0, -0.5, 0.866))  # 30 deg toward -y: forward is +y
    assert ev[0].kind.value == "calibrated" and stage.calibration is not None
    assert stage.calibration.axis_source == "two_pose"
    assert stage.calibration.forward is not None and stage.calibration.forward[1] > 0.99


def test_calibration_stage_request_times_out_saying_why_and_waits_across_a_gap() -> None:
    stage = _cal_stage(auto=False, timeout_s=5.0)
    stage.ask(0.0, forward=False)
    ev = _cal_ticks(stage, 0.0, 51, (0.0, 0.0, 1.0), steady=False)
    assert [e.kind.value for e in ev] == ["calibration_failed"] and "kept moving" in ev[0].data["reason"]
    stage.ask(10.0, forward=False)
    stage.gap()  # the data stopped: the wait restarts with the first tick after it
    assert _cal_ticks(stage, 100.0, 19, (0.0, 0.0, 1.0)) == []
    assert [e.kind.value for e in _cal_ticks(stage, 101.9, 1, (0.0, 0.0, 1.0))] == ["calibrated"]
    ev2: list = []
    stage.ask(102.0, forward=False)
    stage.unanswered(102.5, ev2)
    assert ev2[0].kind.value == "calibration_failed" and "ended before" in ev2[0].data["reason"]
