"""The rolling per-day history: bounded, survives restarts, and a crash never loses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from slouchd.history import DayRecord, History, HistoryStore, history_payload

REPO = Path(__file__).resolve().parents[2]


def days_from(start: str, n: int) -> list[str]:
    d0 = date.fromisoformat(start)
    return [(d0 + timedelta(days=k)).isoformat() for k in range(n)]


def filled(n: int, keep_days: int = 120) -> History:
    h = History(keep_days)
    for k, d in enumerate(days_from("2025-01-01", n)):
        h.put(DayRecord.of(d, upright_s=3000.0 + k, slouched_s=600.0, sitting_s=4000.0, alerts=k % 7,
                           breaks=3, goal_met=k % 3 == 0, streak=k % 5))
    return h


def test_history_keeps_the_newest_days_and_its_file_stays_small(tmp_path: Path) -> None:
    h = filled(1000)
    assert len(h.days) == 120
    assert sorted(h.days) == days_from("2025-01-01", 1000)[-120:]
    store = HistoryStore(tmp_path)
    store.save("ana", h)
    assert store.path("ana").stat().st_size < 120 * 400  # bytes: about 350 per day
    with pytest.raises(ValueError, match="90"):
        History(30)


def test_history_survives_a_restart(tmp_path: Path) -> None:
    h = filled(95)
    h.add_stretch("2025-04-05", {"complete": True, "bounce_cues": 2})
    h.add_stretch("2025-04-05", {"complete": False, "bounce_cues": 0})
    HistoryStore(tmp_path).save("ana", h)
    back = HistoryStore(tmp_path).load("ana")  # a new process would do exactly this
    assert back.to_dict() == h.to_dict()
    rec = back.days["2025-04-05"]
    assert (rec.stretch_sessions, rec.stretch_abandoned, rec.stretch_bounce_cues) == (1, 1, 2)
    assert HistoryStore(tmp_path).load("nobody").days == {}


def test_a_torn_temporary_file_never_costs_the_saved_history(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path)
    store.save("ana", filled(10))
    (store.directory / ".ana.k3j2.tmp").write_bytes(b'{"version": 1, "state": {"da')  # killed mid-write
    assert len(store.load("ana").days) == 10
    assert not list(store.directory.glob("*.tmp"))


def test_a_corrupt_history_is_moved_aside_and_a_bad_day_is_dropped(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path)
    store.directory.mkdir(parents=True)
    store.path("ana").write_text('{"version": 1, "state": {"days": "lots"}}')
    assert store.load("ana").days == {}
    assert list(store.directory.glob("ana.json.corrupt-*"))
    good = filled(3).to_dict()
    good["days"].append({"date": "2025-02-30", "alerts": 1})
    good["days"].append({"date": "2025-03-01", "alerts": -4})
    good["days"].append({"date": "2025-03-02", "upright_s": float("inf")})
    h = History.from_dict(good)
    assert sorted(h.days) == ["2025-01-01", "2025-01-02", "2025-01-03"] and h.dropped == 3


def test_the_mqtt_payload_is_compact_and_ordered() -> None:
    p = history_payload(filled(200), days=90)
    assert len(p["days"]) == 90 and p["days"][0]["date"] < p["days"][-1]["date"]
    # day 199: 3199 s upright of 3799 s seated
    assert p["days"][-1] == {"date": "2025-07-19", "upright_pct": 84.2, "slouched_min": 10.0,
                             "sitting_min": 66.7, "alerts": 3, "breaks": 3, "stretch_sessions": 0,
                             "goal_met": False, "streak": 4}
    assert len(json.dumps(p)) < 90 * 200


def test_week_fills_days_without_data() -> None:
    h = filled(3)
    week = h.week("2025-01-05")
    assert [r.date for r in week] == days_from("2024-12-30", 7)
    assert week[-1].upright_s == 0 and week[2].upright_s == 3000.0


WRITER = r"""
import sys, itertools
from pathlib import Path
from slouchd.history import DayRecord, History, HistoryStore
store = HistoryStore(Path(sys.argv[1]))
h = History(120)
for i in itertools.count():
    h.put(DayRecord.of(f"2025-01-{1 + i % 28:02d}", alerts=i, upright_s=float(i)))
    store.save("ana", h)
    print(i, flush=True)
"""


def test_kill_9_during_saves_always_leaves_a_whole_history(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                                env=env, text=True)
        assert proc.stdout is not None
        saved = -1
        deadline = time.monotonic() + 20
        while saved < 20 + 7 * attempt and time.monotonic() < deadline:  # kill at a different save each time
            saved = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        h = store.load("ana")
        # Either the last save reported or the one after it (killed after the rename): never less.
        top = max(r.alerts for r in h.days.values())
        assert saved <= top <= saved + 1
        assert not list(store.directory.glob("*.corrupt-*"))


def test_a_day_record_is_made_from_the_engines_pieces() -> None:
    from slouchd.posture.coach import BreakTally, GoalSettings, day_result
    from slouchd.posture.wellbeing import DayTotals

    totals = DayTotals("2026-11-30", upright_s=9000.0, slouched_s=1000.0, sitting_s=10500.0,
                       longest_sitting_s=2400.0, alerts=4, break_reminders=3).to_dict()
    tally = BreakTally(breaks=5, stretch_breaks=1)
    goal = day_result(9000.0, 1000.0, tally.counted, GoalSettings())
    so_far = History().day("2026-11-30")
    so_far.stretch_sessions, so_far.stretch_bounce_cues = 1, 2
    rec = DayRecord.from_day(totals, tally, goal, 7, so_far)
    assert rec.to_dict() == {
        "date": "2026-11-30", "upright_s": 9000.0, "slouched_s": 1000.0, "sitting_s": 10500.0,
        "longest_sitting_s": 2400.0, "alerts": 4, "break_reminders": 3, "breaks": 5, "stretch_breaks": 1,
        "stretch_sessions": 1, "stretch_abandoned": 0, "stretch_bounce_cues": 2, "goal_met": True,
        "streak": 7}
