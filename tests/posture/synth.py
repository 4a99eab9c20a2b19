"""A tiny scripted wearer for the posture tests: trunk angles in, IMU samples out.

Deliberately simple and independent of the tracker's maths: the trunk follows a script of
(seconds, flexion_deg, lateral_deg, what) steps with smooth transitions, breathing sway, sensor
noise, and body acceleration for reaches and walking. The full simulator lives in
``slouchd/sensors/simulated.py``; this one exists so the tests can state exact situations.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from slouchd.model import Mount, SampleBatch

BACK = Mount.parse("+y,-z")


@dataclass(frozen=True)
class Step:
    """Hold ``flexion_deg`` / ``lateral_deg`` for ``seconds`` doing ``what``:
    ``sit`` (breathing), ``desk`` (lifeless, sensor lying on a table), ``walk``, ``fidget``."""

    seconds: float
    flexion_deg: float = 0.0
    lateral_deg: float = 0.0
    what: str = "sit"


def trunk_to_sensor(flex_deg: np.ndarray, lat_deg: np.ndarray, mount: Mount) -> np.ndarray:
    """Gravity reading (g, sensor frame) of a trunk flexed forward / leaning right by these angles."""
    up = mount.up_vector
    fwd = -mount.out_vector
    right = np.cross(fwd, up)
    th, ph = np.radians(flex_deg), np.radians(lat_deg)
    gf = -np.sin(th) * np.cos(ph)
    gr = -np.sin(ph)
    gu = np.cos(th) * np.cos(ph)
    return gf[:, None] * fwd + gr[:, None] * right + gu[:, None] * up


def wear(script: list[Step], rate_hz: float = 50.0, mount: Mount = BACK, gyro: bool = True, seed: int = 0,
         t0: float = 0.0, noise_g: float = 0.004, ramp_s: float = 1.0) -> SampleBatch:
    """Samples for a script. Transitions between steps take ``ramp_s`` (a smooth cosine)."""
    rng = np.random.default_rng(seed)
    total = sum(s.seconds for s in script)
    n = round(total * rate_hz)
    t = t0 + np.arange(n) / rate_hz
    flex = np.empty(n)
    lat = np.empty(n)
    what = np.empty(n, dtype=object)
    edges = np.cumsum([0.0] + [s.seconds for s in script])
    idx = np.clip(np.searchsorted(edges, t - t0, side="right") - 1, 0, len(script) - 1)
    targets_f = np.array([s.flexion_deg for s in script])
    targets_l = np.array([s.lateral_deg for s in script])
    # Smooth ramp from the previous step's value at the start of each step.
    prev_f = np.concatenate(([targets_f[0]], targets_f[:-1]))
    prev_l = np.concatenate(([targets_l[0]], targets_l[:-1]))
    into = (t - t0) - edges[idx]
    w = np.clip(into / ramp_s, 0, 1)
    w = 0.5 - 0.5 * np.cos(np.pi * w)
    flex = prev_f[idx] + (targets_f[idx] - prev_f[idx]) * w
    lat = prev_l[idx] + (targets_l[idx] - prev_l[idx]) * w
    what = np.array([s.what for s in script])[idx]
    alive = what != "desk"
    breath = 0.4 * np.sin(2 * np.pi * 0.25 * (t - t0)) * alive
    walk = what == "walk"
    fidget = what == "fidget"
    flex_true = flex + breath + walk * 2.0 * np.sin(2 * np.pi * 0.9 * (t - t0))
    lat_true = lat + walk * 3.0 * np.sin(2 * np.pi * 0.9 * (t - t0) + 0.5)
    acc = trunk_to_sensor(flex_true, lat_true, mount)
    up = mount.up_vector
    # Walking: vertical bounce at the step rate; fidgeting: random body acceleration.
    acc += (walk * 0.25 * np.sin(2 * np.pi * 1.8 * (t - t0)))[:, None] * up
    acc += (fidget[:, None] * rng.normal(0, 0.12, (n, 3)))
    acc += rng.normal(0, noise_g, (n, 3))
    gyro_dps = None
    if gyro:
        fwd = -mount.out_vector
        right = np.cross(fwd, up)
        dflex = np.gradient(flex_true, t) if n > 1 else np.zeros(n)
        dlat = np.gradient(lat_true, t) if n > 1 else np.zeros(n)
        gyro_dps = -dflex[:, None] * right + dlat[:, None] * fwd
        gyro_dps = gyro_dps + rng.normal(0, 0.3, (n, 3)) + np.array([0.8, -0.5, 0.3])  # noise + bias
    return SampleBatch(t, acc, gyro_dps)


def split(batch: SampleBatch, seconds: float) -> list[SampleBatch]:
    """Cut a batch into pieces of ``seconds`` (like a live sensor's packets)."""
    t = batch.t_s
    edges = np.arange(t[0], t[-1] + seconds, seconds)
    cuts = np.unique(np.concatenate(([0], np.searchsorted(t, edges), [t.size])))
    return [SampleBatch(t[a:b], batch.acc_g[a:b], None if batch.gyro_dps is None else batch.gyro_dps[a:b])
            for a, b in itertools.pairwise(cuts) if b > a]
