"""Sitting time, break reminders and the day's totals."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from slouchd.model import EventKind
from slouchd.posture import wellbeing as wb
from tests.posture.helpers import Run, tracker
from tests.posture.synth import Step, wear

FAST = {"break_after_min": 5, "break_repeat_min": 2, "break_min_s": 60}


def test_break_reminder_after_sitting_too_long() -> None:
    run = tracker(well=FAST).feed(wear([Step(6 * 60, 2)], rate_hz=25))
    (reminder,) = run.of(EventKind.BREAK_REMINDER)
    assert reminder.t_s == pytest.approx(300, abs=2)
    assert reminder.data["sitting_min"] == pytest.approx(5.0, abs=0.1)


def test_break_reminders_repeat_while_you_keep_sitting() -> None:
    run = tracker(well=FAST).feed(wear([Step(9.5 * 60, 2)], rate_hz=25))
    assert [round(e.t_s / 60) for e in run.of(EventKind.BREAK_REMINDER)] == [5, 7, 9]


def test_a_walk_long_enough_is_a_break_and_resets_sitting_time() -> None:
    script = [Step(4 * 60, 2), Step(70, 3, what="walk"), Step(4 * 60, 2)]
    run = tracker(well=FAST).feed(wear(script, rate_hz=25))
    assert run.of(EventKind.BREAK_REMINDER) == []
    assert run.frames[-1].sitting_s == pytest.approx(240, abs=35)


def test_a_short_walk_is_not_a_break() -> None:
    script = [Step(4 * 60, 2), Step(30, 3, what="walk"), Step(2 * 60, 2)]
    run = tracker(well=FAST).feed(wear(script, rate_hz=25))
    assert len(run.of(EventKind.BREAK_REMINDER)) == 1


def test_reminders_can_be_switched_off() -> None:
    run = tracker(well={**FAST, "break_reminders": False}).feed(wear([Step(6 * 60, 2)], rate_hz=25))
    assert run.of(EventKind.BREAK_REMINDER) == []


def test_stats_count_upright_and_slouched_time_and_alerts() -> None:
    run = tracker(dwell_s=30).feed(wear([Step(60, 0), Step(120, 25), Step(60, 0)], rate_hz=25))
    stats = run.tracker.stats()
    assert stats["alerts"] == 1
    assert stats["slouched_min"] == pytest.approx(2.0, abs=0.1)
    assert stats["upright_pct"] == pytest.approx(100 * 115 / 235, abs=3)
    assert stats["sitting_min"] == pytest.approx(4.0, abs=0.15)  # minus the seconds spent moving
    assert stats["longest_sitting_min"] == pytest.approx(4.0, abs=0.15)


def test_stats_roll_over_at_local_midnight() -> None:
    paris = ZoneInfo("Europe/Paris")
    start = datetime(2026, 3, 2, 23, 57, tzinfo=paris).timestamp()
    run = tracker(dwell_s=30, tz=paris, epoch_offset_s=start)
    run.feed(wear([Step(20), Step(100, 25), Step(60, 0), Step(120, 25)], rate_hz=25))
    (summary,) = run.of(EventKind.DAY_SUMMARY)
    assert summary.t_s == pytest.approx(180, abs=0.2)  # 00:00 local
    assert summary.data["date"] == "2026-03-02"
    assert summary.data["alerts"] == 1
    stats = run.tracker.stats()
    assert stats["date"] == "2026-03-03"
    assert stats["alerts"] == 1  # the slouch after midnight
    assert stats["slouched_min"] == pytest.approx(2.0, abs=0.2)


# ----- restarts, downtime and clock steps (issue 12) -------------------------------------------

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
PARIS = ZoneInfo("Europe/Paris")


def _saved(sitting_min: float, downtime_s: float, day: str = "2026-03-02", **extra: object) -> dict:
    """A state saved ``downtime_s`` before the restarted tracker's first sample (at T0)."""
    return {"calibration": None,
            "totals": {"date": day, "sitting_s": 3600.0, "alerts": 2, "break_reminders": 3},
            "sitting_s": sitting_min * 60.0, "on_break": False, "stretch_at": T0 - downtime_s, **extra}


def _restarted(state: dict, minutes: float) -> Run:
    run = tracker(well=FAST, tz=PARIS, epoch_offset_s=T0)
    run.tracker.restore_state(state)
    return run.feed(wear([Step(minutes * 60, 2)], rate_hz=25))


def test_a_restored_long_stretch_reminds_once_then_on_schedule() -> None:
    # 9.5 min sitting (reminders were due at 5, 7 and 9): one burst of three used to follow.
    run = _restarted(_saved(9.5, downtime_s=5), minutes=4.0)
    times = [e.t_s for e in run.of(EventKind.BREAK_REMINDER)]
    # The schedule goes on: 11 and 13 min of sitting = 1.5 and 3.5 min (+5 s downtime, ~) after start.
    assert [round(t / 60, 1) for t in times] == pytest.approx([1.5, 3.5], abs=0.15)
    assert run.tracker.stats()["break_reminders"] == 3 + 2


