"""The coach of one wearer at run time: guided stretch sessions, breaks that count, the daily goal,
streak and training plan, the day's history record, and the low-battery and "not worn all
morning" notices. See docs/coach.md.

Pure and synchronous, like the tracker: fed the tracker's frames and events (and the battery
level) with :meth:`CoachRuntime.process`, it returns :class:`CoachOutput` (new events and what
the daemon should do about them). No clock of its own (times are the frames' sample-clock
seconds, Unix time in the daemon), no asyncio, and no I/O except through the injected history
store (:class:`HistorySink`), called at day close, at the end of a stretch session and every
``HISTORY_SAVE_S`` of sample time. (About 500 lines: one object whose parts all share the open
day's counts; the pure detectors it uses live in :mod:`slouchd.posture.coach`.)

The runtime relies on two facts about the tracker (docs/coach.md, "Wiring"):

- A real break is seen in the frames: ``sitting_s`` falls to 0 while the wearer is up (moving
  or walking). Falling to 0 while not worn (sensor off for ``break_min_s``) also ends the
  sitting stretch in the tracker, but is not *counted*: nobody can tell a walk from the sensor
  left on a chair.
- At midnight the tracker replaces its ``DayTotals`` with a fresh object and emits
  ``day_summary``: the object passed as ``totals`` before the rollover is the finished day's.
  That is how the day's record gets the totals in seconds (``day_summary`` carries minutes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol

from slouchd.history import DEFAULT_KEEP_DAYS, DayRecord, History, history_payload
from slouchd.model import Activity, Event, EventKind, Posture, PostureFrame
from slouchd.posture import stretch as sj
from slouchd.posture.coach import (
    WEEKDAYS,
    BreakTally,
    CoachSettings,
    LowBattery,
    MorningWear,
    Streak,
    day_result,
    plan_mode,
    plan_today,
    stretch_counts_as_break,
)
from slouchd.posture.stretch_catalog import StretchCatalog
from slouchd.posture.wellbeing import DayTotals

HISTORY_SAVE_S = 600.0
"""Today's record is written to the history at least this often (sample time), seconds: the
wearer's state file (saved every 5 s) holds the exact counts, the history is for the report."""
STRETCH_RESET_S = 5.0
"""A sitting time falling to 0 this soon after a completed session is the session's reset, not
a real break, seconds."""
MAX_FRAME_STEP_S = 2.0
"""One frame stands for at most this much time (training minutes), seconds."""
SNAPSHOT_VERSION = 1

HAPTIC_LEVELS = {("stretch_rep_complete", ""): 1, ("stretch_complete", ""): 1,
                 ("stretch_cue", "no_bouncing"): 2}
"""Events that ask for a buzz (``"haptic": level``) on a sensor that can: "let go" at the end of
each hold and of the session, and with ``[coach] buzz_on_bounce`` the no-bouncing cue. A buzz
mutes the sensor for ``buzz_s + settle_s`` (0.5-1.3 s): harmless while resting, but mid-hold
the angle jumps when the samples resume, and in about 2 % of bouncing holds the judge then
takes back up to 4 s of the hold (measured, bench/coach.py "buzz" groups)."""


class HistorySink(Protocol):
    """Where the history lives (:class:`slouchd.history.HistoryStore`, or the daemon's wrapper
    that writes in a worker thread)."""

    def load(self, wearer: str) -> History: ...

    def save_doc(self, wearer: str, doc: dict[str, Any], generation: int | None = None) -> None: ...


@dataclass
class CoachOutput:
    """What one call produced.

    Attributes:
        events: new events, in time order (publish them like the tracker's).
        reset_sitting: a completed stretch session counts as a break: reset the tracker's sitting
            time now (``tracker.take_break()``).
        mode: the training plan switched the detection mode to this (``training`` /
            ``tracking``); None = no change.
        history_changed: the retained ``history`` payload changed (publish it).
    """

    events: list[Event] = field(default_factory=list)
    reset_sitting: bool = False
    mode: str | None = None
    history_changed: bool = False


