"""The coach runtime (slouchd/coaching.py): sessions, breaks that count, goal/streak/plan, the day's
history record, notices, persistence. A simulated day runs through the real tracker."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slouchd.coaching import CoachRuntime, EverySecond
from slouchd.commands import report
from slouchd.history import DayRecord, HistoryStore
from slouchd.model import Activity, Event, EventKind, Posture, PostureFrame
from slouchd.posture.coach import CoachSettings, GoalSettings, NoticeSettings, PlanSettings
from slouchd.posture.wellbeing import DayTotals
from slouchd.sensors.simulation.stretches import run_coached_day
from slouchd.stretches import load_catalog

REPO = Path(__file__).resolve().parents[2]
CATALOG = load_catalog()
MON_0650 = datetime(2026, 11, 30, 6, 50, tzinfo=UTC).timestamp()  # a Monday


def frame(t: float, *, sitting: float = 0.0, worn: bool = True, activity: Activity = Activity.STILL,
          posture: Posture = Posture.UPRIGHT, flex: float | None = 0.0) -> PostureFrame:
    return PostureFrame(t, flex, 0.0 if flex is not None else None, posture, activity, worn, True, sitting)


def kinds(events: list[Event]) -> list[str]:
    return [e.kind.value for e in events]


def runtime(**kw: Any) -> CoachRuntime:
    return CoachRuntime("ana", CATALOG, tz=UTC, **kw)


# ------------------------------------------------------------------------- the simulated day

@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    state = tmp_path_factory.mktemp("state")
    start = datetime(2026, 11, 30, 23, 42, tzinfo=UTC).timestamp()
    run = run_coached_day(CATALOG, HistoryStore(state), start_wall_s=start, end_s=1300.0,
                          coach_settings=CoachSettings(goal=GoalSettings(upright_pct=50, breaks=2,
                                                                         min_seated_min=5)),
                          battery=lambda t: 40.0 if t < 600 else 12.0)
    return run, state


def test_a_reminder_answered_by_a_stretch_session_counts_and_resets_sitting(day: tuple[Any, Path]) -> None:
    run, _ = day
    reminders = [e for e in run.tracker_events if e.kind is EventKind.BREAK_REMINDER]
    assert run.answers == ["stretch", "walk"]
    taken = [e for e in run.coach_events if e.kind is EventKind.BREAK_TAKEN]
    assert [e.data["how"] for e in taken] == ["stretch", "break"]
    assert all(e.data["answered_reminder"] for e in taken)
    assert [e.data["breaks_today"] for e in taken] == [1, 2]
    complete = next(e for e in run.coach_events if e.kind is EventKind.STRETCH_COMPLETE)
    assert taken[0].t_s == complete.t_s
    # Sitting restarted at the session's end: the next reminder comes 5 min (+ one tick) later.
    assert reminders[1].t_s - complete.t_s == pytest.approx(300.0, abs=1.0)
    # The walk: the break is taken 30 s ([wellbeing] break_min_s) into it, within 3 s.
    assert taken[1].t_s - reminders[1].t_s == pytest.approx(2.0 + 30.0, abs=3.0)


def test_the_day_closes_into_the_history_with_goal_and_streak(day: tuple[Any, Path]) -> None:
    run, state = day
    summary = next(e for e in run.tracker_events if e.kind is EventKind.DAY_SUMMARY)
    assert summary.data["date"] == "2026-11-30"
    rec = run.coach.history.days["2026-11-30"]
    assert (rec.break_reminders, rec.breaks, rec.stretch_breaks, rec.stretch_sessions) == (2, 1, 1, 1)
    assert rec.goal_met is True and rec.streak == 1
    assert rec.upright_s + rec.slouched_s == pytest.approx(60.0 * summary.data["sitting_min"], abs=60.0)
    assert isinstance(rec.totals, DayTotals)
    assert kinds(run.coach_events).count("goal_met") == 1
    # On disk, and what `slouchd report` reads.
    back = HistoryStore(state).load("ana")
    assert back.days["2026-11-30"].to_dict() == rec.to_dict()
    payload = run.coach.history_payload()
    assert payload["days"][0] == {**payload["days"][0], "date": "2026-11-30", "breaks": 2,
                                  "stretch_sessions": 1, "goal_met": True, "streak": 1}
    assert payload["days"][-1]["date"] == "2026-12-01"  # today so far


def test_haptic_and_battery_events_on_the_simulated_day(day: tuple[Any, Path]) -> None:
    run, _ = day
    buzz = {e.kind.value for e in run.coach_events if "haptic" in e.data}
    assert buzz == {"stretch_rep_complete", "stretch_complete"}
    low = [e for e in run.coach_events if e.kind is EventKind.LOW_BATTERY]
    assert len(low) == 1 and low[0].data["battery"] == 12.0
    assert 599.5 <= low[0].t_s <= 600.5  # the batch that read 12 %


def test_a_tracker_at_one_frame_a_second_switched_to_tenths_for_the_session_gives_the_same_day(
        tmp_path: Path, day: tuple[Any, Path]) -> None:
    """The wiring proposed for the daemon: 1 s frames, 0.1 s only while ``needs_ticks``."""
    ref, _ = day
    start = datetime(2026, 11, 30, 23, 42, tzinfo=UTC).timestamp()
    goal = GoalSettings(upright_pct=50, breaks=2, min_seated_min=5)
    run = run_coached_day(CATALOG, HistoryStore(tmp_path), start_wall_s=start, end_s=1300.0,
                          switch_frames=True, coach_settings=CoachSettings(goal=goal))

    def held(r: Any) -> list[float]:
        return [e.data["held_s"] for e in r.coach_events if e.kind is EventKind.STRETCH_REP_COMPLETE]

    assert held(run) == held(ref) == [15.0] * 3 + [10.0] * 3
    taken = [(e.data["how"], e.data["answered_reminder"]) for e in run.coach_events
             if e.kind is EventKind.BREAK_TAKEN]
    assert taken == [("stretch", True), ("break", True)]
    rec = run.coach.history.days["2026-11-30"]
    assert (rec.break_reminders, rec.breaks, rec.stretch_breaks, rec.goal_met) == (2, 1, 1, True)
    t = run.frame_times
    steps = [round(b - a, 3) for a, b in itertools.pairwise(t)]
    assert {0.1, 1.0} <= set(steps) and max(steps) <= 1.0
    assert 1000 <= steps.count(0.1) <= 1300  # the session's 120 s (+ the ticks until the switch back)


def test_report_prints_the_day_from_the_store(day: tuple[Any, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _, state = day
    import argparse
    args = argparse.Namespace(config=None, state_dir=str(state), wearer="ana", until="2026-11-30", days=1,
                              svg=None)
    assert report.run(args) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "2026-11-30" in line and line.startswith("Mon"))
    assert row.split()[-4:] == ["2", "1", "met", "1"]  # breaks, stretch sessions, goal, streak


# -------------------------------------------------------------------------- breaks, sessions

def test_a_break_while_away_ends_sitting_but_is_not_counted() -> None:
    c = runtime()
    away = frame(2.0, sitting=0.0, worn=False, activity=Activity.NOT_WORN)
    out = c.process([frame(1.0, sitting=600.0), away], [])
    assert out.events == [] and c.tally.counted == 0
    out = c.process([frame(3.0, sitting=5.0), frame(4.0, sitting=0.0, activity=Activity.WALKING)], [])
    assert kinds(out.events) == ["break_taken"] and out.events[0].data["answered_reminder"] is False


def test_start_and_stop_commands() -> None:
    c = runtime()
    with pytest.raises(ValueError, match="no stretch session 'nap' \\(known: desk_break, quick\\)"):
        c.start_stretch(10.0, "nap")
    out = c.start_stretch(10.0)
    assert c.judge is not None and c.judge.session == "desk_break" and c.needs_ticks
    assert kinds(out.events) == ["stretch_start", "stretch_step_start"]
    with pytest.raises(ValueError, match="running"):
        c.start_stretch(11.0, "quick")
    assert c.stretch_state()["status"] == "reaching"
    out = c.stop_stretch(12.0)
    assert kinds(out.events) == ["stretch_abandoned"] and out.events[0].data["reason"] == "stopped"
    assert not out.reset_sitting and out.history_changed and not c.needs_ticks
    assert (c.today.stretch_abandoned, c.today.stretch_sessions, c.tally.counted) == (1, 0, 0)
    assert c.stop_stretch(13.0).events == []
    c.start_stretch(14.0, "quick")  # a new one may start once the last is over


def test_a_bounce_cue_asks_for_a_buzz_only_on_a_sensor_that_can_and_when_configured() -> None:
    for haptic, on, level in ((False, True, None), (True, False, None), (True, True, 2)):
        c = runtime(haptic=haptic, coach=CoachSettings(buzz_on_bounce=on))
        c.start_stretch(0.0, "quick")
        t, cue = 0.0, None
        while cue is None and t < 30.0:
            t += 0.1
            flex = -15.0 if t < 5 else -15.0 - 2.5 * (1 - __import__("math").cos(2 * 3.14159 * 1.5 * (t - 5)))
            out = c.process([frame(round(t, 1), flex=flex)], [])
            cue = next((e for e in out.events if e.kind is EventKind.STRETCH_CUE), None)
        assert cue is not None and cue.data["cue"] == "no_bouncing" and t < 7.0
        assert cue.data.get("haptic") == level


def test_the_stretch_command() -> None:
    c = runtime()
    with pytest.raises(ValueError, match="no stretch session is running"):
        c.command(1.0, "stop")
    assert kinds(c.command(1.0, "start").events)[0] == "stretch_start" and c.judge is not None
    assert c.judge.session == "desk_break"
    assert kinds(c.command(2.0, "stop").events) == ["stretch_abandoned"]
    c.command(3.0, "quick")
    assert c.judge.session == "quick" and c.stretch_state()["steps"] == 2
    with pytest.raises(ValueError, match="known: desk_break, quick"):
        runtime().command(1.0, "yoga")


def test_every_second_picks_one_frame_a_second_from_tenth_second_frames() -> None:
    pick = EverySecond()
    t, picked = 1_764_547_200.0, []
    for _ in range(36000):  # an hour of 0.1 s frames, with the float drift of adding 0.1
        t += 0.1
        if pick.due(round(t, 6)):
            picked.append(t)
    assert len(picked) == 3600


# ----------------------------------------------------------------------------- notices, plan

def morning(c: CoachRuntime, t0: float, t1: float, worn: bool) -> list[Event]:
    events: list[Event] = []
    t = t0
    while t <= t1:
        act = Activity.STILL if worn else Activity.NOT_WORN
        events += c.process([frame(t, worn=worn, activity=act)], []).events
        t += 1.0 if worn else 60.0  # frames every second while streaming, idle states every minute
    return events


def test_not_worn_all_morning() -> None:
    ev = morning(runtime(), MON_0650, MON_0650 + 5.5 * 3600, worn=False)
    assert kinds(ev) == ["not_worn_morning"]
    assert ev[0].t_s == MON_0650 + 5 * 3600 + 600  # the first observation at 12:00
    assert ev[0].data["worn_min"] == 0.0 and ev[0].data["until"] == "12:00"
    assert morning(runtime(), MON_0650, MON_0650 + 5.5 * 3600, worn=True) == []
    assert morning(runtime(), MON_0650 + 4.5 * 3600, MON_0650 + 5.5 * 3600, worn=False) == []  # started 11:20
    sat = MON_0650 - 2 * 86400
    assert morning(runtime(), sat, sat + 5.5 * 3600, worn=False) == []
    off = runtime(coach=CoachSettings(notices=NoticeSettings(morning_min_worn_min=0)))
    assert morning(off, MON_0650, MON_0650 + 5.5 * 3600, worn=False) == []


def test_low_battery_once_per_discharge() -> None:
    c = runtime()
    got = [len(c.process([frame(float(i))], [], battery_pct=p).events) for i, p in
           enumerate([60, 16, 15, 14, 16, 13, 24, 14, 26, 14, None])]
    assert got == [0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0]


def test_a_battery_reading_before_any_frame_waits_for_one() -> None:
    c = runtime()
    assert c.process([], [], battery_pct=10.0).events == []
    assert kinds(c.process([frame(5.0)], [], battery_pct=10.0).events) == ["low_battery"]


def test_the_training_plan_switches_to_tracking_after_todays_minutes() -> None:
    c = runtime(coach=CoachSettings(plan=PlanSettings(enabled=True, days=10, start_min=2, end_min=20)))
    c.observe_totals(DayTotals(date="2026-11-30"))
    modes = []
    for i in range(200):
        out = c.process([frame(1000.0 + i)], [])
        if out.mode:
            modes.append((i, out.mode))
    assert modes == [(0, "training"), (121, "tracking")]  # 2 min of seated training time, then tracking
    assert c.state()["plan_day"] == 1 and c.state()["training_done_min"] == 2.0


# ------------------------------------------------------------------------------- persistence

def test_snapshot_and_restore_keep_the_days_counts_and_a_replayed_midnight_counts_once(
        tmp_path: Path) -> None:
    store = HistoryStore(tmp_path)
    tot = DayTotals(date="2026-11-30", upright_s=4000.0, slouched_s=500.0)
    c = runtime(store=store, coach=CoachSettings(goal=GoalSettings(breaks=1, min_seated_min=60)))
    c.observe_totals(tot)
    c.process([frame(1.0, sitting=100.0), frame(2.0, sitting=0.0, activity=Activity.MOVING)], [])
    snap = c.snapshot()
    back = runtime(store=store, coach=CoachSettings(goal=GoalSettings(breaks=1, min_seated_min=60)))
    back.restore(snap)
    back.observe_totals(tot)
    assert back.snapshot() == snap and back.tally.breaks == 1
    summary = Event(86400.0, EventKind.DAY_SUMMARY, tot.to_stats())
    first = back.process([], [summary])
    again = back.process([], [summary])  # the same midnight again
    assert back.tally.counted == 0 and back.today.date == ""  # counted once, and not carried on
    saved = HistoryStore(tmp_path).load("ana").days["2026-11-30"].to_dict()
    back.restore(snap)  # a crash before the next state save: the day's counts come back ...
    back.process([], [summary])  # ... and its midnight is replayed: the same record, the same streak
    assert HistoryStore(tmp_path).load("ana").days["2026-11-30"].to_dict() == saved
    rec = HistoryStore(tmp_path).load("ana").days["2026-11-30"]
    assert (rec.breaks, rec.goal_met, rec.streak, rec.upright_s) == (1, True, 1, 4000.0)
    assert back.streak.current == 1 and first.history_changed and not again.history_changed
    with pytest.raises(ValueError, match="coach state"):
        back.restore({"version": 1, "tally": {"breaks": -1}})


def test_a_day_summary_without_the_trackers_totals_is_rebuilt_from_its_minutes() -> None:
    c = runtime()
    stats = DayTotals("2026-11-30", upright_s=3000.0, slouched_s=1000.0, sitting_s=4200.0,
                      alerts=3).to_stats()
    c.process([], [Event(5.0, EventKind.DAY_SUMMARY, stats)])
    rec = c.history.days["2026-11-30"]
    # Minutes to 0.1 and a share to 0.1 %: within 10 s.
    assert rec.upright_s == pytest.approx(3000.0, abs=10.0) and rec.alerts == 3
    assert rec.slouched_s == pytest.approx(1000.0, abs=6.0)


def test_a_day_record_holds_the_trackers_totals() -> None:
    tot = DayTotals("2026-11-30", upright_s=10.0, alerts=2)
    rec = DayRecord.of("2026-11-30", upright_s=10.0, alerts=2, breaks=1)
    assert rec.totals == tot and rec.upright_s == 10.0 and rec.alerts == 2 and rec.breaks == 1
    assert DayRecord.from_dict(rec.to_dict()) == rec


WRITER = r"""
import sys, itertools
from datetime import date, timedelta
from pathlib import Path
from slouchd.coaching import CoachRuntime, EverySecond
from slouchd.history import HistoryStore
from slouchd.model import Event, EventKind
from slouchd.posture.wellbeing import DayTotals
from slouchd.stretches import load_catalog
c = CoachRuntime("ana", load_catalog(), store=HistoryStore(Path(sys.argv[1])))
for i in itertools.count():
    day = (date(2000, 1, 1) + timedelta(days=i)).isoformat()
    tot = DayTotals(date=day, upright_s=float(i), alerts=i)
    c.observe_totals(tot)
    c.process([], [Event(float(i), EventKind.DAY_SUMMARY, tot.to_stats())])  # closes and saves the day
    print(i, flush=True)
"""


def test_the_runtimes_history_survives_kill_9_while_it_writes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    store = HistoryStore(tmp_path)
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                                env=env, text=True)
        assert proc.stdout is not None
        saved, deadline = -1, time.monotonic() + 30
        while saved < 10 + 5 * attempt and time.monotonic() < deadline:
            saved = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # The writer does not wait for us: it may have saved (and printed) more before the kill.
        printed = [int(line) for line in proc.stdout.read().split()]
        last_printed = printed[-1] if printed else saved
        h = store.load("ana")
        top = max(r.alerts for r in h.days.values())
        # Every save reported is on disk; beyond that only the one in progress at the kill.
        assert saved <= last_printed <= top <= last_printed + 1
        assert not list(store.directory.glob("*.corrupt-*")) and not list(store.directory.glob("*.tmp"))