def test_no_burst_at_restart_whatever_the_saved_stretch() -> None:
    for sitting_min in (4.99, 5.0, 5.01, 7.3, 60.0, 479.0):
        run = _restarted(_saved(sitting_min, downtime_s=1), minutes=2.1)
        times = [e.t_s for e in run.of(EventKind.BREAK_REMINDER)]
        assert len(times) <= 2, (sitting_min, times)
        assert all(b - a >= 2 * 60 - 1 for a, b in itertools.pairwise(times)), (sitting_min, times)


def test_the_last_reminder_is_remembered_across_a_restart() -> None:
    run = tracker(well=FAST, tz=PARIS, epoch_offset_s=T0).feed(wear([Step(5.5 * 60, 2)], rate_hz=25))
    (first,) = run.of(EventKind.BREAK_REMINDER)
    state = json.loads(json.dumps(run.tracker.export_state()))
    assert state["last_reminder_at"] == pytest.approx(T0 + first.t_s, abs=0.01)
    # Restarted 2 s later, the stretch goes on: nothing before 7 min of sitting (2 min after the first).
    again = tracker(well=FAST, tz=PARIS, epoch_offset_s=T0 + 5.5 * 60 + 2)
    again.tracker.restore_state(state)
    again.feed(wear([Step(3 * 60, 2)], rate_hz=25))
    (nxt,) = again.of(EventKind.BREAK_REMINDER)
    assert T0 + 5.5 * 60 + 2 + nxt.t_s - (T0 + first.t_s) == pytest.approx(120, abs=4)


def test_downtime_longer_than_a_break_is_a_break() -> None:
    run = _restarted(_saved(9.5, downtime_s=61), minutes=4.0)  # break_min_s = 60
    assert run.of(EventKind.BREAK_REMINDER) == []
    assert run.frames[-1].sitting_s == pytest.approx(240, abs=2)
    assert run.tracker.stats()["break_reminders"] == 3  # the day's totals are kept


def test_short_downtime_continues_the_stretch() -> None:
    run = _restarted(_saved(3.0, downtime_s=20), minutes=1.0)
    assert run.frames[-1].sitting_s == pytest.approx(4 * 60, abs=2)


def test_a_state_from_another_day_starts_a_fresh_stretch() -> None:
    # Saved 12 h before, dated yesterday: it used to remind 31 s after start.
    run = _restarted(_saved(49.5, downtime_s=12 * 3600, day="2026-03-01"), minutes=4.0)
    assert run.of(EventKind.BREAK_REMINDER) == []
    (summary,) = run.of(EventKind.DAY_SUMMARY)
    assert summary.data["date"] == "2026-03-01"
    stats = run.tracker.stats()
    assert stats["date"] == "2026-03-02"
    assert stats["break_reminders"] == 0 and stats["alerts"] == 0


def test_an_unknown_save_time_keeps_the_stretch_without_a_burst() -> None:
    state = _saved(9.5, downtime_s=0)
    del state["stretch_at"]  # a state file from before the save time was kept
    run = _restarted(state, minutes=4.0)
    assert len(run.of(EventKind.BREAK_REMINDER)) == 2


def test_clock_stepped_back_across_midnight_keeps_the_new_day() -> None:
    # Totals of 3 March restored while the clock says 2 March, 23:58: kept, not closed.
    start = datetime(2026, 3, 2, 23, 58, tzinfo=PARIS).timestamp()
    run = tracker(dwell_s=30, tz=PARIS, epoch_offset_s=start)
    run.tracker.restore_state({"calibration": None, "sitting_s": 0.0,
                               "totals": {"date": "2026-03-03", "sitting_s": 600.0, "alerts": 4}})
    run.feed(wear([Step(60, 0), Step(120, 25), Step(60, 0)], rate_hz=25))  # across 00:00
    assert run.of(EventKind.DAY_SUMMARY) == []
    stats = run.tracker.stats()
    assert stats["date"] == "2026-03-03"
    assert stats["alerts"] == 5
    assert stats["sitting_min"] == pytest.approx(14.0, abs=0.2)


def test_the_wall_clock_never_moves_the_day_back() -> None:
    clock = wb.LocalClock(0.0, PARIS)
    noon_3 = datetime(2026, 3, 3, 12, 0, tzinfo=PARIS).timestamp()
    assert clock.advance(noon_3) is False  # the first day
    assert clock.advance(noon_3 - 13 * 3600) is False  # 2 March, 23:00: stepped back
    assert clock.day is not None and clock.day.isoformat() == "2026-03-03"
    assert clock.advance(noon_3 - 10 * 3600) is False  # 3 March again: same day, no roll
    assert clock.advance(noon_3 + 12 * 3600) is True  # 4 March: a real midnight
    assert clock.day.isoformat() == "2026-03-04"


def test_first_stats_have_a_real_date() -> None:
    stats = tracker(well=FAST).tracker.stats()
    assert stats["date"] == date.today().isoformat()


@pytest.mark.parametrize("bad", [{"sitting_s": "x"}, {"sitting_s": float("nan")}, {"sitting_s": -5.0},
                                 {"sitting_s": 1.0, "stretch_at": 10 ** 400},
                                 {"sitting_s": 1.0, "totals": {"date": "yesterday"}}])
def test_unusable_saved_stretch_is_refused(bad: dict) -> None:
    with pytest.raises((ValueError, TypeError, OverflowError)):
        tracker(well=FAST).tracker.restore_state(bad)
