"""A `replay:` wearer whose file cannot be played is a config error at start (issue 12): `run` exits
78 with the line `check-config` prints, instead of retrying "sensor task failed" forever."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slouchd.cli import main
from tests.test_config_checks import assert_both_refuse, write_config


def test_a_replay_file_with_a_bad_row_stops_run_at_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "broken.csv"
    rec.write_text("t,ax,ay,az\n0,0,1,0\nnot,a,number,row\n0.04,0,1,0\n")
    p = write_config(tmp_path, f'[[wearers]]\nname = "bo"\nsensor = "replay:{rec}"\n')
    assert_both_refuse(p, capsys, f'{p}: wearers[0].sensor = "replay:{rec}": not a valid recording '
                                  f"({rec}: line 3: t = 'not' is not a number)")


def test_a_replay_file_in_milli_g_stops_run_at_start_saying_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "mg.csv"
    t = np.arange(0, 20, 0.02)
    rec.write_text("t,ax,ay,az\n" + "".join(f"{x:.2f},3,998,-40\n" for x in t))
    p = write_config(tmp_path, f'[[wearers]]\nname = "bo"\nsensor = "replay:{rec}"\n')
    code = main(["check-config", str(p)])
    err = capsys.readouterr().err
    assert code == 2 and "accelerations look like milli-g" in err and "divide ax,ay,az by 1000" in err


def test_a_replay_file_with_holes_and_shared_stamps_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "real.csv"
    rec.write_text("t,ax,ay,az\n0,0,1,0\n0,0,1,0\n0.04,0,1,0\n0.06,,1,0\n0.08,0,1,0\n")
    p = write_config(tmp_path, f'[[wearers]]\nname = "bo"\nsensor = "replay:{rec}"\n')
    assert main(["check-config", str(p)]) == 0
