"""Pictures of a run: flexion over time as a self-contained SVG, and a one-line terminal sparkline.

Feed a :class:`Collector` the frames and events the posture engine produces (``replay``, the
demo, a test), then ask for the picture::

    plot = Collector(threshold_deg=15, hysteresis_deg=3, title="day.csv")
    for out in outputs:                 # TrackerOutput: .frames and .events
        plot.add(out)
    plot.write_svg("day.svg")           # flexion, threshold band, alerts, slouches, breaks, gaps
    print(plot.sparkline(60))           # one line of ▁▂▃▄▅▆▇█

The SVG is hand-written (no plotting library): one file, no scripts, no external fonts, readable
in any browser. Memory is bounded: a frame costs 21 bytes (an 8 h day at 1 Hz is 0.6 MB) and
the drawing is reduced to one envelope column per pixel whatever the length of the run.

(About 550 lines, over the ~400 the project aims for: the SVG is written by hand, and its layout
constants, scales and marks read best in one file.)
"""

from __future__ import annotations

import itertools
import math
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

import numpy as np

from slouchd.model import Event, EventKind, Posture, PostureFrame

UNIX_TIME_MIN_S = 1e8
"""Frame times above this are Unix times (the daemon, the demo): labelled in local clock time.
Below it they are recording seconds (``replay``): labelled as elapsed h:mm from t = 0."""
MAX_MARKS = 5000
"""Events kept per kind: a picture cannot show more, and memory stays bounded."""
BREAK_MIN_SITTING_S = 60.0
"""The sitting clock falling to zero from at least this long marks a break taken, seconds."""
SPARK_CHARS = "▁▂▃▄▅▆▇█"

_POSTURES = (Posture.UPRIGHT, Posture.SLOUCHING, Posture.MOVING, Posture.WALKING, Posture.NOT_WORN,
             Posture.UNKNOWN, Posture.UNCALIBRATED)
_CODE = {p: i for i, p in enumerate(_POSTURES)}
_GAP = len(_POSTURES)  # no frames at all (a hole in the data)
_STRIP_COLOURS = {  # posture code -> (fill, legend label)
    _CODE[Posture.UPRIGHT]: ("#7cc47f", "upright"),
    _CODE[Posture.SLOUCHING]: ("#e4572e", "slouching"),
    _CODE[Posture.MOVING]: ("#f3c44a", "moving"),
    _CODE[Posture.WALKING]: ("#f08c2e", "walking"),
    _CODE[Posture.NOT_WORN]: ("#9a9a9a", "not worn"),
    _CODE[Posture.UNKNOWN]: ("#d5d5d5", "unknown"),
    _CODE[Posture.UNCALIBRATED]: ("#a9c6e8", "not calibrated yet"),
    _GAP: ("#ffffff", "no data (gap)"),
}

# Page layout, pixels.
_W, _H = 1200, 560
_LEFT, _RIGHT, _TOP = 70, 30, 64
_PLOT_H = 300
_STRIP_Y = _TOP + _PLOT_H + 34
_STRIP_H = 22
_LEGEND_Y = _STRIP_Y + _STRIP_H + 78


@dataclass(frozen=True)
class _Mark:
    t_s: float
    label: str
    extra: float = 0.0  # slouch_end: duration_s


