"""Per-wearer sample buffer: delivery (however the sensor packetises) decoupled from processing.

A BLE sensor may notify once per sample (micro:bit, Thingy:52, WitMotion: 50-100 calls a second)
or once per 36 samples (Polar H10). The tracker decides on a fixed 0.1 s grid of sample time
(``TICK_S``) and a tick is only decided once the first sample of a later tick has arrived, so
running it on every notification buys nothing: the buffer keeps the samples (references to the
packets' arrays, no copy) and hands them over, joined, only when they complete a decision tick.
The tracker then runs at most ``10 / ticks`` times a second per wearer, whatever the packet size.

Handing over at the first sample of a new tick is exactly when the tracker could decide that
tick, so batching adds no delay to alerts; the tracker's output does not depend on how its input
is cut (tested), so live output equals replay output.

Big hand-overs (a 36-sample notification) are cut, at tick boundaries, into pieces the tracker
runs on its plain-float path (``SCALAR_MAX_SAMPLES``, ``SCALAR_MAX_TICKS``), which keeps each
call cheap (docs/performance.md).
"""

from __future__ import annotations

import math

import numpy as np

from slouchd.model import SampleBatch
from slouchd.posture.filters import SCALAR_MAX_SAMPLES, SCALAR_MAX_TICKS, TICK_S

MAX_HELD_SAMPLES = 512
"""Hand over at this many samples whatever their times say (times that go backwards or stand
still never complete a tick; the tracker counts and drops those samples itself)."""

NOTHING: tuple[SampleBatch, ...] = ()


class SampleBuffer:
    """Samples waiting for the next completed decision tick.

    Args:
        ticks: hand over once the newest sample is this many ticks past the last one handed
            over (1 = every 0.1 s tick, the lowest latency; 10 = once a second, cheaper).
        tick_s: the tracker's decision tick, seconds (the grid is ``floor(t_s / tick_s)``).
        piece_samples, piece_ticks: the largest piece handed to the tracker in one call, in
            samples and in ticks (0 = never cut).
    """

    __slots__ = ("_acc", "_due_k", "_gyro", "_last_k", "_n", "_no_gyro", "_t", "_ticks", "piece_samples",
                 "piece_ticks", "tick_s")

    def __init__(self, ticks: int = 1, tick_s: float = TICK_S, piece_samples: int = SCALAR_MAX_SAMPLES,
                 piece_ticks: int = SCALAR_MAX_TICKS) -> None:
        if ticks < 1:
            raise ValueError(f"ticks must be >= 1, got {ticks}")
        self._ticks = ticks
        self.tick_s = tick_s
        self.piece_samples = piece_samples
        self.piece_ticks = piece_ticks
        self._t: list[np.ndarray] = []
        self._acc: list[np.ndarray] = []
        self._gyro: list[np.ndarray | None] = []
        self._n = 0
        self._no_gyro = False
        self._due_k = -math.inf  # hand over when the newest sample's tick index reaches this
        self._last_k = -math.inf  # the tick index of the newest sample handed over

    @property
    def ticks(self) -> int:
        """Hand over once the newest sample is this many ticks past the last hand-over."""
        return self._ticks

    @ticks.setter
    def ticks(self, ticks: int) -> None:
        # Changed between hand-overs (the daemon: 1 while an alert may be due, else 2): the next
        # hand-over moves with it, so going back to 1 takes effect at the very next tick.
        if ticks < 1:
            raise ValueError(f"ticks must be >= 1, got {ticks}")
        self._ticks = ticks
        self._due_k = self._next_due(self._last_k)

    @property
    def due_k(self) -> float:
        """The tick index (``t_s / tick_s``) the newest sample must reach for :meth:`add` to hand
        over (-inf before the first): sources read it to hold samples instead of waking the
        consumer for nothing (:class:`~slouchd.sensors.base.HandOver`)."""
        return self._due_k

    def _next_due(self, k: float) -> float:
        """The first tick index after ``k`` that is a multiple of :attr:`ticks`: hand-overs every
        second tick fall on even ticks, so the one at the first sample of a whole second (which
        decides the tick that closes the second, and its 1 Hz state) is never skipped."""
        if not math.isfinite(k):
            return k
        return (math.floor(k) // self._ticks + 1) * self._ticks

    def __len__(self) -> int:
        """Samples held."""
        return self._n

    def add(self, batch: SampleBatch) -> tuple[SampleBatch, ...]:
        """Hold ``batch``; return the batches to process now, in order (usually none).

        What was held before a switch of gyro on/off is handed over on its own (joining would
        drop the other part's gyro); everything held goes once a tick completes.
        """
        if batch.t_s.shape[0] == 0:
            return NOTHING
        no_gyro = batch.gyro_dps is None
        before = self.take() if (self._n and no_gyro != self._no_gyro) else NOTHING
        self._t.append(batch.t_s)
        self._acc.append(batch.acc_g)
        self._gyro.append(batch.gyro_dps)
        self._n += batch.t_s.shape[0]
        self._no_gyro = no_gyro
        k = float(batch.t_s[-1]) / self.tick_s  # the tracker's own grid: np.floor(t / TICK_S)
        finite = math.isfinite(k)
        if finite and k < self._due_k and self._n < MAX_HELD_SAMPLES:
            return before
        if finite:
            self._last_k = k
            self._due_k = self._next_due(k)
        # (A non-finite time completes no tick: hand it over now for the tracker to count and drop.)
        return before + self.take()

    def take(self) -> tuple[SampleBatch, ...]:
        """Everything held, joined (no copy when it is one small packet) and cut into pieces."""
        if not self._n:
            return NOTHING
        if len(self._t) == 1:
            t, acc, gyro = self._t[0], self._acc[0], self._gyro[0]
        else:
            t, acc = np.concatenate(self._t), np.concatenate(self._acc)
            gyro = None if self._no_gyro else np.concatenate(self._gyro)  # type: ignore[arg-type]
        self._t.clear()
        self._acc.clear()
        self._gyro.clear()
        self._n = 0
        if not self.piece_samples or self._small(t):
            return (SampleBatch(t, acc, gyro),)
        return tuple(SampleBatch(t[a:b], acc[a:b], None if gyro is None else gyro[a:b])
                     for a, b in self._cuts(t))

    def _small(self, t: np.ndarray) -> bool:
        """Few enough samples and ticks for one call (two float divisions: the common case)."""
        if t.shape[0] > self.piece_samples:
            return False
        span = float(t[-1]) / self.tick_s - float(t[0]) / self.tick_s
        return not span >= self.piece_ticks - 1  # NaN: not cut (the tracker drops such samples)

    def _cuts(self, t: np.ndarray) -> list[tuple[int, int]]:
        """Index ranges of at most ``piece_samples`` samples starting at most ``piece_ticks``
        tick boundaries apart (any cut gives the same tracker output; these keep it cheap)."""
        with np.errstate(invalid="ignore"):
            k = np.floor(t / self.tick_s)
        starts = (np.flatnonzero(k[1:] != k[:-1]) + 1).tolist()  # first sample of each new tick
        out: list[tuple[int, int]] = []
        a = 0
        n = t.shape[0]
        i = 0
        while a < n:
            # Up to piece_ticks tick starts after a, and never more than piece_samples samples.
            while i < len(starts) and starts[i] <= a:
                i += 1
            j = i + self.piece_ticks - 1
            b = starts[j] if j < len(starts) else n
            b = min(b, a + self.piece_samples)
            out.append((a, b))
            a = b
        return out
