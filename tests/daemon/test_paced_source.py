"""Offline samples (simulated wearer, recordings) arrive like a live sensor's, at the asked speed."""

from __future__ import annotations

import numpy as np
import pytest

from slouchd.model import SampleBatch
from slouchd.sensors.paced import PacedSource


def recording(seconds: float, rate_hz: float = 50.0, chunk_s: float = 1.0) -> list[SampleBatch]:
    t = np.arange(0.0, seconds, 1.0 / rate_hz)
    acc = np.tile([0.0, 1.0, 0.0], (t.size, 1))
    per = int(chunk_s * rate_hz)
    return [SampleBatch(t[i:i + per], acc[i:i + per]) for i in range(0, t.size, per)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.now += s
        self.slept += s


async def collect(src: PacedSource, limit: int = 10_000) -> list[SampleBatch]:
    out = []
    async with src:
        async for b in src:
            out.append(b)
            if len(out) >= limit:
                break
    return out


async def test_speed_30_plays_a_minute_in_two_wall_seconds_on_the_epoch_timeline() -> None:
    clock = FakeClock()
    src = PacedSource(lambda: recording(60.0), speed=30.0, start_epoch_s=5_000.0,
                      clock=clock, sleep=clock.sleep)
    out = await collect(src)
    t = np.concatenate([b.t_s for b in out])
    assert t[0] == 5_000.0
    assert np.all(np.diff(t) > 0)
    assert t.size == 3000
    assert abs(clock.slept - (60.0 - 0.02) / 30.0) < 0.05
    assert src.status.samples == 3000


async def test_looping_recording_keeps_time_increasing() -> None:
    clock = FakeClock()
    src = PacedSource(lambda: recording(10.0), speed=1000.0, start_epoch_s=0.0, loop=True,
                      clock=clock, sleep=clock.sleep)
    out = await collect(src, limit=50)
    t = np.concatenate([b.t_s for b in out])
    assert t[-1] > 25.0  # went round more than twice
    assert np.all(np.diff(t) > 0)


async def test_one_second_chunks_at_real_time_arrive_every_tenth_of_a_second() -> None:
    # A recording read in 1 s chunks must still reach the daemon like a sensor's packets, not
    # as a one-second lump (a second of alert latency).
    clock = FakeClock()
    src = PacedSource(lambda: recording(5.0, chunk_s=1.0), speed=1.0, start_epoch_s=0.0,
                      clock=clock, sleep=clock.sleep)
    out = await collect(src)
    sizes = [len(b) for b in out]
    assert len(out) >= 45 and max(sizes) <= 6
    t = np.concatenate([b.t_s for b in out])
    assert t.size == 250 and np.all(np.diff(t) > 0)


async def test_wall_clock_steps_neither_burst_nor_stall_a_recording() -> None:
    # Pacing is on the monotonic clock; the wall clock only dates the start. Stepping it an hour
    # forward, then two back (NTP, a user setting the time) changes nothing.
    async def play(steps: dict[int, float]) -> tuple[list[tuple[float, float]], PacedSource]:
        mono = FakeClock()
        wall = [1_700_000_000.0]
        src = PacedSource(lambda: recording(30.0), speed=1.0, clock=mono, sleep=mono.sleep,
                          wall_clock=lambda: wall[0])
        arrivals = []
        async with src:
            async for b in src:
                arrivals.append((mono.now, float(b.t_s[-1])))
                wall[0] += steps.get(len(arrivals), 0.0)
        return arrivals, src

    stepped, src = await play({50: 3600.0, 150: -7200.0})
    steady, _ = await play({})
    assert stepped == steady and len(stepped) == 300
    assert stepped[-1][0] - stepped[0][0] == pytest.approx(29.9, abs=0.05)  # real time, no burst or stall
    assert stepped[0][1] == pytest.approx(1_700_000_000.0 + 0.08)  # epoch read once, at the start
    assert src.resyncs == 0


async def test_a_stalled_source_resumes_in_real_time_without_a_burst() -> None:
    mono = FakeClock()
    src = PacedSource(lambda: recording(30.0), speed=1.0, start_epoch_s=0.0, clock=mono, sleep=mono.sleep)
    arrivals = []
    async with src:
        async for b in src:
            arrivals.append((mono.now, float(b.t_s[-1])))
            if len(arrivals) == 100:
                mono.now += 600.0  # the process was stopped for ten minutes
    after = np.diff([a for a, _ in arrivals[100:]])
    assert len(after) == 199 and np.all(after > 0.07)  # one late batch, then paced again: no burst
    assert src.resyncs == 1
    t = [s for _, s in arrivals]
    assert np.all(np.diff(t) > 0)  # nothing skipped or repeated


async def test_sources_started_apart_wake_together_on_one_grid() -> None:
    # Every paced source in the daemon wakes on the same 0.1 s grid of the monotonic clock, so N
    # replay wearers cost one event-loop wake-up per tick, not N (docs/performance.md).
    wakes: dict[str, list[float]] = {}
    for name, start in (("a", 1000.037), ("b", 1000.081), ("c", 1003.55)):
        clock = FakeClock()
        clock.now = start
        src = PacedSource(lambda: recording(5.0), speed=1.0, start_epoch_s=0.0, clock=clock,
                          sleep=clock.sleep)
        async with src:
            async for b in src:
                due = start + float(b.t_s[-1])  # the last sample's due time (recording starts at 0)
                assert 0.0 <= clock.now - due <= 0.1 + 1e-9  # never early, at most a tick late
                wakes.setdefault(name, []).append(clock.now)
    for times in wakes.values():
        assert len(times) == 50
        grid = np.array(times) / 0.1
        assert np.allclose(grid, np.round(grid), atol=1e-6)  # on the shared grid
    assert np.allclose(wakes["a"], wakes["b"])  # started 44 ms apart: the same instants


async def test_a_calm_consumer_is_woken_once_per_hand_over_with_everything_due() -> None:
    # The daemon's buffer hands the tracker samples once a second while calm: the source holds
    # the ticks in between (no wake-up for them) and delivers them with the one that is due. The
    # buffer's hand-overs (when, and what) are exactly those it makes without the hint.
    from slouchd.sample_buffer import SampleBuffer

    async def play(ticks: int, hint: bool) -> tuple[int, list[tuple[float, float, int]]]:
        clock = FakeClock()
        src = PacedSource(lambda: recording(10.0), speed=1.0, start_epoch_s=1_700_000_000.0,
                          clock=clock, sleep=clock.sleep)
        buf = SampleBuffer(ticks)
        if hint:
            src.hand_over = buf
        wakes, handed = 0, []
        async with src:
            async for b in src:
                wakes += 1
                handed += [(clock.now, float(h.t_s[-1]), len(h)) for h in buf.add(b)]
        handed += [(clock.now, float(h.t_s[-1]), len(h)) for h in buf.take()]
        return wakes, handed

    wakes_calm, calm = await play(10, hint=True)
    wakes_plain, calm_plain = await play(10, hint=False)
    assert calm == calm_plain and sum(n for _, _, n in calm) == 500
    assert wakes_plain == 100 and wakes_calm <= 12  # one wake-up per hand-over (a second)
    wakes_urgent, urgent = await play(1, hint=True)
    wakes_every, every = await play(1, hint=False)
    assert urgent == every and wakes_urgent <= wakes_every and len(every) >= 95
