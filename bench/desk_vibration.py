"""Desk-work vibration: the real recording against the simulated wearer's model of it.

    python bench/desk_vibration.py            # needs the Casale recording (CASALE_CSV=path; docs/accuracy.md)
    python bench/desk_vibration.py --quick    # a short simulated stretch (CI smoke)

Re-derives what ``slouchd/sensors/simulation/vibration.py`` holds from the "working at computer"
segment (label 1) of the Casale chest recording (raw counts - 2048, / 490 counts per g, 52 Hz,
0.8-20 Hz band, 4th-order Butterworth, zero phase) and prints, for the recording and for the
simulated wearer's seated stretches (``desk_vibration=True``, 50 Hz, noise-free, same band): the
vector RMS per 2 s window (p25/p50/p75/p90/p99/max, g), the share of power per band, and the
autocorrelation of the log RMS at 2, 10 and 40 s. It also checks the stored spectrum and quantiles
against the ones derived now.
"""

from __future__ import annotations

import sys

import numpy as np
from _common import ROOT, parser, write_results
from scipy import signal

from slouchd.sensors.simulated import SimSettings, SimulatedWearer
from slouchd.sensors.simulation import vibration

CASALE = ROOT.parent.parent / "shared" / "data" / "casale_chest_subject15.csv"
BANDS = ((0.8, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 14.0), (14.0, 20.0))


def stats(y: np.ndarray, rate: float) -> dict[str, object]:
    """RMS-per-2 s percentiles, band shares and log-RMS autocorrelation of band-passed (n, 3) g."""
    w = round(2.0 * rate)
    n = y.shape[0] // w
    r = np.sqrt(np.mean(np.sum(y[:n * w].reshape(n, w, 3) ** 2, axis=2), axis=1))
    f, p = signal.welch(y, fs=rate, nperseg=min(512, y.shape[0]), axis=0)
    tot = p.sum()
    lr = np.log(r) - np.log(r).mean()
    return {
        "rms_p25_p50_p75_p90_p99_max_g": np.round(np.percentile(r, [25, 50, 75, 90, 99, 100]), 4).tolist(),
        "band_share": [round(float(p[(f >= a) & (f < b)].sum() / tot), 3) for a, b in BANDS],
        "log_rms_autocorr_2_10_40s": [round(float(np.mean(lr[k:] * lr[:-k]) / lr.var()), 2) if n > k else None
                                      for k in (1, 5, 20)],
        "windows": int(n),
    }


def band(x: np.ndarray, rate: float) -> np.ndarray:
    sos = signal.butter(4, [0.8, min(20.0, 0.45 * rate)], btype="band", fs=rate, output="sos")
    return signal.sosfiltfilt(sos, x, axis=0)


def main() -> int:
    args = parser(__doc__.split("\n")[0]).parse_args()
    out: dict[str, object] = {}
    if CASALE.exists():
        raw = np.loadtxt(CASALE, delimiter=",", skiprows=1)
        x = (raw[raw[:, 4] == 1, 1:4] - 2048.0) / 490.0
        y = band(x, 52.0)
        out["recording"] = stats(y, 52.0)
        w = 104
        n = y.shape[0] // w
        r = np.sqrt(np.mean(np.sum(y[:n * w].reshape(n, w, 3) ** 2, axis=2), axis=1))
        q = np.percentile(r, np.linspace(0, 100, vibration.RMS_QUANTILES_G.size))
        out["stored_quantiles_max_rel_diff"] = float(np.max(np.abs(q / vibration.RMS_QUANTILES_G - 1)))
    hours = 0.1 if args.quick else 1.0
    sim = SimSettings(seed=3, rate_hz=50.0, day_s=max(600.0, hours * 3600.0), desk_vibration=True,
                      acc_noise_g=0.0, acc_bias_g=0.0, acc_lsb_g=0.0)
    wearer = SimulatedWearer(sim)
    n = wearer.samples_per_day
    nb = wearer.block_samples
    vib = np.concatenate([wearer.desk_vibration(0, a, min(nb, n - a)) for a in range(0, n, nb)])
    t = np.arange(n) / wearer.rate_hz
    _, _, label = wearer.truth(t)
    seated = np.isin(label, ("upright", "slouch", "type_arms", "lean_back", "lean_side"))
    out["simulated_seated"] = stats(vib[seated], 50.0)
    out["simulated_not_seated_max_g"] = float(np.abs(vib[~np.isin(label, (
        "upright", "slouch", "type_arms", "lean_back", "lean_side", "reach", "stand_up", "sit_down",
        "fast_move", "take_off", "put_on"))]).max(initial=0.0))
    for k, v in out.items():
        print(f"{k}: {v}")
    path = write_results("desk_vibration", out, args.out, args.quick)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
