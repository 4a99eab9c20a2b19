"""The systemd unit verifies and keeps the promises the docs make."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "slouchd.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze missing: apt-get install -y systemd")
    # Same unit, pointing at this checkout's slouchd (verify checks that ExecStart exists).
    exe = Path(sys.executable).with_name("slouchd")
    assert exe.exists(), f"{exe} missing: install with pip install -e ."
    text = UNIT.read_text().replace("/opt/slouchd/venv/bin/slouchd", str(exe))
    copy = tmp_path / "slouchd.service"
    copy.write_text(text)
    res = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_unit_is_notify_with_watchdog_reload_and_no_restart_loop_on_bad_config() -> None:
    s = unit()["Service"]
    assert s["Type"] == "notify"
    assert s["NotifyAccess"] == "main"
    assert s["WatchdogSec"]
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert s["Restart"] == "on-failure"
    assert "78" in s["RestartPreventExitStatus"].split()
    assert s["User"] == "slouchd" and "bluetooth" in s["SupplementaryGroups"]
    assert "DynamicUser" not in s
    assert s["StateDirectory"] == "slouchd" and s["ConfigurationDirectory"] == "slouchd"
    # D-Bus (AF_UNIX) for BlueZ, TCP for MQTT, nothing else.
    assert set(s["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
