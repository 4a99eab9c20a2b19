"""The demo's live terminal view: simulated clock, angle, posture, alerts as they fire."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import datetime
from typing import TextIO

from slouchd.model import Event, EventKind, Posture, PostureFrame

EVENT_TEXT = {
    EventKind.SLOUCH_ALERT: "SLOUCH ALERT",
    EventKind.SLOUCH_END: "slouch over",
    EventKind.BREAK_REMINDER: "BREAK REMINDER",
    EventKind.CALIBRATED: "calibrated",
    EventKind.CALIBRATION_FAILED: "calibration failed",
}


def clock(t_s: float) -> str:
    return datetime.fromtimestamp(t_s).strftime("%H:%M:%S")


def fmt_angle(deg: float | None) -> str:
    return "   --  " if deg is None else f"{deg:+6.1f}\N{DEGREE SIGN}"


class ConsoleView:
    """Prints frames and events. On a terminal the status line redraws in place.

    Args:
        out: where to write (default stdout).
        every_s: on a non-terminal, print a status line every this many simulated seconds.
    """

    def __init__(self, out: TextIO | None = None, every_s: float = 60.0) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.every_s = every_s
        self.time_in: Counter[str] = Counter()  # posture -> seconds
        self.events: Counter[str] = Counter()
        self.first_t: float | None = None
        self.last_t: float | None = None
        self._last_line_t = -1e18
        self._status_shown = False

    def on_frame(self, wearer: str, frame: PostureFrame) -> None:
        if self.last_t is not None:
            self.time_in[frame.posture.value] += max(0.0, frame.t_s - self.last_t)
        if self.first_t is None:
            self.first_t = frame.t_s
        self.last_t = frame.t_s
        line = (f"{clock(frame.t_s)}  {wearer}  flexion {fmt_angle(frame.flexion_deg)}  "
                f"lateral {fmt_angle(frame.lateral_deg)}  {frame.posture.value:<12} "
                f"sitting {frame.sitting_s / 60:4.0f} min  alerts {self.events['slouch_alert']}")
        if self.tty:
            self.out.write("\r\033[K" + line)
            self.out.flush()
            self._status_shown = True
        elif frame.t_s - self._last_line_t >= self.every_s:
            self._last_line_t = frame.t_s
            self.out.write(line + "\n")
            self.out.flush()

    def on_event(self, wearer: str, event: Event) -> None:
        self.events[event.kind.value] += 1
        text = EVENT_TEXT.get(event.kind, event.kind.value)
        details = ", ".join(f"{k}={_short(v)}" for k, v in event.data.items()
                            if not isinstance(v, list | dict))  # vectors are for machines
        prefix = "\r\033[K" if self.tty and self._status_shown else ""
        self.out.write(f"{prefix}{clock(event.t_s)}  {wearer}  ** {text} **  {details}\n")
        self.out.flush()

    def summary(self) -> str:
        """A few lines: simulated time covered, time per posture, alerts and reminders."""
        if self.tty and self._status_shown:
            self.out.write("\n")
        span = 0.0 if self.first_t is None or self.last_t is None else self.last_t - self.first_t
        sitting = self.time_in[Posture.UPRIGHT.value] + self.time_in[Posture.SLOUCHING.value]
        upright_pct = 100.0 * self.time_in[Posture.UPRIGHT.value] / sitting if sitting else 0.0
        parts = ", ".join(f"{k} {v / 60:.1f} min" for k, v in self.time_in.most_common() if v > 0)
        return (
            f"summary: {span / 60:.1f} simulated minutes; {parts or 'no data'}\n"
            f"summary: upright {upright_pct:.0f}% of seated time, slouched "
            f"{self.time_in[Posture.SLOUCHING.value] / 60:.1f} min; slouch alerts "
            f"{self.events['slouch_alert']}, break reminders {self.events['break_reminder']}"
        )


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
