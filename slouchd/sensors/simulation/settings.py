"""Settings of the simulated wearer."""

from __future__ import annotations

from dataclasses import dataclass, field

from slouchd.model import Mount


@dataclass(frozen=True)
class SimSettings:
    """Everything that shapes a simulated day. Defaults look like a real 50 Hz sensor with a gyro.

    Attributes:
        seed: which day (durations, depths, times, mounting, noise); same seed = same samples.
        rate_hz: sample rate, Hz (25..100).
        gyro: whether the sensor has a gyroscope.
        mount: sensor axes pointing up and out of the back.
        inclination_deg: mounting inclination when upright (kyphosis), degrees, + = like a forward
            bend; None = seed-dependent in 10..30.
        twist_deg: stick-on twist about the out axis, degrees; None = seed-dependent in -10..10.
        restick_deg: putting the sensor back on after the desk changes inclination and twist by
            up to this much, degrees (as in real life); 0 = exactly as before.
        acc_noise_g: accelerometer white noise, g RMS per axis.
        gyro_noise_dps: gyroscope white noise, deg/s RMS per axis.
        acc_bias_g: accelerometer bias magnitude, g (a fixed seed-dependent direction per axis).
        gyro_bias_dps: gyroscope bias magnitude, deg/s per axis (seed-dependent signs).
        acc_lsb_g: accelerometer resolution, g per count (default: 16 bits over +-8 g); 0 = exact.
        gyro_lsb_dps: gyroscope resolution, deg/s per count (default: 16 bits over +-1000 deg/s);
            0 = exact.
        jitter_s: host-arrival jitter added to each packet's timestamps, seconds (uniform 0..jitter);
            sample times inside a packet stay evenly spaced.
        clock_error_ppm: how far the sensor's clock is off its nominal rate, parts per million
            (+ = fast): samples really come at ``rate_hz * (1 + ppm / 1e6)``, but packet times
            space them at the nominal rate and a recording counts them at it.
        samples_per_packet: samples carried by one radio packet (1..10).
        drop_prob: probability that a packet is lost.
        dup_prob: probability that a packet is delivered twice (identical times and values).
        gaps_per_hour: mean number of radio gaps (no packets at all) per hour.
        gap_min_s: shortest radio gap, seconds.
        gap_max_s: longest radio gap, seconds.
        start_s: ``t_s`` of the first sample (e.g. the Unix time of 09:00 local for the demo).
        day_s: length of one scripted day, seconds.
        loop: keep going forever, day after day (day k uses seed ``seed + k``), for soak tests.
        desk_vibration: shake the sensor while seated as typing and mouse work do (a model fitted
            to a real chest-worn recording, see :mod:`~slouchd.sensors.simulation.vibration`):
            0.8-20 Hz specific force, vector RMS per 2 s median 0.013 g, p90 0.08 g, bursts to
            0.4 g. Off by default so the default days stay as they were.
        fast_moves: add fast trunk moves to seated stretches (``fast_move`` episodes: a bend,
            lean and twist about a random axis at 150-400 deg/s and back). Changes the script.
    """

    seed: int = 1
    rate_hz: float = 50.0
    gyro: bool = True
    mount: Mount = field(default_factory=lambda: Mount.parse("+y,-z"))
    inclination_deg: float | None = None
    twist_deg: float | None = None
    restick_deg: float = 4.0
    acc_noise_g: float = 0.002
    gyro_noise_dps: float = 0.05
    acc_bias_g: float = 0.01
    gyro_bias_dps: float = 0.3
    acc_lsb_g: float = 1 / 4096
    gyro_lsb_dps: float = 1 / 32.8
    jitter_s: float = 0.008
    clock_error_ppm: float = 0.0
    samples_per_packet: int = 5
    drop_prob: float = 0.002
    dup_prob: float = 0.001
    gaps_per_hour: float = 0.5
    gap_min_s: float = 3.0
    gap_max_s: float = 60.0
    start_s: float = 0.0
    day_s: float = 8 * 3600.0
    loop: bool = False
    desk_vibration: bool = False
    fast_moves: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not 25.0 <= self.rate_hz <= 100.0:
            problems.append(f"rate_hz = {self.rate_hz}: must be 25..100")
        if not 1 <= self.samples_per_packet <= 10:
            problems.append(f"samples_per_packet = {self.samples_per_packet}: must be 1..10")
        for name in ("drop_prob", "dup_prob"):
            if not 0.0 <= getattr(self, name) < 0.5:
                problems.append(f"{name} = {getattr(self, name)}: must be 0..0.5")
        for name in ("acc_noise_g", "gyro_noise_dps", "acc_bias_g", "gyro_bias_dps", "acc_lsb_g",
                     "gyro_lsb_dps", "jitter_s", "gaps_per_hour", "restick_deg"):
            if getattr(self, name) < 0:
                problems.append(f"{name} = {getattr(self, name)}: must be >= 0")
        if not 0 < self.gap_min_s <= self.gap_max_s:
            problems.append(
                f"gap_min_s..gap_max_s = {self.gap_min_s}..{self.gap_max_s}: must be 0 < min <= max")
        if self.day_s < 600.0:
            problems.append(f"day_s = {self.day_s}: must be >= 600")
        if abs(self.clock_error_ppm) > 50_000:
            problems.append(f"clock_error_ppm = {self.clock_error_ppm}: must be -50000..50000")
        if problems:
            raise ValueError("; ".join(problems))


