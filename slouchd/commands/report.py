"""``slouchd report``: the week from a wearer's history, as a table and as a self-contained SVG.

Reads ``<state_dir>/history/<wearer>.json`` (see :mod:`slouchd.history`); never writes it.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from html import escape
from pathlib import Path
from typing import TextIO

from slouchd.cli import CliError
from slouchd.config import load_config
from slouchd.history import DayRecord, History, HistoryStore
from slouchd.state import default_state_dir

UPRIGHT_COLOUR = "#3a9d5d"
SLOUCHED_COLOUR = "#e08a2c"
GOAL_COLOUR = "#2f6db5"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="print a wearer's week from the history (and draw it as SVG)",
        description="Print a wearer's days (upright share, slouched and seated time, alerts, breaks "
                    "that count, stretch sessions, daily goal and streak) from the history slouchd "
                    "keeps in its state directory, and optionally draw them as a self-contained SVG.")
    p.add_argument("--config", metavar="FILE", help="TOML configuration (for state_dir and the wearers)")
    p.add_argument("--state-dir", metavar="DIR", dest="state_dir",
                   help="state directory (default: [daemon] state_dir, $STATE_DIRECTORY, "
                        "~/.local/state/slouchd)")
    p.add_argument("--wearer", metavar="NAME", help="whose week (default: the only wearer with a history)")
    p.add_argument("--until", metavar="YYYY-MM-DD", type=_iso_date,
                   help="last day shown (default: the newest day in the history)")
    p.add_argument("--days", metavar="N", type=_days, default=7, help="how many days (default 7, up to 90)")
    p.add_argument("--svg", metavar="FILE",
                   help="also draw the days as an SVG chart into FILE ('-' = stdout)")
    p.set_defaults(func=run)


def _iso_date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-30") from None


def _days(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= 90:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1..90")
    return n


def _find_wearer(store: HistoryStore, configured: list[str], wanted: str | None) -> str:
    have = sorted(p.stem for p in store.directory.glob("*.json")) if store.directory.is_dir() else []
    if wanted:
        if wanted not in have:
            raise CliError(f"no history for wearer {wanted!r} in {store.directory} "
                           f"(have: {', '.join(have) or 'none'})")
        return wanted
    candidates = [w for w in configured if w in have] or have
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise CliError(f"no history in {store.directory}: slouchd keeps one once a wearer has been "
                       "followed for a day (or use --state-dir)")
    raise CliError(f"several wearers have a history ({', '.join(candidates)}): choose one with --wearer")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config) if args.config else None
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(
        cfg.daemon.state_dir if cfg else "")
    store = HistoryStore(state_dir)
    wearer = _find_wearer(store, [w.name for w in cfg.wearers] if cfg else [], args.wearer)
    history = store.load(wearer)
    if not history.days:
        raise CliError(f"{store.path(wearer)}: the history is empty")
    until = args.until or max(history.days)
    days = history.week(until, args.days)
    print_table(wearer, history, days, sys.stdout, str(store.path(wearer)))
    if args.svg:
        svg = render_svg(wearer, days)
        if args.svg == "-":
            sys.stdout.write(svg)
        else:
            try:
                Path(args.svg).write_text(svg, encoding="utf-8")
            except OSError as err:
                raise CliError(f"--svg {args.svg}: {err.strerror or err}") from None
            print(f"chart: {args.svg}")
    return 0


def _fmt_min(seconds: float) -> str:
    m = seconds / 60.0
    return f"{m / 60.0:.1f} h" if m >= 90 else f"{m:.0f} min"


def _goal_word(r: DayRecord) -> str:
    return {True: "met", False: "missed", None: "-"}[r.goal_met]


def print_table(wearer: str, history: History, days: list[DayRecord], out: TextIO, source: str) -> None:
    """The days as a plain-text table with a summary line."""
    w = out.write
    w(f"{wearer}: {days[0].date} .. {days[-1].date} (from {source})\n")
    w(f"{'day':<14} {'upright':>7} {'slouched':>9} {'seated':>8} {'alerts':>6} {'breaks':>6} "
      f"{'stretches':>9} {'goal':>6} {'streak':>6}\n")
    for r in days:
        pct = "-" if r.upright_pct is None else f"{r.upright_pct:.0f} %"
        wd = datetime.fromisoformat(r.date).strftime("%a")
        seated = r.upright_s + r.slouched_s
        w(f"{wd + ' ' + r.date:<14} {pct:>7} {_fmt_min(r.slouched_s):>9} {_fmt_min(seated):>8} {r.alerts:>6} "
          f"{r.breaks + r.stretch_breaks:>6} {r.stretch_sessions:>9} {_goal_word(r):>6} {r.streak:>6}\n")
    up = sum(r.upright_s for r in days)
    seated = up + sum(r.slouched_s for r in days)
    judged = [r for r in days if r.goal_met is not None]
    best = max((r.streak for r in history.days.values()), default=0)
    w(f"total: upright {'-' if seated <= 0 else format(100 * up / seated, '.0f') + ' %'} of "
      f"{_fmt_min(seated)} seated; {sum(r.alerts for r in days)} alerts; "
      f"{sum(r.breaks + r.stretch_breaks for r in days)} breaks that count "
      f"({sum(r.stretch_sessions for r in days)} stretch sessions); goal met on "
      f"{sum(1 for r in judged if r.goal_met)} of {len(judged)} judged days; streak {days[-1].streak} "
      f"(best {best})\n")


def render_svg(wearer: str, days: list[DayRecord]) -> str:
    """A self-contained SVG: per day, seated minutes as a stacked bar (upright / slouched), the
    upright share above it, breaks and stretch sessions below, and the goal result."""
    n = len(days)
    bar_w = 56 if n <= 14 else max(8, 700 // n)
    gap = bar_w // 3
    left, top, plot_h = 60, 70, 220
    width = max(left + n * (bar_w + gap) + 40, 560)
    height = top + plot_h + 110
    max_min = max([(r.upright_s + r.slouched_s) / 60.0 for r in days] + [60.0])
    step = next(s for s in (30, 60, 120, 180, 240, 360, 480, 720) if max_min / s <= 6)
    scale_max = step * (int(max_min // step) + 1)
    y = lambda m: top + plot_h - plot_h * m / scale_max  # noqa: E731 (a local unit conversion)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="24" font-size="16" font-weight="bold">{escape(wearer)}: '
        f'{days[0].date} .. {days[-1].date}</text>',
        f'<text x="{left}" y="44" fill="#555">seated minutes per day, '
        f'<tspan fill="{UPRIGHT_COLOUR}" font-weight="bold">upright</tspan> and '
        f'<tspan fill="{SLOUCHED_COLOUR}" font-weight="bold">slouched</tspan>; '
        f'% = upright share</text>',
        f'<text x="{left - 8}" y="{top - 10}" text-anchor="end" fill="#555">min</text>',
    ]
    for m in range(0, scale_max + 1, step):
        yy = y(m)
        out.append(f'<line x1="{left - 4}" y1="{yy:.1f}" x2="{width - 30}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end" fill="#555">{m}</text>')
    for i, r in enumerate(days):
        x = left + gap // 2 + i * (bar_w + gap)
        cx = x + bar_w / 2
        up_m, sl_m = r.upright_s / 60.0, r.slouched_s / 60.0
        y_up = y(up_m)
        y_top = y(up_m + sl_m)
        if up_m > 0:
            out.append(f'<rect x="{x}" y="{y_up:.1f}" width="{bar_w}" height="{top + plot_h - y_up:.1f}" '
                       f'fill="{UPRIGHT_COLOUR}"><title>{r.date}: {up_m:.0f} min upright</title></rect>')
        if sl_m > 0:
            out.append(f'<rect x="{x}" y="{y_top:.1f}" width="{bar_w}" height="{y_up - y_top:.1f}" '
                       f'fill="{SLOUCHED_COLOUR}"><title>{r.date}: {sl_m:.0f} min slouched</title></rect>')
        pct = r.upright_pct
        if pct is not None:
            out.append(f'<text x="{cx:.1f}" y="{y_top - 6:.1f}" text-anchor="middle" '
                       f'font-weight="bold">{pct:.0f}%</text>')
        d = date.fromisoformat(r.date)
        base = top + plot_h
        out.append(f'<text x="{cx:.1f}" y="{base + 16}" text-anchor="middle">{d.strftime("%a")}</text>')
        out.append(f'<text x="{cx:.1f}" y="{base + 30}" text-anchor="middle" fill="#555">'
                   f'{d.strftime("%d.%m")}</text>')
        out.append(f'<text x="{cx:.1f}" y="{base + 50}" text-anchor="middle">'
                   f'{r.breaks + r.stretch_breaks} ({r.stretch_sessions})</text>')
        mark, colour = {True: ("\u2713", GOAL_COLOUR), False: ("\u2717", "#b33"), None: ("\u00b7", "#999")}[
            r.goal_met]
        out.append(f'<text x="{cx:.1f}" y="{base + 72}" text-anchor="middle" font-size="16" '
                   f'fill="{colour}">{mark}</text>')
    base = top + plot_h
    out.append(f'<text x="8" y="{base + 44}" fill="#555">breaks</text>')
    out.append(f'<text x="8" y="{base + 56}" fill="#555" font-size="10">(stretch)</text>')
    out.append(f'<text x="8" y="{base + 72}" fill="#555">goal</text>')
    out.append(f'<text x="{left}" y="{height - 10}" fill="#555">streak: {days[-1].streak} day(s)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
