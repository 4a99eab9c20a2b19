"""Batch signal conditioning: timestamp cleaning, gap splitting, a stateful low-pass filter and the
decimation of raw samples into fixed 0.1 s *ticks*.

Everything here works on whole arrays. Filter state is carried from one batch to the next, so
splitting a stream into batches at any point gives the same output as processing it in one go
(the property tests pin that down).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

TICK_S = 0.1
"""Length of one decision tick, seconds: the posture engine decides at 10 Hz whatever the sensor rate."""

GRAVITY_CUTOFF_HZ = 2.0
"""Low-pass corner for the gravity estimate, Hz: above breathing and trunk sway, below footsteps."""

RATE_CHANGE = 0.15
"""Redesign the filter when the measured sample rate moves by more than this fraction."""

SCALAR_MAX_SAMPLES = 128
"""Up to this many samples per call, the tick summaries run in float maths (the same operations in
the same order as numpy's sums, so the same output): for the live daemon's calls (a tick, or a
calm second: 50-100 samples), numpy call overhead costs more than the arithmetic
(``bench/tracker_tick.py``). (The low-pass always runs in float maths.)"""

SCALAR_MAX_TICKS = 11
"""Up to this many new ticks per call (the live path: a tick, or a calm second's ten), the
orientation, activity and tracker steps use float maths instead of whole-array numpy."""


def increasing_mask(t_s: np.ndarray, last_t_s: float) -> np.ndarray:
    """Which samples to keep: those later than every sample before them (and than ``last_t_s``).

    Duplicated and out-of-order packets (a BLE reconnect can replay a few) are dropped.
    """
    if t_s.size == 0:
        return np.zeros(0, dtype=bool)
    before = np.maximum.accumulate(np.concatenate(([last_t_s], t_s[:-1])))
    return t_s > before


def gap_starts(t_s: np.ndarray, last_t_s: float, gap_s: float) -> np.ndarray:
    """Indices where a new contiguous segment starts (the time since the previous sample exceeds ``gap_s``).

    Index 0 is included when the first sample comes more than ``gap_s`` after ``last_t_s``
    (``last_t_s = -inf`` means nothing came before, which also counts as a start).
    """
    prev = np.concatenate(([last_t_s], t_s[:-1]))
    return np.flatnonzero((t_s - prev) > gap_s)


class RateEstimator:
    """The sample rate actually delivered, from the median of recent sample intervals (Hz).

    The median shrugs off jitter and single dropped packets; the history spans batches.
    """

    def __init__(self, history: int = 256) -> None:
        self._history = history
        self.reset()

    def update(self, dt_s: np.ndarray | list[float]) -> float | None:
        """Add sample intervals (seconds); the rate over the last ``history`` of them (Hz), or None
        while there are fewer than 4."""
        dts, ordered = self._dts, self._sorted
        new = dt_s.tolist() if isinstance(dt_s, np.ndarray) else dt_s
        # Kept in arrival order (to forget the oldest) and sorted (the median without a sort).
        for dt in new[-self._history:]:
            if len(dts) == self._history:
                del ordered[bisect.bisect_left(ordered, dts.popleft())]
            dts.append(dt)
            bisect.insort(ordered, dt)
        n = len(ordered)
        if n < 4:
            return None
        mid = n // 2
        median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0
        return 1.0 / median

    def reset(self) -> None:
        self._dts: deque[float] = deque()
        self._sorted: list[float] = []


def butter_lowpass_sos(order: int, cutoff_hz: float, rate_hz: float) -> np.ndarray:
    """Digital Butterworth low-pass as second-order sections, shape (order // 2, 6).

    The bilinear transform with pre-warping, section by section, as ``scipy.signal.butter(order,
    cutoff_hz, fs=rate_hz, output="sos")`` designs it (equal to ~1e-16 for order 2; for higher
    orders the same filter with each section's DC gain at 1). Written out because importing
    ``scipy.signal`` for one design costs a live daemon ~70 MB of memory and ~0.9 s of start-up.

    Args:
        order: filter order, even, >= 2.
        cutoff_hz: -3 dB frequency, Hz (below rate_hz / 2).
        rate_hz: sample rate, Hz.
    """
    if order < 2 or order % 2:
        raise ValueError(f"order = {order}: must be even and >= 2")
    if not 0.0 < cutoff_hz < rate_hz / 2.0:
        raise ValueError(f"cutoff_hz = {cutoff_hz}: must be in (0, {rate_hz / 2.0})")
    k = math.tan(math.pi * cutoff_hz / rate_hz)  # pre-warped analogue cutoff
    rows = []
    for i in range(order // 2):
        q = 1.0 / (2.0 * math.cos((2 * i + 1) * math.pi / (2 * order)))  # the pole pair's Q
        norm = 1.0 / (1.0 + k / q + k * k)
        b0 = k * k * norm
        rows.append([b0, 2.0 * b0, b0, 1.0, 2.0 * (k * k - 1.0) * norm, (1.0 - k / q + k * k) * norm])
    return np.array(rows)


def steady_state_zi(sos: np.ndarray) -> np.ndarray:
    """Per-section state (n_sections, 2) of the transposed direct form II at a constant input of 1.

    Each section of :func:`butter_lowpass_sos` has unit DC gain, so the state is
    ``[1 - b0, b2 - a2]`` (what ``scipy.signal.sosfilt_zi`` gives for such sections).
    """
    return np.array([[1.0 - row[0], row[2] - row[5]] for row in sos])


class LowPass:
    """A Butterworth low-pass over (n, k) arrays with state carried across calls (as ``sosfilt`` + ``zi``).

    Designed for the measured rate; :meth:`retune` redesigns it when the rate changes and restarts
    it at steady state on the last output, so the output does not jump.
    """

    def __init__(self, cutoff_hz: float = GRAVITY_CUTOFF_HZ, order: int = 2) -> None:
        self.cutoff_hz = cutoff_hz
        self.order = order
        self.rate_hz: float | None = None
        self._sos: np.ndarray | None = None
        self._sos_rows: list[list[float]] = []
        # Filter state as nested lists [section][0 or 1][column] (what sosfilt's ``zi`` holds), and
        # the last output row: plain floats, because the live path runs on a few samples a call.
        self._zi: list[list[list[float]]] | None = None
        self._last: list[float] | None = None

    def retune(self, rate_hz: float) -> None:
        """Design for ``rate_hz`` unless the current design is within RATE_CHANGE of it."""
        if self.rate_hz is not None and abs(rate_hz - self.rate_hz) <= RATE_CHANGE * self.rate_hz:
            return
        self.rate_hz = rate_hz
        cutoff = min(self.cutoff_hz, 0.4 * rate_hz)  # stay well below Nyquist for slow sensors
        self._sos = butter_lowpass_sos(self.order, cutoff, rate_hz)
        self._sos_rows = self._sos.tolist()
        if self._last is not None:
            self.reset(self._last)

    def reset(self, x0: np.ndarray | list[float]) -> None:
        """Start at steady state on the value ``x0`` (shape (k,)): after a gap, or a new design."""
        assert self._sos is not None
        x = np.asarray(x0, dtype=float)
        self._zi = (steady_state_zi(self._sos)[:, :, None] * x[None, None, :]).tolist()
        self._last = x.tolist()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` (n, k) along axis 0, continuing from the previous call."""
        if x.shape[0] == 0:
            return x.astype(float)
        if self._zi is None:
            self.reset(x[0])
        assert self._sos is not None
        y = self._filter(x)
        self._last = y[-1].tolist()
        return y

    def columns(self, cols: list[list[float]]) -> list[list[float]]:
        """Filter columns given as lists (one per axis), continuing from the previous call: the
        live path's form of ``__call__`` (same arithmetic, no arrays)."""
        if not cols or not cols[0]:
            return [list(c) for c in cols]
        if self._zi is None:
            self.reset(np.array([c[0] for c in cols]))
        out = self._filter_columns(cols)
        self._last = [c[-1] for c in out]
        return out

    def _filter(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.array(self._filter_columns(x.T.tolist()), dtype=float).T)

    def _filter_columns(self, cols: list[list[float]]) -> list[list[float]]:
        """``scipy.signal.sosfilt`` with ``zi`` (transposed direct form II, section by section) in
        float maths, one column and section at a time: the same operations in the same order as
        scipy's, so the same output to the bit (tested) whether the stream comes a packet or a
        minute at a time. Written out so that neither the live daemon nor ``slouchd replay``
        imports ``scipy.signal`` (~0.9 s of start-up and ~70 MB); the loop costs about 0.1 us
        per sample and axis."""
        z = self._zi  # [section][0 or 1][column], updated in place
        assert z is not None
        cols = list(cols)
        for c, col in enumerate(cols):
            for s, (b0, b1, b2, _a0, a1, a2) in enumerate(self._sos_rows):
                zs = z[s]
                z0, z1 = zs[0][c], zs[1][c]
                out: list[float] = []
                append = out.append
                for x_cur in col:
                    y = b0 * x_cur + z0
                    z0 = b1 * x_cur - a1 * y + z1
                    z1 = b2 * x_cur - a2 * y
                    append(y)
                zs[0][c], zs[1][c] = z0, z1
                col = out
            cols[c] = col
        return cols


@dataclass(frozen=True, slots=True)
class Ticks:
    """Raw samples summarised per 0.1 s tick (tick ``k`` covers ``[k*TICK_S, (k+1)*TICK_S)``).

    The fields are arrays, or plain lists (rows of (x, y, z)) when :func:`summarise_columns`
    made them for the live path.

    Attributes:
        k: tick indices, consecutive within one segment, shape (m,).
        count: samples in each tick (0 for a tick inside a short drop, whose values are held).
        acc_g: mean raw acceleration per tick, g, (m, 3).
        grav_g: mean low-passed acceleration per tick (the gravity estimate), g, (m, 3).
        dyn_g: RMS of acceleration minus its low-pass (body motion), g, (m,).
        gyro_dps: mean angular rate per tick, deg/s, (m, 3), or None.
    """

    k: Any
    count: Any
    acc_g: Any
    grav_g: Any
    dyn_g: Any
    gyro_dps: Any

    def __len__(self) -> int:
        return len(self.k)

    @property
    def t_end_s(self) -> np.ndarray:
        """The time each tick closes, seconds: when the live daemon knows its value."""
        return (np.asarray(self.k) + 1) * TICK_S


def summarise_ticks(k: np.ndarray, acc: np.ndarray, lp: np.ndarray, gyro: np.ndarray | None) -> Ticks:
    """Group samples (already in time order, ``k`` their tick index) into consecutive ticks.

    Ticks without samples between two populated ones (a drop shorter than a gap) hold the
    previous tick's values so the 10 Hz stream stays regular.
    """
    if k.size <= SCALAR_MAX_SAMPLES:
        return _summarise_scalar(k, acc, lp, gyro)
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    counts = np.diff(np.concatenate((starts, [k.size])))
    kk = k[starts]
    acc_m = np.add.reduceat(acc, starts, axis=0) / counts[:, None]
    lp_m = np.add.reduceat(lp, starts, axis=0) / counts[:, None]
    dyn = np.sqrt(np.add.reduceat(np.sum((acc - lp) ** 2, axis=1), starts) / counts)
    gyro_m = None if gyro is None else np.add.reduceat(gyro, starts, axis=0) / counts[:, None]
    full = np.arange(kk[0], kk[-1] + 1)
    if full.size != kk.size:
        src = np.searchsorted(kk, full, side="right") - 1  # hold the last populated tick
        filled = np.zeros(full.size, dtype=int)
        filled[np.searchsorted(full, kk)] = counts
        acc_m, lp_m, dyn = acc_m[src], lp_m[src], dyn[src]
        gyro_m = None if gyro_m is None else gyro_m[src]
        kk, counts = full, filled
    return Ticks(kk, counts, acc_m, lp_m, dyn, gyro_m)


def bridge_ticks(prev: Ticks | None, ticks: Ticks) -> Ticks:
    """``ticks`` preceded by the ticks missing since ``prev`` (the last tick already summarised),
    which hold ``prev``'s values: a short drop that straddles two calls is filled just as
    :func:`summarise_ticks` fills one inside a call, so the output does not depend on where the
    stream was cut. ``prev`` is None at the start of a segment (nothing to hold)."""
    if prev is None or len(ticks) == 0 or (prev.gyro_dps is None) != (ticks.gyro_dps is None):
        return ticks
    last = int(prev.k[-1])
    missing = int(ticks.k[0]) - last - 1
    if missing <= 0:
        return ticks

    def held(before: Any, after: Any) -> np.ndarray:
        return np.concatenate((np.repeat(np.asarray(before, dtype=float)[-1:], missing, axis=0),
                               np.asarray(after, dtype=float)))

    return Ticks(np.concatenate((np.arange(last + 1, last + 1 + missing, dtype=np.int64),
                                 np.asarray(ticks.k, dtype=np.int64))),
                 np.concatenate((np.zeros(missing, dtype=np.int64), np.asarray(ticks.count, dtype=np.int64))),
                 held(prev.acc_g, ticks.acc_g), held(prev.grav_g, ticks.grav_g),
                 held(prev.dyn_g, ticks.dyn_g),
                 None if ticks.gyro_dps is None else held(prev.gyro_dps, ticks.gyro_dps))


def _summarise_scalar(k: np.ndarray, acc: np.ndarray, lp: np.ndarray, gyro: np.ndarray | None) -> Ticks:
    """:func:`summarise_ticks` for a few samples (a radio packet or two) in float maths.

    Sums follow numpy's order (``np.add.reduceat`` adds the first value of a run to a pairwise sum
    of the rest; a row's three squares are summed left to right), so the ticks are the same to the
    last bit as the array version's."""
    gyro_c = None if gyro is None else gyro.T.tolist()
    t = summarise_columns(k.tolist(), acc.T.tolist(), lp.T.tolist(), gyro_c)
    return Ticks(np.array(t.k, dtype=np.int64), np.array(t.count, dtype=np.int64),
                 np.array(t.acc_g, dtype=float).reshape(-1, 3),
                 np.array(t.grav_g, dtype=float).reshape(-1, 3), np.array(t.dyn_g, dtype=float),
                 None if t.gyro_dps is None else np.array(t.gyro_dps, dtype=float).reshape(-1, 3))


def summarise_columns(kl: list[int], acc_c: list[list[float]], lp_c: list[list[float]],
                      gyro_c: list[list[float]] | None) -> Ticks:
    """:func:`summarise_ticks` on plain lists (tick index per sample; columns x, y, z of raw and
    low-passed acceleration and of the gyro), giving a :class:`Ticks` of lists: the live path's
    form, the same sums to the bit."""
    sq = []
    for ax, ay, az, lx, ly, lz in zip(*acc_c, *lp_c, strict=True):
        dx, dy, dz = ax - lx, ay - ly, az - lz
        sq.append(dx * dx + dy * dy + dz * dz)
    ticks: list[int] = []
    counts: list[int] = []
    acc_m: list[list[float]] = []
    lp_m: list[list[float]] = []
    dyn: list[float] = []
    gyro_m: list[list[float]] = []
    n = len(kl)
    a = 0
    while a < n:
        tick = kl[a]
        if ticks and tick > ticks[-1] + 1:
            # Ticks inside a short drop hold the last populated tick's values.
            for missing in range(ticks[-1] + 1, tick):
                ticks.append(missing)
                counts.append(0)
                acc_m.append(acc_m[-1])
                lp_m.append(lp_m[-1])
                dyn.append(dyn[-1])
                if gyro_c is not None:
                    gyro_m.append(gyro_m[-1])
        b = a + 1
        while b < n and kl[b] == tick:
            b += 1
        c = b - a
        ticks.append(tick)
        counts.append(c)
        acc_m.append([_run_sum(col, a, c) / c for col in acc_c])
        lp_m.append([_run_sum(col, a, c) / c for col in lp_c])
        dyn.append(math.sqrt(_run_sum(sq, a, c) / c))
        if gyro_c is not None:
            gyro_m.append([_run_sum(col, a, c) / c for col in gyro_c])
        a = b
    return Ticks(ticks, counts, acc_m, lp_m, dyn, None if gyro_c is None else gyro_m)


def _run_sum(v: list[float], start: int, n: int) -> float:
    """``np.add.reduce`` of ``v[start:start + n]``: the first value plus numpy's pairwise sum of the rest."""
    return v[start] + _pairwise_sum(v, start + 1, n - 1) if n > 1 else v[start]


def _pairwise_sum(v: list[float], start: int, n: int) -> float:
    """numpy's pairwise summation of ``v[start:start + n]`` (eight accumulators per block of 128)."""
    if n < 8:
        res = -0.0
        for i in range(start, start + n):
            res += v[i]
        return res
    if n <= 128:
        r = v[start:start + 8]
        i = 8
        while i < n - n % 8:
            for j in range(8):
                r[j] += v[start + i + j]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for j in range(start + i, start + n):
            res += v[j]
        return res
    half = n // 2
    half -= half % 8
    return _pairwise_sum(v, start, half) + _pairwise_sum(v, start + half, n - half)
