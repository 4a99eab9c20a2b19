"""The coach: a daily goal, the streak of days meeting it, a progressive training plan, and which
breaks count. Pure (no I/O, no clock): days are ISO dates the caller gives, state is JSON-able.

- **Daily goal** (``[coach.goal]``): an upright share of seated time and/or a number of breaks that
  count. A day with less than ``min_seated_min`` of seated time (a weekend, the sensor left at home)
  is *not judged*: it neither meets nor misses the goal, and does not break a streak.
- **Streak**: consecutive judged days meeting the goal, ending with the last judged day; today
  counts as soon as its goal is met (a day not yet met is still open, it does not end the streak
  before midnight).
- **Training plan** (``[coach.plan]``, optional, after Upright GO 2's 24-day training): on day ``k``
  of ``days`` the wearer gets ``start_min`` growing linearly to ``end_min`` minutes of seated time
  in training mode (alerts on); after that the day continues in tracking mode (silent statistics).
  After the plan, the mode is ``then``.
- **Breaks that count** (:class:`BreakTally`): a break reminder is answered by a real break
  (standing or walking ``[wellbeing] break_min_s``) or by a completed stretch session; both reset
  sitting time (the caller does that) and both are counted.

The evidence behind the defaults (numbers, not claims): short breaks every 20-30 min of sitting
(McLean 2001; Waongenngarm 2018), 2-5 min standing or walking per 20-30 min (Dunstan 2012,
Henson 2016).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from slouchd.schema import SettingsError, setting

PLAN_MODES = ("training", "tracking")


@dataclass(frozen=True)
class GoalSettings:
    """The daily goal (``[coach.goal]``)."""

    upright_pct: float = setting(
        75.0, min=0, max=100,
        doc="upright share of calibrated seated time to reach each day, %; 0 leaves it out of the goal")
    breaks: int = setting(
        6, min=0, max=48,
        doc="breaks that count (real breaks or completed stretch sessions) per day; 0 leaves them out "
            "of the goal")
    min_seated_min: float = setting(
        60.0, min=0, max=720, doc="days with less seated time than this are not judged (no streak change), "
                                  "minutes")

    def validate(self) -> None:
        if self.upright_pct == 0 and self.breaks == 0:
            raise SettingsError("upright_pct = 0: with breaks = 0 too the goal would be empty; "
                                "set at least one of them")


@dataclass(frozen=True)
class PlanSettings:
    """The progressive training plan (``[coach.plan]``)."""

    enabled: bool = setting(False, doc="follow the plan: training minutes per day growing over `days`")
    days: int = setting(24, min=2, max=365, doc="length of the plan, days")
    start_min: float = setting(10.0, min=1, max=720, doc="training-mode seated minutes on the first day")
    end_min: float = setting(120.0, min=1, max=720, doc="training-mode seated minutes on the last day")
    then: str = setting("tracking", choices=PLAN_MODES, doc="the mode once the plan is over")

    def validate(self) -> None:
        if self.end_min < self.start_min:
            raise SettingsError(f"end_min = {self.end_min:g}: must be at least start_min "
                                f"({self.start_min:g}): the plan grows")


@dataclass(frozen=True)
class CoachSettings:
    """``[coach]``: the daily goal, the training plan, the notices and which breaks answer a reminder."""

    goal: GoalSettings = setting(factory=GoalSettings, doc="the daily goal")
    plan: PlanSettings = setting(factory=PlanSettings, doc="the training plan")
    notices: NoticeSettings = setting(factory=lambda: NoticeSettings(),
                                      doc="low-battery and 'not worn all morning' notices")
    answer_within_min: float = setting(
        15.0, min=1, max=120, doc="a break or completed stretch session this soon after a break reminder "
                                  "answers it, minutes")
    buzz_on_bounce: bool = setting(
        False, doc="also buzz the sensor on the no-bouncing cue (it always buzzes at the end of a hold "
                   "where it can); the buzz mutes the sensor mid-hold, which costs up to 4 s of the hold "
                   "in about 2 % of holds")
    default_session: str = setting(
        "desk_break", pattern=r"[a-z][a-z0-9_]*",
        doc="the stretch session a plain start command runs (a session of the stretch catalogue)")


def day_result(upright_s: float, slouched_s: float, breaks: int, goal: GoalSettings) -> dict[str, Any]:
    """How a day measures up to the goal.

    Args:
        upright_s: calibrated seated time upright, seconds.
        slouched_s: calibrated seated time slouched, seconds.
        breaks: breaks that count (real breaks plus completed stretch sessions).
        goal: the goal.

    Returns:
        ``{"judged": bool, "met": bool | None, "upright_pct": float | None, "upright_met": bool | None,
        "breaks": int, "breaks_met": bool | None}``; ``met`` is None for a day not judged; a part
        left out of the goal is None.
    """
    seated = upright_s + slouched_s
    pct = None if seated <= 0 else round(100.0 * upright_s / seated, 1)
    judged = seated >= goal.min_seated_min * 60.0
    upright_met = None if goal.upright_pct == 0 else (pct is not None and pct >= goal.upright_pct)
    breaks_met = None if goal.breaks == 0 else breaks >= goal.breaks
    parts = [p for p in (upright_met, breaks_met) if p is not None]
    met = all(parts) if judged else None
    return {"judged": judged, "met": met, "upright_pct": pct, "upright_met": upright_met,
            "breaks": breaks, "breaks_met": breaks_met}


@dataclass
class Streak:
    """Days in a row meeting the goal. JSON-able with :meth:`to_dict` / :meth:`from_dict`."""

    current: int = 0
    best: int = 0
    last_day: str = ""
    """The last day closed into the streak (ISO date)."""

    def close_day(self, day: str, result: dict[str, Any]) -> None:
        """Fold a finished day (``day_result`` output) in; days must come in date order, a day
        already closed is ignored (a restart replaying the same midnight)."""
        if self.last_day and day <= self.last_day:
            return
        self.last_day = day
        if result.get("met") is None:
            return  # not judged: the streak neither grows nor breaks
        self.current = self.current + 1 if result["met"] else 0
        self.best = max(self.best, self.current)

    def shown(self, today: dict[str, Any] | None = None) -> int:
        """The streak to show during a day: today's counts as soon as it is met."""
        return self.current + (1 if today is not None and today.get("met") else 0)

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current, "best": self.best, "last_day": self.last_day}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Streak:
        """Restore :meth:`to_dict` output. Raises ValueError on a malformed document."""
        try:
            current, best, last = int(d.get("current", 0)), int(d.get("best", 0)), str(d.get("last_day", ""))
        except (TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"streak: {err}") from None
        if current < 0 or best < current:
            raise ValueError(f"streak: current {current}, best {best}: impossible")
        if last:
            date.fromisoformat(last)  # raises ValueError
        return cls(current, best, last)


