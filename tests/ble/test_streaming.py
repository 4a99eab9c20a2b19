"""The notification path: decoded in bleak's callback, the consumer woken once per 0.1 s tick.

Sensors that send one sample per notification (micro:bit, Thingy:52, WitMotion) notify 50-100
times a second; the consumer task must run once per decision tick, not once per notification,
without delaying the sample that starts a tick and without losing or reordering any. The fake
bleak (tests/ble/fake_bleak.py) drives the real source; each sample's x is its running number.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math

import numpy as np
import pytest

from slouchd.model import SampleBatch
from slouchd.posture.filters import TICK_S
from slouchd.sample_buffer import SampleBuffer
from slouchd.sensors.ble.link import QUEUE_MAX, READY, Link
from slouchd.sensors.ble.ticks import TickGate
from tests.ble.fake_bleak import FakeClock, FakeSensor, FakeWorld, Session
from tests.ble.test_session import GENERIC, REAL_TIMEOUT_S, make_source, sample_numbers

GENERIC_50 = dataclasses.replace(GENERIC, rate_hz=50.0)


async def take_timed(src, clock: FakeClock, samples: int) -> list[tuple[SampleBatch, float]]:
    """Batches with the (fake) Unix time each was yielded at, until ``samples`` samples came."""
    out: list[tuple[SampleBatch, float]] = []

    async def run() -> None:
        n = 0
        async for batch in src:
            out.append((batch, clock.wall()))
            n += len(batch)
            if n >= samples:
                return

    await asyncio.wait_for(run(), REAL_TIMEOUT_S)
    return out


def tick(t: float) -> int:
    return math.floor(t / TICK_S)


def test_tick_gate_opens_at_the_first_sample_of_each_later_tick() -> None:
    gate = TickGate(0.1)
    times = [10.05, 10.08, 10.11, 10.1999, 10.21, 10.15, 10.35, 10.36, float("nan"), 10.41]
    assert [gate.starts_tick(t) for t in times] == [True, False, True, False, True, False, True, False,
                                                    True, True]
    gate.reset()
    assert gate.starts_tick(10.0)
    with pytest.raises(ValueError):
        TickGate(0.0)


def test_tick_gate_is_the_sample_buffers_grid() -> None:
    """The gate opens exactly when the daemon's buffer (one tick) hands samples over."""
    rng = np.random.default_rng(11)
    t = 1_750_000_000.0 + np.cumsum(rng.choice([0.0, 0.004, 0.01, 0.02, 0.1, 0.3], size=3000))
    t[rng.integers(0, len(t), 40)] -= 0.05  # a few times going back
    gate, buffer = TickGate(), SampleBuffer(ticks=1, piece_samples=0)
    for x in t:
        batch = SampleBatch(np.array([x]), np.zeros((1, 3)), None)
        assert gate.starts_tick(float(x)) == bool(buffer.add(batch)), x


async def test_one_sample_notifications_wake_the_consumer_once_per_tick(clock: FakeClock) -> None:
    sensor = FakeSensor(rate_hz=50.0, samples_per_packet=1)
    world = FakeWorld(clock, [sensor])
    async with make_source(world, profile=GENERIC_50) as src:
        got = await take_timed(src, clock, 150)  # 3 s at 50 Hz
    batches = [b for b, _ in got]
    seq = sample_numbers(batches)
    assert len(seq) >= 150 and np.all(np.diff(seq) == 1), "lost or reordered samples"
    # About 10 yields a second, not 50 (the first notification wakes it once on its own).
    assert 29 <= len(batches) <= 32, [len(b) for b in batches]
    assert src.status.packets >= 150 and src.status.dropped == {}
    t_all = SampleBatch.concat(batches).t_s
    assert np.all(np.diff(t_all) > 0)
    for (batch, yielded_at), prev in zip(got[1:], batches, strict=False):
        # Each batch ends with the first sample of a new tick and holds everything since the
        # previous one: the whole previous tick's rest, nothing more.
        assert tick(batch.t_s[-1]) > tick(prev.t_s[-1])
        if len(batch) > 1:
            assert tick(batch.t_s[-2]) < tick(batch.t_s[-1])
        # ... and reaches the consumer the moment it arrived (no waiting for more).
        assert yielded_at - batch.t_s[-1] < 1e-6


async def test_several_samples_per_notification_are_delivered_in_order_too(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor(rate_hz=50.0, samples_per_packet=4)])
    async with make_source(world, profile=GENERIC_50) as src:
        batches = await take_with_numbers(src, 200)
    seq = sample_numbers(batches)
    assert np.all(np.diff(seq) == 1)
    # A 4-sample notification every 0.08 s starts a new tick nearly every time.
    assert len(batches) <= 200 // 4 + 1


async def take_with_numbers(src, samples: int) -> list[SampleBatch]:
    out: list[SampleBatch] = []

    async def run() -> None:
        async for batch in src:
            out.append(batch)
            if sum(len(b) for b in out) >= samples:
                return

    await asyncio.wait_for(run(), REAL_TIMEOUT_S)
    return out


@pytest.mark.parametrize("session", [Session(drop_after=13), Session(stall_after=13)],
                         ids=["disconnect", "silence"])
async def test_lost_and_silent_links_end_the_stream_after_delivering_what_they_held(
        clock: FakeClock, session: Session) -> None:
    sensor = FakeSensor(rate_hz=50.0, samples_per_packet=1, sessions=[session])
    world = FakeWorld(clock, [sensor])
    async with make_source(world, profile=GENERIC_50) as src:
        batches = await take_with_numbers(src, 40)
        assert src.status.reconnects == 1
        assert len(world.clients) == 2
    # The 13 samples of the first link (the last few held, not a whole tick) all came, then the
    # second link's: the fake sensor numbers its samples across links, so nothing is missing.
    seq = sample_numbers(batches)
    assert seq[0] == 0 and np.all(np.diff(seq) == 1), seq.tolist()
    if session.stall_after is not None:
        assert "no notification" in src.status.last_error


