"""Daily goal, streaks, the training plan and breaks that count."""

from __future__ import annotations

import json

import pytest

from slouchd.posture.coach import (
    BreakTally,
    CoachSettings,
    GoalSettings,
    PlanSettings,
    Streak,
    day_result,
    plan_mode,
    plan_today,
    stretch_counts_as_break,
)
from slouchd.schema import SettingsError, build

H = 3600.0
GOAL = GoalSettings(upright_pct=75, breaks=4, min_seated_min=60)


def test_a_day_meets_the_goal_only_with_both_parts() -> None:
    assert day_result(3 * H, 0.5 * H, 4, GOAL) == {
        "judged": True, "met": True, "upright_pct": 85.7, "upright_met": True, "breaks": 4,
        "breaks_met": True}
    assert day_result(3 * H, 0.5 * H, 3, GOAL)["met"] is False
    assert day_result(2 * H, 1 * H, 9, GOAL)["met"] is False  # 66.7 % upright


def test_a_part_set_to_zero_is_left_out_of_the_goal() -> None:
    r = day_result(2 * H, 1 * H, 9, GoalSettings(upright_pct=0, breaks=4))
    assert r["met"] is True and r["upright_met"] is None
    assert day_result(3 * H, 0, 0, GoalSettings(breaks=0))["met"] is True


def test_a_short_day_is_not_judged() -> None:
    r = day_result(0.5 * H, 0.2 * H, 10, GOAL)
    assert r["judged"] is False and r["met"] is None


def test_streaks_grow_break_and_skip_unjudged_days() -> None:
    s = Streak()
    met, missed, skipped = {"met": True}, {"met": False}, {"met": None}
    for day, res in [("2026-11-02", met), ("2026-11-03", met), ("2026-11-04", skipped), ("2026-11-05", met)]:
        s.close_day(day, res)
    assert (s.current, s.best) == (3, 3)
    s.close_day("2026-11-05", missed)  # the same day again (restart): ignored
    assert s.current == 3
    s.close_day("2026-11-06", missed)
    assert (s.current, s.best) == (0, 3)
    s.close_day("2026-11-07", met)
    assert s.shown({"met": True}) == 2 and s.shown({"met": False}) == 1 and s.shown(None) == 1


def test_state_survives_json() -> None:
    s = Streak(4, 9, "2026-11-30")
    assert Streak.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    t = BreakTally(breaks=2, stretch_breaks=1, reminders=5, answered=2)
    assert BreakTally.from_dict(json.loads(json.dumps(t.to_dict()))).to_dict() == t.to_dict()
    with pytest.raises(ValueError, match="impossible"):
        Streak.from_dict({"current": 5, "best": 2})
    with pytest.raises(ValueError):
        Streak.from_dict({"current": 1, "best": 1, "last_day": "yesterday"})
    with pytest.raises(ValueError):
        BreakTally.from_dict({"breaks": -1})


def test_the_plan_grows_from_start_to_end_then_hands_over() -> None:
    plan = PlanSettings(enabled=True, days=24, start_min=10, end_min=125)
    first = plan_today(plan, "2026-11-01", "2026-11-01")
    assert first == {"active": True, "day": 1, "days": 24, "training_min": 10.0, "mode_after": "tracking"}
    assert plan_today(plan, "2026-11-01", "2026-11-24")["training_min"] == 125.0
    assert plan_today(plan, "2026-11-01", "2026-11-12")["training_min"] == 65.0  # day 12: 10 + 115 * 11/23
    after = plan_today(plan, "2026-11-01", "2026-11-25")
    assert after["active"] is False and after["mode_after"] == "tracking"
    assert plan_today(PlanSettings(), "2026-11-01", "2026-11-02")["active"] is False


def test_plan_mode_switches_to_tracking_after_the_days_training_minutes() -> None:
    plan = PlanSettings(enabled=True, days=10, start_min=10, end_min=20)
    assert plan_mode(plan, "2026-11-01", "2026-11-01", 9 * 60) == "training"
    assert plan_mode(plan, "2026-11-01", "2026-11-01", 10 * 60) == "tracking"
    assert plan_mode(plan, "2026-11-01", "2026-12-01", 0) == "tracking"  # plan over: `then`
    assert plan_mode(PlanSettings(), None, "2026-11-01", 1e6) == "training"  # no plan: unchanged


def test_breaks_and_stretch_sessions_both_count_and_answer_reminders() -> None:
    t = BreakTally(answer_within_s=600)
    t.on_reminder(1000.0)
    assert t.on_break(1300.0, "stretch") == {"how": "stretch", "answered_reminder": True, "breaks_today": 1,
                                             "after_reminder_s": 300.0}
    assert t.on_break(5000.0, "break") == {"how": "break", "answered_reminder": False, "breaks_today": 2}
    t.on_reminder(9000.0)
    t.on_reminder(9400.0)  # a repeat: the break answers the latest nudge
    assert t.on_break(9700.0, "break")["after_reminder_s"] == 300.0
    assert (t.breaks, t.stretch_breaks, t.reminders, t.answered, t.counted) == (2, 1, 3, 2, 3)
    t.on_reminder(20000.0)
    assert t.on_break(20000.0 + 601, "break")["answered_reminder"] is False
    with pytest.raises(ValueError):
        t.on_break(0, "nap")


def test_only_a_completed_stretch_session_is_a_break() -> None:
    assert stretch_counts_as_break({"complete": True}) is True
    assert stretch_counts_as_break({"complete": False, "steps_complete": 4}) is False


def test_settings_load_from_toml_tables_with_clear_errors() -> None:
    c = build(CoachSettings, {"goal": {"upright_pct": 80}, "plan": {"enabled": True, "days": 30}}, "x.toml",
              "coach.")
    assert c.goal.upright_pct == 80 and c.goal.breaks == 6 and c.plan.days == 30
    with pytest.raises(SettingsError, match=r"x.toml: coach.plan.end_min = 5: must be at least start_min"):
        build(CoachSettings, {"plan": {"end_min": 5}}, "x.toml", "coach.")
    with pytest.raises(SettingsError, match=r"coach.goal.upright_pct = 0: with breaks = 0 too"):
        build(CoachSettings, {"goal": {"upright_pct": 0, "breaks": 0}}, "x.toml", "coach.")
    with pytest.raises(SettingsError, match=r'coach.plan.then = "off": must be one of "training", '):
        build(CoachSettings, {"plan": {"then": "off"}}, "x.toml", "coach.")
