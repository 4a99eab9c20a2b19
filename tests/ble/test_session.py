"""BleSensorSource against a fake bleak on a fake clock: every failure script streams again.

The real session code runs unchanged; only bleak's BleakScanner/BleakClient and the clock are
fakes (tests/ble/fake_bleak.py). Each sample's x is the fake sensor's running sample number, so
a duplicated or replayed sample shows up as a non-increasing x.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import struct

import numpy as np
import pytest
from bleak.exc import BleakDBusError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slouchd.model import SampleBatch
from slouchd.sensors.base import SensorSource
from slouchd.sensors.ble import AdapterWedged, BleSensorSource
from slouchd.sensors.profiles import load_profiles
from slouchd.sensors.settings import BleSettings
from tests.ble.fake_bleak import GENERIC_HAPTIC, FakeClock, FakeSensor, FakeWorld, Session

PROFILES = load_profiles()
GENERIC = PROFILES["generic"]
SETTINGS = BleSettings(wedged_exit_s=600.0, backoff_max_s=60.0)
REAL_TIMEOUT_S = 30.0


def make_source(world: FakeWorld, target: str = "C4:AA:10:2B:33:01", profile=GENERIC,
                settings: BleSettings = SETTINGS) -> BleSensorSource:
    return BleSensorSource(target, profile, settings, profiles=PROFILES, scanner_cls=world.scanner_cls,
                           client_cls=world.client_cls, clock=world.clock, rng=random.Random(7))


async def take(src: BleSensorSource, samples: int) -> list[SampleBatch]:
    """Batches until at least ``samples`` samples arrived (bounded in real time)."""
    out: list[SampleBatch] = []

    async def run() -> None:
        n = 0
        async for batch in src:
            out.append(batch)
            n += len(batch)
            if n >= samples:
                return

    await asyncio.wait_for(run(), REAL_TIMEOUT_S)
    return out


def sample_numbers(batches: list[SampleBatch]) -> np.ndarray:
    return np.round(SampleBatch.concat(batches).acc_g[:, 0] * 1000).astype(int)


def assert_clean_stream(batches: list[SampleBatch]) -> None:
    """Strictly increasing sample numbers (no duplicates) and non-decreasing Unix times."""
    seq = sample_numbers(batches)
    assert np.all(np.diff(seq) > 0), f"duplicated or reordered samples: {seq.tolist()}"
    t = SampleBatch.concat(batches).t_s
    assert np.all(np.diff(t) >= 0)


async def test_source_satisfies_the_sensor_source_protocol(clock: FakeClock) -> None:
    src = make_source(FakeWorld(clock, [FakeSensor()]))
    assert isinstance(src, SensorSource)


async def test_streams_samples_in_g_stamped_in_unix_seconds(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor(samples_per_packet=4)])
    async with make_source(world) as src:
        batches = await take(src, 40)
        assert src.status.connected
        assert src.mount is not None and str(src.mount) == "+y,+z"
    assert_clean_stream(batches)
    all_ = SampleBatch.concat(batches)
    assert np.allclose(all_.acc_g[:, 2], 1.0)
    # Host-stamped and corrected for batching: 4 samples spread back at 25 Hz from arrival.
    assert np.allclose(np.diff(batches[1].t_s), 0.04, atol=1e-6)
    assert abs(all_.t_s[-1] - clock.wall()) < 1.0
    assert src.status.samples == len(all_.t_s)
    assert src.status.rssi_dbm == -61
    assert src.status.battery_pct == 0x57
    client = world.clients[-1]
    assert client.disconnect_calls == 1 and not client.connected
    assert world.sensors[0].subscriptions == []


FAILURE_SCRIPTS = {
    "connect fails twice": dict(connect_results=["fail", "fail"]),
    "connect times out": dict(connect_results=["timeout"]),
    "InProgress once": dict(connect_results=["inprogress"]),
    "connection abort": dict(connect_results=["abort", "abort"]),
    "device missing for minutes": dict(absent_until=1000.0 + 300.0),
    "disconnect mid-stream": dict(sessions=[Session(drop_after=15)]),
    "disconnect during setup": dict(sessions=[Session(drop_during_setup=True)]),
    "silent stall while connected": dict(sessions=[Session(stall_after=10)]),
    "stall then hanging disconnect": dict(sessions=[Session(stall_after=10, hang_disconnect=True)]),
    "drop, drop, stall": dict(sessions=[Session(drop_after=5), Session(drop_after=3),
                                        Session(stall_after=4)]),
}


@pytest.mark.parametrize("script", FAILURE_SCRIPTS, ids=list(FAILURE_SCRIPTS))
async def test_every_failure_script_ends_streaming_again_without_duplicates(
        clock: FakeClock, script: str) -> None:
    sensor = FakeSensor(samples_per_packet=2, **FAILURE_SCRIPTS[script])
    world = FakeWorld(clock, [sensor])
    async with make_source(world) as src:
        batches = await take(src, 120)
    assert_clean_stream(batches)
    assert sum(len(b) for b in batches) >= 120
    # The stream really came back after the failure, on a client of its own.
    assert all(c.connect_calls == 1 for c in world.clients)
    assert world.max_connecting == 1
    assert sensor.max_connected_clients == 1 or script == "stall then hanging disconnect"


async def test_reconnects_count_and_silence_is_reported(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor(sessions=[Session(stall_after=5)])])
    async with make_source(world) as src:
        await take(src, 30)
        assert src.status.reconnects == 1
    assert "no notification" in src.status.last_error or src.status.last_error == ""


async def test_zombie_handler_of_a_hung_disconnect_never_duplicates(clock: FakeClock) -> None:
    sensor = FakeSensor(sessions=[Session(stall_after=6, hang_disconnect=True)])
    world = FakeWorld(clock, [sensor])
    async with make_source(world) as src:
        batches = await take(src, 80)
    # The first client's watcher was still registered and received every later packet too.
    zombie = world.clients[0]
    assert zombie.zombie and any(c is zombie for c, _, _ in sensor.subscriptions)
    assert_clean_stream(batches)


async def test_device_away_backs_off_exponentially_with_a_cap(clock: FakeClock) -> None:
    sensor = FakeSensor(absent_until=1000.0 + 900.0)
    world = FakeWorld(clock, [sensor])
    settings = dataclasses.replace(SETTINGS, backoff_max_s=30.0, scan_window_s=5.0)
    async with make_source(world, settings=settings) as src:
        await take(src, 5)
    starts = [s for s in world.scanners]
    # 900 s away with 5 s windows and waits growing to a 30 s cap: far fewer scans than 900/5.
    assert 20 <= len(starts) <= 60
    assert world.max_scanners_running == 1


async def test_adapter_failing_continuously_raises_adapter_wedged(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor()])
    world.scanner_always_fails = BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"])
    src = make_source(world, settings=dataclasses.replace(SETTINGS, wedged_exit_s=120.0))
    with pytest.raises(AdapterWedged, match="failed every attempt"):
        await take(src, 1)
    assert clock.now - 1000.0 >= 120.0
    assert "NotReady" in src.status.last_error


async def test_connect_failing_while_advertising_is_wedged_too(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor(connect_results=["fail"] * 1000)])
    src = make_source(world, settings=dataclasses.replace(SETTINGS, wedged_exit_s=90.0))
    with pytest.raises(AdapterWedged):
        await take(src, 1)
    assert len(world.clients) >= 3


async def test_a_sensor_that_is_simply_off_is_not_a_wedged_adapter(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor(absent_until=float("inf"))])
    src = make_source(world, settings=dataclasses.replace(SETTINGS, wedged_exit_s=60.0))
    consumer = asyncio.create_task(take(src, 1))
    while clock.now < 1000.0 + 400.0 and not consumer.done():
        await asyncio.sleep(0.001)
    assert not consumer.done(), "the iterator gave up although only the sensor was away"
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer


async def test_one_connection_attempt_at_a_time_per_adapter(clock: FakeClock) -> None:
    a = FakeSensor(address="C4:AA:10:2B:33:01", connect_results=["timeout", "fail"])
    b = FakeSensor(address="C4:AA:10:2B:33:02", connect_results=["timeout", "inprogress"])
    world = FakeWorld(clock, [a, b])
    async with make_source(world, a.address) as sa, make_source(world, b.address) as sb:
        got_a, got_b = await asyncio.gather(take(sa, 30), take(sb, 30))
    assert_clean_stream(got_a)
    assert_clean_stream(got_b)
    assert world.max_connecting == 1
    assert world.max_scanners_running == 1


async def test_target_by_advertised_name_and_profile_by_advertisement(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor(name="slouchd-back")])
    async with make_source(world, target="slouchd-back", profile=None) as src:
        assert src.profile is None
        await take(src, 10)
        assert src.profile is not None and src.profile.name == "generic"
        assert str(src.mount) == GENERIC.mount


async def test_malformed_notifications_are_counted_logged_once_and_dropped(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    bad = {3: b"\x01\x02\x03", 5: b"\x01\x02\x03\x04", 7: b"\x00" * 7, 9: b"\x01\x02\x03"}
    world = FakeWorld(clock, [FakeSensor(bad_packets=bad)])
    caplog.set_level(logging.INFO, logger="slouchd.sensors.ble")
    async with make_source(world) as src:
        batches = await take(src, 30)
    assert src.status.dropped == {"short": 3, "long": 1}
    warnings = [r for r in caplog.records if "dropped input" in r.getMessage()
                and r.levelno >= logging.WARNING]
    assert len(warnings) == 2  # once per kind
    assert_clean_stream(batches)


async def test_buzz_writes_the_haptic_command_and_drops_samples_while_it_runs(clock: FakeClock) -> None:
    sensor = FakeSensor()
    world = FakeWorld(clock, [sensor])
    async with make_source(world) as src:
        await take(src, 10)
        before = src.status.samples
        t_buzz = clock.wall()
        assert await src.buzz(3) is True
        batches = await take(src, 30)
    assert (GENERIC_HAPTIC, b"\x01", True) in sensor.writes
    h = GENERIC.haptic
    assert h is not None
    muted = (h.buzz_s + h.settle_s) * GENERIC.rate_hz
    assert src.status.dropped["haptic"] >= int(muted) - 1
    # Nothing delivered from inside the buzz window.
    first_t = SampleBatch.concat(batches).t_s[0]
    assert first_t >= t_buzz + h.buzz_s + h.settle_s - 1.0 / GENERIC.rate_hz
    assert src.status.samples > before


async def test_buzz_is_refused_when_disabled_or_impossible(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor()])
    async with make_source(world, settings=dataclasses.replace(SETTINGS, haptic=False)) as src:
        await take(src, 5)
        assert await src.buzz(1) is False
    microbit = PROFILES["microbit"]
    assert microbit.haptic is None
    src2 = make_source(world, profile=microbit)
    assert await src2.buzz(1) is False  # not connected, and no haptic in the profile


async def test_polar_start_request_and_sensor_clock(clock: FakeClock) -> None:
    polar = PROFILES["polar-h10"]
    cp = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
    state = {"t_ns": 5_000_000_000}

    def on_write(sensor: FakeSensor, client, uuid: str, data: bytes) -> None:
        if uuid == cp and data[:2] == b"\x02\x02":
            client.indicate(cp, bytes.fromhex("f0 02 02 00 00"))

    def frame(sensor: FakeSensor) -> bytes:
        n = 10
        state["t_ns"] += int(n / 50 * 1e9)
        body = b"".join(struct.pack("<hhh", (sensor.seq + i) % 32768, 0, 1000) for i in range(n))
        sensor.seq += n
        return b"\x02" + state["t_ns"].to_bytes(8, "little") + b"\x01" + body

    sensor = FakeSensor(name="Polar H10 1234ABCD", notify_uuid="fb005c82-02e7-f387-1cad-8acd2d8df0c8",
                        service_uuids=[], rate_hz=50.0, samples_per_packet=10, write_hook=on_write,
                        packet_maker=frame, sessions=[Session(drop_after=4)])
    world = FakeWorld(clock, [sensor])
    async with make_source(world, profile=polar) as src:
        batches = await take(src, 150)
    assert_clean_stream(batches)
    start = bytes.fromhex("02 02 00 01 32 00 01 01 10 00 02 01 08 00")
    assert [w for w in sensor.writes if w[0] == cp] == [(cp, start, True)] * 2  # once per link
    t = SampleBatch.concat(batches[:4]).t_s
    assert np.allclose(np.diff(t), 0.02, atol=1e-6)  # the sensor clock, 50 Hz
    # Mapped onto Unix time: the newest sample is about "now".
    assert abs(batches[-1].t_s[-1] - clock.wall()) < 1.0


async def test_polar_error_answer_fails_setup_and_is_retried(clock: FakeClock) -> None:
    polar = PROFILES["polar-h10"]
    cp = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
    answers = ["f0 02 02 05", "f0 02 02 00"]

    def on_write(sensor: FakeSensor, client, uuid: str, data: bytes) -> None:
        if uuid == cp:
            client.indicate(cp, bytes.fromhex(answers.pop(0)))

    def frame(sensor: FakeSensor) -> bytes:
        sensor.seq += 1
        return b"\x02" + (sensor.seq * 20_000_000).to_bytes(8, "little") + b"\x01" + struct.pack(
            "<hhh", sensor.seq, 0, 1000)

    sensor = FakeSensor(name="Polar H10 X", notify_uuid="fb005c82-02e7-f387-1cad-8acd2d8df0c8",
                        rate_hz=50.0, write_hook=on_write, packet_maker=frame)
    world = FakeWorld(clock, [sensor])
    async with make_source(world, profile=polar) as src:
        await take(src, 20)
    assert len(world.clients) == 2
    assert "f0 02 02 05" in src.status.last_error or src.status.reconnects == 0


async def test_passive_ruuvitag_streams_from_advertisements_without_connecting(clock: FakeClock) -> None:
    ruuvi = PROFILES["ruuvitag"]
    base = bytearray.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")

    def advert(sensor: FakeSensor) -> bytes:
        # A new measurement every 10 adverts (repeats share the sequence number).
        sensor.packets_sent += 1
        seq = sensor.packets_sent // 10
        payload = bytearray(base)
        payload[7:9] = struct.pack(">h", seq)
        payload[16:18] = struct.pack(">H", seq)
        return bytes(payload)

    sensor = FakeSensor(address="CB:B8:33:4C:88:4F", name="Ruuvi 884F", service_uuids=[],
                        manufacturer_data={0x0499: bytes(base)}, packet_maker=advert)
    world = FakeWorld(clock, [sensor])
    async with make_source(world, target=sensor.address, profile=ruuvi) as src:
        batches = await take(src, 8)
    assert world.clients == []
    seq = sample_numbers(batches)
    assert np.all(np.diff(seq) > 0)
    assert np.allclose(SampleBatch.concat(batches).acc_g[:, 2], 1.036)
    assert src.status.dropped.get("duplicate", 0) > 0
    passive = [s for s in world.scanners if s.scanning_mode == "passive"]
    assert passive and "or_patterns" in passive[0].bluez


async def test_passive_falls_back_to_active_scanning(clock: FakeClock) -> None:
    ruuvi = PROFILES["ruuvitag"]
    payload = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
    counter = {"n": 0}

    def advert(sensor: FakeSensor) -> bytes:
        counter["n"] += 1
        return payload[:16] + struct.pack(">H", counter["n"]) + payload[18:]

    sensor = FakeSensor(address="CB:B8:33:4C:88:4F", service_uuids=[], packet_maker=advert,
                        manufacturer_data={0x0499: payload})
    world = FakeWorld(clock, [sensor])
    # The first start() is the finding scan; the second (passive) fails like BlueZ without
    # --experimental.
    world.scanner_errors = []

    orig_start = world.scanner_cls.start

    async def start(self) -> None:
        if self.scanning_mode == "passive":
            raise BleakDBusError("org.bluez.Error.NotSupported", ["advertisement monitor"])
        await orig_start(self)

    world.scanner_cls.start = start
    async with make_source(world, target=sensor.address, profile=ruuvi) as src:
        batches = await take(src, 5)
    assert len(SampleBatch.concat(batches)) >= 5


async def test_teardown_is_idempotent_and_close_ends_iteration(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor()])
    src = make_source(world)
    await take(src, 5)
    await src.aclose()
    await src.aclose()
    assert world.clients[-1].disconnect_calls == 1
    assert not src.status.connected
    with pytest.raises(StopAsyncIteration):
        await src.__anext__()


async def consume_until_streaming(src: BleSensorSource) -> asyncio.Task[None]:
    """A task consuming ``src`` forever, returned once the first batch has arrived."""
    got: list[SampleBatch] = []

    async def consume() -> None:
        async for batch in src:
            got.append(batch)

    consumer = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.001)
    return consumer


async def test_closing_from_another_task_ends_the_iteration_promptly(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor()])
    src = make_source(world)
    consumer = await consume_until_streaming(src)
    started = clock.now
    await src.aclose()
    await asyncio.wait_for(consumer, REAL_TIMEOUT_S)
    assert clock.now - started < 1.0  # woken at once, not after the silence timeout
    assert world.clients[-1].disconnect_calls == 1 and world.sensors[0].subscriptions == []


async def test_cancelling_the_consumer_tears_the_link_down(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor()])
    src = make_source(world)
    consumer = asyncio.create_task(take(src, 10_000))
    while not world.sensors[0].subscriptions:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert world.clients[-1].disconnect_calls == 1
    assert world.sensors[0].subscriptions == [] and not src.status.connected


async def test_closing_while_the_sensor_is_away_ends_promptly(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor(absent_until=float("inf"))])
    src = make_source(world, settings=dataclasses.replace(SETTINGS, backoff_max_s=600.0))
    consumer = asyncio.create_task(take(src, 1))
    while clock.now < 1000.0 + 200.0:  # deep into a long backoff
        await asyncio.sleep(0.001)
    started = clock.now
    await src.aclose()
    await asyncio.wait_for(consumer, REAL_TIMEOUT_S)
    assert clock.now - started < 1.0
    assert world.scanners_running == 0


async def test_closing_a_passive_listener_ends_promptly(clock: FakeClock) -> None:
    payload = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
    counter = {"n": 0}

    def advert(sensor: FakeSensor) -> bytes:
        counter["n"] += 1
        return payload[:16] + struct.pack(">H", counter["n"] // 20) + payload[18:]

    sensor = FakeSensor(address="CB:B8:33:4C:88:4F", service_uuids=[], packet_maker=advert,
                        manufacturer_data={0x0499: payload})
    world = FakeWorld(clock, [sensor])
    src = make_source(world, target=sensor.address, profile=PROFILES["ruuvitag"])
    consumer = await consume_until_streaming(src)
    started = clock.now
    await src.aclose()
    await asyncio.wait_for(consumer, REAL_TIMEOUT_S)
    assert clock.now - started < 1.0
    assert world.scanners_running == 0


THINGY_CONFIG = "ef680401-9b35-4933-9b10-52ffa9740042"


async def test_thingy_rate_is_patched_in_flash_only_when_it_differs(clock: FakeClock) -> None:
    def store(sensor: FakeSensor, client, uuid: str, data: bytes) -> None:
        sensor.gatt[uuid] = data  # the Thingy keeps its motion config in flash

    def raw(sensor: FakeSensor) -> bytes:
        sensor.seq += 1
        return struct.pack("<9h", sensor.seq, 0, -1024, 0, 0, 0, 0, 0, 0)  # lying face up

    default = bytes.fromhex("E8 03 F4 01 F4 01 0A 00 01")  # 1000, 500, 500 ms, 10 Hz, WoM on
    sensor = FakeSensor(name="Thingy", notify_uuid="ef680406-9b35-4933-9b10-52ffa9740042", rate_hz=25.0,
                        gatt={THINGY_CONFIG: default}, write_hook=store, packet_maker=raw,
                        sessions=[Session(drop_after=5)])
    world = FakeWorld(clock, [sensor])
    async with make_source(world, profile=PROFILES["thingy52"]) as src:
        batches = await take(src, 30)
    assert len(world.clients) == 2
    writes = [w for w in sensor.writes if w[0] == THINGY_CONFIG]
    assert writes == [(THINGY_CONFIG, bytes.fromhex("E8 03 F4 01 F4 01 19 00 01"), True)]
    acc = SampleBatch.concat(batches).acc_g
    assert np.allclose(acc[:, 2], 1.0)  # the inverted accelerometer is flipped back: up reads +1 g
    assert SampleBatch.concat(batches).gyro_dps is not None


async def test_optional_step_failure_is_logged_not_fatal(clock: FakeClock,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    def mb(sensor: FakeSensor) -> bytes:
        sensor.seq += 1
        return struct.pack("<hhh", -sensor.seq, 0, -1000)

    # The period read-back characteristic is missing: the read step is optional.
    sensor = FakeSensor(name="BBC micro:bit [tapot]", notify_uuid="e95dca4b-251d-470a-a062-fa1922dfa9a8",
                        rate_hz=50.0, gatt={}, packet_maker=mb)
    world = FakeWorld(clock, [sensor])
    caplog.set_level(logging.WARNING, logger="slouchd.sensors.ble")
    async with make_source(world, profile=PROFILES["microbit"]) as src:
        batches = await take(src, 20)
    assert ("e95dfb24-251d-470a-a062-fa1922dfa9a8", b"\x14\x00", True) in sensor.writes
    assert any("optional step failed: read e95dfb24" in r.getMessage() for r in caplog.records)
    assert len(world.clients) == 1
    assert np.allclose(SampleBatch.concat(batches).acc_g[:, 2], 1.0)


async def test_sensortag_beep_is_stopped_and_muted_until_it_settles(clock: FakeClock) -> None:
    io_data = "f000aa65-0451-4000-b000-000000000000"
    io_conf = "f000aa66-0451-4000-b000-000000000000"
    sensor = FakeSensor(name="CC2650 SensorTag", notify_uuid="f000aa81-0451-4000-b000-000000000000",
                        rate_hz=10.0, packet_maker=lambda s: struct.pack("<9h", 0, 0, 0, 0, 0, 4096, 0, 0, 0))
    world = FakeWorld(clock, [sensor])
    tag = PROFILES["sensortag"]
    async with make_source(world, profile=tag) as src:
        await take(src, 3)
        t0 = clock.now
        assert await src.buzz(2)
        after = await take(src, 5)
    io_writes = [(u, d) for u, d, _ in sensor.writes if u in (io_data, io_conf)]
    assert io_writes == [(io_conf, b"\x01"), (io_data, b"\x04"), (io_data, b"\x00"), (io_conf, b"\x00")]
    assert tag.haptic is not None
    first = SampleBatch.concat(after).t_s[0] - clock.wall() + clock.now
    assert first >= t0 + tag.haptic.buzz_s + tag.haptic.settle_s
    assert src.status.dropped["haptic"] >= 5


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    connects=st.lists(st.sampled_from(["fail", "timeout", "inprogress", "abort", "missing", "ok"]),
                      max_size=5),
    sessions=st.lists(st.builds(Session, drop_after=st.one_of(st.none(), st.integers(0, 8)),
                                stall_after=st.one_of(st.none(), st.integers(0, 8)),
                                drop_during_setup=st.booleans(), hang_disconnect=st.booleans()),
                      max_size=4),
    away_s=st.sampled_from([0.0, 45.0, 400.0]),
)
async def test_any_mix_of_failures_ends_streaming_without_duplicates(
        connects: list[str], sessions: list[Session], away_s: float) -> None:
    clock = FakeClock()
    driver = asyncio.create_task(clock.run())
    try:
        sensor = FakeSensor(samples_per_packet=2, connect_results=list(connects), sessions=list(sessions),
                            absent_until=1000.0 + away_s)
        world = FakeWorld(clock, [sensor])
        async with make_source(world, settings=dataclasses.replace(SETTINGS, wedged_exit_s=3600.0)) as src:
            batches = await take(src, 60)
    finally:
        driver.cancel()
    assert_clean_stream(batches)
    assert world.max_connecting == 1
