"""``slouchd profiles | scan | decode | record`` as a user runs them."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason

from slouchd.cli import main
from slouchd.commands.ble import EXIT_NO_BLUETOOTH, EXIT_NO_SAMPLES, record_csv, run_record, run_scan
from slouchd.model import SampleBatch
from slouchd.sensors.ble import BleSensorSource
from slouchd.sensors.profiles import load_profiles
from slouchd.sensors.settings import BleSettings
from tests.ble.fake_bleak import FakeClock, FakeSensor, FakeWorld

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_prints_one_json_object_per_sample(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "decode", "--profile", "thingy52",
                       "00 00 00 00 00 04 30 00 00 00 F0 FF 40 01 B0 FF 80 02")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows == [{"ax": 0.0, "ay": 0.0, "az": -1.0, "gx": 1.5, "gy": 0.0, "gz": -0.5}]


@pytest.mark.parametrize("pasted", [
    "F0FF280004FC", "f0 ff 28 00 04 fc", "F0:FF:28:00:04:FC", "F0-FF-28-00-04-FC",
    "0xF0 0xFF 0x28 0x00 0x04 0xFC", "<f0ff2800 04fc>", "[F0, FF, 28, 00, 04, FC]",
    r"\xF0\xFF\x28\x00\x04\xFC",
])
def test_decode_accepts_hex_as_scanners_and_logs_print_it(capsys: pytest.CaptureFixture[str],
                                                          pasted: str) -> None:
    # micro:bit accelerometer data (x, y, z int16 LE mG), gravity sign flipped to "up reads +1 g".
    code, out, _ = run(capsys, "decode", "--profile", "microbit", pasted)
    assert code == 0
    assert json.loads(out) == {"ax": 0.016, "ay": -0.04, "az": 1.02}


def test_decode_accelerometer_only_has_no_gyro_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "decode", "--profile", "ruuvitag",
                       "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
    assert code == 0
    assert json.loads(out) == {"ax": 0.004, "ay": -0.004, "az": 1.036}


def test_decode_includes_the_sensor_clock_where_there_is_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "decode", "--profile", "polar-h10",
                       "02:65:00:00:00:00:00:00:00:81:F1:FF:14:00:F0:03:06:01:7B:0F:08")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [set(r) for r in rows] == [{"ax", "ay", "az", "t"}] * 2
    assert rows[1]["t"] == pytest.approx(101e-9)
    assert rows[1]["ax"] == -0.02


def test_undecodable_payload_says_why_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "decode", "--profile", "microbit", "F0FF2800")
    assert (code, out) == (1, "")
    assert "short: 4 bytes, expected 6" in err
    code, _, err = run(capsys, "decode", "--profile", "witmotion", "55 61 00 00")
    assert code == 1 and "incomplete frame" in err
    code, _, err = run(capsys, "decode", "--profile", "witmotion",
                       "55 71 03 00 06 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
    assert code == 1 and "no samples in the payload" in err
    code, _, err = run(capsys, "decode", "--profile", "ruuvitag", "03291A1ECE1EFC18F94202CA0B53")
    assert code == 1 and "wrong_header: data format 3" in err


def test_decode_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "decode", "--profile", "microbit", "F0 FG")
    assert code == 2 and "not hex bytes" in err
    code, _, err = run(capsys, "decode", "--profile", "nope", "00")
    assert code == 2 and 'profile "nope": unknown' in err


def test_profiles_lists_and_validates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "profiles")
    assert code == 0
    for name in load_profiles():
        assert f"\n{name} " in "\n" + out
    good = REPO / "firmware_profiles" / "sensortag.toml"
    code, out, _ = run(capsys, "profiles", str(good))
    assert code == 0 and "ok (sensortag" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("rate_hz = 10.0", "rate_hz = -1"))
    code, _, err = run(capsys, "profiles", str(bad))
    assert code == 2 and f"{bad}: rate_hz = -1: must be 0.01..2000" in err


def test_scan_without_bluetooth_says_what_is_missing_and_exits_69() -> None:
    # This machine has no Bluetooth adapter (and no system D-Bus): the real bleak is used.
    proc = subprocess.run([sys.executable, "-m", "slouchd.cli", "scan", "--timeout", "1"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == EXIT_NO_BLUETOOTH == 69, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.startswith("slouchd scan: no Bluetooth: ") and "sudo systemctl start" in proc.stderr


def test_scan_failure_message_names_the_problem() -> None:
    class NoAdapter:
        @classmethod
        async def discover(cls, **kwargs):
            raise BleakBluetoothNotAvailableError(  # what bleak raises on a machine without one
                "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH)

    out, err = io.StringIO(), io.StringIO()
    args = argparse.Namespace(timeout=1.0, all=False, config=None, profiles_dir=None)
    assert run_scan(args, scanner_cls=NoAdapter, out=out, err=err) == EXIT_NO_BLUETOOTH
    assert out.getvalue() == ""
    assert err.getvalue().startswith(
        "slouchd scan: no Bluetooth: no Bluetooth LE adapter (No Bluetooth adapters found.)")


def test_scan_lists_sensors_with_profile_rssi_and_address() -> None:
    clock = FakeClock()
    world = FakeWorld(clock, [
        FakeSensor(address="C4:AA:10:2B:33:01", name="BBC micro:bit [zogiv]", service_uuids=[], rssi=-70),
        FakeSensor(address="C4:AA:10:2B:33:02", name="slouchd-desk", rssi=-48),
        FakeSensor(address="C4:AA:10:2B:33:03", name="Headphones", service_uuids=[], rssi=-40),
    ])

    class Scanner(world.scanner_cls):  # discover() on the fake clock, driven here
        @classmethod
        async def discover(cls, **kwargs):
            driver = asyncio.create_task(clock.run())
            try:
                return await super().discover(**kwargs)
            finally:
                driver.cancel()

    out = io.StringIO()
    args = argparse.Namespace(timeout=3.0, all=False, config=None, profiles_dir=None)
    assert run_scan(args, scanner_cls=Scanner, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["RSSI", "ADDRESS", "PROFILE", "NAME"]
    assert lines[1].split()[:3] == ["-48", "C4:AA:10:2B:33:02", "generic"]
    assert lines[2].split()[:3] == ["-70", "C4:AA:10:2B:33:01", "microbit"]
    assert len(lines) == 3  # the headphones match no profile


async def test_record_writes_the_replay_csv(tmp_path: Path) -> None:
    clock = FakeClock()
    driver = asyncio.create_task(clock.run())
    world = FakeWorld(clock, [FakeSensor(samples_per_packet=5)])
    profiles = load_profiles()
    src = BleSensorSource("C4:AA:10:2B:33:01", profiles["generic"], BleSettings(), profiles=profiles,
                          scanner_cls=world.scanner_cls, client_cls=world.client_cls, clock=clock)
    err = io.StringIO()
    out = tmp_path / "rec.csv"
    try:
        n = await asyncio.wait_for(record_csv(src, out, err, max_samples=52), 30)
    finally:
        driver.cancel()
    lines = out.read_text().splitlines()
    assert n == 52 and lines[0] == "t,ax,ay,az" and len(lines) == 53
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    assert data[0, 0] == 0.0
    assert np.allclose(np.diff(data[:, 0]), 0.04, atol=2e-4)  # 25 Hz, t from the first sample
    assert np.allclose(data[:, 3], 1.0)
    assert "\r52 samples" in err.getvalue()
    assert world.clients[-1].disconnect_calls == 1  # the link was closed on the way out


class _InterruptedSource:
    """A source that delivers one batch with gyro and then sees Ctrl-C."""

    def __init__(self) -> None:
        self.closed = False

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True

    def __aiter__(self):
        return self._gen()

    async def _gen(self):
        t = np.array([100.0, 100.1])
        yield SampleBatch(t, np.array([[0, 0, 1.0], [0, 0.5, 0.9]]), np.array([[1.0, 2, 3], [4, 5, 6]]))
        raise KeyboardInterrupt


def test_record_ctrl_c_ends_cleanly_and_keeps_the_rows(tmp_path: Path) -> None:
    src = _InterruptedSource()
    out = tmp_path / "rec.csv"
    args = argparse.Namespace(sensor="x", profile="", duration=0.0, samples=0, config=None, out=str(out),
                              profiles_dir=None)
    err = io.StringIO()
    assert run_record(args, source_factory=lambda: src, err=err) == 0
    assert src.closed
    assert out.read_text().splitlines() == [
        "t,ax,ay,az,gx,gy,gz", "0.0000,0.00000,0.00000,1.00000,1.0000,2.0000,3.0000",
        "0.1000,0.00000,0.50000,0.90000,4.0000,5.0000,6.0000"]
    assert re.search(rf"\n2 samples in \d+ s stopped with Ctrl-C; kept in {out}\n$", err.getvalue())


def record_args(out: Path, **kw: object) -> argparse.Namespace:
    base = {"sensor": "C4:AA:10:2B:33:01", "profile": "", "duration": 0.0, "samples": 0, "config": None,
            "out": str(out), "profiles_dir": None}
    return argparse.Namespace(**{**base, **kw})


def fake_ble(world: FakeWorld, profile: str = "") -> object:
    """A source factory for run_record: a BleSensorSource on the fake world, its clock driven."""
    profiles = load_profiles()

    def factory() -> BleSensorSource:
        asyncio.get_running_loop().create_task(world.clock.run())
        return BleSensorSource("C4:AA:10:2B:33:01", profiles[profile] if profile else None, BleSettings(),
                               profiles=profiles, scanner_cls=world.scanner_cls, client_cls=world.client_cls,
                               clock=world.clock)
    return factory


@pytest.mark.parametrize("missing", [
    FileNotFoundError(2, "No such file or directory"),
    BleakBluetoothNotAvailableError("No Bluetooth adapters found.",
                                    BleakBluetoothNotAvailableReason.NO_BLUETOOTH),
], ids=["no system D-Bus", "no adapter"])
def test_record_without_bluetooth_exits_69_at_once_and_writes_nothing(
        tmp_path: Path, missing: BaseException) -> None:
    world = FakeWorld(FakeClock(), [FakeSensor()])
    world.stack_down = missing  # the source alone would retry for ever
    out, err = tmp_path / "rec.csv", io.StringIO()
    started = time.monotonic()
    code = run_record(record_args(out), source_factory=fake_ble(world), err=err,
                      scanner_cls=world.scanner_cls)
    assert code == EXIT_NO_BLUETOOTH
    assert time.monotonic() - started < 5
    assert err.getvalue().startswith("slouchd record: no Bluetooth: ")
    assert not out.exists()


def test_record_on_this_machine_without_bluetooth_exits_69_within_its_duration(tmp_path: Path) -> None:
    # The real bleak, no system D-Bus: the case that used to hang for ever and exit 0.
    out = tmp_path / "rec.csv"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "slouchd.cli", "record", "--sensor", "C4:AA:10:2B:33:01",
                           "--duration", "20", str(out)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    took = time.monotonic() - started
    assert proc.returncode == EXIT_NO_BLUETOOTH, proc.stderr
    assert took < 20
    assert proc.stderr.startswith("slouchd record: no Bluetooth: ") and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(("profile", "left"), [("generic", "t,ax,ay,az\n"), ("", None)])
def test_record_duration_counts_from_the_start_even_when_no_sensor_is_found(
        tmp_path: Path, profile: str, left: str | None) -> None:
    world = FakeWorld(FakeClock(), [])  # Bluetooth works, the sensor is not there
    out, err = tmp_path / "rec.csv", io.StringIO()
    started = time.monotonic()
    code = run_record(record_args(out, profile=profile, duration=1.0),
                      source_factory=fake_ble(world, profile), err=err, scanner_cls=world.scanner_cls)
    took = time.monotonic() - started
    assert code == EXIT_NO_SAMPLES
    assert 1.0 <= took < 6
    assert "slouchd record: no samples from C4:AA:10:2B:33:01 in 1 s" in err.getvalue()
    # With a known profile the header is written first and stays; without one, no empty file.
    assert (out.read_text() if out.exists() else None) == left


def test_record_writes_the_header_first_and_reports_what_it_wrote(tmp_path: Path) -> None:
    world = FakeWorld(FakeClock(), [FakeSensor(samples_per_packet=5)])
    out, err = tmp_path / "rec.csv", io.StringIO()
    code = run_record(record_args(out, profile="generic", samples=40),
                      source_factory=fake_ble(world, "generic"), err=err, scanner_cls=world.scanner_cls)
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "t,ax,ay,az" and len(lines) == 41
    assert re.search(rf"\n40 samples in \d+ s written to {out}\n$", err.getvalue())
