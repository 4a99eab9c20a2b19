"""No Bluetooth to talk to (no system D-Bus, no bluetoothd, no adapter) is not a wedged adapter.

Restarting slouchd cannot make D-Bus, BlueZ or a dongle appear, so these must never raise
AdapterWedged (which exits the daemon with 75 and takes every other wearer down): the source
warns once what is missing, keeps retrying with the capped backoff and streams once it is back.
The errors are the ones bleak 3.1 / dbus-fast really raise (seen on a machine without a system
bus and with a bus but without bluetoothd).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

import pytest
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
)

from slouchd.sensors.ble import AdapterWedged, bluetooth_missing
from tests.ble.fake_bleak import FakeClock, FakeSensor, FakeWorld
from tests.ble.test_session import SETTINGS, assert_clean_stream, make_source, take

T0 = 1000.0  # the fake clock's start


def no_bluez() -> BleakDBusError:
    return BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown",
                          ["The name org.bluez was not provided by any .service files"])


NO_BLUETOOTH = {
    "no system bus socket": (lambda: FileNotFoundError(2, "No such file or directory"), "no_dbus",
                             "system D-Bus is not running"),
    "bus socket refuses": (lambda: ConnectionRefusedError(111, "Connection refused"), "no_dbus",
                           "system D-Bus is not running"),
    "no bluetoothd": (no_bluez, "no_bluez", "BlueZ (bluetoothd) is not running"),
    "no owner of org.bluez": (lambda: BleakDBusError("org.freedesktop.DBus.Error.NameHasNoOwner",
                                                     ["Could not get owner of name 'org.bluez'"]),
                              "no_bluez", "BlueZ (bluetoothd) is not running"),
    "no adapter": (lambda: BleakBluetoothNotAvailableError(
        "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH),
        "no_adapter", "No Bluetooth adapters found."),
    "configured adapter unplugged": (lambda: BleakError("adapter 'hci1' not found"), "no_adapter",
                                     'adapter hci1 not found ([ble] adapter = "hci1")'),
    "adapter powered off": (lambda: BleakBluetoothNotAvailableError(
        "No powered Bluetooth adapters found. Turn on Bluetooth and try again.",
        BleakBluetoothNotAvailableReason.POWERED_OFF), "powered_off", "rfkill unblock bluetooth"),
    "D-Bus policy denies": (lambda: BleakDBusError(
        "org.freedesktop.DBus.Error.AccessDenied",
        ['Rejected send message, 1 matched rules; type="method_call", interface="org.bluez.Adapter1"']),
        "denied", "group bluetooth"),
}


@pytest.fixture
async def clock() -> AsyncIterator[FakeClock]:
    c = FakeClock(start=T0)
    driver = asyncio.create_task(c.run())
    yield c
    driver.cancel()


@pytest.mark.parametrize("case", NO_BLUETOOTH, ids=list(NO_BLUETOOTH))
def test_no_bluetooth_errors_are_recognised_with_what_is_missing_and_the_fix(case: str) -> None:
    make, kind, text = NO_BLUETOOTH[case]
    missing = bluetooth_missing(make(), adapter="hci1")
    assert missing is not None and missing.kind == kind
    assert text in f"{missing.what}; {missing.fix}"


@pytest.mark.parametrize("err", [
    BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"]),
    BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"]),
    BleakDBusError("org.bluez.Error.Failed", ["Software caused connection abort"]),
    BleakDBusError("org.freedesktop.DBus.Error.NoReply", ["Did not receive a reply"]),
    BleakDeviceNotFoundError("C4:AA:10:2B:33:01", "Device with address C4:AA:10:2B:33:01 was not found."),
    BleakError("failed to connect: org.bluez.Error.Failed"),
    TimeoutError("no answer within 20 s"),
], ids=lambda e: type(e).__name__ + ":" + str(e)[:30])
def test_a_failing_adapter_is_not_mistaken_for_missing_bluetooth(err: BaseException) -> None:
    assert bluetooth_missing(err) is None


def warnings_about_missing(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "no Bluetooth" in r.getMessage()]


async def run_until(clock: FakeClock, t: float, consumer: asyncio.Task[object]) -> None:
    while clock.now < t and not consumer.done():
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("case", NO_BLUETOOTH, ids=list(NO_BLUETOOTH))
async def test_no_bluetooth_for_half_an_hour_retries_warns_once_and_streams_when_back(
        clock: FakeClock, caplog: pytest.LogCaptureFixture, case: str) -> None:
    make, _, _ = NO_BLUETOOTH[case]
    world = FakeWorld(clock, [FakeSensor()])
    world.stack_down, world.stack_down_until = make(), T0 + 1800.0
    settings = dataclasses.replace(SETTINGS, wedged_exit_s=60.0, backoff_max_s=60.0, adapter="hci1")
    caplog.set_level(logging.DEBUG, logger="slouchd.sensors.ble")
    src = make_source(world, settings=settings)
    consumer = asyncio.create_task(take(src, 50))
    await run_until(clock, T0 + 1700.0, consumer)
    # 28 minutes in: still trying (30 x wedged_exit_s), not streaming, and the status says why.
    assert not consumer.done(), consumer.exception() if consumer.done() else ""
    assert not src.status.connected
    assert src.status.last_error.startswith("scan: no Bluetooth: ")
    # Capped backoff, not given up: at least one attempt a minute after the first few.
    assert len(world.scanners) >= 1700 / 60
    assert len(warnings_about_missing(caplog)) == 1
    warning = warnings_about_missing(caplog)[0]
    assert warning.startswith("C4:AA:10:2B:33:01: no Bluetooth: ")
    assert warning.endswith("retrying at least every 60 s")
    batches = await asyncio.wait_for(consumer, 30)
    await src.aclose()
    assert_clean_stream(batches)
    assert src.status.samples >= 50
    assert T0 + 1800.0 <= clock.now < T0 + 1800.0 + 60.0 + 5.0  # back within one capped backoff
    back = [r.getMessage() for r in caplog.records if "Bluetooth is back" in r.getMessage()]
    assert len(back) == 1 and "after 18" in back[0]  # ~1800 s without
    assert len(warnings_about_missing(caplog)) == 1
    assert not any(r.levelno >= logging.WARNING and "scan failed" in r.getMessage() for r in caplog.records)


async def test_bluez_gone_at_every_connect_is_not_a_wedge_and_does_not_flap_the_log(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    # Scans see the sensor, but each connect finds no bluetoothd, for far longer than wedged_exit_s.
    sensor = FakeSensor(connect_results=["nobluez"] * 12)
    world = FakeWorld(clock, [sensor])
    caplog.set_level(logging.INFO, logger="slouchd.sensors.ble")
    src = make_source(world, settings=dataclasses.replace(SETTINGS, wedged_exit_s=60.0, backoff_max_s=60.0))
    batches = await take(src, 20)
    await src.aclose()
    assert_clean_stream(batches)
    assert len(world.clients) == 13
    assert clock.now - T0 > 4 * 60.0  # four times wedged_exit_s
    assert len(warnings_about_missing(caplog)) == 1
    assert sum("Bluetooth is back (connect answers again" in r.getMessage() for r in caplog.records) == 1


async def test_changing_what_is_missing_is_said_at_info_not_warned_again(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    world = FakeWorld(clock, [FakeSensor()])
    world.stack_down, world.stack_down_until = FileNotFoundError(2, "No such file or directory"), T0 + 300.0
    src = make_source(world, settings=dataclasses.replace(SETTINGS, backoff_max_s=30.0))
    caplog.set_level(logging.INFO, logger="slouchd.sensors.ble")
    consumer = asyncio.create_task(take(src, 10))
    await run_until(clock, T0 + 150.0, consumer)
    world.stack_down = no_bluez()  # dbus came up, bluetoothd not yet
    await asyncio.wait_for(consumer, 30)
    await src.aclose()
    assert len(warnings_about_missing(caplog)) == 1
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum("still no Bluetooth, now: BlueZ (bluetoothd) is not running" in m for m in infos) == 1


async def test_the_wedge_clock_starts_when_bluetooth_is_back_and_the_adapter_then_fails(
        clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor()])
    world.stack_down, world.stack_down_until = no_bluez(), T0 + 600.0
    world.scanner_always_fails = BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"])
    src = make_source(world, settings=dataclasses.replace(SETTINGS, wedged_exit_s=120.0))
    with pytest.raises(AdapterWedged) as wedged:
        await take(src, 1)
    assert clock.now - (T0 + 600.0) >= 120.0
    # Said once: what failed and for how long; the daemon adds "exiting so systemd restarts us".
    message = str(wedged.value)
    assert message.startswith("the default adapter failed every attempt for ")
    assert "NotReady" in message and "restart" not in message and "exiting" not in message