class Collector:
    """Collects posture frames and events of one wearer's run and draws them.

    Args:
        threshold_deg: the slouch threshold drawn as a line, degrees.
        hysteresis_deg: the band below the threshold in which a slouch continues, degrees.
        title: first line of the picture (e.g. the file name).
        clock: ``"elapsed"`` (h:mm from t = 0), ``"local"`` (local clock time of Unix
            timestamps) or ``"auto"`` (local when the times are Unix times).
    """

    def __init__(self, threshold_deg: float = 15.0, hysteresis_deg: float = 3.0, *, title: str = "",
                 clock: str = "auto") -> None:
        if clock not in ("auto", "elapsed", "local"):
            raise ValueError(f"clock must be auto, elapsed or local, got {clock!r}")
        self.threshold_deg = float(threshold_deg)
        self.hysteresis_deg = float(hysteresis_deg)
        self.title = title
        self.clock = clock
        self._t = array("d")
        self._flex = array("f")
        self._sitting = array("f")
        self._posture = array("B")
        self._marks: dict[str, list[_Mark]] = {k: [] for k in ("alert", "end", "reminder", "calibrated",
                                                                "calibration_failed")}

    @classmethod
    def for_settings(cls, detection: Any, title: str = "", clock: str = "auto") -> Collector:
        """A collector drawing ``detection``'s threshold and hysteresis (a DetectionSettings)."""
        return cls(detection.threshold_deg, detection.hysteresis_deg, title=title, clock=clock)

    # ------------------------------------------------------------------------------ feeding

    def add(self, output: Any) -> None:
        """Add what one ``PostureTracker.process`` call returned (anything with .frames, .events)."""
        self.add_frames(output.frames)
        self.add_events(output.events)

    def add_frames(self, frames: Iterable[PostureFrame]) -> None:
        for f in frames:
            self.add_frame(f)

    def add_events(self, events: Iterable[Event]) -> None:
        for e in events:
            self.add_event(e)

    def add_frame(self, frame: PostureFrame) -> None:
        """One posture frame (frames must come in time order; earlier ones are ignored)."""
        if self._t and frame.t_s <= self._t[-1]:
            return
        self._t.append(float(frame.t_s))
        self._flex.append(math.nan if frame.flexion_deg is None else float(frame.flexion_deg))
        self._sitting.append(float(frame.sitting_s))
        self._posture.append(_CODE.get(frame.posture, _CODE[Posture.UNKNOWN]))

    def add_event(self, event: Event) -> None:
        kind = {EventKind.SLOUCH_ALERT: "alert", EventKind.SLOUCH_END: "end",
                EventKind.BREAK_REMINDER: "reminder", EventKind.CALIBRATED: "calibrated",
                EventKind.CALIBRATION_FAILED: "calibration_failed"}.get(event.kind)
        if kind is None or len(self._marks[kind]) >= MAX_MARKS:
            return
        if kind == "alert":
            label = f"level {event.data.get('level', 1)}"
        elif kind == "reminder":
            label = f"sitting {event.data.get('sitting_min', 0):g} min"
        elif kind == "calibrated":
            label = str(event.data.get("source", ""))
        else:
            label = str(event.data.get("reason", ""))
        extra = float(event.data.get("duration_s", 0.0)) if kind == "end" else 0.0
        self._marks[kind].append(_Mark(float(event.t_s), label, extra))

    # ------------------------------------------------------------------------------ numbers

    @property
    def frames(self) -> int:
        return len(self._t)

    def counts(self) -> dict[str, int]:
        """Events seen per kind (alerts, slouch ends, reminders, calibrations) and breaks taken."""
        return {"alerts": len(self._marks["alert"]), "slouches": len(self._marks["end"]),
                "break_reminders": len(self._marks["reminder"]),
                "calibrations": len(self._marks["calibrated"]), "breaks": len(self._breaks())}

    def _breaks(self) -> list[float]:
        """Times at which the sitting clock fell back to zero after a real stretch: breaks taken."""
        if len(self._sitting) < 2:
            return []
        s = np.frombuffer(self._sitting, dtype=np.float32)
        drop = np.flatnonzero((s[1:] < 1.0) & (s[:-1] >= BREAK_MIN_SITTING_S)) + 1
        t = np.frombuffer(self._t, dtype=np.float64)
        return t[drop].tolist()

    def _episodes(self, t_end: float) -> list[tuple[float, float]]:
        """Slouches that reached the dwell: (start, end) in seconds; one still running ends at t_end."""
        eps = [(m.t_s - m.extra, m.t_s) for m in self._marks["end"]]
        last_end = eps[-1][1] if eps else -math.inf
        running = [a for a in self._marks["alert"] if a.t_s > last_end]
        if running:  # alerted but never ended: it lasts to the end of the run
            start = self._run_start(running[0].t_s, _CODE[Posture.SLOUCHING])
            eps.append((start, t_end))
        return eps

    def _run_start(self, t_s: float, code: int) -> float:
        """Start of the run of frames of ``code`` that contains ``t_s`` (or t_s itself)."""
        t = np.frombuffer(self._t, dtype=np.float64)
        p = np.frombuffer(self._posture, dtype=np.uint8)
        i = min(int(np.searchsorted(t, t_s)), len(t) - 1)
        while i > 0 and p[i - 1] == code:
            i -= 1
        return float(t[i]) if len(t) else t_s

    def _is_unix(self) -> bool:
        if self.clock == "auto":
            return bool(self._t) and self._t[0] > UNIX_TIME_MIN_S
        return self.clock == "local"

    # ------------------------------------------------------------------------------ sparkline

    def sparkline(self, width: int = 60) -> str:
        """Flexion over the whole run in ``width`` characters (blank where there is no angle)."""
        if not self._t:
            return ""
        t = np.frombuffer(self._t, dtype=np.float64)
        flex = np.frombuffer(self._flex, dtype=np.float32).astype(float)
        finite = flex[np.isfinite(flex)]
        lo_p, hi_p = np.percentile(finite, (1, 99)).tolist() if finite.size else (0.0, 0.0)
        # Upright sits low, the threshold about two thirds up: a slouch stands out at a glance.
        lo = min(0.0, lo_p)
        hi = max(self.threshold_deg * 1.5, hi_p)
        cols = _bucket(t, width)
        values = [float(np.nanmean(flex[a:b])) if b > a and np.isfinite(flex[a:b]).any() else math.nan
                  for a, b in cols]
        return sparkline(values, lo, hi)

    # ------------------------------------------------------------------------------ SVG

    def write_svg(self, path: str | os.PathLike[str]) -> None:
        """Write the picture to ``path`` (a complete SVG file, UTF-8)."""
        text = self.svg()
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)

    def svg(self) -> str:
        """The picture as SVG text."""
        out: list[str] = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
                          f'viewBox="0 0 {_W} {_H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" '
                          'font-size="13">',
                          f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#ffffff"/>']
        if not self._t:
            out.append(f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" font-size="18">'
                       f'{escape(self.title or "run")}: no posture frames to draw</text></svg>')
            return "\n".join(out) + "\n"
        t = np.frombuffer(self._t, dtype=np.float64)
        flex = np.frombuffer(self._flex, dtype=np.float32).astype(float)
        posture = np.frombuffer(self._posture, dtype=np.uint8)
        step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
        ax = _Axes.fit(t, flex, step, self.threshold_deg, self._is_unix())
        out += self._heading(ax)
        # Slouch episodes behind everything else.
        for a, b in self._episodes(float(t[-1])):
            xa, xb = ax.xs(max(a, ax.t0)), ax.xs(min(b, ax.t1))
            out.append(f'<rect x="{xa:.1f}" y="{_TOP}" width="{max(xb - xa, 1.5):.1f}" height="{_PLOT_H}" '
                       'fill="#e4572e" fill-opacity="0.13"/>')
        out += self._threshold_and_grid(ax)
        out += _time_axis(ax)
        # Flexion: a line where it is readable, else a per-pixel min/max envelope and its mean.
        out.extend(_flexion_paths(t, flex, ax.xs, ax.ys, ax.x1 - ax.x0, gap_s=3.0 * step))
        out += self._event_marks(ax)
        out += _posture_strip(t, posture, step, ax)
        out.extend(_legend(set(np.unique(posture).tolist()) | ({_GAP} if _has_gap(t, step) else set())))
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def _heading(self, ax: _Axes) -> list[str]:
        """Title and the numbers a reader looks for first."""
        c = self.counts()
        thr, hyst = self.threshold_deg, self.hysteresis_deg
        return [f'<text x="{_LEFT}" y="26" font-size="18" font-weight="bold">'
                f'{escape(self.title or "posture")}</text>',
                f'<text x="{_LEFT}" y="46" fill="#444">{_duration(ax.t1 - ax.t0)} · {c["alerts"]} alert(s) · '
                f'{c["slouches"]} slouch(es) past the dwell · {c["break_reminders"]} break reminder(s) · '
                f'{c["breaks"]} break(s) taken · threshold {thr:g}° (ends below {thr - hyst:g}°)</text>']

    def _threshold_and_grid(self, ax: _Axes) -> list[str]:
        """The hysteresis band, the angle grid and the threshold line."""
        thr, hyst = self.threshold_deg, self.hysteresis_deg
        x0, x1, ys = ax.x0, ax.x1, ax.ys
        out = [f'<rect x="{x0}" y="{ys(thr):.1f}" width="{x1 - x0}" height="{ys(thr - hyst) - ys(thr):.1f}" '
               'fill="#f3a712" fill-opacity="0.18"/>']
        for v in _nice_ticks(ax.y_lo, ax.y_hi, 8):
            y = ys(v)
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#e6e6e6"/>')
            out.append(f'<text x="{x0 - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{v:g}°</text>')
        if ax.y_lo < 0 < ax.y_hi:
            out.append(f'<line x1="{x0}" y1="{ys(0):.1f}" x2="{x1}" y2="{ys(0):.1f}" stroke="#9a9a9a"/>')
        out.append(f'<line x1="{x0}" y1="{ys(thr):.1f}" x2="{x1}" y2="{ys(thr):.1f}" stroke="#d1495b" '
                   'stroke-width="1.5" stroke-dasharray="6 4"/>')
        out.append(f'<text x="{x1 - 4}" y="{ys(thr) - 5:.1f}" text-anchor="end" fill="#d1495b">'
                   f'threshold {thr:g}°</text>')
        return out

    def _marks_within(self, kind: str, ax: _Axes) -> Iterator[tuple[float, _Mark, str]]:
        """The marks of ``kind`` inside the drawn time span: x (pixels), the mark, its time as text."""
        for m in self._marks[kind]:
            if ax.t0 <= m.t_s <= ax.t1:
                yield ax.xs(m.t_s), m, _clock_label(m.t_s, ax.unix, True)

    def _event_marks(self, ax: _Axes) -> list[str]:
        """Alerts, break reminders, breaks taken and calibrations, drawn on top."""
        out = []
        for x, m, at in self._marks_within("alert", ax):
            out.append(f'<path d="M{x:.1f},{_TOP + 12} l-6,-11 h12 z" fill="#d1495b">'
                       f'<title>slouch alert ({escape(m.label)}) at {at}</title></path>')
        for x, m, at in self._marks_within("reminder", ax):
            out.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{_TOP + _PLOT_H}" '
                       'stroke="#6a4c93" stroke-width="1.5" stroke-dasharray="3 3"/>')
            out.append(f'<path d="M{x:.1f},{_TOP + _PLOT_H - 14} l7,7 l-7,7 l-7,-7 z" fill="#6a4c93">'
                       f'<title>break reminder ({escape(m.label)}) at {at}</title></path>')
        for b in self._breaks():
            out.append(f'<path d="M{ax.xs(b):.1f},{_STRIP_Y - 2} l-6,-10 h12 z" fill="#2a9d8f">'
                       f'<title>break taken (sitting clock reset) at {_clock_label(b, ax.unix, True)}'
                       '</title></path>')
        for x, m, at in self._marks_within("calibrated", ax):
            out.append(f'<circle cx="{x:.1f}" cy="{_STRIP_Y - 8}" r="4.5" fill="#1d70b8">'
                       f'<title>calibrated ({escape(m.label)}) at {at}</title></circle>')
        return out


