"""Desk-work vibration of a seated wearer, modelled on a real recording.

Typing, mouse work and small shifts in the chair shake a trunk-worn accelerometer. The model is
fitted to the "working at computer" segment (label 1, 16.5 min) of
``casale_chest_subject15.csv`` (UCI "Activity Recognition from Single Chest-Mounted
Accelerometer", participant 15, CC BY 4.0; see docs/simulated-wearer.md, "Opt-in: desk
vibration and fast moves"): raw counts minus 2048, / 490 counts per g, 52 Hz, band-passed to
0.8-20 Hz (4th-order Butterworth, zero phase).
``bench/desk_vibration.py`` re-derives the constants below from that file and checks that the
model reproduces its statistics.

- :data:`SPECTRUM`: the shape of the vibration spectrum per sensor axis (Welch, 128-sample
  segments of the band-passed signal after each 2 s window is scaled to unit RMS), as the fraction
  of each axis's power in each 0.406 Hz bin centred on :data:`SPECTRUM_HZ`.
- :data:`RMS_QUANTILES_G`: the distribution of the vector RMS per 2 s window, in g, at the 0, 2.5,
  ..., 100th percentiles (median 0.0134, p75 0.028, p90 0.079, max 0.41).
- The RMS of consecutive windows is correlated (log-RMS autocorrelation 0.78 at 2 s, 0.41 at 10 s,
  0.22 at 40 s in the recording): a sum of a fast and a slow AR(1) process in normal scores
  (:data:`AR_MIX`) reproduces it.

The vibration is specific force only (no rotation, no change of the true trunk angle): it is what
the posture engine must see through.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

WINDOW_S = 2.0
"""The RMS envelope is drawn per window of this many seconds (as it was measured), seconds."""
AR_MIX = ((0.5, 0.7), (0.5, 0.97))
"""(share of variance, AR(1) coefficient per window) of the two processes of the log envelope."""
WELCH_BIN_HZ = 52.0 / 128.0
"""Width of one :data:`SPECTRUM` bin, Hz."""

SPECTRUM_HZ = np.array([
    0.8125, 1.2188, 1.6250, 2.0312, 2.4375, 2.8438,
    3.2500, 3.6562, 4.0625, 4.4688, 4.8750, 5.2812,
    5.6875, 6.0938, 6.5000, 6.9062, 7.3125, 7.7188,
    8.1250, 8.5312, 8.9375, 9.3438, 9.7500, 10.1562,
    10.5625, 10.9688, 11.3750, 11.7812, 12.1875, 12.5938,
    13.0000, 13.4062, 13.8125, 14.2188, 14.6250, 15.0312,
    15.4375, 15.8438, 16.2500, 16.6562, 17.0625, 17.4688,
    17.8750, 18.2812, 18.6875, 19.0938, 19.5000, 19.9062,
    20.3125,
])
SPECTRUM = np.array([
    [0.0305, 0.0128, 0.0381], [0.0490, 0.0266, 0.0566], [0.0439, 0.0299, 0.0428],
    [0.0454, 0.0347, 0.0393], [0.0451, 0.0342, 0.0406], [0.0472, 0.0368, 0.0431],
    [0.0451, 0.0366, 0.0410], [0.0436, 0.0400, 0.0322], [0.0449, 0.0435, 0.0275],
    [0.0411, 0.0467, 0.0245], [0.0377, 0.0414, 0.0234], [0.0336, 0.0357, 0.0245],
    [0.0275, 0.0347, 0.0251], [0.0254, 0.0327, 0.0289], [0.0230, 0.0299, 0.0288],
    [0.0215, 0.0282, 0.0279], [0.0196, 0.0259, 0.0285], [0.0187, 0.0237, 0.0257],
    [0.0182, 0.0216, 0.0238], [0.0177, 0.0206, 0.0215], [0.0166, 0.0198, 0.0206],
    [0.0155, 0.0192, 0.0187], [0.0151, 0.0178, 0.0166], [0.0145, 0.0164, 0.0155],
    [0.0131, 0.0155, 0.0157], [0.0139, 0.0162, 0.0153], [0.0137, 0.0152, 0.0150],
    [0.0126, 0.0145, 0.0155], [0.0120, 0.0144, 0.0149], [0.0129, 0.0141, 0.0140],
    [0.0128, 0.0140, 0.0139], [0.0116, 0.0143, 0.0138], [0.0116, 0.0136, 0.0135],
    [0.0128, 0.0133, 0.0131], [0.0119, 0.0130, 0.0130], [0.0114, 0.0130, 0.0124],
    [0.0116, 0.0122, 0.0120], [0.0110, 0.0112, 0.0124], [0.0111, 0.0117, 0.0118],
    [0.0114, 0.0122, 0.0117], [0.0107, 0.0116, 0.0114], [0.0102, 0.0115, 0.0107],
    [0.0100, 0.0130, 0.0104], [0.0094, 0.0111, 0.0100], [0.0079, 0.0087, 0.0082],
    [0.0065, 0.0069, 0.0063], [0.0048, 0.0048, 0.0047], [0.0030, 0.0033, 0.0032],
    [0.0017, 0.0018, 0.0017],
])
RMS_QUANTILES_G = np.array([
    0.00797, 0.00823, 0.00853, 0.00870, 0.00885, 0.00895, 0.00913, 0.00927,
    0.00939, 0.00951, 0.00972, 0.00988, 0.01014, 0.01033, 0.01057, 0.01084,
    0.01115, 0.01200, 0.01251, 0.01286, 0.01335, 0.01395, 0.01463, 0.01549,
    0.01655, 0.01714, 0.01812, 0.02010, 0.02223, 0.02421, 0.02757, 0.03186,
    0.03661, 0.04064, 0.05009, 0.06305, 0.07874, 0.10358, 0.12310, 0.20525,
    0.40920,
])


def envelope(rng: np.random.Generator, n_windows: int) -> np.ndarray:
    """Vector RMS (g) of ``n_windows`` consecutive windows of :data:`WINDOW_S`: correlated draws
    from the recorded distribution (a normal score mapped through :data:`RMS_QUANTILES_G`)."""
    from scipy.signal import lfilter

    z = np.zeros(n_windows)
    for share, rho in AR_MIX:
        e = rng.standard_normal(n_windows) * math.sqrt(1.0 - rho * rho)
        e[0] = rng.standard_normal()  # start in the stationary distribution
        z += math.sqrt(share) * lfilter([1.0], [1.0, -rho], e)
    u = ndtr(z)
    grid = np.linspace(0.0, 1.0, RMS_QUANTILES_G.size)
    return np.interp(u, grid, RMS_QUANTILES_G)


def shaped_noise(rng: np.random.Generator, n: int, rate_hz: float) -> np.ndarray:
    """(n, 3) noise with the recorded spectrum shape, vector RMS 1 while the whole 0.8-20 Hz band
    is below the Nyquist frequency (a slower sensor sees only the part of the band it samples).

    Circular (the FFT of ``n`` samples): callers overlap-add windowed segments."""
    white = rng.standard_normal((n, 3))
    f = np.fft.rfftfreq(n, 1.0 / rate_hz)
    # Power density per axis (1/Hz, integrating to 1 over the band), from the Welch bins.
    dens = np.stack([np.interp(f, SPECTRUM_HZ, SPECTRUM[:, a] / WELCH_BIN_HZ, left=0.0, right=0.0)
                     for a in range(3)], -1)
    # With unit white noise, irfft(sqrt(c * dens) * X) has variance 2 c / rate_hz per unit of
    # integrated density: c = rate / 6 gives 1/3 per axis, a vector RMS of 1.
    amp = np.sqrt(dens * (rate_hz / 6.0))
    return np.fft.irfft(np.fft.rfft(white, axis=0) * amp, n=n, axis=0)
