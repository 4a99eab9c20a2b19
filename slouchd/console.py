"""The demo's live terminal view: simulated clock, posture in plain words, alerts as they fire.

On a terminal wide enough (``MIN_LIVE_WIDTH`` columns) the status line is redrawn in place and
is cut to fit the width, so it never wraps (a wrapped line cannot be redrawn with ``\\r``: the
screen would fill with one line per frame). Narrower terminals, pipes and files get plain lines,
one every ``every_s`` simulated seconds. Events always get a line of their own.

The view also keeps what it saw (:class:`RunLog`) for the picture at the end of the demo.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from slouchd.model import Event, EventKind, Posture, PostureFrame

MIN_LIVE_WIDTH = 40
"""Below this many columns the status line is printed as plain lines, not redrawn in place."""
LEAN_BACK_DEG = -8.0
"""Flexion at or below this (degrees) reads as "leaning back", not "upright"."""
SIDE_LEAN_DEG = 10.0
"""A sideways lean at least this large (degrees) is mentioned."""
MAX_FRAMES = 50_000
"""Frames kept for the picture; beyond this every other one is dropped (memory stays bounded)."""

POSTURE_TEXT = {
    Posture.UPRIGHT.value: "upright",
    Posture.SLOUCHING.value: "SLOUCHING",
    Posture.MOVING.value: "moving",
    Posture.WALKING.value: "walking",
    Posture.NOT_WORN.value: "sensor off",
    Posture.UNKNOWN.value: "no sensor data",
    Posture.UNCALIBRATED.value: "calibrating",
}
"""Plain words for each posture (``unknown`` = no samples to judge: start-up or a radio gap)."""


def clock(t_s: float) -> str:
    return datetime.fromtimestamp(t_s).strftime("%H:%M:%S")


def posture_words(frame: PostureFrame) -> str:
    """What the wearer is doing, in words: "upright", "leaning back", "SLOUCHING", "walking"..."""
    flexion = frame.flexion_deg
    if frame.posture is Posture.UPRIGHT and flexion is not None and flexion <= LEAN_BACK_DEG:
        return "leaning back"
    return POSTURE_TEXT.get(frame.posture.value, frame.posture.value)


def angle_words(frame: PostureFrame) -> str:
    """The upper back's angle from *your* upright, in words ("bent 24° forward"); "" if unknown."""
    f = frame.flexion_deg
    if f is None or frame.posture in (Posture.NOT_WORN, Posture.UNKNOWN, Posture.UNCALIBRATED):
        return ""
    if f >= 2.0:
        text = f"bent {f:.0f}\N{DEGREE SIGN} forward"
    elif f <= -2.0:
        text = f"{-f:.0f}\N{DEGREE SIGN} back"
    else:
        text = f"straight ({f:+.0f}\N{DEGREE SIGN})"
    lat = frame.lateral_deg
    if lat is not None and abs(lat) >= SIDE_LEAN_DEG:
        text += f", {abs(lat):.0f}\N{DEGREE SIGN} to the {'right' if lat > 0 else 'left'}"
    return text


def event_words(event: Event) -> str:
    """One short line of what happened, without the machine fields (vectors, axis sources)."""
    d = event.data
    kind = event.kind
    if kind is EventKind.SLOUCH_ALERT:
        return (f"** SLOUCH ALERT {d.get('level', 1)} ** bent {_num(d.get('flexion_deg'))}\N{DEGREE SIGN} "
                f"forward for {_duration(d.get('slouch_s'))}: sit up")
    if kind is EventKind.SLOUCH_END:
        return (f"slouch over after {_duration(d.get('duration_s'))} "
                f"(deepest {_num(d.get('max_flexion_deg'))}\N{DEGREE SIGN})")
    if kind is EventKind.BREAK_REMINDER:
        return f"** BREAK REMINDER ** seated {_num(d.get('sitting_min'))} min: stand up, walk 2 min"
    if kind is EventKind.CALIBRATED:
        reason = str(d.get("reason", ""))
        if "learned" in reason or "two-pose" in reason:
            return "calibration refined: forward direction learned from your bends"
        if "put back on" in reason:
            return "sensor back on: upright reference taken again"
        if reason == "requested":
            return "recalibrated on request: this posture is your new upright"
        return "calibrated: this still, upright posture is your 0\N{DEGREE SIGN}"
    if kind is EventKind.CALIBRATION_FAILED:
        return f"calibration failed: {d.get('reason', 'no still moment')}"
    if kind is EventKind.DAY_SUMMARY:
        return "day over: today's totals published"
    if kind is EventKind.BREAK_TAKEN:
        how = "a stretch session" if d.get("how") == "stretch" else "a real break"
        answered = ", answering the reminder" if d.get("answered_reminder") else ""
        return f"break taken ({how}{answered}): {d.get('breaks_today', '?')} today, sitting time starts again"
    if isinstance(d.get("text"), str):
        return str(d["text"])  # the coach's notices carry their own words
    return kind.value.replace("_", " ")


def _num(value: object) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) else "?"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def fit(parts: list[str], width: int, sep: str = "  ") -> str:
    """Join ``parts`` with ``sep``, dropping parts from the end until the line fits ``width``."""
    keep = list(parts)
    while keep:
        line = sep.join(p for p in keep if p)
        if len(line) <= width:
            return line
        keep.pop()
    return parts[0][:width] if parts else ""