@dataclass(frozen=True)
class _Axes:
    """Where the plot area sits: time ``t0..t1`` (s) across pixels ``x0..x1``, flexion
    ``y_lo..y_hi`` (degrees) down the plot's height; ``unix``: times are Unix time."""

    t0: float
    t1: float
    y_lo: float
    y_hi: float
    unix: bool
    x0: float = _LEFT
    x1: float = _W - _RIGHT

    @classmethod
    def fit(cls, t: np.ndarray, flex: np.ndarray, step: float, threshold_deg: float, unix: bool) -> _Axes:
        """At least a minute of time; all held angles (a lean back is part of the story) but not
        the brief swings of taking the sensor off: 0.5-99.5 percentiles, 5 degrees of margin,
        rounded out to 10 degrees."""
        t0, t1 = float(t[0]) - step, float(t[-1])
        if t1 - t0 < 60.0:
            t1 = t0 + 60.0
        finite = flex[np.isfinite(flex)]
        lo_p, hi_p = (np.percentile(finite, (0.5, 99.5)).tolist() if finite.size else (0.0, 0.0))
        y_lo = min(-10.0, math.floor((lo_p - 5.0) / 10.0) * 10.0)
        y_hi = max(threshold_deg + 15.0, math.ceil((hi_p + 5.0) / 10.0) * 10.0)
        return cls(t0, t1, max(y_lo, -90.0), min(y_hi, 120.0), unix)

    def xs(self, v: float) -> float:
        """Time (s) -> x (pixels)."""
        return self.x0 + (v - self.t0) / (self.t1 - self.t0) * (self.x1 - self.x0)

    def ys(self, v: float) -> float:
        """Flexion (degrees) -> y (pixels), clipped to the plot."""
        return _TOP + (self.y_hi - min(max(v, self.y_lo), self.y_hi)) / (self.y_hi - self.y_lo) * _PLOT_H


