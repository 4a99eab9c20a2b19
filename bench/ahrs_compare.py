"""Our 10 Hz orientation filter against Fusion's AHRS (``imufusion``, per sample), bench only.

    pip install imufusion && python bench/ahrs_compare.py [--quick]

One simulated wearer (seed 2 by default, 50 Hz, gyro, declared mount, desk vibration and fast moves, no
radio impairments) is fed to the PostureTracker (frames every 0.1 s) and, sample by sample, to
``imufusion.Ahrs`` (NWU, gain 0.5, acceleration rejection 10 deg, recovery 5 s) with its gyro
offset estimator. Fusion's gravity is turned into flexion with the tracker's own calibration, so
only the orientation estimates differ. Printed: flexion RMSE in quasi-static periods and through
fast moves (each fast_move episode + 5 s), and the CPU time of each, until the sensor is first
taken off. ``imufusion`` is not a dependency of slouchd.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
from _common import parser, write_results

from slouchd.model import SampleBatch
from slouchd.posture.orientation import angles
from slouchd.posture.settings import DetectionSettings, WellbeingSettings
from slouchd.posture.tracker import PostureTracker
from slouchd.sensors.simulated import SimSettings, SimulatedWearer

QUASI = ("upright", "slouch", "lean_back", "lean_side", "type_arms", "standing")


def main() -> int:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=2, help="simulated wearer (default 2)")
    args = p.parse_args()
    import imufusion

    hours = 1.0 if args.quick else 2.5
    s = SimSettings(seed=args.seed, rate_hz=50.0, day_s=hours * 3600.0, desk_vibration=True, fast_moves=True,
                    drop_prob=0.0, dup_prob=0.0, gaps_per_hour=0.0, jitter_s=0.0)
    w = SimulatedWearer(s)
    batch = SampleBatch.concat(list(w.batches(60.0)))
    t, acc, gyro = np.asarray(batch.t_s), np.asarray(batch.acc_g), np.asarray(batch.gyro_dps)
    end = min([e.start_s for e in w.episodes if e.kind == "take_off"] + [t[-1]])
    keep = t < end
    t, acc, gyro = t[keep], acc[keep], gyro[keep]

    tracker = PostureTracker(DetectionSettings(), WellbeingSettings(), s.mount, frame_interval_s=0.1)
    c0 = time.process_time()
    frames = []
    for a in range(0, len(t), 3000):
        frames += tracker.process(SampleBatch(t[a:a + 3000], acc[a:a + 3000], gyro[a:a + 3000])).frames
    ours_cpu = time.process_time() - c0
    cal = tracker.calibration
    assert cal is not None

    settings = imufusion.AhrsSettings()
    settings.convention = imufusion.CONVENTION_NWU
    settings.gain = 0.5
    settings.gyroscope_range = 2000.0
    settings.acceleration_rejection = 10.0
    settings.rejection_timeout = 5.0
    settings.sample_rate = s.rate_hz
    ahrs = imufusion.Ahrs()
    ahrs.set_settings(settings)
    bias_settings = imufusion.BiasSettings()
    bias_settings.sample_rate = s.rate_hz
    bias = imufusion.Bias()
    bias.set_settings(bias_settings)
    grav = np.empty_like(acc)
    c0 = time.process_time()
    for i in range(len(t)):
        gy = bias.update(gyro[i])
        ahrs.update_no_magnetometer(gy, acc[i])
        grav[i] = ahrs.get_gravity()
    fusion_cpu = time.process_time() - c0

    ft = np.array([f.t_s for f in frames])
    ours = np.array([np.nan if f.flexion_deg is None else f.flexion_deg for f in frames])
    idx = np.clip(np.searchsorted(t, ft) - 1, 0, len(t) - 1)
    fus, _, _ = angles(grav[idx], cal)
    truth, _, label = w.truth(ft)
    eps = w.episodes
    starts = np.array([e.start_s for e in eps])
    ep = np.clip(np.searchsorted(starts, ft, side="right") - 1, 0, len(eps) - 1)
    plateau = np.array([e.plateau_start_s for e in eps])[ep]
    ep_end = np.array([e.end_s for e in eps])[ep]
    quasi = np.isin(label, QUASI) & (ft >= plateau + 3.0) & (ft <= ep_end - 1.0) & (ft > cal.t_s + 1)
    fast = np.zeros(ft.shape, dtype=bool)
    for e in eps:
        if e.kind == "fast_move":
            fast |= (ft >= e.start_s) & (ft < e.end_s + 5.0)
    rows = []
    for name, est, cpu in (("slouchd", ours, ours_cpu), ("imufusion", fus, fusion_cpu)):
        def rmse(m: np.ndarray, est: np.ndarray = est) -> float:
            ok = m & ~np.isnan(est) & ~np.isnan(truth)
            return math.sqrt(float(np.mean((est[ok] - truth[ok]) ** 2))) if ok.any() else math.nan
        rows.append({"filter": name, "rmse_quasi_static_deg": round(rmse(quasi), 3),
                     "rmse_fast_moves_deg": round(rmse(fast), 3), "cpu_s": round(cpu, 2),
                     "x_real_time": round((t[-1] - t[0]) / cpu)})
    print(f"{(t[-1] - t[0]) / 3600:.2f} h at 50 Hz, {int(fast.sum())} frames near fast moves")
    print(f"{'filter':<10} {'RMSE quasi°':>11} {'RMSE fast°':>10} {'CPU s':>6} {'x real time':>11}")
    print(f"{'-' * 10} {'-' * 11} {'-' * 10} {'-' * 6} {'-' * 11}")
    for r in rows:
        print(f"{r['filter']:<10} {r['rmse_quasi_static_deg']:>11.3f} {r['rmse_fast_moves_deg']:>10.3f} "
              f"{r['cpu_s']:>6.2f} {r['x_real_time']:>11,}")
    path = write_results("ahrs_compare", {"key": rows, "rows": rows}, args.out, args.quick)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
