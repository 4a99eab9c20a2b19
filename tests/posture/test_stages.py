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
