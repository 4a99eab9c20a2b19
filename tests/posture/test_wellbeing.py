"""Sitting time, break reminders and the day's totals."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from slouchd.model import EventKind
from tests.posture.helpers import tracker
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
