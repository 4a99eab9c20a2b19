"""Offline samples (simulated wearer, recordings) arrive like a live sensor's, at the asked speed."""

from __future__ import annotations

import numpy as np

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
