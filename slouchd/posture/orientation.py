"""Where gravity points in the sensor frame, and the calibrated flexion / lateral angles from it.

Conventions (sensor frame, unit vectors): ``up`` is the gravity reading while the wearer sits
upright (the calibration), ``forward`` the direction the chest faces, ``right`` = forward x up.
When the trunk flexes forward by theta, gravity seen from the trunk tips backward:
``g . forward = -sin(theta)``; leaning right by phi gives ``g . right = -sin(phi)``. Hence

    flexion_deg = atan2(-g.forward, g.up)      (+ = forward, sagittal plane only)
    lateral_deg = atan2(-g.right, hypot(g.forward, g.up))   (+ = toward the wearer's right)

Leaning back gives negative flexion and leaning sideways changes only the lateral angle, so
neither is a slouch.

Why over ~400 lines: the calibration value, the angles (array and float-maths forms), the
orientation filter and the forward-axis learner share these conventions; split them when one grows.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from slouchd.model import Mount
from slouchd.posture.filters import SCALAR_MAX_TICKS


def unit(v: np.ndarray) -> np.ndarray:
    """Normalise vectors along the last axis (zero vectors stay zero)."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v, dtype=float), where=n > 0)


def orthogonal_forward(forward: np.ndarray, up: np.ndarray) -> np.ndarray | None:
    """``forward`` made perpendicular to ``up`` and unit length; None if they are nearly parallel."""
    f = np.asarray(forward, float) - np.dot(forward, up) * np.asarray(up, float)
    n = float(np.linalg.norm(f))
    return None if n < 0.2 else f / n


@dataclass(frozen=True)
class Calibration:
    """The upright reference of one wearer: a value that can be saved, restored and sent over MQTT.

    Attributes:
        up: unit gravity reading in the sensor frame while upright, (x, y, z).
        forward: unit forward (chest-facing) axis in the sensor frame, perpendicular to ``up``;
            None while unknown (flexion is then the unsigned tilt and lateral is not reported).
        t_s: sample-clock time the reference was taken, seconds.
        source: how the upright reference was taken: ``requested``, ``auto`` or ``restored``.
        axis_source: where ``forward`` came from: ``mount``, ``learned``, ``two_pose`` or ``none``.
    """

    up: tuple[float, float, float]
    forward: tuple[float, float, float] | None = None
    t_s: float = 0.0
    source: str = "requested"
    axis_source: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "up": [round(x, 6) for x in self.up],
            "forward": None if self.forward is None else [round(x, 6) for x in self.forward],
            "t": round(self.t_s, 3),
            "source": self.source,
            "axis_source": self.axis_source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Rebuild from :meth:`to_dict` output. Raises ValueError on anything malformed."""
        try:
            up = unit(np.asarray(d["up"], dtype=float))
            if up.shape != (3,) or not np.all(np.isfinite(up)) or not np.any(up):
                raise ValueError("up must be three finite numbers, not all zero")
            fwd = None
            if d.get("forward") is not None:
                f = orthogonal_forward(np.asarray(d["forward"], dtype=float), up)
                if f is None:
                    raise ValueError("forward must not be parallel to up")
                fwd = tuple(float(x) for x in f)
            return cls(tuple(float(x) for x in up), fwd, float(d.get("t", 0.0)),  # type: ignore[arg-type]
                       str(d.get("source", "restored")), str(d.get("axis_source", "none")))
        except (KeyError, TypeError) as err:
            raise ValueError(f"calibration: {err}") from None

    def with_forward(self, forward: np.ndarray | None, axis_source: str) -> Calibration:
        f = None if forward is None else orthogonal_forward(forward, np.asarray(self.up))
        return Calibration(self.up, None if f is None else tuple(float(x) for x in f),  # type: ignore[arg-type]
                           self.t_s, self.source, axis_source if f is not None else "none")


def forward_from_mount(mount: Mount) -> np.ndarray:
    """The forward axis a mount declares: opposite to the axis pointing out of the back."""
    return -mount.out_vector


def forward_from_two_poses(up: np.ndarray, bent: np.ndarray) -> np.ndarray | None:
    """Forward axis from an upright and a deliberate forward-bent gravity reading (two-pose).

    Bending forward moves gravity toward -forward, so forward is the part of (up - bent) that is
    perpendicular to up. None when the two readings are too close to tell (< ~5 degrees).
    """
    up = unit(np.asarray(up, float))
    d = up - unit(np.asarray(bent, float))
    d = d - np.dot(d, up) * up
    n = float(np.linalg.norm(d))
    return None if n < math.sin(math.radians(5)) else d / n


@functools.lru_cache(maxsize=8)
def _axes(up: tuple[float, float, float], forward: tuple[float, float, float] | None
          ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``up``, ``forward`` and ``right = forward x up`` as arrays, computed once per calibration
    (``np.cross`` alone used to cost more than the rest of a live tick's angles)."""
    u = np.asarray(up)
    if forward is None:
        return u, None, None
    f = np.asarray(forward)
    return u, f, np.cross(f, u)


