"""The simulated wearer: scripted days turned into delivered radio packets, and ground truth."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from slouchd.model import SampleBatch
from slouchd.sensors.simulation.motion import DayMotion
from slouchd.sensors.simulation.script import CLEAR_SLOUCH_MIN_DEG, CLEAR_SLOUCH_MIN_HOLD_S, Episode
from slouchd.sensors.simulation.settings import SimSettings
from slouchd.sensors.simulation.vibration import WINDOW_S, envelope, shaped_noise

_BLOCK_S = 60.0
"""Samples are made in blocks of about this many seconds (whole packets), each with its own
seeded noise, so memory stays small and any way of reading gives the same values."""

_TAGS = {"noise": 1, "radio": 2, "bias": 3, "gaps": 4, "vib_env": 5, "vib_noise": 6}
"""Separate random streams per purpose, so e.g. changing the drop rate leaves the noise alone."""


@dataclass
class _Block:
    """One block of delivered samples, with each sample's true time (seconds after start)."""

    t_s: np.ndarray  # timestamps as delivered (start_s + true arrival + jitter - in-packet offset)
    true_s: np.ndarray  # true sample times, seconds after the first sample
    sensor_s: np.ndarray  # the sensor's own clock: sample count / nominal rate
    acc_g: np.ndarray
    gyro_dps: np.ndarray | None
    packet_starts: np.ndarray  # index of each delivered packet's first sample


