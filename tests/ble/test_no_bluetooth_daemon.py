"""Real bleak without Bluetooth: the acceptance repro, and bleak's real errors classified.

The daemon test uses real bleak and dbus-fast pointed at a system bus socket that does not exist,
so they raise what they raise on such a machine (FileNotFoundError). Only the BLE sources' clock
runs 100 x fast, so minutes of backoff and a 60 s ``wedged_exit_s`` pass in a few real seconds.
The last tests collect what real ``BleakScanner.start()`` / ``BleakClient.connect()`` raise with
no bus, and with a private bus on which nobody owns org.bluez (needs ``dbus-daemon``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import slouchd.sensors.ble as ble_mod
import slouchd.sensors.ble.session as ble_session
from slouchd.config import parse_config
from slouchd.daemon import Daemon
from tests._broker import MosquittoBroker

SPEED = 100.0


class FastClock:
    """Monotonic time and sleeps 100 x faster than real; wall time stays real."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def monotonic(self) -> float:
        return self._t0 + (time.monotonic() - self._t0) * SPEED

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / SPEED)


async def test_no_system_dbus_is_not_a_wedge_and_the_simulated_wearer_keeps_streaming(
        tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no_system_bus_socket'}")
    monkeypatch.setattr(ble_session, "SYSTEM_CLOCK", FastClock())
    caplog.set_level(logging.INFO)
    config = parse_config({
        "daemon": {"state_dir": str(tmp_path / "state")},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "base_topic": f"nb{tmp_path.name[-6:]}"},
        "ble": {"wedged_exit_s": 60.0, "backoff_max_s": 30.0},
        "wearers": [
            {"name": "sim", "sensor": "simulated", "speed": 10},
            {"name": "ana", "sensor": "AA:BB:CC:DD:EE:01", "profile": "microbit"},
            {"name": "bo", "sensor": "AA:BB:CC:DD:EE:02", "profile": "microbit"},
        ],
    })
    d = Daemon(config)
    run = asyncio.get_running_loop().create_task(d.run(duration_s=5))
    await asyncio.sleep(4.0)  # 400 s on the BLE clock: 6 x wedged_exit_s
    assert not run.done(), f"the daemon exited with {run.result()}"
    assert d.wearers["sim"].streaming
    for name in ("ana", "bo"):
        rt = d.wearers[name]
        assert not rt.streaming and rt.restarts == 0
        assert rt.source is not None and not rt.source.status.connected
        assert "no Bluetooth: the system D-Bus is not running" in rt.source.status.last_error
    assert await run == 0
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]
    warned = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING and "no Bluetooth" in r.getMessage()]
    assert sorted(m[:17] for m in warned) == ["AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02"]  # one each
    assert sum("AA:BB:CC:DD:EE:01: no Bluetooth: the system D-Bus is not running (no socket at unix:path="
               in m for m in warned) == 1
    assert all("sudo systemctl start bluetooth" in m for m in warned)


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/>
  </policy>
</busconfig>
"""


async def real_bleak_errors(address: str) -> list[BaseException]:
    """What real BleakScanner.start() and BleakClient.connect() raise with the system bus at ``address``."""
    import bleak

    errors: list[BaseException] = []
    for attempt in (bleak.BleakScanner().start(), bleak.BleakClient("AA:BB:CC:DD:EE:01").connect(timeout=5)):
        try:
            await asyncio.wait_for(attempt, 10)
        except Exception as err:  # whatever bleak raises is what we classify
            errors.append(err)
    return errors


async def test_real_bleak_without_a_system_bus_is_recognised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"unix:path={tmp_path / 'none'}"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    errors = await real_bleak_errors(address)
    assert len(errors) == 2
    for err in errors:
        missing = ble_mod.bluetooth_missing(err)
        assert missing is not None and missing.kind == "no_dbus", repr(err)
        assert address in missing.what


async def test_real_bleak_on_a_bus_without_bluez_is_recognised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("dbus-daemon") is None:
        # Like Mosquitto, a real part these tests need: a failure, never a skip (.ci/run installs it).
        pytest.fail("dbus-daemon is not installed: run `sudo apt-get install -y dbus-daemon`")
    socket = tmp_path / "bus"
    conf = tmp_path / "bus.conf"
    conf.write_text(BUS_CONFIG.format(socket=socket))
    bus = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", "--print-address"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert bus.stdout is not None and bus.stdout.readline()  # printed once it listens
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={socket}")
        errors = await real_bleak_errors(f"unix:path={socket}")
    finally:
        bus.terminate()
        bus.wait(10)
    assert len(errors) == 2
    for err in errors:
        missing = ble_mod.bluetooth_missing(err)
        assert missing is not None and missing.kind == "no_bluez", repr(err)
        assert "org.bluez was not provided" in str(err)