def _time_axis(ax: _Axes) -> list[str]:
    """Time ticks and labels, the plot's frame and both axis captions."""
    x0, x1 = ax.x0, ax.x1
    out = []
    for v in _time_ticks(ax.t0, ax.t1, 10):
        x = ax.xs(v)
        out.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{_TOP + _PLOT_H}" '
                   'stroke="#f0f0f0"/>')
        out.append(f'<line x1="{x:.1f}" y1="{_STRIP_Y + _STRIP_H}" x2="{x:.1f}" '
                   f'y2="{_STRIP_Y + _STRIP_H + 5}" stroke="#444"/>')
        out.append(f'<text x="{x:.1f}" y="{_STRIP_Y + _STRIP_H + 19}" text-anchor="middle" fill="#444">'
                   f'{_clock_label(v, ax.unix)}</text>')
    out.append(f'<rect x="{x0}" y="{_TOP}" width="{x1 - x0}" height="{_PLOT_H}" fill="none" '
               'stroke="#444"/>')
    out.append(f'<text x="18" y="{_TOP + _PLOT_H / 2}" text-anchor="middle" fill="#444" '
               f'transform="rotate(-90 18 {_TOP + _PLOT_H / 2})">flexion, degrees (+ = forward)</text>')
    caption = "local time (hh:mm)" if ax.unix else "recording time (h:mm from t = 0)"
    out.append(f'<text x="{(x0 + x1) / 2}" y="{_STRIP_Y + _STRIP_H + 38}" text-anchor="middle" '
               f'fill="#444">{caption}</text>')
    return out


