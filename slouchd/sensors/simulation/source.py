"""The simulated wearer as a live sensor: a :class:`~slouchd.sensors.base.SensorSource` that
delivers the day's packets paced against the wall clock (``speed`` simulated seconds per second)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from slouchd.model import SampleBatch
from slouchd.posture.filters import TICK_S as DECISION_TICK_S
from slouchd.sensors.base import HandOver, SensorStatus
from slouchd.sensors.paced import on_wake_grid
from slouchd.sensors.simulation.wearer import SimulatedWearer

TICK_S = 0.1
"""Wall-clock seconds of samples gathered into one delivered batch when paced: at 1x that is
5 samples at 50 Hz, like one notification of a real sensor (10 a second); at 30x, 3 s of samples
10 times a second (fewer while the consumer waits for a later tick: ``hand_over``)."""
UNPACED_CHUNK_S = 60.0
"""Simulated seconds per batch when running as fast as possible."""


class SimulatedSensor:
    """The scripted wearer, delivered like a sensor.

    Args:
        wearer: the simulated wearer (its settings choose seed, rate, impairments, start time).
        speed: simulated seconds per wall-clock second; None = as fast as possible.

    Attributes:
        status: link facts; always connected while open (radio gaps simply deliver nothing).
        buzzes: every ``(t_s, level)`` the daemon asked the (virtual) buzzer for.
        hand_over: the consumer's next hand-over (the daemon sets it): batches before it are
            held and go out with the one that reaches it (:class:`~slouchd.sensors.base.HandOver`).
    """

    def __init__(self, wearer: SimulatedWearer, *, speed: float | None = 1.0) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed = {speed}: must be > 0 (or None for as fast as possible)")
        self.wearer = wearer
        self.speed = speed
        self.status = SensorStatus()
        self.buzzes: list[tuple[float, int]] = []
        self._last_t_s = wearer.settings.start_s
        self.hand_over: HandOver | None = None

    async def __aenter__(self) -> SimulatedSensor:
        self.status.connected = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.status.connected = False

    def __aiter__(self) -> AsyncIterator[SampleBatch]:
        return self._deliver()

    async def _deliver(self) -> AsyncIterator[SampleBatch]:
        loop = asyncio.get_running_loop()
        start_wall = loop.time()
        start_s = self.wearer.settings.start_s
        spp = self.wearer.settings.samples_per_packet
        chunk_s = UNPACED_CHUNK_S if self.speed is None else self.speed * TICK_S
        held: list[SampleBatch] = []
        for batch in self.wearer.batches(chunk_s):
            ho = None if self.speed is None else self.hand_over
            if ho is not None and float(batch.t_s[-1]) / DECISION_TICK_S < ho.due_k:
                held.append(batch)  # the consumer waits for a later tick: no wake-up for it
                continue
            if held:
                held.append(batch)
                batch = SampleBatch.concat(held)
                held = []
            if self.speed is None:
                await asyncio.sleep(0)  # let the rest of the daemon run between batches
            else:
                # A batch arrives when its last sample would have, on the wake grid all paced
                # sources share (one event-loop wake-up per tick for all simulated wearers).
                due = start_wall + (batch.t_s[-1] - start_s) / self.speed
                await asyncio.sleep(max(on_wake_grid(due) - loop.time(), 0.0))
            self.status.packets += len(batch) // spp
            self.status.samples += len(batch)
            self._last_t_s = float(batch.t_s[-1])
            yield batch

    async def buzz(self, level: int) -> bool:
        """Record a buzz of ``level`` (1..5) at the latest sample time; the virtual buzzer always works."""
        self.buzzes.append((self._last_t_s, level))
        return True