@dataclass
class RunLog:
    """What a demo run showed, for the picture at its end: ``(wearer, frame)`` and ``(wearer, event)``.

    Frames are thinned (every other one dropped, ``stride`` doubled) past :data:`MAX_FRAMES`.
    """

    frames: list[tuple[str, PostureFrame]] = field(default_factory=list)
    events: list[tuple[str, Event]] = field(default_factory=list)
    stride: int = 1
    _skip: int = 0

    def add_frame(self, wearer: str, frame: PostureFrame) -> None:
        self._skip += 1
        if self._skip < self.stride:
            return
        self._skip = 0
        self.frames.append((wearer, frame))
        if len(self.frames) > MAX_FRAMES:
            del self.frames[1::2]
            self.stride *= 2


class ConsoleView:
    """Prints frames and events. On a terminal the status line redraws in place.

    Args:
        out: where to write (default stdout).
        every_s: on a non-terminal or a narrow one, print a status line every this many
            simulated seconds.
        width: the terminal width in columns (default: asked from the terminal at each frame).
        show_wearer: put the wearer's name in each line (for more than one wearer).
    """

    def __init__(self, out: TextIO | None = None, every_s: float = 300.0, width: int | None = None,
                 show_wearer: bool = False) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.every_s = every_s
        self._width = width
        self.show_wearer = show_wearer
        self.time_in: defaultdict[str, float] = defaultdict(float)  # posture words -> seconds
        self.events: Counter[str] = Counter()
        self.log = RunLog()
        self.first_t: float | None = None
        self.last_t: float | None = None
        self._last_line_t = -1e18
        self._status_shown = False

    def width(self) -> int:
        if self._width is not None:
            return self._width
        try:
            return os.get_terminal_size(self.out.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return 80

    def live(self) -> bool:
        """True when the status line is redrawn in place (a terminal at least MIN_LIVE_WIDTH wide)."""
        return self.tty and self.width() >= MIN_LIVE_WIDTH

    def status_parts(self, wearer: str, frame: PostureFrame) -> list[str]:
        """The status line's parts, most important first (the end is cut on narrow terminals)."""
        parts = [clock(frame.t_s)]
        if self.show_wearer:
            parts.append(wearer)
        parts += [posture_words(frame), angle_words(frame),
                  f"seated {frame.sitting_s / 60:.0f} min",
                  f"alerts {self.events[EventKind.SLOUCH_ALERT.value]}",
                  f"break reminders {self.events[EventKind.BREAK_REMINDER.value]}"]
        return [p for p in parts if p]

    def on_frame(self, wearer: str, frame: PostureFrame) -> None:
        if self.last_t is not None:
            self.time_in[posture_words(frame).lower()] += max(0.0, frame.t_s - self.last_t)
        if self.first_t is None:
            self.first_t = frame.t_s
        self.last_t = frame.t_s
        self.log.add_frame(wearer, frame)
        if self.live():
            # One column spare: a line filling the last column makes some terminals wrap.
            line = fit(self.status_parts(wearer, frame), self.width() - 1)
            self.out.write("\r\033[K" + line)
            self.out.flush()
            self._status_shown = True
        elif frame.t_s - self._last_line_t >= self.every_s:
            self._last_line_t = frame.t_s
            self.out.write("  ".join(self.status_parts(wearer, frame)) + "\n")
            self.out.flush()

    def on_event(self, wearer: str, event: Event) -> None:
        self.events[event.kind.value] += 1
        self.log.events.append((wearer, event))
        who = f"  {wearer}" if self.show_wearer else ""
        prefix = "\r\033[K" if self._status_shown else ""
        self.out.write(f"{prefix}{clock(event.t_s)}{who}  {event_words(event)}\n")
        self.out.flush()

    def end_live_line(self) -> None:
        """Move below the status line (before printing anything else at the end)."""
        if self._status_shown:
            self.out.write("\n")
            self.out.flush()
            self._status_shown = False

    def wrap(self, text: str) -> str:
        """``text`` wrapped to the terminal (continuation lines indented), for lines that stay."""
        width = max(20, min(self.width() - 1, 100))
        return "\n".join(textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False)
                         for line in text.splitlines())

    def summary(self) -> str:
        """A few lines: simulated time covered, time per posture, alerts and reminders."""
        self.end_live_line()
        span = 0.0 if self.first_t is None or self.last_t is None else self.last_t - self.first_t
        seated = sum(v for k, v in self.time_in.items() if k in ("upright", "slouching", "leaning back"))
        upright = self.time_in["upright"] + self.time_in["leaning back"]
        upright_pct = 100.0 * upright / seated if seated else 0.0
        nbsp = "\N{NO-BREAK SPACE}"  # "7 min" stays on one line when wrapped
        longest_first = sorted(self.time_in.items(), key=lambda kv: -kv[1])
        parts = ", ".join(f"{k} {v / 60:.0f}{nbsp}min" for k, v in longest_first if v >= 30)
        return self.wrap(
            f"summary: {span / 60:.0f} simulated minutes: {parts or 'no data'}\n"
            f"summary: seated upright {upright_pct:.0f}% of the time, slouched "
            f"{self.time_in['slouching'] / 60:.0f} min; slouch alerts "
            f"{self.events[EventKind.SLOUCH_ALERT.value]}, break reminders "
            f"{self.events[EventKind.BREAK_REMINDER.value]}"
        )
