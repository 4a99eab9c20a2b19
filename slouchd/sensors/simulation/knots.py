"""Smooth scripted values: piecewise functions through (time, value) knots."""

from __future__ import annotations

import numpy as np


def smoother(u: np.ndarray) -> np.ndarray:
    """Quintic smootherstep 0..1 with zero 1st and 2nd derivative at both ends (finite jerk)."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (u * (u * 6.0 - 15.0) + 10.0)


class Knots:
    """A piecewise function through (time, value) knots, smootherstep between them, held outside."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.v: list[float] = []

    def add(self, t: float, v: float) -> None:
        if self.t and t < self.t[-1]:
            raise ValueError("knots must be added in time order")
        if self.t and t == self.t[-1]:
            self.v[-1] = v
            return
        self.t.append(float(t))
        self.v.append(float(v))

    def hold_to(self, t: float) -> None:
        if t > self.t[-1]:
            self.add(t, self.v[-1])

    @property
    def last(self) -> float:
        return self.v[-1]

    def freeze(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.t), np.asarray(self.v)


def eval_knots(kt: np.ndarray, kv: np.ndarray, t: np.ndarray) -> np.ndarray:
    if len(t) == 0:
        return np.empty(0)
    # Most channels hold still over most blocks: skip the interpolation then.
    lo, hi = np.searchsorted(kt, [t.min(), t.max()], side="right") - 1
    lo, hi = max(lo, 0), min(max(hi, 0) + 1, len(kv) - 1)
    if np.all(kv[lo:hi + 1] == kv[lo]):
        return np.full(t.shape, kv[lo])
    i = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
    t0 = kt[i]
    dt = kt[i + 1] - t0
    u = (t - t0) / dt
    return kv[i] + (kv[i + 1] - kv[i]) * smoother(u)

