"""Per-wearer sample buffer: delivery (however the sensor packetises) decoupled from processing.

A BLE sensor may notify once per sample (micro:bit, Thingy:52, WitMotion: 50-100 calls a second)
or once per 36 samples (Polar H10). The tracker decides on a fixed 0.1 s grid of sample time
(``TICK_S``) and a tick is only decided once the first sample of a later tick has arrived, so
running it on every notification buys nothing: the buffer keeps the samples (references to the
packets' arrays, no copy) and hands them over, joined, only when they complete a decision tick.
The tracker then runs at most ``10 / ticks`` times a second per wearer, whatever the packet size.

Handing over at the first sample of a new tick is exactly when the tracker could decide that
tick, so batching adds no delay to alerts; the tracker's output does not depend on how its input
is cut (tested), so live stays bit-for-bit equal to replay.
"""

from __future__ import annotations

import math

import numpy as np

from slouchd.model import SampleBatch
from slouchd.posture.filters import TICK_S

MAX_HELD_SAMPLES = 512
"""Hand over at this many samples whatever their times say (times that go backwards or stand
still never complete a tick; the tracker counts and drops those samples itself)."""


class SampleBuffer:
    """Samples waiting for the next completed decision tick.

    Args:
        ticks: hand over once the newest sample is this many ticks past the last one handed
            over (1 = every 0.1 s tick, the lowest latency; 2 = every 0.2 s, cheaper).
        tick_s: the tracker's decision tick, seconds (the grid is ``floor(t_s / tick_s)``).
    """

    __slots__ = ("_acc", "_due_k", "_gyro", "_n", "_no_gyro", "_t", "tick_s", "ticks")

    def __init__(self, ticks: int = 1, tick_s: float = TICK_S) -> None:
        if ticks < 1:
            raise ValueError(f"ticks must be >= 1, got {ticks}")
        self.ticks = ticks
        self.tick_s = tick_s
        self._t: list[np.ndarray] = []
        self._acc: list[np.ndarray] = []
        self._gyro: list[np.ndarray | None] = []
        self._n = 0
        self._no_gyro = False
        self._due_k = -math.inf  # hand over when the newest sample's tick index reaches this

    def __len__(self) -> int:
        """Samples held."""
        return self._n

    def add(self, batch: SampleBatch) -> tuple[SampleBatch | None, SampleBatch | None]:
        """Hold ``batch``; return up to two batches to process now, in order.

        The first is what was held before a switch of gyro on/off (kept apart: joining would
        drop the gyro of the other part); the second is everything held once a tick completes.
        """
        if batch.t_s.shape[0] == 0:
            return None, None
        no_gyro = batch.gyro_dps is None
        before = self.take() if (self._n and no_gyro != self._no_gyro) else None
        self._t.append(batch.t_s)
        self._acc.append(batch.acc_g)
        self._gyro.append(batch.gyro_dps)
        self._n += batch.t_s.shape[0]
        self._no_gyro = no_gyro
        last = float(batch.t_s[-1])
        k = last / self.tick_s  # the tracker's own grid: np.floor(t / TICK_S), same IEEE division
        finite = math.isfinite(k)
        if finite and k < self._due_k and self._n < MAX_HELD_SAMPLES:
            return before, None
        if finite:
            self._due_k = math.floor(k) + self.ticks
        # (A non-finite time completes no tick: hand it over now for the tracker to count and drop.)
        return before, self.take()

    def take(self) -> SampleBatch | None:
        """Everything held, joined (no copy when it is one packet); None when empty."""
        if not self._n:
            return None
        if len(self._t) == 1:
            out = SampleBatch(self._t[0], self._acc[0], self._gyro[0])
        else:
            gyro = None if self._no_gyro else np.concatenate(self._gyro)  # type: ignore[arg-type]
            out = SampleBatch(np.concatenate(self._t), np.concatenate(self._acc), gyro)
        self._t.clear()
        self._acc.clear()
        self._gyro.clear()
        self._n = 0
        return out
