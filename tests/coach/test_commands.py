"""`slouchd stretch` and `slouchd report` as a user runs them (registered the way cli.py will)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import slouchd.cli as cli
from slouchd.history import DayRecord, History, HistoryStore
from slouchd.posture import stretch as sj
from slouchd.sensors.recording import RecordingWriter
from slouchd.sensors.simulation.stretches import CALM_S, run_guided_session
from slouchd.stretches import load_catalog

MODULES = ("slouchd.commands.stretch", "slouchd.commands.report")


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    mods = tuple(m for m in MODULES if m not in cli.COMMAND_MODULES)
    monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + mods)


def slouchd(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def bounce_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    cat = load_catalog()
    run = run_guided_session(cat.steps_of(cat.session("quick")), "bounce", 21, keep_samples=True)
    path = tmp_path_factory.mktemp("rec") / "quick.csv"
    with RecordingWriter(path, gyro=True) as w:
        for b in run.batches:
            w.write(b)
    return path, run


def test_stretch_on_a_recording_judges_like_the_live_session(
        capsys: pytest.CaptureFixture[str], bounce_run: tuple[Path, object]) -> None:
    path, run = bounce_run
    code, out, err = slouchd(capsys, "stretch", "--recording", str(path), "--session", "quick",
                             "--mount=+y,-z", "--start-at", str(CALM_S))
    assert code == 0 and err == ""
    lines = [json.loads(x) for x in out.splitlines()]
    result = lines[-1]["result"]
    live = run.judge.result()  # type: ignore[attr-defined]
    assert result["status"] == live["status"] == "complete"
    assert [s["held_s"] for s in result["steps"]] == [s["held_s"] for s in live["steps"]]
    done_cli = [x["t"] for x in lines if x.get("event") == sj.STRETCH_REP_COMPLETE]
    done_live = [e.t_s for e in run.events if e.kind == sj.STRETCH_REP_COMPLETE]  # type: ignore[attr-defined]
    # The CSV rounds the samples (0.1 mg, 1 mdeg/s): the same decisions, within a tick or two.
    assert done_cli == pytest.approx(done_live, abs=0.25)
    cues = [x for x in lines if x.get("event") == sj.STRETCH_CUE]
    assert len(cues) == result["bounce_cues"] >= 1


def test_a_recording_that_ends_mid_session_abandons_it(
        capsys: pytest.CaptureFixture[str], bounce_run: tuple[Path, object], tmp_path: Path) -> None:
    path, _ = bounce_run
    short = tmp_path / "short.csv"
    short.write_text("\n".join(path.read_text().splitlines()[:50 * 30]) + "\n")  # the first 30 s
    code, out, _ = slouchd(capsys, "stretch", "--recording", str(short), "--session", "quick",
                           "--mount=+y,-z", "--every", "5")
    lines = [json.loads(x) for x in out.splitlines()]
    assert code == 0
    assert lines[-2]["event"] == sj.STRETCH_ABANDONED and lines[-2]["reason"] == "the recording ended"
    states = [x["stretch"] for x in lines if "stretch" in x]
    assert len(states) >= 4 and {"status", "step", "held_s", "instruction"} <= set(states[0])


def test_stretch_mistakes_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = slouchd(capsys, "stretch")
    assert code == 2 and "--recording FILE.csv is needed" in err and err.count("\n") == 1
    rec = tmp_path / "r.csv"
    rec.write_text("t,ax,ay,az\n0,0,1,0\n")
    code, _, err = slouchd(capsys, "stretch", "--recording", str(rec), "--session", "yoga")
    assert code == 2 and "no such session (have: desk_break, quick)" in err
    code, _, err = slouchd(capsys, "stretch", "--recording", str(tmp_path / "none.csv"))
    assert code == 2 and "no such file" in err
    bad = tmp_path / "cat.toml"
    bad.write_text('[[stretches]]\nname = "x"\ndirection = "up"\ninstruction = "Do it slowly please."\n')
    code, _, err = slouchd(capsys, "stretch", "--check", str(bad))
    assert code == 2 and err.startswith(f"slouchd stretch: error: {bad}: stretches[0].direction = \"up\"")


def test_stretch_check_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = slouchd(capsys, "stretch", "--check", "config/stretches.toml")
    assert code == 0 and out.startswith("config/stretches.toml: ok: 5 stretch(es), 2 session(s)")
    code, out, _ = slouchd(capsys, "stretch", "--list")
    assert code == 0 and "session desk_break" in out and "stretch side_bend_left: side_left 8-30 deg" in out


def history_dir(tmp_path: Path, wearers: tuple[str, ...] = ("ana",)) -> Path:
    for name in wearers:
        h = History()
        for k in range(10):
            h.put(DayRecord.of(f"2026-11-{20 + k:02d}", upright_s=3600.0 * 3, slouched_s=1800.0 + 60 * k,
                            alerts=k, breaks=4, stretch_breaks=1, stretch_sessions=1, goal_met=k % 4 != 3,
                            streak=k % 4))
        HistoryStore(tmp_path).save(name, h)
    return tmp_path


def test_report_prints_the_week_and_draws_valid_svg(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = history_dir(tmp_path / "state")
    svg = tmp_path / "week.svg"
    code, out, err = slouchd(capsys, "report", "--state-dir", str(state), "--svg", str(svg))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("ana: 2026-11-23 .. 2026-11-29")
    assert lines[2].split()[:4] == ["Mon", "2026-11-23", "84", "%"]  # 3 h upright of 3 h 38 min
    assert len(lines) == 2 + 7 + 2
    assert "goal met on 5 of 7 judged days; streak 1 (best 3)" in lines[-2]
    root = ET.fromstring(svg.read_text())
    assert root.tag.endswith("svg")
    assert sum(1 for e in root.iter() if e.tag.endswith("rect")) == 1 + 7 * 2  # background + 2 bars a day
    assert "href" not in svg.read_text()  # self-contained: nothing linked


def test_report_says_what_is_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = slouchd(capsys, "report", "--state-dir", str(tmp_path))
    assert code == 2 and "no history in" in err
    state = history_dir(tmp_path / "two", ("ana", "ben"))
    code, _, err = slouchd(capsys, "report", "--state-dir", str(state))
    assert code == 2 and "several wearers have a history (ana, ben): choose one with --wearer" in err
    code, out, _ = slouchd(capsys, "report", "--state-dir", str(state), "--wearer", "ben", "--until",
                           "2026-11-22", "--days", "3")
    assert code == 0 and out.startswith("ben: 2026-11-20 .. 2026-11-22")
    code, _, err = slouchd(capsys, "report", "--state-dir", str(state), "--wearer", "cy")
    assert code == 2 and "no history for wearer 'cy'" in err
