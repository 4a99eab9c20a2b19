"""The named parts of the BLE source on their own: link states, step table, error sorting, backoff."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import pytest
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason

from slouchd.sensors.base import SourceFatal
from slouchd.sensors.ble import AdapterWedged, LinkState, bluetooth_missing
from slouchd.sensors.ble.link import LOST, Link
from slouchd.sensors.ble.steps import STEP_HANDLERS
from slouchd.sensors.profiles import STEP_OPS
from tests.ble.fake_bleak import FakeClock, FakeSensor, FakeWorld
from tests.ble.test_session import SETTINGS, make_source, take


def test_every_step_op_a_profile_may_use_has_exactly_one_handler() -> None:
    assert set(STEP_HANDLERS) == set(STEP_OPS)


async def test_a_lost_link_wakes_its_consumer_once_and_is_closed_once() -> None:
    link = Link(1)
    assert link.state is LinkState.CONNECTING and link.active and not link.gone
    link.lose()
    link.lose()  # bleak may call back twice: one wake-up only
    assert link.state is LinkState.LOST and link.gone and link.queue.qsize() == 1
    link.streaming()  # a setup finishing after the loss does not revive it
    assert link.state is LinkState.LOST
    task = asyncio.create_task(asyncio.sleep(3600))
    link.tasks.append(task)
    assert link.close() is True
    assert link.close() is False  # teardown runs once
    assert link.state is LinkState.CLOSED and not link.active
    link.lose()  # callbacks of a closed link change nothing
    assert link.state is LinkState.CLOSED
    await asyncio.sleep(0)
    assert task.cancelled()
    assert [link.queue.get_nowait() for _ in range(link.queue.qsize())] == [LOST, LOST]


def test_a_streaming_link_is_streaming_until_lost() -> None:
    link = Link(2)
    link.streaming()
    assert link.state is LinkState.STREAMING
    link.lose()
    assert link.state is LinkState.LOST


@pytest.mark.parametrize(("reason", "kind"), [
    (BleakBluetoothNotAvailableReason.NO_BLUETOOTH, "no_adapter"),
    (BleakBluetoothNotAvailableReason.NO_BLE_CENTRAL_ROLE, "no_adapter"),
    (BleakBluetoothNotAvailableReason.UNKNOWN, "no_adapter"),
    (BleakBluetoothNotAvailableReason.POWERED_OFF, "powered_off"),
    (BleakBluetoothNotAvailableReason.DENIED_BY_USER, "denied"),
    (BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM, "denied"),
    (BleakBluetoothNotAvailableReason.DENIED_BY_UNKNOWN, "denied"),
])
def test_bluetooth_not_available_is_sorted_by_its_reason(
        reason: BleakBluetoothNotAvailableReason, kind: str) -> None:
    missing = bluetooth_missing(BleakBluetoothNotAvailableError("Bluetooth says no.", reason))
    assert missing is not None and missing.kind == kind
    assert "(Bluetooth says no.)" in missing.what


def test_every_reason_bleak_knows_is_sorted() -> None:
    for reason in BleakBluetoothNotAvailableReason:
        assert bluetooth_missing(BleakBluetoothNotAvailableError("x", reason)) is not None


def test_a_wedged_adapter_is_a_fatal_source_error_with_exit_code_75() -> None:
    err = AdapterWedged("hci0 failed every attempt for 900 s")
    assert isinstance(err, SourceFatal) and isinstance(err, RuntimeError)
    assert err.exit_code == SourceFatal.exit_code == 75


async def test_waits_between_scans_double_from_1_s_up_to_the_cap_with_jitter(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor(absent_until=float("inf"))])
    starts: list[float] = []
    orig_start = world.scanner_cls.start

    async def start(self: object) -> None:
        starts.append(clock.now)
        await orig_start(self)

    world.scanner_cls.start = start  # type: ignore[method-assign]
    window_s, cap_s = 1.0, 8.0
    settings = dataclasses.replace(SETTINGS, backoff_max_s=cap_s, scan_window_s=window_s)
    src = make_source(world, settings=settings)
    consumer = asyncio.create_task(take(src, 1))
    while len(starts) < 9:
        await asyncio.sleep(0.001)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    waits = [b - a - window_s for a, b in itertools.pairwise(starts)]
    bases = [min(cap_s, 2.0 ** k) for k in range(len(waits))]  # 1, 2, 4, 8, 8 ...
    for wait, base in zip(waits, bases, strict=True):
        assert 0.5 * base - 1e-6 <= wait <= base + 1e-6, (waits, bases)
    assert len({round(w / b, 6) for w, b in zip(waits, bases, strict=True)}) > 1  # jittered, not fixed