async def test_malformed_packets_are_still_counted_and_dropped(clock: FakeClock) -> None:
    bad = {2: b"\x01\x02\x03", 6: b"\x00" * 7}
    world = FakeWorld(clock, [FakeSensor(rate_hz=50.0, bad_packets=bad)])
    async with make_source(world, profile=GENERIC_50) as src:
        batches = await take_with_numbers(src, 30)
    assert src.status.dropped == {"short": 1, "long": 1}
    seq = sample_numbers(batches)
    assert np.all(np.diff(seq) > 0)


async def test_a_decoder_failure_never_reaches_bleak_and_is_counted_and_logged_once(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    boom = b"\xde\xad\xbe\xef\x00\x01"  # six bytes: a well-formed generic sample for the fake
    world = FakeWorld(clock, [FakeSensor(rate_hz=50.0, bad_packets={3: boom, 8: boom})])
    caplog.set_level(logging.INFO, logger="slouchd.sensors.ble")
    async with make_source(world, profile=GENERIC_50) as src:
        decoder = src._packets.decoder
        assert decoder is not None
        feed = decoder.raw.feed_tuples  # under both the row path and the array path

        def failing_feed(data: bytes):  # a decoder bug on one kind of packet
            if data == boom:
                raise ZeroDivisionError("division by zero")
            return feed(data)

        decoder.raw.feed_tuples = failing_feed  # type: ignore[method-assign]
        batches = await take_with_numbers(src, 30)
        assert src.status.reconnects == 0  # the link kept streaming
    assert src.status.dropped == {"error": 2}
    seq = sample_numbers(batches)
    assert np.all(np.diff(seq) > 0) and len(seq) >= 30
    warnings = [r for r in caplog.records if "decoding it failed" in r.getMessage()
                and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "ZeroDivisionError" in warnings[0].getMessage()


async def test_a_consumer_that_does_not_keep_up_loses_notifications_as_overflow(clock: FakeClock) -> None:
    world = FakeWorld(clock, [FakeSensor()])
    src = make_source(world, profile=GENERIC_50)
    link = Link(1)
    callback = src._streamer.on_notify(link)
    for k in range(QUEUE_MAX + 25):
        clock.now += 0.02
        callback(None, bytearray(int(k).to_bytes(2, "little", signed=True) + b"\x00\x00\xe8\x03"))
    assert src.status.dropped == {"overflow": 25}
    assert link.held_packets == QUEUE_MAX and link.held_samples == QUEUE_MAX
    # One wake-up is queued however many ticks passed: the consumer takes everything at once.
    assert [link.queue.get_nowait() for _ in range(link.queue.qsize())] == [READY]
    assert sample_numbers(link.take()).tolist() == list(range(QUEUE_MAX))
    link.close()
    callback(None, bytearray(b"\x00\x00\x00\x00\xe8\x03"))  # a closed link's callback is ignored
    assert not link.held and src.status.dropped == {"overflow": 25}


def test_tick_gate_waits_for_the_tick_the_consumer_is_due_at() -> None:
    gate = TickGate(0.1)
    assert gate.starts_tick(10.05, due_k=-math.inf)
    assert not gate.starts_tick(10.15, due_k=110.0)  # a new tick, but the consumer waits for 11.0 s
    assert not gate.starts_tick(10.99, due_k=110.0)
    assert gate.starts_tick(11.01, due_k=110.0)
    assert not gate.starts_tick(11.02, due_k=-math.inf)  # (still the same tick)
    assert gate.starts_tick(float("nan"), due_k=120.0)  # non-finite: at once, for the tracker to drop


@pytest.mark.parametrize("ticks", [1, 10])
async def test_the_consumer_is_woken_only_for_its_hand_overs_which_stay_the_same(ticks: int) -> None:
    # As the daemon wires it: the source reads the wearer's sample buffer's next hand-over. While
    # calm (10 ticks) the consumer task wakes about once a second instead of ten times, and the
    # buffer hands over the very same samples as when it is woken every tick.
    async def run(hint: bool) -> tuple[int, list[np.ndarray]]:
        clock = FakeClock()  # each run from the same instant: the same tick phase
        driver = asyncio.create_task(clock.run())
        sensor = FakeSensor(rate_hz=50.0, samples_per_packet=1)
        world = FakeWorld(clock, [sensor])
        buf = SampleBuffer(ticks)
        wakes, handed = 0, []

        async def consume(src) -> None:  # as WearerRuntime._stream does
            nonlocal wakes
            async for batch in src:
                wakes += 1
                handed.extend(sample_numbers([h]) for h in buf.add(batch))
                if sum(len(h) for h in handed) >= 500:  # 10 s at 50 Hz
                    return

        async with make_source(world, profile=GENERIC_50) as src:
            if hint:
                src.hand_over = buf
            await asyncio.wait_for(consume(src), REAL_TIMEOUT_S)
        driver.cancel()
        return wakes, handed

    wakes_hint, handed_hint = await run(True)
    wakes_plain, handed_plain = await run(False)
    n = min(len(handed_hint), len(handed_plain))
    assert n >= (9 if ticks == 10 else 95)
    assert all(np.array_equal(a, b) for a, b in zip(handed_hint[:n], handed_plain[:n], strict=True))
    if ticks == 10:
        assert wakes_hint <= 12 < 95 <= wakes_plain
    else:
        assert abs(wakes_hint - wakes_plain) <= 1