class SimulatedWearer:
    """A seeded scripted day (or an endless run of days) of a person wearing the sensor.

    Args:
        settings: what to simulate; see :class:`SimSettings`.
    """

    def __init__(self, settings: SimSettings | None = None) -> None:
        self.settings = settings = settings or SimSettings()
        # The sensor's clock may run a little off its nominal rate: samples come at rate_hz
        # (true time) while the sensor and its packets believe in settings.rate_hz.
        self.rate_hz = settings.rate_hz * (1.0 + settings.clock_error_ppm * 1e-6)
        spp = settings.samples_per_packet
        self.samples_per_day = spp * math.ceil(settings.day_s * self.rate_hz / spp)
        self.day_length_s = self.samples_per_day / self.rate_hz
        self.block_samples = spp * max(1, round(_BLOCK_S * self.rate_hz / spp))
        self._days: dict[int, DayMotion] = {}
        self._gaps: dict[int, list[Episode]] = {}
        self._vib_env: dict[int, np.ndarray] = {}
        self._vib_seg: dict[tuple[int, int], np.ndarray] = {}
        rng = np.random.default_rng([settings.seed, _TAGS["bias"]])
        self.acc_bias_g = settings.acc_bias_g * rng.uniform(-1, 1, 3)
        self.gyro_bias_dps = settings.gyro_bias_dps * rng.uniform(-1, 1, 3)

    # -- the script ------------------------------------------------------------------------

    def day(self, k: int) -> DayMotion:
        """The script of day ``k`` (0 = the first), built on first use (deterministic, so rebuilt
        if asked again). Only two are kept: the one being played and its neighbour across the
        midnight a batch may straddle, so a wearer looping for weeks holds constant memory."""
        if k not in self._days:
            s = self.settings
            if len(self._days) >= 2:
                self._days.pop(max(self._days, key=lambda d: abs(d - k)))  # the farthest
            self._days[k] = DayMotion(s.seed + k, self.day_length_s, s.inclination_deg,
                                      s.twist_deg, s.mount, s.restick_deg, s.fast_moves)
        return self._days[k]

    @property
    def episodes(self) -> list[Episode]:
        """Ground truth of day 0: consecutive episodes covering the whole day."""
        return list(self.day(0).episodes)

    def episodes_of_day(self, k: int) -> list[Episode]:
        """Ground truth of day ``k``, times relative to the first sample of day 0."""
        off = k * self.day_length_s
        return [replace(e, start_s=e.start_s + off, end_s=e.end_s + off) for e in self.day(k).episodes]

    def radio_gaps_of_day(self, k: int) -> list[Episode]:
        """Radio gaps (no packets at all) of day ``k``, as ``gap`` episodes, times relative to the
        first sample of day 0."""
        if k not in self._gaps:
            s = self.settings
            rng = np.random.default_rng([s.seed, _TAGS["gaps"], k])
            n = rng.poisson(s.gaps_per_hour * self.day_length_s / 3600.0)
            starts = np.sort(rng.uniform(120.0, self.day_length_s - s.gap_max_s, n))
            gaps = []
            end = -1.0
            for start in starts.tolist():
                if start <= end:
                    continue
                end = start + float(rng.uniform(s.gap_min_s, s.gap_max_s))
                off = k * self.day_length_s
                gaps.append(Episode(start + off, end + off, "gap", float("nan"), float("nan")))
            if len(self._gaps) >= 2:
                self._gaps.pop(max(self._gaps, key=lambda d: abs(d - k)))
            self._gaps[k] = gaps
        return self._gaps[k]

    @property
    def radio_gaps(self) -> list[Episode]:
        """Radio gaps of day 0 (they overlap the wearer's episodes)."""
        return self.radio_gaps_of_day(0)

    @property
    def first_clear_slouch(self) -> Episode:
        """The first slouch of at least ``CLEAR_SLOUCH_MIN_DEG`` held ``CLEAR_SLOUCH_MIN_HOLD_S``."""
        for e in self.episodes:
            if (e.kind == "slouch" and e.flexion_deg >= CLEAR_SLOUCH_MIN_DEG
                    and e.end_s - e.plateau_start_s >= CLEAR_SLOUCH_MIN_HOLD_S):
                return e
        raise AssertionError("every scripted day has a clear slouch")  # pragma: no cover

    @property
    def stick_on(self) -> list[tuple[float, float]]:
        """(inclination_deg, twist_deg) of each wearing session of day 0, in order."""
        return list(self.day(0).stick_on)

    def truth(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """True trunk flexion and lateral lean (degrees, before noise; NaN while not worn) and the
        episode kind at sample-clock times ``t_s`` (the same clock as ``SampleBatch.t_s``)."""
        rel = np.asarray(t_s, dtype=float) - self.settings.start_s
        flex, lat = np.full(rel.shape, np.nan), np.full(rel.shape, np.nan)
        label = np.full(rel.shape, "", dtype="<U16")
        days = np.floor(rel / self.day_length_s).astype(int)
        for k in np.unique(days):
            m = days == k
            f, la, lb = self.day(int(max(k, 0))).truth(rel[m] - k * self.day_length_s)
            flex[m], lat[m], label[m] = f, la, lb
        return flex, lat, label

    # -- samples ---------------------------------------------------------------------------

    def _n_days(self) -> float:
        return math.inf if self.settings.loop else 1

    def _clean(self, day: int, first: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Sample times (s from the day's start) and noise-free (acc g, gyro deg/s) for samples
        ``first..first+n`` of day ``day``."""
        t = (first + np.arange(n)) / self.rate_hz
        acc, gyro = self.day(day).imu(t, gyro=self.settings.gyro)
        return t, acc, gyro

    def desk_vibration(self, day: int, first: int, n: int) -> np.ndarray:
        """The desk-work vibration (specific force, g, (n, 3)) of samples ``first..first+n`` of day
        ``day``, zero where the wearer is not seated with the sensor on.

        The noise is overlap-added from segments of two blocks under a sine window (so it is
        seamless across blocks and the same whichever way the day is read); its RMS follows an
        envelope drawn per 2 s window for the whole day."""
        nb = self.block_samples
        b, off = divmod(first, nb)
        i = off + np.arange(n)
        phase = np.pi * (i + 0.5) / (2 * nb)
        noise = (self._vib_segment(day, b)[i] * np.sin(phase)[:, None]
                 + self._vib_segment(day, b - 1)[nb + i] * np.cos(phase)[:, None])
        if day not in self._vib_env:
            if len(self._vib_env) >= 2:
                self._vib_env.pop(max(self._vib_env, key=lambda d: abs(d - day)))
            rng = np.random.default_rng([self.settings.seed, _TAGS["vib_env"], day])
            self._vib_env[day] = envelope(rng, math.ceil(self.day_length_s / WINDOW_S) + 1)
        env = self._vib_env[day]
        t = (first + np.arange(n)) / self.rate_hz
        rms = np.interp(t, (np.arange(env.size) + 0.5) * WINDOW_S, env)
        dm = self.day(day)
        seated = (dm.channel("worn", t) * (1.0 - dm.channel("desk", t)) * (1.0 - dm.channel("stand", t))
                  * (1.0 - dm.channel("gait", t)))
        return noise * (rms * np.clip(seated, 0.0, 1.0))[:, None]

    def _vib_segment(self, day: int, j: int) -> np.ndarray:
        """Vibration noise segment ``j`` of day ``day`` (two blocks long, starting at block ``j``)."""
        key = (day, j)
        if key not in self._vib_seg:
            if len(self._vib_seg) >= 4:
                self._vib_seg.pop(next(iter(self._vib_seg)))
            rng = np.random.default_rng([self.settings.seed, _TAGS["vib_noise"], day, j + 1])
            self._vib_seg[key] = shaped_noise(rng, 2 * self.block_samples, self.rate_hz)
        return self._vib_seg[key]

    def _blocks(self, *, jitter: bool = True, duplicates: bool = True, start_s: float = 0.0,
                end_s: float = math.inf) -> Iterator[_Block]:
        """Delivered samples block by block; only packets whose first sample's true time is in
        ``[start_s, end_s)`` (seconds after the first sample)."""
        s = self.settings
        spp = s.samples_per_packet
        day = max(0, int(start_s // self.day_length_s))
        while day < self._n_days() and day * self.day_length_s < end_s:
            gaps = self.radio_gaps_of_day(day)
            gap_lo = np.array([g.start_s for g in gaps]) - day * self.day_length_s
            gap_hi = np.array([g.end_s for g in gaps]) - day * self.day_length_s
            for b, first in enumerate(range(0, self.samples_per_day, self.block_samples)):
                n = min(self.block_samples, self.samples_per_day - first)
                block_start = day * self.day_length_s + first / self.rate_hz
                if block_start >= end_s:
                    return
                if block_start + n / self.rate_hz <= start_s:
                    continue
                t, acc, gyro = self._clean(day, first, n)
                if s.desk_vibration:
                    acc = acc + self.desk_vibration(day, first, n)
                noise = np.random.default_rng([s.seed, _TAGS["noise"], day, b])
                acc = acc + self.acc_bias_g + noise.normal(0.0, s.acc_noise_g, acc.shape)
                if gyro is not None:
                    gyro = gyro + self.gyro_bias_dps + noise.normal(0.0, s.gyro_noise_dps, gyro.shape)
                if s.acc_lsb_g:
                    acc = np.round(acc / s.acc_lsb_g) * s.acc_lsb_g
                if gyro is not None and s.gyro_lsb_dps:
                    gyro = np.round(gyro / s.gyro_lsb_dps) * s.gyro_lsb_dps
                radio = np.random.default_rng([s.seed, _TAGS["radio"], day, b])
                n_pk = n // spp
                keep = radio.random(n_pk) >= s.drop_prob
                dup = radio.random(n_pk) < s.dup_prob
                lag = radio.uniform(0.0, s.jitter_s, n_pk)
                last_t = t[np.minimum(np.arange(n_pk) * spp + spp - 1, n - 1)]
                first_t = t[np.arange(n_pk) * spp] + day * self.day_length_s
                keep &= (first_t >= start_s) & (first_t < end_s)
                if len(gaps):
                    j = np.searchsorted(gap_lo, last_t, side="right") - 1
                    keep &= ~((j >= 0) & (last_t < gap_hi[np.maximum(j, 0)]))
                copies = keep.astype(int) * (1 + (dup & duplicates))
                pk = np.repeat(np.arange(n_pk), copies)
                idx = (pk[:, None] * spp + np.arange(spp)).ravel()
                starts = np.arange(len(pk)) * spp  # blocks and days hold whole packets
                true_s = t[idx] + day * self.day_length_s
                # Stamped on arrival of the packet's last sample, the others at nominal spacing
                # before it (all a host can do without a sensor clock).
                in_packet = (spp - 1 - np.tile(np.arange(spp), len(pk))) / s.rate_hz
                stamp = s.start_s + np.repeat(true_s[spp - 1::spp], spp) - in_packet
                if jitter:
                    stamp = stamp + np.repeat(lag[pk], spp)
                sensor_s = (day * self.samples_per_day + first + idx) / s.rate_hz
                yield _Block(stamp, true_s, sensor_s, acc[idx], None if gyro is None else gyro[idx],
                             starts)
            day += 1

    def packets(self, start_s: float = 0.0, end_s: float = math.inf) -> Iterator[SampleBatch]:
        """One :class:`SampleBatch` per delivered radio packet, with every impairment applied.

        Args:
            start_s: skip packets that start before this time, seconds after the first sample.
            end_s: stop before packets that start at or after this time (default: the end of the
                day, or never for a looping wearer).
        """
        for blk in self._blocks(start_s=start_s, end_s=end_s):
            ends = np.append(blk.packet_starts[1:], len(blk.t_s))
            for a, b in zip(blk.packet_starts, ends, strict=True):
                yield SampleBatch(blk.t_s[a:b], blk.acc_g[a:b],
                                  None if blk.gyro_dps is None else blk.gyro_dps[a:b])

    def batches(self, chunk_s: float = 60.0, start_s: float = 0.0,
                end_s: float = math.inf) -> Iterator[SampleBatch]:
        """The same delivered samples as :meth:`packets`, joined into chunks of about ``chunk_s``
        seconds of recording (split at packet boundaries): the fast path for replay and benchmarks.
        ``start_s``/``end_s`` select a window as in :meth:`packets`."""
        pending: list[SampleBatch] = []
        chunk = 0
        for blk in self._blocks(start_s=start_s, end_s=end_s):
            if len(blk.t_s) == 0:
                continue
            # Chunk of each packet by its first sample's true time.
            pk_chunk = np.floor(blk.true_s[blk.packet_starts] / chunk_s).astype(int)
            bounds = np.searchsorted(pk_chunk, np.unique(pk_chunk), side="left")
            for i, lo_pk in enumerate(bounds):
                c = pk_chunk[lo_pk]
                a = blk.packet_starts[lo_pk]
                b = blk.packet_starts[bounds[i + 1]] if i + 1 < len(bounds) else len(blk.t_s)
                if c != chunk and pending:
                    yield SampleBatch.concat(pending)
                    pending = []
                chunk = c
                pending.append(SampleBatch(blk.t_s[a:b], blk.acc_g[a:b],
                                           None if blk.gyro_dps is None else blk.gyro_dps[a:b]))
        if pending:
            yield SampleBatch.concat(pending)

    def recording(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
        """(t, true_t, acc g, gyro deg/s) as a recorder keeps them: lost packets and radio gaps
        missing, duplicates removed; ``t`` is the sensor's clock (sample count / nominal rate,
        seconds from the first sample, no jitter), ``true_t`` the true time of each sample."""
        for blk in self._blocks(jitter=False, duplicates=False):
            yield blk.sensor_s, blk.true_s, blk.acc_g, blk.gyro_dps

