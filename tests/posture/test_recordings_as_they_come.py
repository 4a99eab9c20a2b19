"""Recordings as real tools write them (issues 10.5, 12, 13.5): shared and slightly-back timestamps,
empty cells, a cut last line, other units, low rates; read in bounded blocks."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from slouchd.cli import main
from slouchd.commands.replay import chunks, make_tracker, run_tracker
from slouchd.config import load_config
from slouchd.model import SampleBatch
from slouchd.sensors.recording import (
    RecordingError,
    RecordingReader,
    RecordingWriter,
    parse_recording,
    read_recording,
)
from tests.posture.synth import Step, wear

SLOUCHY = [Step(30), Step(70, 25), Step(30, 0), Step(40, -20), Step(20, 0, 20), Step(30, 3, what="walk")]


def csv_text(batch: SampleBatch, t: np.ndarray | None = None, acc_scale: float = 1.0,
             gyro_scale: float = 1.0) -> str:
    """The batch as replay CSV, optionally with other times or units."""
    t = batch.t_s if t is None else t
    cols = [t[:, None], batch.acc_g * acc_scale]
    head = "t,ax,ay,az"
    if batch.gyro_dps is not None:
        cols.append(batch.gyro_dps * gyro_scale)
        head += ",gx,gy,gz"
    buf = io.StringIO()
    np.savetxt(buf, np.hstack(cols), fmt="%.6f", delimiter=",", header=head, comments="")
    return buf.getvalue()


def replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict], str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")], err


# --- time stamps ------------------------------------------------------------------------------------

def test_samples_sharing_a_packet_timestamp_are_spread_evenly() -> None:
    # 5 samples per packet at 50 Hz, all stamped with the packet's time (a common logger habit).
    t = np.repeat(np.arange(0.0, 2.0, 0.1), 5)
    rec = parse_recording("t,ax,ay,az\n" + "".join(f"{x:.1f},0,1,0\n" for x in t))
    np.testing.assert_allclose(rec.t_s[:-5], np.arange(0.0, 1.9, 0.02), atol=1e-12)
    # The last packet has no following stamp: spaced at the measured period (0.02 s).
    np.testing.assert_allclose(rec.t_s[-5:], 1.9 + 0.02 * np.arange(5), atol=1e-12)
    assert rec.report is not None
    assert (rec.report.retimed, rec.report.first_retimed_line) == (80, 3)
    assert rec.report.period_s == pytest.approx(0.02)


def test_a_step_back_shorter_than_a_period_is_accepted_a_jump_back_names_its_line() -> None:
    rec = parse_recording("t,ax,ay,az\n0,0,1,0\n0.02,0,1,0\n0.04,0,1,0\n0.035,0,1,0\n0.08,0,1,0\n0.1,0,1,0\n")
    assert rec.t_s.tolist() == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08, 0.1])
    assert rec.report is not None and rec.report.retimed == 1
    with pytest.raises(RecordingError, match=r"^x.csv: line 5: t = 0.01 is 0.03 s before an earlier row's "
                                             r"t = 0.04, more than one sample period \(0.02 s\)"):
        parse_recording("t,ax,ay,az\n0,0,1,0\n0.02,0,1,0\n0.04,0,1,0\n0.01,0,1,0\n0.06,0,1,0\n", "x.csv")


def test_retiming_does_not_depend_on_where_the_blocks_are_cut() -> None:
    rng = np.random.default_rng(3)
    t = np.repeat(np.arange(0.0, 200.0, 0.1), 5) + rng.choice([0.0, -0.01], 10000)  # shared and jittered
    text = "t,ax,ay,az\n" + "".join(f"{x:.3f},0,1,0\n" for x in t)
    whole = parse_recording(text)
    for rows in (7, 64, 1000):
        with RecordingReader(io.StringIO(text), block_rows=rows) as r:
            parts = list(r.samples())
        # Bounded by the block (the first is long enough to measure the period), plus a held packet.
        assert all(len(p) <= rows + 5 for p in parts[1:])
        t_blocks = np.concatenate([p.t_s for p in parts])
        np.testing.assert_array_equal(t_blocks, whole.t_s)
        assert r.report.retimed == whole.report.retimed  # type: ignore[union-attr]
    assert np.all(np.diff(whole.t_s) > 0)


def test_replay_warns_about_retimed_rows_and_counts_them_in_the_summary(tmp_path: Path, capsys) -> None:
    batch = wear(SLOUCHY, rate_hz=50)
    t = np.repeat(batch.t_s[::5], 5)[: len(batch)]  # stamps shared by packets of 5
    path = tmp_path / "packets.csv"
    path.write_text(csv_text(batch, t))
    code, records, err = replay(capsys, str(path), "--mount=+y,-z")
    assert code == 0
    assert err.count("\n") == 1
    assert f"slouchd replay: warning: {path}: {len(batch) - len(batch) // 5} row(s) with t equal" in err
    alert = next(r for r in records if r.get("event") == "slouch_alert")
    assert 60.5 <= alert["t"] <= 62.7  # as for the evenly stamped file
    assert main(["replay", str(path), "--summary"]) == 0
    out = capsys.readouterr().out
    assert f"input: 0 row(s) dropped (empty or non-finite cell), {len(batch) - len(batch) // 5} row(s) " \
           "re-timed" in out


def test_record_output_read_back_needs_no_retiming(tmp_path: Path) -> None:
    batch = wear([Step(10)], rate_hz=50)
    dup = SampleBatch(np.concatenate([batch.t_s[:100], batch.t_s[90:]]),
                      np.vstack([batch.acc_g[:100], batch.acc_g[90:]]),
                      np.vstack([batch.gyro_dps[:100], batch.gyro_dps[90:]]))  # type: ignore[index]
    with RecordingWriter(tmp_path / "r.csv", gyro=True) as w:
        w.write(dup)  # a re-delivered packet, as BLE does
    rec = read_recording(tmp_path / "r.csv")
    assert rec.report is not None and (rec.report.retimed, rec.report.dropped) == (0, 0)
    assert len(rec) == len(batch)


# --- bad cells, cut files ---------------------------------------------------------------------------

def test_a_nan_or_empty_cell_drops_that_row_only(tmp_path: Path, capsys) -> None:
    batch = wear(SLOUCHY, rate_hz=50)
    lines = csv_text(batch).splitlines()
    lines[100] = lines[100].replace(lines[100].split(",")[2], "nan", 1)
    cells = lines[2000].split(",")
    cells[5] = ""
    lines[2000] = ",".join(cells)
    path = tmp_path / "holes.csv"
    path.write_text("\n".join(lines) + "\n")
    code, records, err = replay(capsys, str(path), "--mount=+y,-z")
    assert code == 0
    assert err == (f"slouchd replay: warning: {path}: 2 row(s) with an empty or non-finite cell dropped "
                   "(first on line 101)\n")
    assert any(r.get("event") == "slouch_alert" for r in records)


@pytest.mark.parametrize("cut", [",0.98", ",0.98,-0.1,0.2,1.1,-", ",0.98,-0.1,0.2,1.1,"])
def test_a_last_line_cut_short_is_dropped(cut: str) -> None:
    text = "t,ax,ay,az,gx,gy,gz\n0,0,1,0,0,0,0\n0.02,0,1,0,0,0,0\n0.04" + cut
    rec = parse_recording(text, "x.csv")
    assert len(rec) == 2 and rec.report is not None
    assert rec.report.truncated_line == 4 or rec.report.dropped == 1
    # The same line with its line end is a real error (or a dropped empty cell), not a cut.
    if cut.endswith(("98", "-")):
        with pytest.raises(RecordingError, match="line 4"):
            parse_recording(text + "\n0.06,0,1,0,0,0,0\n", "x.csv")


# --- units and rates ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("scale", "unit", "words"), [(1000.0, "mg", "milli-g"), (9.80665, "m/s2", "m/s^2")])
def test_accelerations_in_other_units_are_named_with_the_option_that_reads_them(
        tmp_path: Path, capsys, scale: float, unit: str, words: str) -> None:
    batch = wear(SLOUCHY, rate_hz=50)
    g_path, other = tmp_path / "g.csv", tmp_path / f"{unit.replace('/', '')}.csv"
    g_path.write_text(csv_text(batch))
    other.write_text(csv_text(batch, acc_scale=scale))
    code, _, err = replay(capsys, str(other))
    assert code == 2
    assert err.startswith(f"slouchd replay: error: {other}: accelerations look like {words} (median |a| = ")
    assert f"read them with --acc-unit {unit}" in err and err.count("\n") == 1
    code, converted, _ = replay(capsys, str(other), "--acc-unit", unit, "--mount=+y,-z")
    _, reference, _ = replay(capsys, str(g_path), "--mount=+y,-z")
    assert code == 0
    ev = [r for r in converted if "event" in r]
    assert [e["event"] for e in ev] == [e["event"] for e in reference if "event" in e]
    assert [e["t"] for e in ev] == pytest.approx([e["t"] for e in reference if "event" in e], abs=0.11)


def test_a_gyroscope_in_rad_per_s_is_recognised(tmp_path: Path, capsys) -> None:
    batch = wear(SLOUCHY, rate_hz=50)
    path = tmp_path / "rad.csv"
    path.write_text(csv_text(batch, gyro_scale=np.pi / 180.0))
    code, _, err = replay(capsys, str(path))
    # A warning naming the fix (linear acceleration can look alike: good data is never refused).
    assert code == 0
    assert f"{path}: the gyroscope looks like rad/s" in err and "--gyro-unit rad/s" in err
    code, converted, err = replay(capsys, str(path), "--gyro-unit", "rad/s", "--mount=+y,-z")
    assert "looks like rad/s" not in err
    (tmp_path / "deg.csv").write_text(csv_text(batch))
    _, reference, _ = replay(capsys, str(tmp_path / "deg.csv"), "--mount=+y,-z")
    assert code == 0 and converted == reference
    # deg/s data is never taken for rad/s.
    assert read_recording(tmp_path / "deg.csv").gyro_dps is not None
    assert "rad/s" not in replay(capsys, str(tmp_path / "deg.csv"), "--mount=+y,-z")[2]


@pytest.mark.parametrize(("seed", "options"), [(7, {}), (3, {"desk_vibration": True}),
                                               (7, {"desk_vibration": True, "fast_moves": True})])
def test_a_simulated_day_in_deg_per_s_is_not_taken_for_rad_per_s(
        tmp_path: Path, capsys, seed: int, options: dict[str, bool]) -> None:
    """Walking and desk vibration tip the measured gravity with no rotation: these days once
    read as rad/s (ratio 1/20 to 1/66) and were refused."""
    import subprocess
    import sys

    path = tmp_path / "day.csv"
    flags = [f"--{k.replace('_', '-')}" for k, v in options.items() if v]
    subprocess.run([sys.executable, "-m", "slouchd.sensors.simulated", "--seed", str(seed), "--hours", "0.5",
                    *flags, str(path)], check=True, capture_output=True)
    code, _, err = replay(capsys, str(path), "--every", "600")
    assert code == 0 and "rad/s" not in err


def test_below_20_hz_a_warning_says_accuracy_drops(tmp_path: Path, capsys) -> None:
    path = tmp_path / "slow.csv"
    path.write_text(csv_text(wear([Step(60), Step(60, 25)], rate_hz=10, gyro=False)))
    code, _, err = replay(capsys, str(path))
    assert code == 0
    assert err.count("below 20 Hz") == 1 and "sampled at 10 Hz" in err
    path.write_text(csv_text(wear([Step(60)], rate_hz=25, gyro=False)))
    assert replay(capsys, str(path))[2] == ""


# --- streaming ----------------------------------------------------------------------------------------

def test_streamed_replay_gives_the_same_records_as_the_whole_recording(tmp_path: Path) -> None:
    path = tmp_path / "day.csv"
    path.write_text(csv_text(wear(SLOUCHY, rate_hz=50)))
    cfg = load_config(None)

    def records(source: object) -> list[object]:
        tracker = make_tracker(cfg, None, 1.0, 40.0)
        out = []
        for chunk in run_tracker(source, tracker, 40.0):  # type: ignore[arg-type]
            out += [f.to_dict() for f in chunk.frames] + [e.to_dict() for e in chunk.events]
        return out

    whole = records(read_recording(path))
    with RecordingReader(path, block_rows=333) as r:
        streamed = records(chunks(r.samples()))
    assert streamed == whole and len(whole) > 200


def test_long_files_report_progress_on_stderr(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "day.csv"
    path.write_text(csv_text(wear(SLOUCHY * 6, rate_hz=50)))
    monkeypatch.setattr("slouchd.commands.replay.LONG_FILE_BYTES", 1000)  # "long" for this test
    code, records, err = replay(capsys, str(path), "--mount=+y,-z")
    assert code == 0 and records
    progress = [ln for ln in err.splitlines() if ln.startswith(f"slouchd replay: {path}: ")]
    assert 2 <= len(progress) <= 10 and progress[-1].endswith("100 % of the file")
    # A short file piped elsewhere stays quiet.
    monkeypatch.setattr("slouchd.commands.replay.LONG_FILE_BYTES", 1 << 40)
    assert replay(capsys, str(path), "--mount=+y,-z")[2] == ""
