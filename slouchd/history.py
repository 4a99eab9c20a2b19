"""Rolling per-day history of each wearer: daily totals, breaks, stretch sessions and goal results.

One JSON document per wearer in ``<state_dir>/history/<wearer>.json``, written by
:class:`slouchd.state.StateStore` (temporary file, fsync, rename, fsync of the directory), so
``kill -9`` at any moment leaves the old or the new file, never a torn one, and a corrupt file is
moved aside with a warning. The size is bounded: at most ``keep_days`` days (>= 90) of fixed-size
day records (about 350 bytes each), the oldest dropped first; stretch sessions are kept as daily
counts, not as a growing list.

The daemon folds each finished day in (``day_summary``) and today's running totals as they change;
``slouchd report`` reads the file and ``history_payload`` is the retained MQTT ``history`` JSON.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, fields
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from slouchd.posture.coach import BreakTally
from slouchd.posture.wellbeing import DayTotals
from slouchd.state import StateStore

log = logging.getLogger(__name__)

MIN_KEEP_DAYS = 90
DEFAULT_KEEP_DAYS = 120
MAX_KEEP_DAYS = 3660


TOTALS_FIELDS = ("upright_s", "slouched_s", "sitting_s", "longest_sitting_s", "alerts", "break_reminders")
"""The :class:`DayTotals` fields a record carries (besides ``date``), flat in its JSON."""


@dataclass
class DayRecord:
    """One day of one wearer: the tracker's :class:`DayTotals` of the day plus what the coach
    counted (times in seconds; ``goal_met`` None = the day was not judged).

    The totals are held, not repeated: ``record.totals`` is a ``DayTotals`` and ``record.upright_s``
    and the like read through to it. The JSON (:meth:`to_dict`) stays flat.
    """

    totals: DayTotals
    breaks: int = 0
    stretch_breaks: int = 0
    stretch_sessions: int = 0
    stretch_abandoned: int = 0
    stretch_bounce_cues: int = 0
    goal_met: bool | None = None
    streak: int = 0

    @classmethod
    def of(cls, day: str, **values: Any) -> DayRecord:
        """A record of ``day`` (ISO date) from flat keyword values (totals' and the coach's)."""
        tot = {k: values.pop(k) for k in TOTALS_FIELDS if k in values}
        return cls(DayTotals(date=day, **tot), **values)

    # The totals, read through (the record never keeps a second copy of them).
    @property
    def date(self) -> str:
        return self.totals.date

    @property
    def upright_s(self) -> float:
        return self.totals.upright_s

    @property
    def slouched_s(self) -> float:
        return self.totals.slouched_s

    @property
    def sitting_s(self) -> float:
        return self.totals.sitting_s

    @property
    def longest_sitting_s(self) -> float:
        return self.totals.longest_sitting_s

    @property
    def alerts(self) -> int:
        return self.totals.alerts

    @property
    def break_reminders(self) -> int:
        return self.totals.break_reminders

    @classmethod
    def from_day(cls, totals: DayTotals | dict[str, Any], tally: BreakTally, goal: dict[str, Any] | None,
                 streak: int, stretch: DayRecord | None = None) -> DayRecord:
        """The record of a day from the engine's pieces.

        Args:
            totals: the day's ``DayTotals`` (copied), or its ``to_dict()``.
            tally: the day's breaks that count.
            goal: ``coach.day_result(...)`` of the day (None: not judged yet).
            streak: the streak shown at the end of the day.
            stretch: the day's record so far, whose stretch-session counts are kept.
        """
        tot = DayTotals.from_dict(totals) if isinstance(totals, dict) else copy.copy(totals)
        tot.extra = {}
        return cls(
            tot, breaks=tally.breaks, stretch_breaks=tally.stretch_breaks,
            stretch_sessions=0 if stretch is None else stretch.stretch_sessions,
            stretch_abandoned=0 if stretch is None else stretch.stretch_abandoned,
            stretch_bounce_cues=0 if stretch is None else stretch.stretch_bounce_cues,
            goal_met=None if goal is None else goal.get("met"), streak=streak)

    @property
    def upright_pct(self) -> float | None:
        seated = self.upright_s + self.slouched_s
        return None if seated <= 0 else round(100.0 * self.upright_s / seated, 1)

    def to_dict(self) -> dict[str, Any]:
        d = self.totals.to_dict()
        for k in ("upright_s", "slouched_s", "sitting_s", "longest_sitting_s"):
            d[k] = round(float(d[k]), 1)
        d.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "totals"})
        return d

    @classmethod
    def from_dict(cls, d: Any) -> DayRecord:
        """A record from :meth:`to_dict` output. Raises ValueError naming the bad field."""
        if not isinstance(d, dict):
            raise ValueError("a day record is not an object")
        try:
            day = date.fromisoformat(str(d["date"])).isoformat()
        except (KeyError, ValueError):
            raise ValueError(f"date = {d.get('date')!r}: not an ISO date") from None
        kw: dict[str, Any] = {}
        for name in (*TOTALS_FIELDS, *(f.name for f in fields(cls) if f.name != "totals")):
            if name in d:
                kw[name] = _checked(name, d[name])
        return cls.of(day, **kw)


_INT_FIELDS = frozenset({"alerts", "break_reminders", "breaks", "stretch_breaks", "stretch_sessions",
                         "stretch_abandoned", "stretch_bounce_cues", "streak"})


def _checked(name: str, v: Any) -> Any:
    """One field of a saved day record, checked. Raises ValueError naming it."""
    if name == "goal_met":
        if v is not None and not isinstance(v, bool):
            raise ValueError(f"goal_met = {v!r}: must be true, false or null")
        return v
    if name in _INT_FIELDS:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} = {v!r}: must be a whole number >= 0")
        return v
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} = {v!r}: must be a number >= 0")
    return float(v)


class History:
    """The days of one wearer, newest ``keep_days`` kept.

    Args:
        keep_days: how many days to keep (at least 90), days.
    """

    def __init__(self, keep_days: int = DEFAULT_KEEP_DAYS) -> None:
        if not MIN_KEEP_DAYS <= keep_days <= MAX_KEEP_DAYS:
            raise ValueError(f"keep_days = {keep_days}: must be {MIN_KEEP_DAYS}..{MAX_KEEP_DAYS}")
        self.keep_days = keep_days
        self.days: dict[str, DayRecord] = {}
        self.dropped = 0  # malformed records dropped at load

    def day(self, day: str) -> DayRecord:
        """The record of ``day`` (ISO date), created empty if new (and the oldest days trimmed)."""
        rec = self.days.get(day)
        if rec is None:
            day = date.fromisoformat(day).isoformat()
            rec = self.days[day] = DayRecord.of(day)
            self._trim()
        return rec

    def put(self, record: DayRecord) -> None:
        """Replace the record of ``record.date`` (today's totals as they change, or a closed day)."""
        self.days[record.date] = record
        self._trim()

    def add_stretch(self, day: str, result: dict[str, Any]) -> None:
        """Count a finished stretch session (``StretchJudge.result()``) on ``day``."""
        rec = self.day(day)
        if result.get("complete"):
            rec.stretch_sessions += 1
        else:
            rec.stretch_abandoned += 1
        rec.stretch_bounce_cues += int(result.get("bounce_cues", 0))

    def _trim(self) -> None:
        if len(self.days) > self.keep_days:
            for d in sorted(self.days)[: len(self.days) - self.keep_days]:
                del self.days[d]

    def sorted_days(self) -> list[DayRecord]:
        return [self.days[d] for d in sorted(self.days)]

    def week(self, last_day: str, n: int = 7) -> list[DayRecord]:
        """The ``n`` days ending with ``last_day``, oldest first; days without data are empty records."""
        end = date.fromisoformat(last_day)
        out = []
        for k in range(n - 1, -1, -1):
            d = (end - timedelta(days=k)).isoformat()
            out.append(self.days.get(d) or DayRecord.of(d))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"keep_days": self.keep_days, "days": [r.to_dict() for r in self.sorted_days()]}

    @classmethod
    def from_dict(cls, d: Any, keep_days: int = DEFAULT_KEEP_DAYS) -> History:
        """Restore :meth:`to_dict` output; malformed day records are dropped (counted in
        ``dropped``, logged once), the rest kept. Raises ValueError if ``d`` is not a history."""
        if not isinstance(d, dict) or not isinstance(d.get("days", []), list):
            raise ValueError("not a slouchd history document")
        h = cls(keep_days)
        first_error = ""
        for item in d.get("days", []):
            try:
                rec = DayRecord.from_dict(item)
            except ValueError as err:
                h.dropped += 1
                first_error = first_error or str(err)
                continue
            h.days[rec.date] = rec
        if h.dropped:
            log.warning("history: dropped %d malformed day record(s), e.g. %s", h.dropped, first_error)
        h._trim()
        return h


