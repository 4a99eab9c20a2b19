"""Sitting time, break reminders and the day's totals, plus the local wall clock they run on.

A *break* is ``break_min_s`` of being up and about: walking or moving, where still moments
shorter than ``BREAK_GRACE_S`` (waiting for the kettle) do not interrupt it. Standing still
cannot be told from sitting still by one sensor on the upper back, so it does not count. Not
wearing the sensor (or no data) for ``break_min_s`` also counts as a break: the wearer is most
likely away from the desk, and we cannot know otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from slouchd.model import Event, EventKind
from slouchd.posture.settings import WellbeingSettings

BREAK_GRACE_S = 30.0
"""A still moment shorter than this does not interrupt a break in progress, seconds."""

SEATED, ACTIVE, ABSENT = 0, 1, 2
"""What the tracker tells the wellbeing counter about a tick."""


def parse_quiet_hours(windows: list[str]) -> list[tuple[time, time]]:
    """``["22:00-07:00", ...]`` as (start, end) local times; a window may wrap midnight.

    Raises:
        ValueError: a window that is not ``HH:MM-HH:MM`` with 00:00..23:59.
    """
    out = []
    for w in windows:
        m = re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", w.strip())
        if not m:
            raise ValueError(f"quiet hours window {w!r}: expected HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        out.append((time(h1, m1), time(h2, m2)))
    return out


class LocalClock:
    """Sample time to local wall time: wall = t_s + epoch_offset_s (Unix seconds) in ``tz``.

    Caches the current local day so the per-tick checks are float comparisons.
    """

    def __init__(self, epoch_offset_s: float = 0.0, tz: tzinfo | None = None,
                 quiet_hours: list[str] | None = None) -> None:
        self.epoch_offset_s = epoch_offset_s
        self.tz = tz
        self.day: date | None = None
        self.day_start_s = float("inf")
        self.day_end_s = float("-inf")
        self.quiet: list[tuple[float, float]] = []
        self._quiet_spec = self._parse(quiet_hours or [])
        self.min_day: date | None = None
        """Never report a day before this one (the day of restored totals), see :meth:`advance`."""

    @staticmethod
    def _parse(windows: list[str]) -> list[tuple[time, time]]:
        return parse_quiet_hours(windows)

    def set_quiet_hours(self, windows: list[str]) -> None:
        self._quiet_spec = self._parse(windows)
        if self.day is not None:
            self._load_day(self.day)

    def _ts(self, d: date, tm: time) -> float:
        """Sample time of local wall time ``d tm``."""
        return datetime.combine(d, tm, tzinfo=self.tz).timestamp() - self.epoch_offset_s

    def _load_day(self, d: date) -> None:
        self.day = d
        self.day_start_s = self._ts(d, time(0, 0))
        self.day_end_s = self._ts(d + timedelta(days=1), time(0, 0))
        self.quiet = []
        for start, end in self._quiet_spec:
            if start < end:
                self.quiet.append((self._ts(d, start), self._ts(d, end)))
            elif start > end:  # wraps midnight: the morning part and the evening part of this day
                self.quiet.append((self.day_start_s, self._ts(d, end)))
                self.quiet.append((self._ts(d, start), self.day_end_s))

    def local_date(self, t_s: float) -> date:
        return datetime.fromtimestamp(t_s + self.epoch_offset_s, tz=self.tz).date()

    def hold_day(self, iso_date: str) -> None:
        """Never move to a day before ``iso_date`` (restored totals' date; "" = no limit).

        Raises:
            ValueError: not an ISO date.
        """
        self.min_day = date.fromisoformat(iso_date) if iso_date else None

    def advance(self, t_s: float) -> bool:
        """Move to the local day holding ``t_s``; True if the day changed (midnight passed).

        The day never goes back: a wall clock stepped back across midnight (or a restart with
        the clock behind the saved totals) keeps ``day`` on the later date, so that day's totals
        are not closed early and thrown away; bounds and quiet hours follow the day ``t_s`` is
        really in, so the real midnight is still noticed.
        """
        if self.day_start_s <= t_s < self.day_end_s:
            return False
        first = self.day is None
        now = self.local_date(t_s)
        floor = self.day if self.day is not None else self.min_day
        if floor is not None and now < floor:
            self._load_day(now)
            self.day = floor
            return False
        changed = not first and now != self.day
        self._load_day(now)
        return changed

    def is_quiet(self, t_s: float) -> bool:
        return any(a <= t_s < b for a, b in self.quiet)


@dataclass
class DayTotals:
    """Today's totals (times in seconds)."""

    date: str = ""
    upright_s: float = 0.0
    slouched_s: float = 0.0
    sitting_s: float = 0.0
    longest_sitting_s: float = 0.0
    alerts: int = 0
    break_reminders: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_stats(self) -> dict[str, Any]:
        """The stats message (times in minutes)."""
        seated = self.upright_s + self.slouched_s
        return {
            # Before the first tick dates the totals, the system's local day (a stats message
            # published at start must not carry an empty date).
            "date": self.date or date.today().isoformat(),
            "upright_pct": None if seated <= 0 else round(100.0 * self.upright_s / seated, 1),
            "slouched_min": round(self.slouched_s / 60.0, 1),
            "alerts": self.alerts,
            "break_reminders": self.break_reminders,
            "longest_sitting_min": round(self.longest_sitting_s / 60.0, 1),
            "sitting_min": round(self.sitting_s / 60.0, 1),
        }

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "date", "upright_s", "slouched_s", "sitting_s", "longest_sitting_s", "alerts", "break_reminders")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DayTotals:
        return cls(str(d.get("date", "")), float(d.get("upright_s", 0)), float(d.get("slouched_s", 0)),
                   float(d.get("sitting_s", 0)), float(d.get("longest_sitting_s", 0)),
                   int(d.get("alerts", 0)), int(d.get("break_reminders", 0)))


