"""A fake of bleak's public API (BleakScanner, BleakClient) and a fake clock, for tests without a radio.

It behaves like bleak on BlueZ where slouchd cares:

* ``BleakScanner(detection_callback=..., scanning_mode=..., bluez=...)`` with ``start()/stop()``
  and ``discover(return_adv=True)``; advertisements are delivered from a scanner task as real
  ``BLEDevice``/``AdvertisementData`` objects; ``start()`` can fail (``NotReady``...);
* ``BleakClient(device, disconnected_callback=..., timeout=..., bluez=...)`` whose ``connect()``
  can fail, hang until cancelled (a timeout), raise ``InProgress`` once, or find the device
  missing; the disconnected callback fires mid-stream or during setup (and also on an orderly
  ``disconnect()``, as bleak does); notifications arrive as ``bytearray``s from another task;
  a link can go silent while staying connected; ``disconnect()`` can hang;
* the whole Bluetooth stack can be missing until a fake time (``FakeWorld.stack_down``): every
  scanner ``start()``/``discover()`` and ``connect()`` raises what bleak raises then (no system
  D-Bus, no bluetoothd, no adapter), as the real classes do before touching the radio.

Notifications are produced per *sensor* and delivered to every live subscription, the way
BlueZ delivers one notification to every watcher: a subscription that outlives its link (a
hanging disconnect) would deliver the same samples twice, which the tests check never happens.

The generic profile's layout is used: each sample is ``<hhh`` milli-g with x = the sensor's
running sample number, so duplicated or reordered samples are visible in the output.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakDeviceNotFoundError, BleakError

from tests.fake_clock import FakeClock

GENERIC_SERVICE = "5f0b0001-7e2c-4d3a-9c11-3a5d2b8e6f10"
GENERIC_NOTIFY = "5f0b0002-7e2c-4d3a-9c11-3a5d2b8e6f10"
GENERIC_HAPTIC = "5f0b0003-7e2c-4d3a-9c11-3a5d2b8e6f10"
BATTERY = "00002a19-0000-1000-8000-00805f9b34fb"


@dataclass
class Session:
    """What happens on one successful connection."""

    drop_after: int | None = None  # disconnect callback after this many packets
    stall_after: int | None = None  # stay connected but send nothing after this many packets
    drop_during_setup: bool = False  # the link dies when notifications are being enabled
    hang_disconnect: bool = False  # disconnect() never returns; its notification watcher stays alive
    sent: int = 0


@dataclass
class FakeSensor:
    """One peripheral: its advertisement, GATT values, notification stream and failure script."""

    address: str = "C4:AA:10:2B:33:01"
    name: str = "slouchd-test"
    service_uuids: list[str] = field(default_factory=lambda: [GENERIC_SERVICE])
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    rssi: int = -61
    notify_uuid: str = GENERIC_NOTIFY
    rate_hz: float = 25.0
    samples_per_packet: int = 1
    absent_until: float = float("-inf")  # fake monotonic time it starts advertising
    # ok fail timeout inprogress abort missing nobluez
    connect_results: list[str] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    gatt: dict[str, bytes] = field(default_factory=lambda: {BATTERY: b"\x57"})
    writes: list[tuple[str, bytes, bool | None]] = field(default_factory=list)
    bad_packets: dict[int, bytes] = field(default_factory=dict)  # packet number -> bytes sent instead
    packet_maker: Any = None  # callable(sensor) -> bytes, default: generic <hhh samples
    write_hook: Any = None  # callable(sensor, client, uuid, data)
    seq: int = 0
    packets_sent: int = 0
    subscriptions: list[tuple[Any, str, Any]] = field(default_factory=list)  # (client, uuid, callback)
    connected_clients: int = 0
    max_connected_clients: int = 0
    _notifier: asyncio.Task[None] | None = None

    def advertising(self, now: float) -> bool:
        return now >= self.absent_until and self.connected_clients == 0

    def make_packet(self) -> bytes:
        if self.packet_maker is not None:
            return self.packet_maker(self)
        out = b""
        for _ in range(self.samples_per_packet):
            out += struct.pack("<hhh", self.seq % 32768, 0, 1000)
            self.seq += 1
        return out


class FakeWorld:
    """The radio neighbourhood shared by the fake scanner and client classes."""

    def __init__(self, clock: FakeClock, sensors: list[FakeSensor] | None = None) -> None:
        self.clock = clock
        self.sensors = sensors or []
        self.scanner_errors: list[BaseException] = []  # raised by successive start() calls
        self.scanner_always_fails: BaseException | None = None
        self.stack_down: BaseException | None = None  # raised by every start/discover/connect...
        self.stack_down_until = float("inf")  # ...until this fake monotonic time
        self.adv_interval_s = 0.1
        self.clients: list[FakeBleakClient] = []
        self.scanners: list[FakeBleakScanner] = []
        self.scanners_running = 0
        self.max_scanners_running = 0
        self.connecting = 0
        self.max_connecting = 0
        self.scanner_cls = type("BleakScanner", (FakeBleakScanner,), {"world": self})
        self.client_cls = type("BleakClient", (FakeBleakClient,), {"world": self})

    def check_stack(self) -> None:
        """Raise the "no Bluetooth" error while the stack is down, as bleak does on first use."""
        if self.stack_down is not None and self.clock.now < self.stack_down_until:
            raise self.stack_down

    def sensor_at(self, address: str) -> FakeSensor | None:
        for s in self.sensors:
            if s.address.lower() == address.lower():
                return s
        return None

    def advertisement(self, s: FakeSensor) -> tuple[BLEDevice, AdvertisementData]:
        device = BLEDevice(s.address, s.name, {"path": f"/org/bluez/hci0/dev_{s.address.replace(':', '_')}"})
        adv = AdvertisementData(s.name, dict(s.manufacturer_data), {}, list(s.service_uuids), None,
                                s.rssi, ())
        return device, adv


class FakeBleakScanner:
    world: FakeWorld

    def __init__(self, detection_callback: Any = None, service_uuids: list[str] | None = None,
                 scanning_mode: str = "active", *, bluez: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        self.callback = detection_callback
        self.scanning_mode = scanning_mode
        self.bluez = dict(bluez or {})
        self.kwargs = kwargs
        self._task: asyncio.Task[None] | None = None
        self.world.scanners.append(self)

    async def start(self) -> None:
        w = self.world
        await asyncio.sleep(0)
        w.check_stack()
        if w.scanner_errors:
            raise w.scanner_errors.pop(0)
        if w.scanner_always_fails is not None:
            raise w.scanner_always_fails
        if self._task is not None:
            raise BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"])
        w.scanners_running += 1
        w.max_scanners_running = max(w.max_scanners_running, w.scanners_running)
        self._task = asyncio.create_task(self._advertise())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.world.scanners_running -= 1
        await asyncio.sleep(0)

    async def __aenter__(self) -> FakeBleakScanner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _advertise(self) -> None:
        w = self.world
        while True:
            for s in list(w.sensors):
                if s.advertising(w.clock.now) and self.callback is not None:
                    if s.packet_maker is not None and s.manufacturer_data:
                        s.manufacturer_data = {k: s.packet_maker(s) for k in s.manufacturer_data}
                    self.callback(*w.advertisement(s))
            await w.clock.sleep(w.adv_interval_s)

    @classmethod
    async def discover(cls, timeout: float = 5.0, *, return_adv: bool = False, **kwargs: Any) -> Any:
        w = cls.world
        w.check_stack()
        if w.scanner_always_fails is not None:
            raise w.scanner_always_fails
        await w.clock.sleep(timeout)
        found = {s.address: w.advertisement(s) for s in w.sensors if s.advertising(w.clock.now)}
        return found if return_adv else [d for d, _ in found.values()]


class _Char:
    def __init__(self, uuid: str) -> None:
        self.uuid = uuid


class FakeBleakClient:
    world: FakeWorld

    def __init__(self, address_or_ble_device: Any, disconnected_callback: Any = None,
                 services: Any = None, *, timeout: float = 10.0, pair: bool = False,
                 bluez: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.address = getattr(address_or_ble_device, "address", address_or_ble_device)
        self.disconnected_callback = disconnected_callback
        self.timeout = timeout
        self.bluez = dict(bluez or {})
        self.connected = False
        self.zombie = False
        self.connect_calls = 0
        self.disconnect_calls = 0
        self.session = Session()
        self.sensor = self.world.sensor_at(self.address)
        self.world.clients.append(self)

    @property
    def is_connected(self) -> bool:
        return self.connected

    async def connect(self, **kwargs: Any) -> None:
        w = self.world
        self.connect_calls += 1
        w.connecting += 1
        w.max_connecting = max(w.max_connecting, w.connecting)
        try:
            w.check_stack()
            await w.clock.sleep(0.05)
            s = self.sensor
            result = s.connect_results.pop(0) if s and s.connect_results else "ok"
            if s is None or result == "missing" or w.clock.now < s.absent_until:
                raise BleakDeviceNotFoundError(
                    self.address, f"Device with address {self.address} was not found.")
            if result == "timeout":
                await asyncio.get_running_loop().create_future()  # hangs until cancelled
            if result == "nobluez":  # bluetoothd stopped between the scan and the connect
                raise BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown",
                                     ["The name org.bluez was not provided by any .service files"])
            if result == "inprogress":
                raise BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"])
            if result == "abort":
                raise BleakDBusError("org.bluez.Error.Failed", ["Software caused connection abort"])
            if result == "fail":
                raise BleakError("failed to connect: org.bluez.Error.Failed")
            self.connected = True
            s.connected_clients += 1
            s.max_connected_clients = max(s.max_connected_clients, s.connected_clients)
            self.session = s.sessions.pop(0) if s.sessions else Session()
        finally:
            w.connecting -= 1

    def _require(self) -> FakeSensor:
        if not self.connected or self.sensor is None:
            raise BleakError("Not connected")
        return self.sensor

    async def start_notify(self, char: Any, callback: Any, **kwargs: Any) -> None:
        s = self._require()
        await self.world.clock.sleep(0.01)
        if self.session.drop_during_setup:
            self._lose_link()
            raise BleakError("Not connected")
        s.subscriptions.append((self, str(char), callback))
        if s._notifier is None or s._notifier.done():
            s._notifier = asyncio.create_task(self._notify_loop(s))

    async def stop_notify(self, char: Any) -> None:
        s = self._require()
        if self.session.hang_disconnect:
            await asyncio.get_running_loop().create_future()  # BlueZ does not answer
        s.subscriptions = [x for x in s.subscriptions if not (x[0] is self and x[1] == str(char))]

    async def read_gatt_char(self, char: Any, **kwargs: Any) -> bytearray:
        s = self._require()
        await self.world.clock.sleep(0.01)
        if str(char) not in s.gatt:
            raise BleakError(f"Characteristic {char} was not found!")
        return bytearray(s.gatt[str(char)])

    async def write_gatt_char(self, char: Any, data: Any, response: bool | None = None) -> None:
        s = self._require()
        await self.world.clock.sleep(0.01)
        s.writes.append((str(char), bytes(data), response))
        if s.write_hook is not None:
            s.write_hook(s, self, str(char), bytes(data))

    def indicate(self, uuid: str, data: bytes) -> None:
        """Deliver a notification/indication of ``uuid`` to this client's subscriptions."""
        s = self.sensor
        assert s is not None
        for client, u, cb in list(s.subscriptions):
            if client is self and u == uuid:
                asyncio.get_running_loop().call_soon(cb, _Char(u), bytearray(data))

    async def disconnect(self) -> None:
        self.disconnect_calls += 1
        await self.world.clock.sleep(0.01)
        if self.session.hang_disconnect:
            # BlueZ never answers; the sensor drops the link and advertises again, but this
            # client's notification watcher stays registered (a zombie handler).
            s = self.sensor
            if self.connected and not self.zombie and s is not None:
                self.zombie = True
                s.connected_clients -= 1
            await asyncio.get_running_loop().create_future()
        if self.connected:
            self._lose_link()

    def _lose_link(self) -> None:
        s = self.sensor
        if not self.connected or s is None:
            return
        self.connected = False
        if not self.zombie:
            s.connected_clients -= 1
        s.subscriptions = [x for x in s.subscriptions if x[0] is not self]
        if self.disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self.disconnected_callback, self)

    async def _notify_loop(self, s: FakeSensor) -> None:
        """The sensor's notification stream, delivered to every live subscription."""
        clock = self.world.clock
        while s.subscriptions:
            await clock.sleep(s.samples_per_packet / s.rate_hz)
            live = [x for x in s.subscriptions if x[1] == s.notify_uuid and x[0].connected]
            if not live:
                continue
            session = live[-1][0].session
            n = session.sent
            if session.stall_after is not None and n >= session.stall_after:
                continue
            if session.drop_after is not None and n >= session.drop_after:
                for client, _, _ in live:
                    client._lose_link()
                continue
            packet = s.bad_packets.get(s.packets_sent) or s.make_packet()
            s.packets_sent += 1
            session.sent += 1
            for _client, uuid, cb in live:
                cb(_Char(uuid), bytearray(packet))
