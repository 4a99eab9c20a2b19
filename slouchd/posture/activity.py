"""What the body is doing, per 0.1 s tick: still, moving, walking, or the sensor is not worn.

All features are rolling windows over the tick stream, computed on whole arrays with cumulative
sums; the last few seconds of inputs are carried between batches so windows span batch edges.

- moving: the trunk tilt changing faster than ``turning_dps`` (judged on the tilt averaged over
  ``TURN_SMOOTH_S``, of the orientation filter's gravity, which with a gyroscope rejects
  acceleration: the band that carries the angle, below ~1 Hz), or a rotation rate above
  ``moving_dps`` (gyro), or stepping (a periodic acceleration magnitude with body acceleration
  above ``moving_g``); held for ``motion_hold_s`` so the angle has settled before anything is
  judged again. Body acceleration alone is *not* motion: typing, mouse work and shifting in the
  chair shake a trunk sensor by 0.01-0.4 g (0.8-20 Hz) without changing the trunk angle, and
  must not suspend slouch detection.
- walking: moving, with a periodic acceleration magnitude (autocorrelation peak at a step or
  stride period of 0.3-1.2 s) confirmed for ``WALK_CONFIRM_S``.
- lifeless: the tilt wobbles less than ``micro_motion_deg`` RMS over ``not_worn_s``. A worn
  sensor always moves a little (breathing, heartbeat, small shifts); one on a desk does not.

Why over ~400 lines: every feature exists twice, on whole arrays (replay's minutes) and per tick
in float maths with running window sums (the live daemon's 0.1 s calls), and the two must give the
same features; they stay in one module so that they are changed together.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from slouchd.posture.filters import SCALAR_MAX_TICKS
from slouchd.posture.settings import ActivitySettings

WALK_WINDOW_S = 3.0
"""Window for the step-periodicity test, seconds: a few steps at any walking pace."""
WALK_LAGS_S = (0.3, 1.2)
"""Step (about 0.5 s) and stride (about 1 s) periods looked for, seconds."""
WALK_MIN_CORR = 0.5
"""Normalised autocorrelation that counts as periodic."""
SHORT_WINDOW_S = 2.0
"""Window that decides the sensor is alive again, and that a calibration must be still for, seconds."""
SMOOTH_S = 1.5
"""Tilt is averaged over this long before its wobble is measured, so sensor noise does not look alive."""
STEADY_MAX_G = 0.1
"""A calibration window's body acceleration (RMS over 0.3 s, gravity removed) stays below this, g:
desk vibration (mostly under 0.08 g) averages out of the window's mean, walking (0.15-0.4 g) or
being jolted does not."""
TURN_SMOOTH_S = 0.5
"""The tilt whose rate of change decides ``moving`` is averaged over this long, seconds: typing
vibration (0.8-20 Hz) averages out, a reach (30-60 deg in about a second) does not."""
WALK_CONFIRM_S = 1.0
"""The gait must stay periodic this long to count as walking, seconds."""
NOISE_MARGIN = 2.0
"""The lifeless limit is at least this many times the wobble that sensor noise alone would give."""


def _rolling_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Trailing mean over ``w`` samples along axis 0 (shorter at the start)."""
    c = np.cumsum(x, axis=0)
    c = np.concatenate((np.zeros((1, *x.shape[1:])), c))
    idx = np.arange(1, x.shape[0] + 1)
    lo = np.maximum(idx - w, 0)
    n = (idx - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return (c[idx] - c[lo]) / n


def _tail_mean(x: np.ndarray, w: int, n: int) -> np.ndarray:
    """Trailing mean over ``w`` rows for the last ``n`` rows of ``x`` (windows shorter at the start)."""
    return _rolling_mean(x[max(0, x.shape[0] - n - w + 1):], w)[-n:]


def _tail_max(x: np.ndarray, w: int, n: int) -> np.ndarray:
    """Trailing maximum over ``w`` rows for the last ``n`` rows of a bool array ``x``."""
    if w <= 1:
        return x[-n:]
    part = x[max(0, x.shape[0] - n - w + 1):]
    padded = np.concatenate((np.zeros(w - 1, dtype=x.dtype), part))
    return sliding_window_view(padded, w).max(axis=1)[-n:]


def wobble_deg(g: np.ndarray, w: int) -> np.ndarray:
    """Trailing RMS angular spread of unit vectors ``g`` (n, 3) over ``w`` ticks, degrees."""
    m = _rolling_mean(g, w)
    var = np.clip(1.0 - np.sum(m * m, axis=1), 0.0, None)
    return np.degrees(np.sqrt(var))


RowFeatures = tuple[list[bool], list[bool], list[bool], list[bool], list[bool],
                    list[tuple[float, float, float]]]
"""Per-tick features as lists: moving, walking, lifeless, alive, steady, mean_g."""


@dataclass(frozen=True, slots=True)
class ActivityFeatures:
    """Per-tick activity features (arrays of the batch's tick count)."""

    moving: np.ndarray
    walking: np.ndarray
    lifeless: np.ndarray
    alive: np.ndarray
    steady: np.ndarray
    mean_g: np.ndarray


class ActivityClassifier:
    """Rolling activity features over consecutive ticks, history carried across batches."""

    def __init__(self, settings: ActivitySettings, tick_s: float) -> None:
        self.settings = settings
        self.tick_s = tick_s
        self.w_hold = max(1, round(settings.motion_hold_s / tick_s) + 1)
        self.w_short = max(2, round(SHORT_WINDOW_S / tick_s))
        self.w_long = max(self.w_short, round(settings.not_worn_s / tick_s))
        self.w_walk = round(WALK_WINDOW_S / tick_s)
        self.w_smooth = max(1, round(SMOOTH_S / tick_s))
        self.w_turn = max(1, round(TURN_SMOOTH_S / tick_s))
        self.w_conf = max(1, round(WALK_CONFIRM_S / tick_s))
        self.lags = range(round(WALK_LAGS_S[0] / tick_s), round(WALK_LAGS_S[1] / tick_s) + 1)
        self._lag_lo = self.lags.start
        self._lag_hi = min(self.lags.stop, self.w_walk)  # lags of a whole window or more are skipped
        # Enough history that every window (including windows of smoothed values) spans batch edges.
        self.keep = max(self.w_long, self.w_walk, self.w_smooth, self.w_hold, self.w_conf) + 10
        self._turn_lag = max(1, round(0.5 / tick_s))
        self.reset()

    def reset(self) -> None:
        """Forget the history (after a gap): windows refill before they can judge."""
        # The last ``keep`` ticks, one deque per scalar so the per-tick path appends and sums
        # windows without building arrays: unit gravity and smoothed tilt (x, y, z each), body
        # motion (g), acceleration magnitude (g), raw motion and gait periodicity flags.
        k = self.keep
        self._gx: deque[float] = deque(maxlen=k)
        self._gy: deque[float] = deque(maxlen=k)
        self._gz: deque[float] = deque(maxlen=k)
        self._tx: deque[float] = deque(maxlen=k)
        self._ty: deque[float] = deque(maxlen=k)
        self._tz: deque[float] = deque(maxlen=k)
        self._sx: deque[float] = deque(maxlen=k)
        self._sy: deque[float] = deque(maxlen=k)
        self._sz: deque[float] = deque(maxlen=k)
        self._dyn: deque[float] = deque(maxlen=k)
        self._mag: deque[float] = deque(maxlen=k)
        self._raw_moving: deque[bool] = deque(maxlen=k)
        self._shaken: deque[int] = deque(maxlen=k)  # 0 calm, 1 shaken, 2 jolted
        self._periodic: deque[bool | None] = deque(maxlen=k)  # None: not judged (yet)
        # After a whole-array update the history is kept as its arrays instead (g, smooth, dyn,
        # mag, raw moving, periodic), so replay's consecutive big calls do not convert back and
        # forth; the deques are refilled from them when a small call comes.
        self._arrays: tuple[np.ndarray, ...] | None = None
        self._seen = 0
        # Sums over the long (not-worn) window, kept as ticks come instead of summing 600 values
        # of each per tick: smoothed tilt (x, y, z), body motion, raw motion, shaken levels.
        self._long = _TailSums(self.w_long, (self._sx, self._sy, self._sz, self._dyn, self._raw_moving,
                                             self._shaken))
        # ...and over the short windows: the tilt averaged for the turn rate, the smoothed tilt,
        # the wobble and mean of the calibration window; the turn's averages of every kept tick.
        self._turn_sums = _TailSums(self.w_turn, (self._tx, self._ty, self._tz))
        self._smooth_sums = _TailSums(self.w_smooth, (self._gx, self._gy, self._gz))
        self._short_sums = _TailSums(self.w_short, (self._sx, self._sy, self._sz,
                                                    self._gx, self._gy, self._gz))
        self._turn_means: deque[tuple[float, float, float]] = deque(maxlen=k)

    def update(self, g: np.ndarray, dyn_g: np.ndarray, amag_g: np.ndarray,
               gyro_mag_dps: np.ndarray | None, samples_per_tick: float,
               tilt: np.ndarray | None = None) -> ActivityFeatures:
        """Features for new consecutive ticks: ``g`` unit gravity (n, 3) from the accelerometer,
        ``dyn_g`` body-motion RMS (g), ``amag_g`` mean acceleration magnitude (g), ``gyro_mag_dps``
        bias-free rotation rate (deg/s) or None, ``samples_per_tick`` the sample rate times the tick,
        ``tilt`` (n, 3) the orientation filter's gravity (the tilt whose rate of change is motion;
        with a gyroscope it does not see desk vibration), None = ``g``.

        Only the windows ending at the new ticks are computed (from the carried history), so the
        cost per call does not grow with the history and any batch split gives the same result."""
        n = g.shape[0]
        if tilt is None:
            tilt = g
        if n <= SCALAR_MAX_TICKS:
            # One by one in float maths: the same features without some forty numpy calls per tick.
            rows = self.update_rows(g.tolist(), dyn_g.tolist(), amag_g.tolist(),
                                    None if gyro_mag_dps is None else gyro_mag_dps.tolist(),
                                    samples_per_tick, tilt.tolist())
            flags = [np.array(x, dtype=bool) for x in rows[:5]]
            return ActivityFeatures(flags[0], flags[1], flags[2], flags[3], flags[4],
                                    np.array(rows[5], dtype=float).reshape(-1, 3))
        s = self.settings
        seen = self._seen + np.arange(1, n + 1)  # ticks since the last reset, per new tick
        if self._arrays is None:
            self._arrays = (_history(self._gx, self._gy, self._gz), _history(self._sx, self._sy, self._sz),
                            np.array(self._dyn, dtype=float), np.array(self._mag, dtype=float),
                            np.array(self._raw_moving, dtype=bool), self._periodic_history(),
                            np.array(self._shaken, dtype=np.int8), _history(self._tx, self._ty, self._tz))
        (g_hist, smooth_hist, dyn_hist, mag_hist, raw_hist, periodic_hist, shaken_hist,
         tilt_hist) = self._arrays
        tilt_all = np.concatenate((tilt_hist, tilt))
        g_all = np.concatenate((g_hist, g))
        dyn_all = np.concatenate((dyn_hist, dyn_g))
        mag_all = np.concatenate((mag_hist, amag_g))
        # Walking: periodic magnitude over the last WALK_WINDOW_S, confirmed for WALK_CONFIRM_S.
        periodic = np.zeros(n, dtype=bool)
        full_walk = seen >= self.w_walk
        if full_walk.any():
            m = int(full_walk.sum())
            win = sliding_window_view(mag_all[-(m + self.w_walk - 1):], self.w_walk)
            win = win - win.mean(axis=1, keepdims=True)
            energy = np.sum(win * win, axis=1) + 1e-12
            best = np.zeros(m)
            for lag_i in self.lags:
                if lag_i >= self.w_walk:
                    break
                c = np.sum(win[:, lag_i:] * win[:, :-lag_i], axis=1) / energy
                np.maximum(best, c, out=best)
            periodic[n - m:] = best > WALK_MIN_CORR
        periodic_all = np.concatenate((periodic_hist, periodic))
        confirmed = ~_tail_max(~periodic_all, self.w_conf, n)

        # Tilt rate: angle between the tilt averaged over TURN_SMOOTH_S now and 0.5 s earlier
        # (the oldest tick right after a reset), deg/s.
        lag = max(1, round(0.5 / self.tick_s))
        w = self.w_turn
        total = tilt_all.shape[0]
        start = max(0, total - (n + lag + w - 1))
        sm = _rolling_mean(tilt_all[start:], w)
        pos = np.arange(total - n, total)
        cur = sm[pos - start]
        prev = sm[np.maximum(pos - lag, 0) - start]
        cos_turn = np.sum(cur * prev, axis=1) / np.maximum(
            np.linalg.norm(cur, axis=1) * np.linalg.norm(prev, axis=1), 1e-12)
        turn = np.degrees(np.arccos(np.clip(cos_turn, -1, 1))) / (lag * self.tick_s)
        # Shaken (body acceleration above moving_g) is not motion, but it is a sign of life.
        dyn3 = _tail_mean(dyn_all, 3, n)
        shaken = dyn3 > s.moving_g
        level = shaken.astype(np.int8) + (dyn3 > STEADY_MAX_G)
        raw = (turn > s.turning_dps) | (confirmed & shaken)
        if gyro_mag_dps is not None:
            raw |= gyro_mag_dps > s.moving_dps
        raw_all = np.concatenate((raw_hist, raw))
        moving = _tail_max(raw_all, self.w_hold, n)
        walking = confirmed & moving & (_tail_mean(dyn_all, self.w_walk, n) > s.moving_g)

        smooth = _tail_mean(g_all, self.w_smooth, n)
        smooth /= np.maximum(np.linalg.norm(smooth, axis=1), 1e-9)[:, None]
        smooth_all = np.concatenate((smooth_hist, smooth))
        wob_long = wobble_deg(smooth_all[-(n + self.w_long - 1):], self.w_long)[-n:]
        # Sensor noise alone makes the smoothed tilt wobble by about sigma*sqrt(2/N) rad
        # (N samples averaged, sigma per axis ~ dyn_g / sqrt(3)): never call that alive.
        n_avg = max(1.0, samples_per_tick * self.w_smooth)
        noise_deg = np.degrees(_tail_mean(dyn_all, self.w_long, n) * np.sqrt(2.0 / 3.0 / n_avg))
        limit = np.maximum(s.micro_motion_deg, NOISE_MARGIN * noise_deg)
        shaken_all = np.concatenate((shaken_hist, level))
        any_motion = _tail_max(raw_all | (shaken_all > 0), self.w_long, n)
        lifeless = (seen >= self.w_long) & (wob_long < limit) & ~any_motion
        wob_short = wobble_deg(smooth_all[-(n + self.w_short - 1):], self.w_short)[-n:]
        alive = (wob_short > 2 * limit) | moving | shaken
        # A calibration window must not be jolted either (walking has not been confirmed yet, or
        # the body accelerates): desk vibration averages out, stronger shaking would not.
        steady = (seen >= self.w_short) & ~_tail_max(raw_all | (shaken_all > 1), self.w_short, n)
        mean_g = _tail_mean(g_all, self.w_short, n)

        k = self.keep
        self._arrays = (g_all[-k:], smooth_all[-k:], dyn_all[-k:], mag_all[-k:], raw_all[-k:],
                        periodic_all[-k:], shaken_all[-k:], tilt_all[-k:])
        self._seen += n
        return ActivityFeatures(moving, walking, lifeless, alive, steady, mean_g)

    def update_rows(self, g: list[list[float]], dyn_g: list[float], amag_g: list[float],
                    gyro_mag_dps: list[float] | None, samples_per_tick: float, tilt: list[list[float]]
                    ) -> RowFeatures:
        """:meth:`update` one tick at a time in float maths, on plain lists (the live path: a call
        completes about one tick): the same windows and formulas (windows are shorter right after
        a reset, exactly as the array path's). Returns lists: moving, walking, lifeless, alive,
        steady (flags per tick) and mean_g ((x, y, z) per tick)."""
        if self._arrays is not None:
            self._refill_deques(self._arrays)
            self._arrays = None
        if not g:
            return [], [], [], [], [], []
        noise_k = math.sqrt(2.0 / 3.0 / max(1.0, samples_per_tick * self.w_smooth))
        feats = [self._step(g[i], dyn_g[i], amag_g[i], None if gyro_mag_dps is None else gyro_mag_dps[i],
                            noise_k, tilt[i]) for i in range(len(g))]
        moving, walking, lifeless, alive, steady, mean_g = (list(x) for x in zip(*feats, strict=True))
        return moving, walking, lifeless, alive, steady, mean_g

    def _confirmed(self) -> bool:
        """Whether the gait was periodic at each of the last ``w_conf`` ticks (fewer right after a
        reset). Ticks not judged yet are judged now, newest first: the first that is not periodic
        settles it, so a non-walking tick costs one judgement (kept for the next ticks)."""
        pq = self._periodic
        n = len(pq)
        for back in range(min(self.w_conf, n)):
            p = pq[n - 1 - back]
            if p is None:
                p = pq[n - 1 - back] = self._periodic_at(back)
            if not p:
                return False
        return True

    def _periodic_at(self, back: int) -> bool:
        """Whether the acceleration magnitude over the WALK_WINDOW_S ending ``back`` ticks before the
        newest is periodic at a step or stride lag (the array path's test, one window)."""
        ww = self.w_walk
        if self._seen - back < ww:
            return False
        win = np.fromiter(islice(reversed(self._mag), back, back + ww), dtype=float, count=ww)[::-1]
        win = win - win.mean()
        # Every lag's sum of products in one call: corr[ww - 1 + lag] pairs win[i + lag] with
        # win[i]. The sums may differ from the array path's in the last bit: they are only
        # compared with WALK_MIN_CORR.
        corr = np.correlate(win, win, "full")
        energy = float(corr[ww - 1]) + 1e-12
        lags = corr[ww - 1 + self._lag_lo:ww - 1 + self._lag_hi]
        return bool(lags.size > 0 and max(0.0, float(lags.max())) / energy > WALK_MIN_CORR)

    def _periodic_history(self) -> np.ndarray:
        """The periodicity flags carried for the array path, the ticks it can still read judged
        (older unjudged ones are never read again)."""
        pq = self._periodic
        n = len(pq)
        for back in range(min(self.w_conf, n)):
            if pq[n - 1 - back] is None:
                pq[n - 1 - back] = self._periodic_at(back)
        return np.array([bool(p) for p in pq], dtype=bool)

    def _refill_deques(self, arrays: tuple[np.ndarray, ...]) -> None:
        """Make the per-tick deques hold the history kept as arrays by the last big update."""
        g_hist, smooth_hist, dyn_hist, mag_hist, raw_hist, periodic_hist, shaken_hist, tilt_hist = arrays
        for dq, col in zip((self._gx, self._gy, self._gz, self._sx, self._sy, self._sz,
                            self._tx, self._ty, self._tz),
                           (*g_hist.T, *smooth_hist.T, *tilt_hist.T), strict=True):
            dq.clear()
            dq.extend(col.tolist())
        flags: tuple[tuple[deque, np.ndarray], ...] = (
            (self._dyn, dyn_hist), (self._mag, mag_hist), (self._raw_moving, raw_hist),
            (self._periodic, periodic_hist), (self._shaken, shaken_hist))
        for fq, arr in flags:
            fq.clear()
            fq.extend(arr.tolist())
        for sums in (self._long, self._turn_sums, self._smooth_sums, self._short_sums):
            sums.resum()
        tx, ty, tz, w = list(self._tx), list(self._ty), list(self._tz), self.w_turn
        self._turn_means.clear()
        for i in range(len(tx)):
            a = max(0, i - w + 1)
            n = i + 1 - a
            self._turn_means.append((sum(tx[a:i + 1]) / n, sum(ty[a:i + 1]) / n, sum(tz[a:i + 1]) / n))

    def _step(self, g: list[float], dyn: float, mag: float, gyro_mag: float | None,
              noise_k: float, tilt: list[float]
              ) -> tuple[bool, bool, bool, bool, bool, tuple[float, float, float]]:
        """One new tick: unit gravity ``g`` (x, y, z), body motion ``dyn`` (g), magnitude ``mag`` (g),
        rotation rate ``gyro_mag`` (deg/s) or None; ``noise_k`` = sqrt(2/3/samples averaged);
        ``tilt`` the orientation filter's gravity (x, y, z)."""
        s = self.settings
        gx, gy, gz, dq = self._gx, self._gy, self._gz, self._dyn
        gx.append(g[0])
        tx, ty, tz = self._tx, self._ty, self._tz
        tx.append(tilt[0])
        ty.append(tilt[1])
        tz.append(tilt[2])
        gy.append(g[1])
        gz.append(g[2])
        dq.append(dyn)
        self._mag.append(mag)
        self._seen += 1
        seen = self._seen
        avail = len(dq)
        ww = self.w_walk
        # Gait periodicity is judged only when a decision needs it (see _confirmed): most ticks
        # of a seated day are neither shaken nor moving, and it is the dearest feature.
        self._periodic.append(None)

        # Tilt rate: the tilt averaged over TURN_SMOOTH_S now against 0.5 s earlier (the oldest
        # tick right after a reset), deg/s.
        lag = self._turn_lag
        j = avail - 1 - lag if avail > lag else 0
        tw = self._turn_sums
        tw.pushed()
        tn = min(self.w_turn, avail)
        cx, cy, cz = tw.sums[0] / tn, tw.sums[1] / tn, tw.sums[2] / tn
        means = self._turn_means  # the same smoothed tilt of every earlier tick, in step with tx
        means.append((cx, cy, cz))
        px, py, pz = means[j]
        cos_turn = (cx * px + cy * py + cz * pz) / max(
            math.sqrt(cx * cx + cy * cy + cz * cz) * math.sqrt(px * px + py * py + pz * pz), 1e-12)
        # numpy's arccos (not math.acos, which can differ in the last bit) as in the array path.
        turn = math.degrees(float(np.arccos(max(-1.0, min(1.0, cos_turn))))) / (lag * self.tick_s)
        dyn3 = _mean(dq, 3)
        shaken = dyn3 > s.moving_g
        self._shaken.append(int(shaken) + (dyn3 > STEADY_MAX_G))
        raw = (turn > s.turning_dps) or (shaken and self._confirmed())
        if gyro_mag is not None:
            raw = raw or gyro_mag > s.moving_dps
        rq = self._raw_moving
        rq.append(raw)
        moving = _any(rq, self.w_hold)
        walking = moving and self._confirmed() and _mean(dq, ww) > s.moving_g

        sm = self._smooth_sums
        sm.pushed()
        n_sm = min(self.w_smooth, avail)
        mx, my, mz = sm.sums[0] / n_sm, sm.sums[1] / n_sm, sm.sums[2] / n_sm
        norm = max(math.sqrt(mx * mx + my * my + mz * mz), 1e-9)
        sx, sy, sz = self._sx, self._sy, self._sz
        sx.append(mx / norm)
        sy.append(my / norm)
        sz.append(mz / norm)
        short = self._short_sums
        short.pushed()
        n_short = min(self.w_short, avail)
        ssx, ssy, ssz, sgx, sgy, sgz = (v / n_short for v in short.sums)
        lw = self._long
        lw.pushed()
        long_n = min(self.w_long, avail)
        lsx, lsy, lsz, ldyn, lraw, lshaken = lw.sums
        noise_deg = math.degrees(ldyn / long_n * noise_k)
        limit = max(s.micro_motion_deg, NOISE_MARGIN * noise_deg)
        lifeless = (seen >= self.w_long and not lraw and not lshaken
                    and _wobble_of(lsx / long_n, lsy / long_n, lsz / long_n) < limit)
        alive = _wobble_of(ssx, ssy, ssz) > 2 * limit or moving or shaken
        steady = (seen >= self.w_short and not _any(rq, self.w_short)
                  and _max(self._shaken, self.w_short) < 2)
        return moving, walking, lifeless, alive, steady, (sgx, sgy, sgz)


def _history(x: deque[float], y: deque[float], z: deque[float]) -> np.ndarray:
    """Carried (x, y, z) deques as an (n, 3) array."""
    return np.array([x, y, z], dtype=float).T.reshape(-1, 3)


def _tail(d: deque, w: int) -> Iterable:
    """The last ``w`` items of ``d`` in order (all of them when there are fewer)."""
    n = len(d)
    if w >= n:
        return d
    if 4 * w < n:
        # Short window at the end of a long history: walk back instead of skipping from the front.
        items = list(islice(reversed(d), w))
        items.reverse()
        return items
    return islice(d, n - w, None)


def _mean(d: deque[float], w: int) -> float:
    """Mean of the last ``w`` values of ``d`` (fewer right after a reset), summed in order as
    the array path's cumulative sums do."""
    return sum(_tail(d, w)) / min(w, len(d))


def _window_mean(d: deque[float], back: int, w: int) -> float:
    """Mean of the ``w`` values ending ``back`` places before the last one (fewer at the start of
    the history), walking from the end: the history is long and the window near its end."""
    m = min(w, len(d) - back)
    return sum(islice(reversed(d), back, back + m)) / m


def _max(d: deque[int], w: int) -> int:
    """The largest of the last ``w`` values (0 for none)."""
    return max(islice(reversed(d), w), default=0)


def _any(d: deque[bool], w: int) -> bool:
    """Whether any of the last ``w`` flags is set."""
    return True in islice(reversed(d), w)


def _wobble(x: deque[float], y: deque[float], z: deque[float], w: int) -> float:
    """:func:`wobble_deg` of the last ``w`` unit vectors held as three deques, degrees."""
    return _wobble_of(_mean(x, w), _mean(y, w), _mean(z, w))


def _wobble_of(mx: float, my: float, mz: float) -> float:
    """:func:`wobble_deg` from the mean (mx, my, mz) of unit vectors, degrees."""
    return math.degrees(math.sqrt(max(1.0 - (mx * mx + my * my + mz * mz), 0.0)))


class _TailSums:
    """Sums of the last ``w`` values of equally long deques (all of them while fewer), kept as one
    value is appended to each per tick: O(1) a tick instead of summing ``w`` values.

    Every ``w`` ticks the sums are taken afresh from the deques (in order, as :func:`_mean`
    sums), so rounding from adding and subtracting cannot drift over a long day; in between they
    differ from a fresh sum only in the last bits (the array path's cumulative sums differ
    from both the same way). Flags and small ints sum exactly.
    """

    __slots__ = ("_count", "deques", "sums", "w")

    def __init__(self, w: int, deques: tuple[deque, ...]) -> None:
        self.w = w
        self.deques = deques
        self.sums: list[float] = [0.0] * len(deques)
        self._count = 0

    def pushed(self) -> None:
        """Every deque has just had one value appended."""
        self._count += 1
        if self._count >= self.w:
            self.resum()
            return
        w = self.w
        sums = self.sums
        for j, d in enumerate(self.deques):
            sums[j] += d[-1]
            if len(d) > w:
                sums[j] -= d[-w - 1]

    def resum(self) -> None:
        """Sum the windows afresh (after a refill of the deques, and periodically)."""
        self._count = 0
        self.sums = [sum(_tail(d, self.w)) for d in self.deques]