def history_payload(history: History, days: int = 90, today: DayRecord | None = None) -> dict[str, Any]:
    """The retained MQTT ``history`` JSON: the last ``days`` days, oldest first, compact.

    ``today``: the open day's record so far, shown in place of the saved one of its date.
    ``week_upright_pct``: the upright share of calibrated seated time over the last 7 days with a
    record, % (None: no seated time); Home Assistant's history sensor shows it.
    """
    by_day = dict(history.days)
    if today is not None:
        by_day[today.date] = today
    recs = [by_day[d] for d in sorted(by_day)[-days:]]
    week = recs[-7:]
    seated = sum(r.upright_s + r.slouched_s for r in week)
    week_pct = round(100.0 * sum(r.upright_s for r in week) / seated, 1) if seated > 0 else None
    return {"week_upright_pct": week_pct,
            "days": [{
        "date": r.date,
        "upright_pct": r.upright_pct,
        "slouched_min": round(r.slouched_s / 60.0, 1),
        "sitting_min": round(r.sitting_s / 60.0, 1),
        "alerts": r.alerts,
        "breaks": r.breaks + r.stretch_breaks,
        "stretch_sessions": r.stretch_sessions,
        "goal_met": r.goal_met,
        "streak": r.streak,
    } for r in recs]}