class Wellbeing:
    """Sitting stretch since the last real break, break reminders, and the day's totals.

    Reminders never burst: at most one per ``break_repeat_min`` of sample time, and the next
    one is always due later than the stretch already is (also for a restored stretch).
    """

    def __init__(self, settings: WellbeingSettings) -> None:
        self.settings = settings
        self.sitting_s = 0.0
        self.on_break = False
        self.active_s = 0.0
        self.seated_run_s = 0.0
        self.absent_s = 0.0
        self.next_reminder_s = settings.break_after_min * 60.0
        self.last_reminder_t = -math.inf  # sample time of the last reminder sent, seconds
        self.totals = DayTotals()
        self._resume: _Resume | None = None

    def _break_taken(self) -> None:
        self.sitting_s = 0.0
        self.on_break = True
        self.active_s = 0.0
        self.seated_run_s = 0.0
        self.next_reminder_s = self.settings.break_after_min * 60.0

    def _align_next_reminder(self) -> None:
        """The first reminder of the schedule (break_after, then every break_repeat) still ahead."""
        s = self.settings
        self.next_reminder_s = s.break_after_min * 60.0
        if self.sitting_s >= self.next_reminder_s:
            repeat = s.break_repeat_min * 60.0
            behind = math.floor((self.sitting_s - self.next_reminder_s) / repeat) + 1
            self.next_reminder_s += repeat * behind

    # ----- persistence
    def export(self, epoch_offset_s: float, last_t_s: float) -> dict[str, Any]:
        """The stretch as JSON-able data, times as Unix seconds (``sample + epoch_offset_s``).

        ``last_t_s`` is the newest sample time (-inf before any): the stretch's "saved at".
        """
        d: dict[str, Any] = {"sitting_s": round(self.sitting_s, 1), "on_break": self.on_break}
        if math.isfinite(last_t_s):
            d["stretch_at"] = round(last_t_s + epoch_offset_s, 3)
        if math.isfinite(self.last_reminder_t):
            d["last_reminder_at"] = round(self.last_reminder_t + epoch_offset_s, 3)
        return d

    def restore(self, d: dict[str, Any], epoch_offset_s: float) -> None:
        """Take back :meth:`export` output; judged at the first tick (see :meth:`_resume_at`).

        Raises:
            ValueError: a value that is not a finite, non-negative number.
        """
        sitting = _finite(d.get("sitting_s", 0.0), "sitting_s")
        if sitting < 0:
            raise ValueError("sitting_s is negative")
        at = d.get("stretch_at")
        last = d.get("last_reminder_at")
        self._resume = _Resume(
            sitting_s=sitting, on_break=bool(d.get("on_break", False)),
            at_wall_s=None if at is None else _finite(at, "stretch_at"),
            day=self.totals.date, epoch_offset_s=epoch_offset_s)
        if last is not None:
            self.last_reminder_t = _finite(last, "last_reminder_at") - epoch_offset_s
        self.sitting_s = sitting
        self._align_next_reminder()

    def _resume_at(self, t_s: float, r: _Resume) -> None:
        """First tick after a restore at sample time ``t_s``: does the saved stretch go on?

        Only when the totals are still the saved day's and the downtime is known and shorter
        than a break; the downtime then counts as time away (a longer absence ends the stretch).
        """
        self._resume = None
        downtime = None if r.at_wall_s is None else t_s + r.epoch_offset_s - r.at_wall_s
        same_day = not r.day or r.day == self.totals.date
        if not same_day or downtime is None or not (0.0 <= downtime < self.settings.break_min_s):
            if not same_day or downtime is not None:
                self._break_taken()
                self.on_break = False  # nothing to finish: a fresh stretch starts now
            return
        self.sitting_s = r.sitting_s
        self.on_break = r.on_break
        self.absent_s = downtime
        self._align_next_reminder()

    def step(self, t_s: float, dt_s: float, kind: int, slouching: bool, calibrated: bool,
             may_remind: bool, out: list[Event]) -> None:
        """Advance one tick ending at ``t_s``; a break reminder is appended to ``out``."""
        if self._resume is not None:
            self._resume_at(t_s - dt_s, self._resume)
        if kind == ABSENT:
            self._absent(dt_s)
        elif kind == ACTIVE:
            self.absent_s = 0.0
            self._active(dt_s)
        else:
            self.absent_s = 0.0
            if self._seated(dt_s, slouching, calibrated):
                self._remind(t_s, may_remind, out)

    def _absent(self, dt_s: float) -> None:
        """Not worn or no data: long enough, it is a break."""
        self.absent_s += dt_s
        if self.absent_s >= self.settings.break_min_s and not self.on_break:
            self._break_taken()

    def _active(self, dt_s: float) -> None:
        """Moving or walking: part of the sitting stretch until it lasts a break."""
        self.seated_run_s = 0.0
        if not self.on_break:
            self.active_s += dt_s
            self.sitting_s += dt_s  # provisional: a short outing is part of the sitting stretch
            if self.active_s >= self.settings.break_min_s:
                tot = self.totals
                tot.longest_sitting_s = max(tot.longest_sitting_s, self.sitting_s - self.active_s)
                self._break_taken()

    def _seated(self, dt_s: float, slouching: bool, calibrated: bool) -> bool:
        """Seated (still): today's totals and the stretch. Returns whether the stretch goes on (a
        reminder may be due), False while a break is still being finished."""
        tot = self.totals
        self.seated_run_s += dt_s
        tot.sitting_s += dt_s
        if calibrated:
            if slouching:
                tot.slouched_s += dt_s
            else:
                tot.upright_s += dt_s
        if self.on_break:
            if self.seated_run_s < BREAK_GRACE_S:
                return False
            self.on_break = False
            self.sitting_s = self.seated_run_s
        else:
            if self.seated_run_s >= BREAK_GRACE_S:
                self.active_s = 0.0
            self.sitting_s += dt_s
        if self.sitting_s > tot.longest_sitting_s:
            tot.longest_sitting_s = self.sitting_s
        return True

    def _remind(self, t_s: float, may_remind: bool, out: list[Event]) -> None:
        """A break reminder when the stretch reaches the next one due."""
        if self.sitting_s < self.next_reminder_s:
            return
        s = self.settings
        repeat = s.break_repeat_min * 60.0
        self.next_reminder_s += repeat
        if self.next_reminder_s <= self.sitting_s:  # far behind (settings changed): re-align
            self._align_next_reminder()
        # One reminder per repeat interval, ever (the small slack absorbs tick rounding).
        if may_remind and s.break_reminders and t_s - self.last_reminder_t >= repeat - 1.0:
            self.last_reminder_t = t_s
            self.totals.break_reminders += 1
            out.append(Event(t_s, EventKind.BREAK_REMINDER,
                             {"sitting_min": round(self.sitting_s / 60.0, 1)}))

    # ----- coach (docs/coach.md, "Wiring") --------------------------------------------------
    def take_break(self) -> None:
        """A break that counts happened outside the tracker's view (a completed stretch session):
        the sitting stretch restarts now."""
        self._break_taken()


@dataclass(frozen=True)
class _Resume:
    """A restored sitting stretch waiting for the first tick to be judged."""

    sitting_s: float
    on_break: bool
    at_wall_s: float | None  # Unix time the stretch was saved at; None = unknown (old file)
    day: str  # the saved totals' date
    epoch_offset_s: float


def _finite(x: Any, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ValueError(f"{name} is not a number")
    try:
        v = float(x)
    except OverflowError:
        raise ValueError(f"{name} is out of range") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} is not finite")
    return v