def plan_today(plan: PlanSettings, start_day: str | None, today: str) -> dict[str, Any]:
    """Where the wearer is in the training plan on ``today`` (ISO dates).

    Returns:
        ``{"active": bool, "day": int | None, "days": int, "training_min": float | None,
        "mode_after": str}``: on plan day ``day`` (1-based), ``training_min`` minutes of seated time
        in training mode, then ``mode_after``. Not active (disabled, not started, or over):
        ``training_min`` None and ``mode_after`` is the mode for the whole day.
    """
    if not plan.enabled or not start_day:
        return {"active": False, "day": None, "days": plan.days, "training_min": None,
                "mode_after": "training"}
    k = (date.fromisoformat(today) - date.fromisoformat(start_day)).days
    if k < 0 or k >= plan.days:
        return {"active": False, "day": None, "days": plan.days, "training_min": None,
                "mode_after": plan.then if k >= plan.days else "training"}
    minutes = plan.start_min + (plan.end_min - plan.start_min) * k / (plan.days - 1)
    return {"active": True, "day": k + 1, "days": plan.days, "training_min": round(minutes, 1),
            "mode_after": "tracking"}


def plan_mode(plan: PlanSettings, start_day: str | None, today: str, training_s_today: float) -> str:
    """``training`` or ``tracking`` right now, given the seated seconds spent in training mode today."""
    p = plan_today(plan, start_day, today)
    if not p["active"]:
        return str(p["mode_after"])
    return "training" if training_s_today < p["training_min"] * 60.0 else "tracking"


@dataclass
class BreakTally:
    """Breaks that count, and whether they answered a reminder, for one day.

    Args:
        answer_within_s: a break or stretch session this soon after a reminder answers it, seconds.
    """

    answer_within_s: float = 15 * 60.0
    breaks: int = 0
    stretch_breaks: int = 0
    reminders: int = 0
    answered: int = 0
    pending_reminder_s: float | None = None
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def counted(self) -> int:
        """Breaks that count toward the goal: real breaks plus completed stretch sessions."""
        return self.breaks + self.stretch_breaks

    def on_reminder(self, t_s: float) -> None:
        """A break reminder went out at ``t_s`` (seconds)."""
        self.reminders += 1
        self.pending_reminder_s = t_s  # a break answers the latest nudge

    def on_break(self, t_s: float, how: str) -> dict[str, Any]:
        """A break that counts happened at ``t_s``: ``how`` is ``break`` (standing or walking the
        configured time) or ``stretch`` (a completed stretch session). Returns the ``break_taken``
        event's data; the caller resets sitting time."""
        if how not in ("break", "stretch"):
            raise ValueError(f"how = {how!r}: 'break' or 'stretch'")
        if how == "break":
            self.breaks += 1
        else:
            self.stretch_breaks += 1
        answered = (self.pending_reminder_s is not None
                    and t_s - self.pending_reminder_s <= self.answer_within_s + 1e-9)
        data: dict[str, Any] = {"how": how, "answered_reminder": answered, "breaks_today": self.counted}
        if answered:
            self.answered += 1
            data["after_reminder_s"] = round(t_s - self.pending_reminder_s, 1)  # type: ignore[operator]
        self.pending_reminder_s = None
        return data

    def to_dict(self) -> dict[str, Any]:
        return {"breaks": self.breaks, "stretch_breaks": self.stretch_breaks, "reminders": self.reminders,
                "answered": self.answered}

    @classmethod
    def from_dict(cls, d: dict[str, Any], answer_within_s: float = 15 * 60.0) -> BreakTally:
        """Restore :meth:`to_dict` output (a pending reminder is not carried over a restart)."""
        vals = {k: int(d.get(k, 0)) for k in ("breaks", "stretch_breaks", "reminders", "answered")}
        if any(v < 0 for v in vals.values()):
            raise ValueError(f"break tally: negative count in {vals}")
        return cls(answer_within_s, breaks=vals["breaks"], stretch_breaks=vals["stretch_breaks"],
                   reminders=vals["reminders"], answered=vals["answered"])