def _posture_strip(t: np.ndarray, posture: np.ndarray, step: float, ax: _Axes) -> list[str]:
    """The posture strip: what the engine reported, second by second (gaps left white)."""
    out = [f'<text x="{ax.x0 - 8}" y="{_STRIP_Y + 15}" text-anchor="end" fill="#444">state</text>']
    for a, b, code in _runs(t, posture, step, ax.t1):
        xa, xb = ax.xs(a), ax.xs(b)
        fill = _STRIP_COLOURS[code][0]
        out.append(f'<rect x="{xa:.1f}" y="{_STRIP_Y}" width="{max(xb - xa, 0.6):.2f}" '
                   f'height="{_STRIP_H}" fill="{fill}"/>')
    out.append(f'<rect x="{ax.x0}" y="{_STRIP_Y}" width="{ax.x1 - ax.x0}" height="{_STRIP_H}" fill="none" '
               'stroke="#444"/>')
    return out


def sparkline(values: Sequence[float], lo: float, hi: float) -> str:
    """One character per value, ``▁`` at ``lo`` to ``█`` at ``hi``; NaN is a space."""
    span = max(hi - lo, 1e-9)
    chars = []
    for v in values:
        if not math.isfinite(v):
            chars.append(" ")
            continue
        i = int((min(max(v, lo), hi) - lo) / span * (len(SPARK_CHARS) - 1) + 0.5)
        chars.append(SPARK_CHARS[i])
    return "".join(chars)


