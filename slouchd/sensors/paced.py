"""Play a finite or endless run of sample batches in (accelerated) real time.

The simulated wearer and ``replay:PATH`` wearers are offline data; the daemon wants them to
arrive like a live sensor's: in order, paced in real time, stamped on a wall-clock timeline.
``speed`` is simulated seconds per real second (1 = real time).

Pacing runs on the monotonic clock: a wall-clock step (NTP, a suspended VM, the user setting the
time) neither bursts out an hour of samples at once nor stalls the source. The wall clock is read
once, for the Unix time at which the recording starts. If the source falls far behind anyway (the
process was stopped), it resumes pacing from where it is instead of catching up in a burst.

Every source wakes on one process-wide grid (multiples of ``TICK_WALL_S`` on the monotonic
clock), at most one tick after its samples are due: N offline wearers then cost the event loop
one wake-up per tick together instead of N spread across it, and each wake-up is expensive (on
the measured VM a tracker call right after a sleep costs ~2.5x one in a burst; docs/performance.md).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator

import numpy as np

from slouchd.model import SampleBatch
from slouchd.posture.filters import TICK_S
from slouchd.sensors.base import HandOver, SensorStatus

# Deliver at most this much wall time apart: small enough for ~1 Hz state at any speed.
TICK_WALL_S = 0.1
MAX_LAG_S = 2.0
"""Further behind than this (real seconds), pacing restarts from now rather than catching up."""


class PacedSource:
    """A SensorSource over batches whose ``t_s`` start near 0 (seconds of recording time).

    Args:
        batches: a factory returning a fresh iterator of batches (called again to loop).
        speed: simulated seconds per wall second.
        start_epoch_s: Unix time that recording time 0 maps to (the sample clock of the output).
        loop: start again from the beginning at the end (dashboards from a recording).
        preload: slow preparation (parsing a file) run in a worker thread on entering, so it
            never blocks the event loop other wearers share; its errors surface there.
        clock: monotonic clock that paces delivery, seconds (injectable for tests).
        sleep: the matching sleep.
        wall_clock: Unix time, read once for the default ``start_epoch_s``, seconds.

    Attributes:
        resyncs: how often pacing restarted from now after falling more than ``MAX_LAG_S`` behind.
        hand_over: the consumer's next hand-over (the daemon sets it): ticks before it are held
            and go out with the one that reaches it, so a calm wearer's source wakes once a
            second, not ten times (:class:`~slouchd.sensors.base.HandOver`). None: every tick.
    """

    def __init__(self, batches: Callable[[], Iterable[SampleBatch]], *, speed: float = 1.0,
                 start_epoch_s: float | None = None, loop: bool = False,
                 preload: Callable[[], object] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._factory = batches
        self._preload = preload
        self.speed = float(speed)
        self.start_epoch_s = wall_clock() if start_epoch_s is None else float(start_epoch_s)
        self.loop = loop
        self._clock = clock
        self._sleep = sleep
        self._wall0 = 0.0
        self.resyncs = 0
        self.status = SensorStatus()
        self.hand_over: HandOver | None = None

    async def __aenter__(self) -> PacedSource:
        if self._preload is not None:
            await asyncio.to_thread(self._preload)
        self.status.connected = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.status.connected = False

    async def buzz(self, level: int) -> bool:
        return False  # nothing to vibrate

    def _timeline(self) -> Iterator[SampleBatch]:
        """Batches on one continuous recording timeline, looping if asked."""
        offset = 0.0
        while True:
            last = None
            first = None
            for batch in self._factory():
                if len(batch) == 0:
                    continue
                if first is None:
                    first = float(batch.t_s[0])
                last = float(batch.t_s[-1])
                yield SampleBatch(batch.t_s - first + offset, batch.acc_g, batch.gyro_dps)
            if not self.loop or last is None or first is None:
                return
            offset += last - first + 1.0  # one second of silence between loops

    async def __aiter__(self) -> AsyncIterator[SampleBatch]:
        """Deliver the samples of each ``TICK_WALL_S`` of wall time when the last of them is due.

        Ticks are cut on a fixed grid of recording time (``TICK_WALL_S * speed`` wide), however the
        input is chunked: at 1x a recording read in 1 s chunks still arrives 10 times a second,
        like a live sensor's packets, not as one 1 s lump (which would delay every sample by up
        to a second and make the daemon's work bursty).
        """
        self._wall0 = self._clock()
        held: list[SampleBatch] = []
        for batch in on_grid(self._timeline(), TICK_WALL_S * self.speed, origin_s=0.0):
            ho = self.hand_over
            # The consumer's own arithmetic on the epoch time it will see (SampleBuffer.add).
            if ho is not None and (float(batch.t_s[-1]) + self.start_epoch_s) / TICK_S < ho.due_k:
                held.append(batch)  # nothing for the consumer yet: no wake-up for it
                continue
            if held:
                held.append(batch)
                batch = SampleBatch.concat(held)
                held = []
            yield await self._deliver(batch)
        if held:
            yield await self._deliver(SampleBatch.concat(held))
        self.status.connected = False

    async def _deliver(self, out: SampleBatch) -> SampleBatch:
        """Wait until the last sample of ``out`` is due, then hand it out on the epoch timeline."""
        delay = self._wall0 + float(out.t_s[-1]) / self.speed - self._clock()
        if delay < -MAX_LAG_S:
            # Stopped or starved for a while: go on from here in real time, no burst to catch up.
            self._wall0 -= delay
            self.resyncs += 1
        elif delay > -TICK_WALL_S:
            await self._sleep(max(0.0, on_wake_grid(self._clock() + delay) - self._clock()))
        self.status.packets += 1
        self.status.samples += len(out)
        return SampleBatch(out.t_s + self.start_epoch_s, out.acc_g, out.gyro_dps)


def on_wake_grid(due: float) -> float:
    """The first instant of the process-wide wake grid (multiples of ``TICK_WALL_S`` on the
    monotonic clock, seconds) at or after ``due``: every paced source wakes in the same loop
    iteration. (The 1e-6 keeps a time that float error puts a hair past a grid point on it.)"""
    return math.ceil(due / TICK_WALL_S - 1e-6) * TICK_WALL_S


def on_grid(batches: Iterable[SampleBatch], width_s: float,
            origin_s: float | None = None) -> Iterator[SampleBatch]:
    """The samples regrouped into one batch per cell of a fixed time grid ``width_s`` seconds wide
    from ``origin_s`` (None: the first sample), however the input is cut; empty cells give
    nothing."""
    pending: list[SampleBatch] = []
    cell = None  # the grid cell the pending samples belong to
    for batch in batches:
        if len(batch) == 0:
            continue
        if origin_s is None:
            origin_s = float(batch.t_s[0])
        k = np.floor((batch.t_s - origin_s) / width_s).astype(np.int64)
        cuts = [0, *(np.flatnonzero(np.diff(k)) + 1).tolist(), len(batch)]
        for a, b in itertools.pairwise(cuts):
            if pending and k[a] != cell:
                yield pending[0] if len(pending) == 1 else SampleBatch.concat(pending)
                pending = []
            pending.append(batch if b - a == len(batch) else slice_batch(batch, a, b))
            cell = k[a]
    if pending:
        yield pending[0] if len(pending) == 1 else SampleBatch.concat(pending)


def slice_batch(batch: SampleBatch, a: int, b: int) -> SampleBatch:
    """Samples ``a`` to ``b`` (exclusive) of ``batch``."""
    gyro = None if batch.gyro_dps is None else batch.gyro_dps[a:b]
    return SampleBatch(batch.t_s[a:b], batch.acc_g[a:b], gyro)
