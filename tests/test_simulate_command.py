"""`slouchd simulate`: the simulated wearer's recording, in the format `replay` reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slouchd.cli import main
from slouchd.sensors.recording import read_recording
from slouchd.sensors.simulated import KINDS, SimSettings, SimulatedWearer
from tests.cli_helpers import run_cli


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("simulate", *args, timeout_s=300)


def test_the_recording_is_the_simulated_wearers_samples(tmp_path: Path) -> None:
    out, truth = tmp_path / "day.csv", tmp_path / "truth.csv"
    assert main(["simulate", str(out), "--hours", "0.1", "--seed", "4", "--truth", str(truth)]) == 0
    rec = read_recording(out)
    assert rec.gyro_dps is not None
    assert 0.099 * 3600 < rec.duration_s < 0.1 * 3600
    ref_t, _, ref_acc, ref_gyro = next(SimulatedWearer(SimSettings(seed=4)).recording())
    n = min(len(rec), int(np.searchsorted(ref_t, 360.0)))
    np.testing.assert_allclose(rec.t_s[:n], ref_t[:n], atol=6e-5)
    np.testing.assert_allclose(rec.acc_g[:n], ref_acc[:n], atol=6e-6)
    np.testing.assert_allclose(rec.gyro_dps[:n], ref_gyro[:n], atol=6e-4)  # type: ignore[index]
    # Ground truth: one row per sample, the same times, degrees and the episode labels.
    lines = truth.read_text().splitlines()
    assert lines[0] == "t,true_flexion_deg,true_lateral_deg,label"
    assert len(lines) - 1 == len(rec)
    t = np.array([float(ln.split(",")[0]) for ln in lines[1:]])
    np.testing.assert_array_equal(t, np.round(rec.t_s, 4))
    labels = {ln.rsplit(",", 1)[1] for ln in lines[1:]}
    assert labels <= set(KINDS) and "upright" in labels


def test_options_shape_the_recording(tmp_path: Path) -> None:
    out = tmp_path / "acc.csv"
    res = simulate(str(out), "--hours", "0.05", "--rate", "25", "--no-gyro", "--mount=-z,+x")
    assert res.returncode == 0, res.stderr
    assert "no gyro" in res.stderr and "25 Hz" in res.stderr
    assert out.read_text().splitlines()[0] == "t,ax,ay,az"
    rec = read_recording(out)
    assert rec.gyro_dps is None
    assert np.median(np.diff(rec.t_s)) == pytest.approx(0.04)
    # Mount -z up: at the start (upright, seated) gravity is mostly on -z.
    assert np.mean(rec.acc_g[:250, 2]) < -0.8


def test_same_seed_same_file_other_seed_other_day(tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.csv" for n in "abc")
    for path, seed in ((a, "2"), (b, "2"), (c, "3")):
        assert main(["simulate", str(path), "--hours", "0.02", "--seed", seed]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_simulate_then_replay_finds_the_slouches() -> None:
    sim = subprocess.Popen([sys.executable, "-m", "slouchd.cli", "simulate", "-", "--hours", "0.25"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rep = subprocess.run([sys.executable, "-m", "slouchd.cli", "replay", "-", "--mount=+y,-z"],
                         stdin=sim.stdout, capture_output=True, text=True, timeout=300)
    assert sim.wait(timeout=60) == 0
    assert rep.returncode == 0, rep.stderr
    events = [json.loads(ln)["event"] for ln in rep.stdout.splitlines() if '"event"' in ln]
    assert "calibrated" in events and "slouch_alert" in events


@pytest.mark.parametrize(("args", "why"), [
    (["--rate", "10"], "--rate 10: must be 25..100 Hz"),
    (["--mount", "+y,+y"], "--mount: mount '+y,+y': up and out must be different axes"),
])
def test_bad_options_are_one_line(tmp_path: Path, args: list[str], why: str) -> None:
    res = simulate(str(tmp_path / "x.csv"), *args)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"slouchd simulate: error: {why}"]


def test_bad_hours_and_unwritable_output(tmp_path: Path) -> None:
    res = simulate(str(tmp_path / "x.csv"), "--hours", "9")
    assert res.returncode == 2 and "at most 8" in res.stderr
    res = simulate(str(tmp_path / "no" / "x.csv"), "--hours", "0.01")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"slouchd simulate: error: cannot write {tmp_path / 'no' / 'x.csv'}: No such file or directory"]