# ---------------------------------------------------------------------------------- helpers

def _bucket(t: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Index ranges of ``n`` equal time buckets over ``t``."""
    edges = np.linspace(t[0], t[-1] + 1e-9, n + 1)
    idx = np.searchsorted(t, edges)
    return list(zip(idx[:-1].tolist(), idx[1:].tolist(), strict=True))


def _has_gap(t: np.ndarray, step: float) -> bool:
    return len(t) > 1 and bool((np.diff(t) > 3.0 * step).any())


def _runs(t: np.ndarray, posture: np.ndarray, step: float, t_end: float) -> list[tuple[float, float, int]]:
    """(start, end, code) runs of one posture; holes in the frames become gap runs."""
    if len(t) == 0:
        return []
    code = posture.astype(np.int64)
    dt = np.diff(t)
    hole = dt > 3.0 * step
    change = np.flatnonzero((code[1:] != code[:-1]) | hole) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(t)]))
    runs: list[tuple[float, float, int]] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        start = float(t[a]) - step
        stop = float(t[b - 1])
        runs.append((start, stop, int(code[a])))
        if b < len(t) and hole[b - 1]:
            runs.append((stop, float(t[b]) - step, _GAP))
    return runs


def _flexion_paths(t: np.ndarray, flex: np.ndarray, xs: Any, ys: Any, width_px: float,
                   gap_s: float) -> list[str]:
    """SVG paths for the flexion curve, broken at missing angles and holes in the frames."""
    ok = np.isfinite(flex)
    breaks = np.ones(len(t), dtype=bool)
    breaks[1:] = (~ok[:-1]) | (np.diff(t) > gap_s)
    out: list[str] = []
    cols = int(width_px)
    if len(t) <= 2 * cols:
        d: list[str] = []
        for i in np.flatnonzero(ok).tolist():
            d.append(f'{"M" if breaks[i] or not d else "L"}{xs(t[i]):.1f},{ys(flex[i]):.1f}')
        if d:
            out.append(f'<path d="{" ".join(d)}" fill="none" stroke="#1d3557" stroke-width="1.6" '
                       'stroke-linejoin="round"/>')
        return out
    # One column per pixel: min..max as a band, the mean as a line; empty columns break both.
    xs0 = xs(float(t[0]))
    scale = (xs(float(t[-1])) - xs0) / max(float(t[-1] - t[0]), 1e-9)
    pix = np.floor(xs0 + (t - t[0]) * scale).astype(np.int64)
    segment = np.cumsum(breaks)  # a new segment after each break
    key = pix * (len(t) + 1) + segment
    valid = np.flatnonzero(ok)
    if valid.size == 0:
        return out
    k = key[valid]
    f = flex[valid]
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    mins = np.minimum.reduceat(f, starts)
    maxs = np.maximum.reduceat(f, starts)
    means = np.add.reduceat(f, starts) / np.diff(np.concatenate((starts, [len(f)])))
    px = pix[valid][starts]
    seg = segment[valid][starts]
    new = np.concatenate(([True], (seg[1:] != seg[:-1]) | (np.diff(px) > 1)))
    bounds = [*np.flatnonzero(new).tolist(), len(px)]
    band: list[str] = []
    line: list[str] = []
    for a, b in itertools.pairwise(bounds):
        top = " ".join(f"{px[i] + 0.5:.1f},{ys(maxs[i]):.1f}" for i in range(a, b))
        bottom = " ".join(f"{px[i] + 0.5:.1f},{ys(mins[i]):.1f}" for i in range(b - 1, a - 1, -1))
        band.append(f"M{top} L{bottom} Z")
        line.append("M" + " L".join(f"{px[i] + 0.5:.1f},{ys(means[i]):.1f}" for i in range(a, b)))
    out.append(f'<path d="{" ".join(band)}" fill="#457b9d" fill-opacity="0.35" stroke="#457b9d" '
               'stroke-opacity="0.35" stroke-width="0.6"/>')
    out.append(f'<path d="{" ".join(line)}" fill="none" stroke="#1d3557" stroke-width="1.2" '
               'stroke-linejoin="round"/>')
    return out


def _text_px(text: str) -> float:
    """Approximate width of ``text`` at the picture's 13 px sans-serif, pixels."""
    return 7.4 * len(text)


def _legend(codes: set[int]) -> list[str]:
    """Two legend rows: the lines and marks, then the state colours present in the picture."""
    out: list[str] = []
    y = _LEGEND_Y
    symbols = [  # (symbol drawn in a 22 px box whose left edge is x, label)
        (lambda x: f'<path d="M{x},{y - 5} h22" stroke="#1d3557" stroke-width="2"/>', "flexion"),
        (lambda x: f'<rect x="{x}" y="{y - 11}" width="22" height="12" fill="#f3a712" fill-opacity="0.3"/>'
                   f'<path d="M{x},{y - 11} h22" stroke="#d1495b" stroke-dasharray="6 4" '
                   'stroke-width="1.5"/>',
         "threshold and hysteresis band"),
        (lambda x: f'<rect x="{x}" y="{y - 11}" width="22" height="12" fill="#e4572e" fill-opacity="0.2"/>',
         "slouch past the dwell"),
        (lambda x: f'<path d="M{x + 11},{y + 1} l-6,-11 h12 z" fill="#d1495b"/>', "slouch alert"),
        (lambda x: f'<path d="M{x + 11},{y - 12} l7,7 l-7,7 l-7,-7 z" fill="#6a4c93"/>', "break reminder"),
        (lambda x: f'<path d="M{x + 11},{y + 1} l-6,-10 h12 z" fill="#2a9d8f"/>', "break taken"),
        (lambda x: f'<circle cx="{x + 11}" cy="{y - 5}" r="4.5" fill="#1d70b8"/>', "calibrated"),
    ]
    x = float(_LEFT)
    for draw, label in symbols:
        out.append(draw(x))
        out.append(f'<text x="{x + 28:.0f}" y="{y}">{label}</text>')
        x += 28 + _text_px(label) + 18
    y += 26
    out.append(f'<text x="{_LEFT}" y="{y}" fill="#444">state:</text>')
    x = _LEFT + 50.0
    for code, (fill, label) in _STRIP_COLOURS.items():
        if code not in codes:
            continue
        out.append(f'<rect x="{x:.0f}" y="{y - 11}" width="14" height="14" fill="{fill}" stroke="#444" '
                   'stroke-width="0.5"/>')
        out.append(f'<text x="{x + 19:.0f}" y="{y}">{label}</text>')
        x += 19 + _text_px(label) + 18
    return out


def _nice_step(span: float, n: int, steps: Sequence[float]) -> float:
    for s in steps:
        if span / s <= n:
            return s
    return steps[-1] * math.ceil(span / (steps[-1] * n))


def _nice_ticks(lo: float, hi: float, n: int) -> list[float]:
    step = _nice_step(hi - lo, n, (5, 10, 20, 30, 45, 60))
    first = math.ceil(lo / step) * step
    return [v for v in np.arange(first, hi + 1e-9, step).tolist()]


def _time_ticks(t0: float, t1: float, n: int) -> list[float]:
    """Tick times on round minutes or hours, at most about ``n`` of them."""
    step = _nice_step(t1 - t0, n, (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600))
    if t0 > UNIX_TIME_MIN_S:  # round to the local clock, not to Unix time
        offset = datetime.fromtimestamp(t0).astimezone().utcoffset()
        off = offset.total_seconds() if offset is not None else 0.0
    else:
        off = 0.0
    first = math.ceil((t0 + off) / step) * step - off
    return np.arange(first, t1 + 1e-9, step).tolist()


def _clock_label(t_s: float, unix: bool, seconds: bool = False) -> str:
    if unix:
        return datetime.fromtimestamp(t_s).astimezone().strftime("%H:%M:%S" if seconds else "%H:%M")
    s = round(t_s)
    sign = "-" if s < 0 else ""
    s = abs(s)
    if seconds:
        return f"{sign}{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{sign}{s // 3600}:{s // 60 % 60:02d}"


def _duration(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 60:.0f} min"