class CoachRuntime:
    """The coach of one wearer.

    Args:
        wearer: the wearer's name (the history store's key).
        catalog: the stretch catalogue.
        stretch: how strictly stretches are judged (``[stretch]``).
        coach: ``[coach]`` (goal, plan, notices).
        store: the history store; None keeps the history in memory only.
        haptic: the wearer's sensor can buzz (its profile declares ``[haptic]`` and
            ``[ble] haptic`` is on): events that want a buzz carry ``"haptic": level``.
        tz: the wearer's time zone (None = the system's), for the morning window.
        epoch_offset_s: sample time + this = Unix time (0 in the daemon), seconds.
    """

    def __init__(self, wearer: str, catalog: StretchCatalog, *, stretch: sj.StretchSettings | None = None,
                 coach: CoachSettings | None = None, store: HistorySink | None = None, haptic: bool = False,
                 tz: tzinfo | None = None, epoch_offset_s: float = 0.0,
                 keep_days: int = DEFAULT_KEEP_DAYS) -> None:
        self.wearer = wearer
        self.catalog = catalog
        self.stretch_settings = stretch or sj.StretchSettings()
        self.settings = coach or CoachSettings()
        self.store = store
        self.haptic = haptic
        self.tz = tz
        self.epoch_offset_s = epoch_offset_s
        self.history = store.load(wearer) if store is not None else History(keep_days)
        self.tally = BreakTally(self.settings.answer_within_min * 60.0)
        self.streak = Streak()
        self.today = DayRecord.of("")  # the open day's coach counts (its totals: see _totals)
        self.plan_start_day: str | None = None
        self.training_s = 0.0
        self.goal_announced = False
        self.judge: sj.StretchJudge | None = None
        n = self.settings.notices
        self.battery = LowBattery(n.low_battery_pct, n.battery_rearm_pct)
        self.morning = MorningWear(n.morning_min_worn_min * 60.0)
        self._morning_day: date | None = None
        self._morning_day_end_s = -math.inf
        self._totals: DayTotals | None = None
        self._prev_sitting: float | None = None
        self._last_frame_t: float | None = None
        self._last_t: float | None = None
        self._stretch_reset_until = -math.inf
        self._mode: str | None = None
        self._history_saved_t = -math.inf
        self._generation = 0

    # ------------------------------------------------------------------------------ feeding
    def observe_totals(self, totals: DayTotals) -> None:
        """The tracker's live ``DayTotals`` (after a restore, before the first batch)."""
        self._totals = totals
        self._adopt_day(totals.date)

    def process(self, frames: list[PostureFrame], events: list[Event], totals: DayTotals | None = None,
                battery_pct: float | None = None) -> CoachOutput:
        """One tracker output (or the daemon's idle frame): frames and events in time order.

        Args:
            frames: the tracker's frames (0.1 s apart while :attr:`needs_ticks`).
            events: the tracker's events.
            totals: the tracker's live ``DayTotals`` after this output.
            battery_pct: the sensor's battery level, % (None: unknown).
        """
        out = CoachOutput()
        i = j = 0
        while i < len(events) or j < len(frames):
            # Events first at equal times: a day_summary belongs before the new day's first frame.
            if i < len(events) and (j >= len(frames) or events[i].t_s <= frames[j].t_s):
                self._on_event(events[i], out)
                i += 1
            else:
                self._on_frame(frames[j], out)
                j += 1
        if totals is not None:
            self._totals = totals
            self._adopt_day(totals.date)
        # No time yet (nothing observed): the reading waits, so the notice is not lost.
        if self._last_t is not None and self.battery.update(battery_pct):
            out.events.append(self._event(self._last_t, EventKind.LOW_BATTERY, {
                "battery": battery_pct, "threshold_pct": self.battery.low_pct,
                "text": f"The posture sensor's battery is at {battery_pct:.0f} %: charge it soon."}))
        if self._last_t is not None and self._last_t - self._history_saved_t >= HISTORY_SAVE_S:
            self._save_history(self._last_t)
        return out

    @property
    def needs_ticks(self) -> bool:
        """A stretch session is running: it needs every 0.1 s frame (bounces are 0.3-2 s long)."""
        return self.judge is not None and not self.judge.done

    # ----------------------------------------------------------------------------- commands
    def start_stretch(self, t_s: float, session: str | None = None) -> CoachOutput:
        """Start a guided session (``None``: ``[coach] default_session``) at sample time ``t_s``.

        Raises:
            ValueError: a session is running already, or no such session (the message lists them).
        """
        if self.needs_ticks:
            assert self.judge is not None
            raise ValueError(f"stretch session {self.judge.session!r} is running: stop it first")
        name = session or self.settings.default_session
        try:
            chosen = self.catalog.session(name)
        except KeyError:
            known = ", ".join(s.name for s in self.catalog.sessions)
            raise ValueError(f"no stretch session {name!r} (known: {known})") from None
        self.judge = sj.StretchJudge(self.catalog.steps_of(chosen), self.stretch_settings,
                                     session=chosen.name, t_start_s=t_s)
        out = CoachOutput()
        self._stretch_events(self.judge.start(), out)
        return out

    def stop_stretch(self, t_s: float, reason: str = "stopped") -> CoachOutput:
        """Stop the running session (it is abandoned, with ``reason``); nothing when none runs."""
        out = CoachOutput()
        if self.judge is not None and not self.judge.done:
            self._stretch_events(self.judge.stop(max(t_s, self.judge.t_s), reason), out)
        return out

    def command(self, t_s: float, value: str) -> CoachOutput:
        """The MQTT command ``{"stretch": value}`` at sample time ``t_s``: ``start`` (the default
        session), a session's name, or ``stop``.

        Raises:
            ValueError: refuse the command with this message (nothing changed).
        """
        if value == "stop":
            if not self.needs_ticks:
                raise ValueError("no stretch session is running")
            return self.stop_stretch(t_s, "stopped")
        return self.start_stretch(t_s, None if value == "start" else value)

    # ------------------------------------------------------------------------------ outputs
    def state(self) -> dict[str, Any]:
        """The coach's keys of the wearer's state payload (docs/coach.md, "State keys")."""
        goal = self._today_goal()
        plan = plan_today(self.settings.plan, self.plan_start_day, self.today.date or _NO_DAY)
        shown = self.streak.shown(goal)
        return {
            "breaks_today": self.tally.counted,
            "breaks_answered_today": self.tally.answered,
            "stretch_sessions_today": self.today.stretch_sessions,
            "goal_met": None if goal is None else goal["met"],
            "streak_days": shown,
            "best_streak_days": max(self.streak.best, shown),
            "plan_day": plan["day"],
            "plan_days": plan["days"] if plan["active"] else None,
            "training_min_today": plan["training_min"],
            "training_done_min": round(self.training_s / 60.0, 1) if plan["active"] else None,
            "stretch": self.judge.status if self.judge is not None else "idle",
        }

    def stretch_state(self) -> dict[str, Any]:
        """The retained ``stretch`` topic: the session's current step, or ``{"status": "idle"}``."""
        return {"status": "idle"} if self.judge is None else self.judge.state()

    def history_payload(self, days: int = 90) -> dict[str, Any]:
        """The retained ``history`` topic: closed days and today so far."""
        return history_payload(self.history, days, today=self._today_record())

    def snapshot(self) -> dict[str, Any]:
        """The coach's part of the wearer's state file (JSON-able; see :meth:`restore`)."""
        m = self.morning
        return {
            "version": SNAPSHOT_VERSION,
            "day": self.today.date,
            "tally": self.tally.to_dict(),
            "stretch_today": {"sessions": self.today.stretch_sessions,
                              "abandoned": self.today.stretch_abandoned,
                              "bounce_cues": self.today.stretch_bounce_cues},
            "streak": self.streak.to_dict(),
            "plan_start_day": self.plan_start_day,
            "training_s": round(self.training_s, 1),
            "goal_announced": self.goal_announced,
            "battery_low": self.battery.notified,
            "morning": {"day": None if self._morning_day is None else self._morning_day.isoformat(),
                        "worn_s": round(m.worn_s, 1), "watched_from_s": m.watched_from_s, "judged": m.judged},
        }

    def restore(self, d: dict[str, Any]) -> None:
        """Take back :meth:`snapshot` output (a running session is not: it ends with a restart).

        Raises:
            ValueError: a malformed snapshot (nothing is changed then).
        """
        try:
            if d.get("version") != SNAPSHOT_VERSION:
                raise ValueError(f"version {d.get('version')!r}")
            day = str(d.get("day") or "")
            if day:
                date.fromisoformat(day)
            tally = BreakTally.from_dict(d.get("tally") or {}, self.settings.answer_within_min * 60.0)
            st = d.get("stretch_today") or {}
            counts = {k: int(st.get(k, 0)) for k in ("sessions", "abandoned", "bounce_cues")}
            streak = Streak.from_dict(d.get("streak") or {})
            start = d.get("plan_start_day")
            if start is not None:
                start = date.fromisoformat(str(start)).isoformat()
            training = float(d.get("training_s", 0.0))
            morning = d.get("morning") or {}
            m_day = morning.get("day")
            m_date = None if m_day is None else date.fromisoformat(str(m_day))
        except (TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"coach state: {err}") from None
        if min(*counts.values(), training) < 0 or not math.isfinite(training):
            raise ValueError("coach state: negative or infinite count")
        self.tally, self.streak, self.plan_start_day, self.training_s = tally, streak, start, training
        self.today = DayRecord.of(day, breaks=tally.breaks, stretch_breaks=tally.stretch_breaks,
                                  stretch_sessions=counts["sessions"], stretch_abandoned=counts["abandoned"],
                                  stretch_bounce_cues=counts["bounce_cues"])
        self.goal_announced = bool(d.get("goal_announced", False))
        self.battery.notified = bool(d.get("battery_low", False))
        if m_date is not None:
            self._morning_day = m_date
            self._morning_day_end_s = -math.inf  # recomputed at the first observation
            self.morning.worn_s = float(morning.get("worn_s", 0.0))
            w = morning.get("watched_from_s")
            self.morning.watched_from_s = None if w is None else float(w)
            self.morning.judged = bool(morning.get("judged", False))

    # ----------------------------------------------------------------------------- internals
    def _event(self, t_s: float, kind: EventKind, data: dict[str, Any]) -> Event:
        cue = str(data.get("cue", ""))
        level = HAPTIC_LEVELS.get((kind.value, cue))
        if level is not None and self.haptic and (cue != "no_bouncing" or self.settings.buzz_on_bounce):
            data = {**data, "haptic": level}
        return Event(t_s, kind, data)

    def _adopt_day(self, day: str) -> None:
        """The tracker's totals are dated ``day``: the open day's counts belong to it."""
        if not day or day == self.today.date:
            return
        if self.today.date and day > self.today.date:
            # The tracker moved on without a day_summary for our day (its totals were reset, e.g. a
            # state file it could not use): close our counts as their own day, without totals.
            self._close(DayTotals(date=self.today.date), None)
        if not self.today.date or day > self.today.date:
            self.today = DayRecord.of(day)

    def _on_event(self, ev: Event, out: CoachOutput) -> None:
        self._last_t = ev.t_s
        if ev.kind is EventKind.BREAK_REMINDER:
            self.tally.on_reminder(ev.t_s)
        elif ev.kind is EventKind.DAY_SUMMARY:
            d = str(ev.data.get("date", ""))
            held = self._totals
            tot = held if held is not None and held.date == d else _totals_from_stats(ev.data)
            self._close(tot, out)

    def _close(self, tot: DayTotals, out: CoachOutput | None) -> None:
        """Close the day of ``tot``: goal, streak, history record; the next day starts empty.

        A day closed already (a restart replaying the same midnight) keeps its record; the
        counters start afresh either way."""
        if not (self.streak.last_day and tot.date <= self.streak.last_day):
            goal = day_result(tot.upright_s, tot.slouched_s, self.tally.counted, self.settings.goal)
            self.streak.close_day(tot.date, goal)
            counts = self.today if self.today.date in ("", tot.date) else None
            self.history.put(DayRecord.from_day(tot, self.tally, goal, self.streak.current, counts))
            self._write_history()
            if out is not None:
                out.history_changed = True
        self.tally = BreakTally(self.settings.answer_within_min * 60.0)
        self.today = DayRecord.of("")
        self.training_s = 0.0
        self.goal_announced = False

    def _on_frame(self, f: PostureFrame, out: CoachOutput) -> None:
        t = f.t_s
        dt = 0.0 if self._last_frame_t is None else min(max(t - self._last_frame_t, 0.0), MAX_FRAME_STEP_S)
        self._last_frame_t = self._last_t = t
        if self.judge is not None and not self.judge.done:
            self._stretch_events(self.judge.update(t, f.flexion_deg, f.lateral_deg,
                                                   f.activity is Activity.STILL, f.worn), out)
        self._break_check(f, out)
        self._morning_check(t, f.worn, out)
        self._plan_step(f, dt, out)
        self._goal_check(t, out)

    def _break_check(self, f: PostureFrame, out: CoachOutput) -> None:
        prev, self._prev_sitting = self._prev_sitting, f.sitting_s
        if prev is None or prev <= 0 or f.sitting_s > 0:
            return
        if f.t_s <= self._stretch_reset_until:
            self._stretch_reset_until = -math.inf  # the session's own reset: counted already
            return
        if not f.worn or f.activity not in (Activity.MOVING, Activity.WALKING):
            return  # away (sensor off or no data): the sitting stretch ended, but it is not counted
        data = self.tally.on_break(f.t_s, "break")
        self.today.breaks = self.tally.breaks
        out.events.append(self._event(f.t_s, EventKind.BREAK_TAKEN, data))

    def _stretch_events(self, events: list[sj.StretchEvent], out: CoachOutput) -> None:
        for sev in events:
            out.events.append(self._event(sev.t_s, EventKind(sev.kind), dict(sev.data)))
            if sev.kind in (sj.STRETCH_COMPLETE, sj.STRETCH_ABANDONED):
                self._session_over(sev.t_s, out)

    def _session_over(self, t_s: float, out: CoachOutput) -> None:
        assert self.judge is not None
        result = self.judge.result()
        rec = self.today
        if result.get("complete"):
            rec.stretch_sessions += 1
        else:
            rec.stretch_abandoned += 1
        rec.stretch_bounce_cues += int(result.get("bounce_cues", 0))
        if stretch_counts_as_break(result):
            data = self.tally.on_break(t_s, "stretch")
            rec.stretch_breaks = self.tally.stretch_breaks
            out.events.append(self._event(t_s, EventKind.BREAK_TAKEN, data))
            out.reset_sitting = True
            self._stretch_reset_until = t_s + STRETCH_RESET_S
        self._save_history(t_s)
        out.history_changed = True

    def _morning_check(self, t_s: float, worn: bool, out: CoachOutput) -> None:
        if t_s >= self._morning_day_end_s:
            self._morning_new_day(t_s)
        worn_min = self.morning.observe(t_s, worn)
        if worn_min is not None:
            n = self.settings.notices
            out.events.append(self._event(t_s, EventKind.NOT_WORN_MORNING, {
                "worn_min": worn_min, "since": n.morning_start, "until": n.morning_end,
                "text": "The posture sensor was hardly worn this morning: put it on to keep track."}))

    def _morning_new_day(self, t_s: float) -> None:
        off, tz = self.epoch_offset_s, self.tz
        d = datetime.fromtimestamp(t_s + off, tz=tz).date()

        def at(day: date, hhmm: str) -> float:
            h, m = (int(x) for x in hhmm.split(":"))
            return datetime.combine(day, time(h, m), tzinfo=tz).timestamp() - off

        self._morning_day_end_s = at(d + timedelta(days=1), "00:00")
        n = self.settings.notices
        enabled = n.morning_min_worn_min > 0 and WEEKDAYS[d.weekday()] in n.morning_days
        if d == self._morning_day:  # restored on the same day: keep what was counted
            self.morning.start_s, self.morning.end_s = at(d, n.morning_start), at(d, n.morning_end)
            self.morning.enabled = enabled
            self.morning.last_t_s = None
            return
        self._morning_day = d
        self.morning.new_day(at(d, n.morning_start), at(d, n.morning_end), enabled)

    def _plan_step(self, f: PostureFrame, dt: float, out: CoachOutput) -> None:
        plan = self.settings.plan
        day = self.today.date
        if not plan.enabled or not day:
            return
        if self.plan_start_day is None:
            self.plan_start_day = day
        mode = plan_mode(plan, self.plan_start_day, day, self.training_s)
        if mode == "training" and f.posture in (Posture.UPRIGHT, Posture.SLOUCHING):
            self.training_s += dt
        if mode != self._mode:
            self._mode = mode
            out.mode = mode

    def _today_goal(self) -> dict[str, Any] | None:
        tot = self._totals
        if tot is None or tot.date != self.today.date:
            return None
        return day_result(tot.upright_s, tot.slouched_s, self.tally.counted, self.settings.goal)

    def _goal_check(self, t_s: float, out: CoachOutput) -> None:
        if self.goal_announced:
            return
        goal = self._today_goal()
        if goal is None or not goal["met"]:
            return
        self.goal_announced = True
        out.events.append(self._event(t_s, EventKind.GOAL_MET, {
            "date": self.today.date, "upright_pct": goal["upright_pct"], "breaks": goal["breaks"],
            "streak_days": self.streak.shown(goal),
            "text": "Today's posture goal is met: well done."}))

    def _today_record(self) -> DayRecord | None:
        day = self.today.date
        if not day:
            return None
        tot = self._totals if self._totals is not None and self._totals.date == day else DayTotals(date=day)
        goal = self._today_goal()
        rec = DayRecord.from_day(tot, self.tally, goal, self.streak.shown(goal), self.today)
        rec.goal_met = True if rec.goal_met else None  # an open day is met or not yet judged, never missed
        return rec

    def _save_history(self, t_s: float) -> None:
        """Today's record into the history, and the history to the store."""
        self._history_saved_t = t_s
        rec = self._today_record()
        if rec is not None:
            self.history.put(rec)
        self._write_history()

    def _write_history(self) -> None:
        if self.store is None:
            return
        self._generation += 1
        self.store.save_doc(self.wearer, self.history.to_dict(), self._generation)


