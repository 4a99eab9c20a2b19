"""The replay CSV format and the ``slouchd replay`` command: the interface users tune with."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from slouchd.cli import main
from slouchd.model import SampleBatch
from slouchd.sensors.recording import RecordingError, RecordingWriter, parse_recording, read_recording
from tests.posture.synth import Step, wear

SLOUCHY_DAY = [Step(30), Step(70, 25), Step(30, 0), Step(40, -20), Step(20, 0, 20), Step(30, 3, what="walk")]
ORDINARY = [Step(20)] + [Step(40, 22), Step(30, 2), Step(20, -8), Step(30, 1), Step(20, 0, 6)] * 6
"""Ordinary sitting, enough to learn the forward axis from."""
ORDINARY_S = sum(s.seconds for s in ORDINARY)


def write(path: Path, batch: SampleBatch, gyro: bool = True) -> Path:
    with RecordingWriter(path, gyro=gyro) as w:
        w.write(batch)
    return path


def replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict], str]:
    code = main(["replay", *args])
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return code, records, err


# --- the CSV format -----------------------------------------------------------------------------

def test_writer_and_reader_round_trip(tmp_path: Path) -> None:
    batch = wear([Step(3, 10)], rate_hz=50)
    rec = read_recording(write(tmp_path / "r.csv", batch))
    assert rec.t_s == pytest.approx(batch.t_s, abs=1e-4)
    assert rec.acc_g == pytest.approx(batch.acc_g, abs=1e-5)
    assert rec.gyro_dps == pytest.approx(batch.gyro_dps, abs=1e-3)


def test_extra_columns_are_ignored_and_columns_may_come_in_any_order() -> None:
    rec = parse_recording("label,az,t,ay,ax,temp\nsit,0.0,0.00,1.0,0.0,21\nsit,0.1,0.02,0.99,0.0,21\n")
    assert rec.t_s.tolist() == [0.0, 0.02]
    assert rec.acc_g[1].tolist() == [0.0, 0.99, 0.1]
    assert rec.gyro_dps is None


def test_blank_lines_are_skipped() -> None:
    rec = parse_recording("t,ax,ay,az\n\n0,0,1,0\n   \n0.1,0,1,0\n")
    assert len(rec) == 2


@pytest.mark.parametrize(("text", "message"), [
    ("t,ax,ay,az\n0,0,1,0\n0.1,0,one,0\n", "line 3: ay = 'one' is not a number"),
    ("t,ax,ay,az\n0,0,1,0\n0.1,0,1\n", "line 3: 3 fields, the header has 4"),
    ("t,ax,ay,az\n0,0,1,0\n\n0.1,0,1,0\n0.2,0,1,0\n0.05,0,1,0\n",
     "line 6: t = 0.05 is 0.15 s before an earlier row's t = 0.2, more than one sample period (0.1 s)"),
    ("t,ax,ay,az\n0,0,1,0\n0,0,1,0\n", "t never moves forward"),
    ("t,ax,ay,az\n0.1,nan,1,0\n",
     "no usable rows: every row has an empty or non-finite cell (first on line 2)"),
    ("t,ax,ay,az\n0,0,1,0\n0.1,0,1\n0.2,0,1,0\n", "line 3: 3 fields, the header has 4"),
    ("time,ax,ay,az\n0,0,1,0\n", "line 1: header needs columns t,ax,ay,az (missing t)"),
    ("t,ax,ay,az,gx,gy\n0,0,1,0,0,0\n", "line 1: gyro columns must be all of gx,gy,gz or none"),
    ("t,ax,ay,az\n", "no data rows"),
    ("", "empty file"),
])
def test_a_malformed_row_is_an_error_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(RecordingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_recording(text, "x.csv")


def test_batches_cover_the_recording_in_chunks() -> None:
    rec = parse_recording("t,ax,ay,az\n" + "".join(f"{i * 0.04:.2f},0,1,0\n" for i in range(1000)))
    parts = list(rec.batches(chunk_s=7.0))
    assert sum(len(b) for b in parts) == 1000
    assert all(b.t_s[-1] - b.t_s[0] < 7.0 for b in parts)
    assert np.all(np.diff(np.concatenate([b.t_s for b in parts])) > 0)


def test_writer_skips_samples_that_do_not_move_time_forward() -> None:
    buf = io.StringIO()
    w = RecordingWriter(buf, gyro=False)
    b = SampleBatch(np.array([0.0, 0.1, 0.1, 0.05, 0.2]), np.tile([0.0, 1.0, 0.0], (5, 1)))
    w.write(b)
    w.close()
    assert len(parse_recording(buf.getvalue())) == 3


# --- slouchd replay -----------------------------------------------------------------------------

@pytest.fixture
def day_csv(tmp_path: Path) -> Path:
    return write(tmp_path / "day.csv", wear(SLOUCHY_DAY, rate_hz=50))


def test_replay_prints_posture_records_every_second_and_events(day_csv: Path, capsys) -> None:
    code, records, err = replay(capsys, str(day_csv), "--mount=+y,-z")
    assert code == 0 and err == ""
    postures = [r for r in records if "posture" in r]
    assert all(set(r) == {"t", "flexion_deg", "lateral_deg", "posture"} for r in postures)
    assert [r["t"] for r in postures[:3]] == [1.0, 2.0, 3.0]
    assert {r["posture"] for r in postures} >= {"upright", "slouching", "walking", "uncalibrated"}
    events = [r for r in records if "event" in r]
    assert [e["event"] for e in events if e["event"] != "calibrated"] == ["slouch_alert", "slouch_end"]
    alert = next(e for e in events if e["event"] == "slouch_alert")
    assert 60.5 <= alert["t"] <= 62.6 and alert["level"] == 1
    times = [r["t"] for r in records]
    assert times == sorted(times)


def test_replay_every_and_set_options(day_csv: Path, capsys) -> None:
    code, records, _ = replay(capsys, str(day_csv), "--every", "0.5", "--set", "detection.threshold_deg=30",
                              "--set", "detection.dwell_s=10")
    assert code == 0
    postures = [r for r in records if "posture" in r]
    assert postures[1]["t"] - postures[0]["t"] == pytest.approx(0.5)
    assert not any(r.get("event") == "slouch_alert" for r in records)


def test_replay_calibrate_at_takes_the_upright_window_there(day_csv: Path, capsys) -> None:
    # Calibrating inside the 25 deg slouch makes that slouch the reference: no alert then.
    code, records, _ = replay(capsys, str(day_csv), "--mount=+y,-z", "--calibrate-at", "40")
    assert code == 0
    cal = [r for r in records if r.get("event") == "calibrated"]
    assert cal and 42 <= cal[0]["t"] <= 43
    assert not any(r.get("event") == "slouch_alert" for r in records)
    assert all(r["posture"] == "uncalibrated" for r in records if "posture" in r and r["t"] < 42)


def test_replay_without_gyro_columns_and_with_a_config_file(tmp_path: Path, capsys) -> None:
    # Issue 10: without --mount the forward axis must be learned before anything alerts (a tilt
    # without a sign could be leaning back). The recording starts with 14 minutes of ordinary
    # sitting (slouches, small lean-backs) to learn it from; then the slouchy day.
    path = write(tmp_path / "acc.csv", wear(ORDINARY + SLOUCHY_DAY, rate_hz=25, gyro=False), gyro=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detection]\ndwell_s = 20\n")
    code, records, _ = replay(capsys, str(path), "--config", str(cfg))
    assert code == 0
    learned = [r for r in records if r.get("event") == "calibrated" and r["axis_source"] == "learned"]
    assert learned and learned[0]["t"] < ORDINARY_S
    alert = next(r for r in records if r.get("event") == "slouch_alert" and r["t"] > ORDINARY_S)
    assert 50.5 <= alert["t"] - ORDINARY_S <= 52.6
    # Leaning back (-20 deg, 130-170 s into the day) reads negative and does not alert.
    lean = [r for r in records if "posture" in r and ORDINARY_S + 135 <= r["t"] <= ORDINARY_S + 168]
    assert lean and all(r["flexion_deg"] == pytest.approx(-20, abs=2) for r in lean)
    assert not [r for r in records if r.get("event") == "slouch_alert"
                and ORDINARY_S + 100 <= r["t"] <= ORDINARY_S + 230]


def test_replay_without_a_mount_waits_for_the_forward_axis(day_csv: Path, capsys) -> None:
    # The slouchy day alone: its slouch (25 deg, 30-100 s) begins before the forward axis is
    # known, so no angle is judged; a minute of it teaches the axis (asked at every tick, as live
    # does: ~93 s, no longer at the end of replay's batch). The slouch has lasted over the dwell by
    # then, so it alerts at once with its duration (the ticks kept while unjudged, up to dwell +
    # 10 s); the lean-back after it does not.
    code, records, _ = replay(capsys, str(day_csv))
    assert code == 0
    cal = [r for r in records if r.get("event") == "calibrated"]
    assert [r["axis_source"] for r in cal] == ["none", "learned"]
    assert cal[1]["forward"] == pytest.approx([0, 0, 1], abs=0.05)  # the file's mount is +y,-z
    assert 90.0 <= cal[1]["t"] <= 96.0
    alerts = [r for r in records if r.get("event") == "slouch_alert"]
    assert len(alerts) == 1 and 0.0 < alerts[0]["t"] - cal[1]["t"] <= 0.2
    assert alerts[0]["slouch_s"] >= 30.0 and alerts[0]["flexion_deg"] == pytest.approx(25, abs=2)
    waiting = [r for r in records if "posture" in r and r["t"] < cal[1]["t"]]
    assert all(r["flexion_deg"] is None for r in waiting)
    assert {r["posture"] for r in waiting} <= {"uncalibrated", "moving"}


def test_replay_summary_is_for_humans(day_csv: Path, capsys) -> None:
    # With the mount declared (without it this short day only waits for the forward axis: the
    # test above).
    assert main(["replay", str(day_csv), "--summary", "--mount=+y,-z"]) == 0
    out = capsys.readouterr().out
    assert "alerts: 1" in out
    assert "what if" in out and "<- current" in out
    assert out.splitlines()[-1].startswith("flexion: ") and len(out.splitlines()[-1]) == len("flexion: ") + 60


@pytest.mark.parametrize("args", [
    ["--mount=+y,+y"], ["--mount=up,out"], ["--every", "0"], ["--calibrate-at", "soon"],
    ["--set", "detection.threshold_deg=999"], ["--set", "nonsense"], ["--config", "/nonexistent.toml"],
])
def test_bad_options_are_one_line_and_exit_2(day_csv: Path, capsys, args: list[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        code = main(["replay", str(day_csv), *args])
        raise SystemExit(code)
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_csv_line_is_one_line_on_stderr_and_exit_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("t,ax,ay,az\n0,0,1,0\n0.02,0,1,0\n0.04,0;1,0\n")
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 4" in err and str(path) in err


async def test_a_recording_plays_back_as_a_wearers_sample_source(tmp_path: Path) -> None:
    from slouchd.config import parse_config
    from slouchd.daemon.sources import open_source, plan_source

    path = write(tmp_path / "r.csv", wear([Step(2)], rate_hz=50))
    cfg = parse_config({"wearers": [{"name": "ana", "sensor": f"replay:{path}", "speed": 1000.0}]})
    wearer = cfg.wearers[0]
    plan = plan_source(wearer, cfg)
    assert plan.kind == "replay" and plan.sensor_id == "replay-ana"
    source = open_source(plan, wearer, cfg, start_epoch_s=1_700_000_000.0)
    batches = []
    async with source:
        async for b in source:
            batches.append(b)
            if sum(len(x) for x in batches) >= 250:  # replay wearers loop the recording
                break
    t = np.concatenate([b.t_s for b in batches])
    assert t[0] == 1_700_000_000.0 and np.all(np.diff(t) > 0)
    assert await source.buzz(1) is False


# --- inputs as other tools write them, and edge options (found by an adversarial review) ---------

def test_spreadsheet_bom_comments_and_empty_gyro_columns_are_read(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf# exported from a phone app\nt,ax,ay,az,gx,gy,gz\n"
                     b"0.00,0,1,0,,,\n# a note\n0.02,0,1,0.01,,,\n")
    rec = read_recording(path)
    assert rec.t_s.tolist() == [0.0, 0.02] and rec.gyro_dps is None
    assert rec.acc_g[1].tolist() == [0.0, 1.0, 0.01]


def test_a_row_with_more_fields_than_the_header_is_an_error() -> None:
    with pytest.raises(RecordingError, match="line 3: 5 fields, the header has 4"):
        parse_recording("t,ax,ay,az\n0,0,1,0\n0.02,0,1,0,7\n", "x.csv")


def test_gyro_empty_on_some_rows_only_drops_those_rows_and_counts_them() -> None:
    rec = parse_recording("t,ax,ay,az,gx,gy,gz\n0,0,1,0,1,2,3\n0.02,0,1,0,,,\n0.04,0,1,0,1,2,3\n", "x.csv")
    assert rec.t_s.tolist() == [0.0, 0.04] and rec.gyro_dps is not None
    assert rec.report is not None and (rec.report.dropped, rec.report.first_dropped_line) == (1, 3)


def test_replay_reads_standard_input(day_csv: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(day_csv.read_text()))
    code, from_stdin, _ = replay(capsys, "-", "--mount=+y,-z")
    _, from_file, _ = replay(capsys, str(day_csv), "--mount=+y,-z")
    assert code == 0 and from_stdin == from_file and len(from_file) > 200


def test_calibrate_at_the_first_sample_calibrates_on_the_opening_still_window(day_csv: Path, capsys) -> None:
    code, records, _ = replay(capsys, str(day_csv), "--mount", "+y,-z", "--calibrate-at", "0")
    assert code == 0
    cal = [r for r in records if r.get("event", "").startswith("calibrat")]
    assert cal[0]["event"] == "calibrated" and 1.9 <= cal[0]["t"] <= 3.0
    assert any(r.get("event") == "slouch_alert" for r in records)


def test_calibrate_at_inside_a_data_gap_waits_for_the_data(tmp_path: Path, capsys) -> None:
    first = wear([Step(20)], rate_hz=50)
    second = wear([Step(20)], rate_hz=50, t0=200.0)
    joined = SampleBatch(np.concatenate([first.t_s, second.t_s]), np.vstack([first.acc_g, second.acc_g]),
                         np.vstack([first.gyro_dps, second.gyro_dps]))
    path = write(tmp_path / "gap.csv", joined)
    code, records, _ = replay(capsys, str(path), "--mount=+y,-z", "--calibrate-at", "100")
    cal = [r for r in records if r.get("event", "").startswith("calibrat")]
    assert code == 0 and cal[0]["event"] == "calibrated" and 201.9 <= cal[0]["t"] <= 203.0


def test_calibrate_at_past_the_end_is_refused_and_an_unmet_request_answered(day_csv: Path, capsys) -> None:
    code, _, err = replay(capsys, str(day_csv), "--calibrate-at", "5000")
    assert code == 2 and "--calibrate-at 5000: the recording ends at t = 219.98 s" in err
    code, records, _ = replay(capsys, str(day_csv), "--calibrate-at", "219.5")
    assert code == 0
    assert records[-2] == {"t": 220.0, "event": "calibration_failed",
                           "reason": "the recording ended before a still window of 2 s"}


def test_events_come_before_posture_records_of_the_same_time(day_csv: Path, capsys) -> None:
    _, records, _ = replay(capsys, str(day_csv), "--mount=+y,-z", "--every", "0.1")
    alert = next(i for i, r in enumerate(records) if r.get("event") == "slouch_alert")
    same_t = [r for r in records if r["t"] == records[alert]["t"]]
    assert "event" in same_t[0] and "posture" in same_t[-1]
    assert records[alert]["t"] == round(records[alert]["t"], 3)


def test_slouch_end_reports_the_deepest_flexion_of_the_slouch(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "deepening.csv", wear([Step(30), Step(40, 18), Step(40, 30), Step(30, 0)]))
    _, records, _ = replay(capsys, str(path), "--mount=+y,-z")
    end = next(r for r in records if r.get("event") == "slouch_end")
    assert 28.5 <= end["max_flexion_deg"] <= 31.5


def test_a_negative_mount_axis_may_follow_a_space(day_csv: Path, capsys) -> None:
    _, spaced, _ = replay(capsys, str(day_csv), "--mount", "-y,+z")
    _, joined, _ = replay(capsys, str(day_csv), "--mount=-y,+z")
    assert spaced == joined and spaced
    code, _, err = replay(capsys, str(day_csv), "--mount=")
    assert code == 2 and "--mount" in err


def test_times_in_milliseconds_and_too_short_files_are_explained(tmp_path: Path, capsys) -> None:
    ms = tmp_path / "ms.csv"
    ms.write_text("t,ax,ay,az\n" + "".join(f"{i * 20},0,1,0\n" for i in range(500)))
    code, _, err = replay(capsys, str(ms))
    assert code == 0 and "samples are 20 s apart (median)" in err and "is t in seconds?" in err
    short = tmp_path / "short.csv"
    short.write_text("t,ax,ay,az\n0,0,1,0\n")
    code, records, err = replay(capsys, str(short))
    assert code == 0 and records == [] and "no records: 1 sample(s)" in err


def test_set_errors_name_the_option(day_csv: Path, capsys) -> None:
    code, _, err = replay(capsys, str(day_csv), "--set", "detection.dwell_s=-1")
    assert code == 2 and "--set: detection.dwell_s = -1: must be 1..3600" in err