def angles(g: np.ndarray, cal: Calibration) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Flexion, lateral lean and total tilt from calibrated upright (degrees) for gravity ``g`` (n, 3).

    Without a forward axis, flexion is the unsigned tilt and lateral is None.
    """
    up, fwd, right = _axes(cal.up, cal.forward)
    gu = g @ up
    tilt = np.degrees(np.arccos(np.clip(gu / np.maximum(np.linalg.norm(g, axis=1), 1e-9), -1, 1)))
    if fwd is None or right is None:
        return tilt, None, tilt
    gf = g @ fwd
    gr = g @ right
    flexion = np.degrees(np.arctan2(-gf, gu))
    lateral = np.degrees(np.arctan2(-gr, np.hypot(gf, gu)))
    return flexion, lateral, tilt


def angle_rows(g: list[list[float]], cal: Calibration
               ) -> tuple[list[float], list[float] | None, list[float]]:
    """:func:`angles` for a few gravity rows in float maths (the same formulas; the result may
    differ from numpy's in the last bit, far below display precision)."""
    up, fwd, right = _axes_f(cal.up, cal.forward)
    ux, uy, uz = up
    tilt: list[float] = []
    acos, deg, sqrt = math.acos, math.degrees, math.sqrt
    for x, y, z in g:
        gu = x * ux + y * uy + z * uz
        c = gu / max(sqrt(x * x + y * y + z * z), 1e-9)
        tilt.append(deg(acos(-1.0 if c < -1.0 else (1.0 if c > 1.0 else c))))
    if fwd is None or right is None:
        return tilt, None, tilt
    fx, fy, fz = fwd
    rx, ry, rz = right
    flex: list[float] = []
    lat: list[float] = []
    atan2 = math.atan2
    for x, y, z in g:
        gu = x * ux + y * uy + z * uz
        gf = x * fx + y * fy + z * fz
        gr = x * rx + y * ry + z * rz
        flex.append(deg(atan2(-gf, gu)))
        lat.append(deg(atan2(-gr, math.hypot(gf, gu))))
    return flex, lat, tilt


@functools.lru_cache(maxsize=8)
def _axes_f(up: tuple[float, float, float], forward: tuple[float, float, float] | None
            ) -> tuple[tuple[float, ...], tuple[float, ...] | None, tuple[float, ...] | None]:
    """:func:`_axes` as tuples of floats."""
    u, f, r = _axes(up, forward)
    return (tuple(u.tolist()), None if f is None else tuple(f.tolist()),
            None if r is None else tuple(r.tolist()))


GYRO_STILL_DPS = 2.0
"""The gyroscope reads as still (what it reads is then bias) while every axis stays within this of
the bias estimate, deg/s: above breathing and postural sway, below any deliberate move."""
GYRO_STILL_S = 1.0
"""...for at least this long, seconds (Fusion's gyroscope offset algorithm works the same way)."""
BIAS_STEADY_DPS = 0.5
"""...and while the accelerometer's direction (averaged over 1 s) turns slower than this, deg/s: a
slouch creeping in at under GYRO_STILL_DPS must not be learned as bias."""
BIAS_TAU_S = 10.0
"""Time constant of the gyro bias estimate while still, seconds."""
REJECT_DEG = 10.0
"""With a gyroscope, an accelerometer direction this far from the gyro's prediction is not gravity
(the body is accelerating) and is ignored, degrees (Fusion's acceleration rejection)."""


class OrientationFilter:
    """Gravity direction in the sensor frame, one estimate per tick.

    With a gyroscope it is a complementary filter: the estimate is turned exactly by the rotation
    the gyro measured over the tick (Rodrigues' formula on the integrated angle, bias removed)
    and pulled toward the low-passed accelerometer with time constant ``tau_gyro_s``, except when
    the accelerometer is rejected: its magnitude is off 1 g by ``reject_g`` or its direction is
    more than :data:`REJECT_DEG` from the prediction (the body is accelerating), as in Fusion's
    acceleration rejection. A recovery timeout stops the filter from trusting a drifting gyro
    forever. The gyro bias is learned while the gyro itself reads still (desk vibration shakes
    the accelerometer, not the gyro).

    Without a gyroscope the estimate follows the low-passed accelerometer with time constant
    ``tau_acc_s``, also during motion (a stale value would be worse than a lagging one; the
    alert logic is gated by ``moving`` anyway).
    """

    def __init__(self, tick_s: float, tau_gyro_s: float = 1.0, tau_acc_s: float = 0.4,
                 reject_g: float = 0.1, recovery_s: float = 3.0) -> None:
        self.tick_s = tick_s
        self.k_gyro = tick_s / tau_gyro_s
        self.k_acc = tick_s / tau_acc_s
        self.reject_g = reject_g
        self.recovery_ticks = round(recovery_s / tick_s)
        self._cos_reject = math.cos(math.radians(REJECT_DEG))
        self._still_limit = math.radians(GYRO_STILL_DPS) * tick_s  # radians per tick
        self._still_ticks = round(GYRO_STILL_S / tick_s)
        self._beta = tick_s / BIAS_TAU_S
        self._w_steady = max(1, round(1.0 / tick_s))
        self._cos_steady = math.cos(math.radians(BIAS_STEADY_DPS * self._w_steady * tick_s))
        self.g: list[float] | None = None
        self.bias = [0.0, 0.0, 0.0]
        self._rejected = 0
        self._still = 0
        self._acc: deque[list[float]] = deque(maxlen=2 * self._w_steady)
        self._sum_new = [0.0, 0.0, 0.0]
        self._sum_old = [0.0, 0.0, 0.0]

    def reset(self) -> None:
        """Forget the estimate (after a gap): the next tick starts from the accelerometer."""
        self.g = None
        self._rejected = 0
        self._still = 0
        self._acc.clear()
        self._sum_new = [0.0, 0.0, 0.0]
        self._sum_old = [0.0, 0.0, 0.0]

    def _acc_steady(self, a: list[float]) -> bool:
        """Push the accelerometer direction ``a``; whether the mean of the last second points
        within BIAS_STEADY_DPS x 1 s of the mean of the second before (running sums)."""
        hist, w = self._acc, self._w_steady
        new, old = self._sum_new, self._sum_old
        if len(hist) == 2 * w:
            gone = hist[0]
            for j in range(3):
                old[j] -= gone[j]
        if len(hist) >= w:
            mid = hist[-w]
            for j in range(3):
                new[j] -= mid[j]
                old[j] += mid[j]
        hist.append(a)
        for j in range(3):
            new[j] += a[j]
        if len(hist) < 2 * w:
            return False
        nn = math.sqrt(new[0] * new[0] + new[1] * new[1] + new[2] * new[2])
        no = math.sqrt(old[0] * old[0] + old[1] * old[1] + old[2] * old[2])
        dot = new[0] * old[0] + new[1] * old[1] + new[2] * old[2]
        return nn > 0 and no > 0 and dot > self._cos_steady * nn * no

    def run(self, grav_g: np.ndarray, dyn_g: np.ndarray, gyro_dps: np.ndarray | None,
            moving_g: float) -> tuple[np.ndarray, np.ndarray | None]:
        """Estimates for consecutive ticks. ``grav_g`` (n, 3) low-passed acceleration in g, ``dyn_g``
        (n,) body-motion RMS in g (unused: kept for the callers), ``gyro_dps`` (n, 3) mean rate or
        None, ``moving_g`` (unused). Returns unit gravity vectors (n, 3) and the bias-free
        rotation rate magnitude per tick (deg/s) or None."""
        rows, rates = self.run_rows(grav_g, gyro_dps)
        rate_arr = None if rates is None else np.array(rates, dtype=float)
        return np.array(rows, dtype=float).reshape(-1, 3), rate_arr

    def run_rows(self, grav_g: np.ndarray | list[list[float]], gyro_dps: np.ndarray | list[list[float]] | None
                 ) -> tuple[list[list[float]], list[float] | None]:
        """:meth:`run` with plain lists out: gravity rows (x, y, z) and rates (deg/s) or None (the
        per-tick path uses them as floats; building arrays only to convert them back cost more
        than the maths)."""
        n = len(grav_g)
        out: list[list[float]] = []
        rate_mag: list[float] | None = None if gyro_dps is None else []
        to_dps = math.degrees(1.0) / self.tick_s
        if n <= SCALAR_MAX_TICKS:
            a_unit, mag_ok = self._prepare_scalar(grav_g)
        else:
            a_unit, mag_ok = self._prepare(np.asarray(grav_g, dtype=float))
        if gyro_dps is None:
            rates = None
        elif isinstance(gyro_dps, np.ndarray):
            rates = (np.radians(gyro_dps) * self.tick_s).tolist()
        else:
            # math.radians multiplies by the same pi / 180 as np.radians: the same floats.
            rad, ts = math.radians, self.tick_s
            rates = [[rad(x) * ts, rad(y) * ts, rad(z) * ts] for x, y, z in gyro_dps]
        g = self.g
        bias = self.bias
        k_gyro, k_acc = self.k_gyro, self.k_acc
        still_limit, beta = self._still_limit, self._beta
        for i in range(n):
            a = a_unit[i]
            steady = self._acc_steady(a) if rates is not None else False
            if g is None:
                g = list(a)
                out.append(g)
                if rate_mag is not None:
                    rate_mag.append(0.0)
                continue
            if rates is not None:
                wx, wy, wz = rates[i]  # radians turned during this tick
                if (abs(wx - bias[0]) < still_limit and abs(wy - bias[1]) < still_limit
                        and abs(wz - bias[2]) < still_limit):
                    self._still += 1
                else:
                    self._still = 0
                if self._still >= self._still_ticks and mag_ok[i] and steady:
                    # Still: what the gyro reads is bias.
                    bias[0] += beta * (wx - bias[0])
                    bias[1] += beta * (wy - bias[1])
                    bias[2] += beta * (wz - bias[2])
                wx -= bias[0]
                wy -= bias[1]
                wz -= bias[2]
                angle = math.sqrt(wx * wx + wy * wy + wz * wz)
                rate_mag.append(angle * to_dps)  # type: ignore[union-attr]
                gx, gy, gz = g
                if angle > 1e-12:
                    # A world-fixed vector seen from a sensor that turned by w: rotated by -w
                    # (Rodrigues), exact for any angle turned about a fixed axis during the tick.
                    kx, ky, kz = wx / angle, wy / angle, wz / angle
                    c, s_ = math.cos(angle), math.sin(angle)
                    kd = (kx * gx + ky * gy + kz * gz) * (1.0 - c)
                    g = [gx * c + (gy * kz - gz * ky) * s_ + kx * kd,
                         gy * c + (gz * kx - gx * kz) * s_ + ky * kd,
                         gz * c + (gx * ky - gy * kx) * s_ + kz * kd]
                accept = mag_ok[i] and (a[0] * g[0] + a[1] * g[1] + a[2] * g[2]) > self._cos_reject
                k = k_gyro
                if accept:
                    self._rejected = 0
                else:
                    self._rejected += 1
                    k = 0.0 if self._rejected < self.recovery_ticks else k
            else:
                k = k_acc
            gx = g[0] + k * (a[0] - g[0])
            gy = g[1] + k * (a[1] - g[1])
            gz = g[2] + k * (a[2] - g[2])
            norm = math.sqrt(gx * gx + gy * gy + gz * gz) or 1.0
            g = [gx / norm, gy / norm, gz / norm]
            out.append(g)
        self.g = g
        return out, rate_mag

    def _prepare(self, grav_g: np.ndarray) -> tuple[list[list[float]], list[bool]]:
        """Per tick: the accelerometer's unit direction and whether its magnitude is near 1 g."""
        mag = np.linalg.norm(grav_g, axis=1)
        a_unit = (grav_g / np.maximum(mag, 1e-9)[:, None]).tolist()
        return a_unit, (np.abs(mag - 1.0) < self.reject_g).tolist()

    def _prepare_scalar(self, grav_g: np.ndarray | list[list[float]]
                        ) -> tuple[list[list[float]], list[bool]]:
        """:meth:`_prepare` for a few ticks in float maths (the same operations, in the same order)."""
        a_unit, mag_ok = [], []
        for x, y, z in (grav_g.tolist() if isinstance(grav_g, np.ndarray) else grav_g):
            mag = math.sqrt(x * x + y * y + z * z)
            m = max(mag, 1e-9)
            a_unit.append([x / m, y / m, z / m])
            mag_ok.append(abs(mag - 1.0) < self.reject_g)
        return a_unit, mag_ok


FEW_ROWS = SCALAR_MAX_TICKS
"""AxisLearner.add: at most this many rows (a live call's ticks) are filtered in float maths and held."""
HELD_ROWS = 256
"""... and held rows join the moments once there are this many."""


class AxisLearner:
    """Learns the forward (sagittal) axis when the mount is unknown, from the bends the wearer makes.

    Tilts away from upright are collected while still; people bend forward-back far more than
    sideways, so the principal direction of the tilts is sagittal. The sign needs evidence of a
    forward bend from two statistics that must agree: the third moment along the axis (forward
    bends such as slouching, reaching down and standing up go further than leaning back) and the
    first moment (more time is spent bent forward than leaning back). A wearer who leans back
    further *and* longer than they bend forward leaves the two disagreeing or, at worst, both
    wrong; while they disagree nothing is learned (the angle stays unjudged), which is the point:
    leaning back must not be taken for a slouch. Known weakness: a wearer who only leans back
    for the first minute or more of tilts teaches the wrong sign (tilts on one side carry no
    sign); requiring both sides was tried and delayed learning on the simulated wearers from
    3-4 minutes to 11-15 minutes or beyond 30. The two-pose calibration settles it at once.
    """

    def __init__(self, min_tilt_deg: float = 6.0, max_tilt_deg: float = 70.0, min_ticks: int = 600,
                 min_ratio: float = 3.0) -> None:
        self.lo = math.sin(math.radians(min_tilt_deg))
        self.hi = math.sin(math.radians(max_tilt_deg))
        self.min_ticks = min_ticks
        self.min_ratio = min_ratio
        self._scatter = np.zeros((3, 3))
        self._first = np.zeros(3)
        self._third = np.zeros((3, 3, 3))
        self._n = 0
        self._rows: list[tuple[float, float, float]] = []  # useful rows not yet in the moments

    def reset(self) -> None:
        self.__init__(min_ticks=self.min_ticks, min_ratio=self.min_ratio)  # type: ignore[misc]

    @property
    def n(self) -> int:
        """Still ticks of useful tilt collected so far."""
        return self._n

    def add(self, g: np.ndarray | list[list[float]], up: np.ndarray) -> None:
        """Collect the tangential part of still gravity readings ``g`` (n, 3) relative to ``up``.

        A few rows (the live path: one to ten per call) are filtered in float maths and kept;
        they join the moments, on arrays, when :meth:`propose` needs them or many are held
        (numpy's per-call overhead on 1-row arrays was ~17 % of a live tracker call while learning).
        """
        if len(g) > FEW_ROWS:
            self._fold()
            self._add_array(np.asarray(g, dtype=float), up)
            return
        ux, uy, uz = (float(x) for x in up)
        lo, hi, rows = self.lo, self.hi, self._rows
        for row in g:
            gx, gy, gz = float(row[0]), float(row[1]), float(row[2])
            p = gx * ux + gy * uy + gz * uz
            dx, dy, dz = gx - p * ux, gy - p * uy, gz - p * uz
            s = math.sqrt(dx * dx + dy * dy + dz * dz)
            if lo < s < hi:
                rows.append((dx, dy, dz))
                self._n += 1
        if len(rows) >= HELD_ROWS:
            self._fold()

    def _fold(self) -> None:
        """Add the held rows to the moments."""
        if self._rows:
            d = np.array(self._rows, dtype=float)
            self._rows = []
            self._moments(d)

    def _add_array(self, g: np.ndarray, up: np.ndarray) -> None:
        d = g - (g @ up)[:, None] * up[None, :]
        s = np.linalg.norm(d, axis=1)
        d = d[(s > self.lo) & (s < self.hi)]
        if d.shape[0]:
            self._moments(d)
            self._n += d.shape[0]

    def _moments(self, d: np.ndarray) -> None:
        self._scatter += d.T @ d
        self._first += d.sum(axis=0)
        self._third += np.einsum("ni,nj,nk->ijk", d, d, d)

    def propose(self, up: np.ndarray) -> np.ndarray | None:
        """The forward axis once there is enough evidence, else None."""
        if self._n < self.min_ticks:
            return None
        self._fold()
        w, v = np.linalg.eigh(self._scatter)
        # eigh sorts ascending; the smallest eigenvalue belongs to ``up`` itself (no tangential part).
        main, minor = v[:, 2], w[1]
        if w[2] < self.min_ratio * max(minor, 1e-12):
            return None
        skew = float(np.einsum("ijk,i,j,k->", self._third, main, main, main))
        mean = float(self._first @ main)
        if abs(skew) < 1e-9 or abs(mean) < 1e-9 or (skew < 0) != (mean < 0):
            return None

        # Forward bends give g . forward < 0, so the long tail (and the bulk) lies along -forward.
        fwd = main if skew < 0 else -main
        return orthogonal_forward(fwd, up)
