"""The picture of a run (slouchd.plot): what it draws is where the frames and events say."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np

from slouchd.model import Activity, Event, EventKind, Posture, PostureFrame
from slouchd.plot import Collector, sparkline
from tests.cli_helpers import run_cli

SVG = "{http://www.w3.org/2000/svg}"


def frame(t: float, flex: float | None, posture: Posture, sitting_s: float = 0.0) -> PostureFrame:
    return PostureFrame(t, flex, 0.0 if flex is not None else None, posture, Activity.STILL, True,
                        flex is not None, sitting_s, 0.0)


def scripted_run(t0: float = 0.0) -> Collector:
    """An hour: upright, a 5 min slouch at 25 deg with an alert, a 10 min hole in the data, a walk
    (a break), then sitting with a break reminder."""
    c = Collector(threshold_deg=15, hysteresis_deg=3, title="scripted <run>")
    sitting = 0.0
    for s in range(3600):
        t = t0 + s
        if 1200 <= s < 1800:
            continue  # the hole
        if 600 <= s < 900:
            c.add_frame(frame(t, 25.0, Posture.SLOUCHING, sitting))
        elif 1800 <= s < 1900:
            sitting = 0.0
            c.add_frame(frame(t, None, Posture.WALKING, sitting))
            continue
        else:
            c.add_frame(frame(t, 2.0, Posture.UPRIGHT, sitting))
        sitting += 1.0
    c.add_events([Event(t0 + 660, EventKind.SLOUCH_ALERT, {"level": 1}),
                  Event(t0 + 900, EventKind.SLOUCH_END, {"duration_s": 300.0}),
                  Event(t0 + 30, EventKind.CALIBRATED, {"source": "auto"}),
                  Event(t0 + 3000, EventKind.BREAK_REMINDER, {"sitting_min": 50.0})])
    return c


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def titles(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter(f"{SVG}title")]


def test_the_picture_is_valid_svg_with_every_kind_of_mark() -> None:
    c = scripted_run()
    root = parse(c.svg())
    assert root.tag == f"{SVG}svg"
    tips = titles(root)
    assert sum(t.startswith("slouch alert (level 1) at 0:11:00") for t in tips) == 1
    assert sum(t.startswith("break reminder (sitting 50 min) at 0:50:00") for t in tips) == 1
    assert sum(t.startswith("calibrated (auto)") for t in tips) == 1
    assert sum(t.startswith("break taken") for t in tips) == 1
    assert c.counts() == {"alerts": 1, "slouches": 1, "break_reminders": 1, "calibrations": 1, "breaks": 1}
    text = " ".join(el.text or "" for el in root.iter(f"{SVG}text"))
    assert "scripted <run>" in text  # escaped in the file, intact once parsed
    for label in ("0:00", "0:10", "0:20", "0:30", "0:40", "0:50", "threshold 15°",
                  "recording time (h:mm from t = 0)", "no data (gap)", "slouching", "walking"):
        assert label in text, label


def test_the_slouch_band_and_the_gap_are_where_the_frames_say() -> None:
    root = parse(scripted_run().svg())
    rects = list(root.iter(f"{SVG}rect"))
    # x of a time: the plot spans t = -1 (one frame step before the first) .. 3599 over x 70..1170.
    def x(t: float) -> float:
        return 70 + (t + 1) / 3600 * 1100
    slouch = [r for r in rects if r.get("fill") == "#e4572e" and r.get("fill-opacity") == "0.13"]
    assert len(slouch) == 1
    assert abs(float(slouch[0].get("x", 0)) - x(600)) < 0.2
    assert abs(float(slouch[0].get("width", 0)) - (x(900) - x(600))) < 0.2
    gaps = [r for r in rects if r.get("fill") == "#ffffff" and r.get("height") == "22"]
    assert len(gaps) == 1
    assert abs(float(gaps[0].get("x", 0)) - x(1199)) < 0.2
    assert abs(float(gaps[0].get("width", 0)) - (x(1799) - x(1199))) < 0.2


def test_threshold_and_hysteresis_band_sit_at_their_angles() -> None:
    root = parse(scripted_run().svg())
    band = next(r for r in root.iter(f"{SVG}rect") if r.get("fill") == "#f3a712")
    # y axis: 30 deg (25 + 5 margin) at the top (y 64) to -10 deg at the bottom (y 364).
    def y(v: float) -> float:
        return 64 + (30 - v) / 40 * 300
    assert abs(float(band.get("y", 0)) - y(15)) < 0.2
    assert abs(float(band.get("height", 0)) - (y(12) - y(15))) < 0.2


def test_the_flexion_line_breaks_at_the_gap_and_at_missing_angles() -> None:
    root = parse(scripted_run().svg())
    paths = [p.get("d", "") for p in root.iter(f"{SVG}path") if p.get("stroke") == "#1d3557"
             and p.get("fill") == "none"]
    moves = sum(d.count("M") for d in paths)
    assert moves == 2  # before the hole, after the walk (no angle while walking)


def test_unix_times_are_labelled_in_local_clock_time() -> None:
    t0 = datetime(2026, 3, 2, 9, 0).timestamp()
    root = parse(scripted_run(t0).svg())
    text = [el.text or "" for el in root.iter(f"{SVG}text")]
    assert "09:00" in text and "09:30" in text and "09:50" in text
    assert "local time (hh:mm)" in text


def test_a_long_run_stays_a_small_file() -> None:
    c = Collector()
    rng = np.random.default_rng(1)
    for s in range(8 * 3600):
        c.add_frame(frame(float(s), float(5 + 3 * rng.standard_normal()), Posture.UPRIGHT, float(s)))
    svg = c.svg()
    assert len(svg) < 300_000
    parse(svg)


def test_an_empty_run_says_so() -> None:
    root = parse(Collector(title="x").svg())
    assert any("no posture frames" in (el.text or "") for el in root.iter(f"{SVG}text"))


def test_sparkline_shows_the_slouch_high_and_the_gap_blank() -> None:
    line = scripted_run().sparkline(36)
    assert len(line) == 36
    # 100 s per character: 600-900 s slouched (chars 6-8), 1200-1900 no angle (12-18).
    assert set(line[6:9]) == {"█"}
    assert line[12:18].strip() == ""
    assert set(line[:5]) <= {"▁", "▂"}  # upright at 2 deg on a 0..25 deg scale
    assert sparkline([0.0, 5.0, 10.0, float("nan")], 0.0, 10.0) == "▁▅█ "


def test_replay_plot_option_writes_the_picture(tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    t = np.arange(0, 600, 0.04)
    flex = np.where((t > 120) & (t < 400), 30.0, 0.0)
    a = np.radians(flex + 0.3 * np.sin(2 * np.pi * 0.25 * t))  # breathing: a worn sensor is never still
    noise = 0.003 * np.random.default_rng(0).standard_normal(t.size)
    rows = np.column_stack([t, noise, np.cos(a), np.sin(a)])
    np.savetxt(csv, rows, fmt="%.4f", delimiter=",", header="t,ax,ay,az", comments="")
    out = tmp_path / "r.svg"
    res = run_cli("replay", str(csv), "--mount=+y,+z", "--plot", str(out), timeout_s=120)
    assert res.returncode == 0, res.stderr
    assert f"picture: {out}" in res.stderr
    assert re.search(r"flexion: [▁-█ ]{60}", res.stderr)
    tips = titles(parse(out.read_text()))
    alerts = [line for line in res.stdout.splitlines() if '"slouch_alert"' in line]
    assert alerts and sum(t.startswith("slouch alert") for t in tips) == len(alerts)
    bad = run_cli("replay", str(csv), "--plot", str(tmp_path / "no" / "such" / "dir.svg"), timeout_s=120)
    assert bad.returncode == 2 and "--plot" in bad.stderr and "Traceback" not in bad.stderr