class HistoryStore:
    """Loads and atomically saves each wearer's :class:`History` under ``<state_dir>/history/``."""

    def __init__(self, state_dir: Path, keep_days: int = DEFAULT_KEEP_DAYS) -> None:
        self.directory = Path(state_dir) / "history"
        self.keep_days = keep_days
        # Its own directory: StateStore's temporary-file cleanup for wearer "ana" (".ana.*.tmp")
        # must not meet the history's temporary files.
        self._store = StateStore(self.directory)

    def path(self, wearer: str) -> Path:
        return self._store.path(wearer)

    def load(self, wearer: str) -> History:
        """The saved history, or an empty one when there is none or it was corrupt (moved aside)."""
        doc = self._store.load(wearer)
        if not doc:
            return History(self.keep_days)
        try:
            return History.from_dict(doc, self.keep_days)
        except ValueError as err:
            self._store.set_aside(wearer, str(err))
            return History(self.keep_days)

    def save(self, wearer: str, history: History, generation: int | None = None) -> None:
        """Atomically replace the saved history. Raises OSError (disk full, permissions)."""
        self._store.save(wearer, history.to_dict(), generation)

    def save_doc(self, wearer: str, doc: dict[str, Any], generation: int | None = None) -> None:
        """Atomically save a :meth:`History.to_dict` snapshot (taken on the loop thread, written
        in a worker: the history itself may change meanwhile). Raises OSError."""
        self._store.save(wearer, doc, generation)
