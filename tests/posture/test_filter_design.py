"""Our Butterworth design is scipy's filter (written out so a live daemon need not import scipy.signal)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from slouchd.posture.filters import butter_lowpass_sos, steady_state_zi


@pytest.mark.parametrize("order", [2, 4])
@pytest.mark.parametrize("rate_hz", [10.0, 25.0, 50.0, 52.0, 100.0])
def test_design_filters_like_scipy_butter(order: int, rate_hz: float) -> None:
    cutoff = min(2.0, 0.4 * rate_hz)
    ours = butter_lowpass_sos(order, cutoff, rate_hz)
    theirs = signal.butter(order, cutoff, fs=rate_hz, output="sos")
    x = np.random.default_rng(7).normal(size=4000)
    np.testing.assert_allclose(signal.sosfilt(ours, x), signal.sosfilt(theirs, x), rtol=0, atol=1e-12)
    if order == 2:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)


def test_steady_state_start_does_not_move_a_constant_input() -> None:
    sos = butter_lowpass_sos(4, 2.0, 50.0)
    y, _ = signal.sosfilt(sos, np.full(200, 0.7), zi=steady_state_zi(sos) * 0.7)
    np.testing.assert_allclose(y, 0.7, rtol=0, atol=1e-14)


@pytest.mark.parametrize(("order", "cutoff"), [(3, 2.0), (0, 2.0), (2, 30.0), (2, 0.0)])
def test_impossible_designs_are_refused(order: int, cutoff: float) -> None:
    with pytest.raises(ValueError):
        butter_lowpass_sos(order, cutoff, 50.0)
