"""The tracker's per-tick stages on their own: wear detection and the activity/posture mapping."""

from __future__ import annotations

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