def stretch_counts_as_break(result: dict[str, Any]) -> bool:
    """Whether a stretch session (``StretchJudge.result()``) counts as a break: completed."""
    return bool(result.get("complete"))


# ----------------------------------------------------------------------------------- notices

HHMM = r"([01]\d|2[0-3]):[0-5]\d"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class NoticeSettings:
    """``[coach.notices]``: the low-battery and "not worn all morning" notices."""

    low_battery_pct: float = setting(
        15.0, min=0, max=90, doc="a low_battery event when the sensor's battery falls to this, %; 0 = never")
    battery_rearm_pct: float = setting(
        10.0, min=1, max=50,
        doc="the low_battery event comes again only after the battery rose this much above "
            "low_battery_pct (it was charged), percentage points")
    morning_start: str = setting("07:00", pattern=HHMM, doc="the morning starts at this local time, HH:MM")
    morning_end: str = setting(
        "12:00", pattern=HHMM, doc="at this local time, a not_worn_morning event if the sensor was worn "
                                   "less than morning_min_worn_min since morning_start, HH:MM")
    morning_min_worn_min: float = setting(
        10.0, min=0, max=600, doc="worn less than this in the morning is 'not worn all morning', "
                                  "minutes; 0 = never")
    morning_days: list[str] = setting(
        factory=lambda: ["mon", "tue", "wed", "thu", "fri"], choices=WEEKDAYS,
        doc="the days the morning notice applies to")

    def validate(self) -> None:
        if self.morning_end <= self.morning_start:
            raise SettingsError(f"morning_end = {self.morning_end!r}: must be after morning_start "
                                f"({self.morning_start!r})")


@dataclass
class LowBattery:
    """Battery readings (%) in, a low-battery notice out once per discharge.

    A reading at or under ``low_pct`` notifies once; it re-arms only when a reading is at least
    ``rearm_pct`` above ``low_pct`` (a charge), so a reading jittering around the limit never
    repeats the notice.
    """

    low_pct: float = 15.0
    rearm_pct: float = 10.0
    notified: bool = False

    def update(self, pct: float | None) -> bool:
        """A reading (None: unknown); True when the notice is due now."""
        if pct is None or self.low_pct <= 0:
            return False
        if self.notified:
            if pct >= self.low_pct + self.rearm_pct:
                self.notified = False
            return False
        if pct <= self.low_pct:
            self.notified = True
            return True
        return False


@dataclass
class MorningWear:
    """Worn seconds in the morning window of one day; judged once at the window's end.

    The caller gives sample times of the window (``start_s``, ``end_s``) per day, and every
    observation (a frame or an idle state) with whether the sensor was worn. The notice is due
    at the first observation at or after ``end_s`` when the wearer was watched from near the
    window's start (the daemon was running: otherwise a start at 11:55 would notify at once)
    and worn less than ``min_worn_s``.
    """

    min_worn_s: float
    start_s: float = math.inf
    end_s: float = math.inf
    enabled: bool = False
    worn_s: float = 0.0
    watched_from_s: float | None = None
    last_t_s: float | None = None
    judged: bool = False

    MAX_STEP_S = 2.0
    """A frame counts for at most this much worn time (frames come every 0.1-1 s), seconds."""
    LATE_START_S = 15 * 60.0
    """Watched from no later than this after the window's start, or the morning is not judged."""

    def new_day(self, start_s: float, end_s: float, enabled: bool) -> None:
        self.start_s, self.end_s, self.enabled = start_s, end_s, enabled
        self.worn_s, self.watched_from_s, self.last_t_s, self.judged = 0.0, None, None, False

    def observe(self, t_s: float, worn: bool) -> float | None:
        """One observation; returns the worn minutes when the notice is due now, else None."""
        prev, self.last_t_s = self.last_t_s, t_s
        if not self.enabled or self.judged or t_s < self.start_s:
            return None
        if self.watched_from_s is None:
            self.watched_from_s = t_s
        if worn and prev is not None and t_s < self.end_s:
            self.worn_s += min(max(t_s - max(prev, self.start_s), 0.0), self.MAX_STEP_S)
        if t_s < self.end_s:
            return None
        self.judged = True
        if self.watched_from_s > self.start_s + self.LATE_START_S or self.worn_s >= self.min_worn_s:
            return None
        return round(self.worn_s / 60.0, 1)