class EverySecond:
    """Which frames to publish as states when the tracker sends one every 0.1 s (during a stretch
    session): the first of each whole second of sample time. Whole seconds, not a modulo test:
    0.1 s steps added to a Unix time drift by float rounding."""

    def __init__(self) -> None:
        self._second: int | None = None

    def due(self, t_s: float) -> bool:
        """Whether the frame at ``t_s`` (seconds) is the first of its second."""
        second = math.floor(t_s + 1e-6)
        if second == self._second:
            return False
        self._second = second
        return True


_NO_DAY = "1970-01-01"
"""The day the plan is judged on before any day is known (only its ``days`` is shown then)."""


def _totals_from_stats(stats: dict[str, Any]) -> DayTotals:
    """Approximate totals from a ``day_summary`` (minutes, 0.1 % rounding), when the tracker's own
    were never seen (the coach started after that day's last batch)."""
    slouched = float(stats.get("slouched_min") or 0.0) * 60.0
    sitting = float(stats.get("sitting_min") or 0.0) * 60.0
    pct = stats.get("upright_pct")
    if pct is None:
        upright = 0.0
    elif pct >= 100.0:
        upright = sitting
    else:
        upright = slouched * float(pct) / (100.0 - float(pct))
    return DayTotals(date=str(stats.get("date", "")), upright_s=upright, slouched_s=slouched,
                     sitting_s=sitting,
                     longest_sitting_s=float(stats.get("longest_sitting_min") or 0.0) * 60.0,
                     alerts=int(stats.get("alerts", 0)), break_reminders=int(stats.get("break_reminders", 0)))


__all__ = ["CoachOutput", "CoachRuntime", "EverySecond", "HistorySink"]
