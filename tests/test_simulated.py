"""The simulated wearer: its physics, its script and its radio are what the posture tests trust."""

from __future__ import annotations

import csv
import time
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from slouchd.model import AXES, Mount, SampleBatch
from slouchd.sensors.base import SensorSource
from slouchd.sensors.simulated import (
    CLEAR_SLOUCH_MIN_DEG,
    CLEAR_SLOUCH_MIN_HOLD_S,
    FIRST_CLEAR_SLOUCH_BY_S,
    SimSettings,
    SimulatedSensor,
    SimulatedWearer,
    flexion_lateral_from_gravity,
    local_time_today,
    main,
    mount_matrix,
    stick_on_matrix,
    write_csv,
)

NOISELESS = dict(acc_noise_g=0.0, gyro_noise_dps=0.0, acc_bias_g=0.0, gyro_bias_dps=0.0, acc_lsb_g=0.0,
                 gyro_lsb_dps=0.0)
PERFECT_RADIO = dict(jitter_s=0.0, drop_prob=0.0, dup_prob=0.0, gaps_per_hour=0.0)
MOUNTS = [Mount(u, o) for u in AXES for o in AXES if u[1] != o[1]]


def window(wearer: SimulatedWearer, start_s: float, end_s: float) -> SampleBatch:
    return SampleBatch.concat(list(wearer.batches(60.0, start_s, end_s)))


def episode(wearer: SimulatedWearer, kind: str, min_s: float = 0.0, nth: int = 0):
    found = [e for e in wearer.episodes if e.kind == kind and e.end_s - e.plateau_start_s >= min_s]
    return found[nth]


def to_body(acc_sensor: np.ndarray, sensor_to_body: np.ndarray) -> np.ndarray:
    """Sensor-frame vectors to (up, out, right) components."""
    body = acc_sensor @ sensor_to_body.T  # body coordinates: x anterior, y left, z up
    return np.stack([body[:, 2], -body[:, 0], -body[:, 1]], -1)


# -- determinism and API --------------------------------------------------------------------


def test_same_seed_gives_the_same_samples_and_other_seeds_do_not():
    a = window(SimulatedWearer(SimSettings(seed=4)), 100, 160)
    b = window(SimulatedWearer(SimSettings(seed=4)), 100, 160)
    c = window(SimulatedWearer(SimSettings(seed=5)), 100, 160)
    assert np.array_equal(a.t_s, b.t_s) and np.array_equal(a.acc_g, b.acc_g)
    assert np.array_equal(a.gyro_dps, b.gyro_dps)
    assert a.acc_g.shape != c.acc_g.shape or not np.allclose(a.acc_g, c.acc_g)


def test_packets_and_batches_deliver_the_same_samples():
    wearer = SimulatedWearer(SimSettings(seed=2, drop_prob=0.05, dup_prob=0.05, day_s=600))
    packets = list(wearer.packets(0, 200))
    assert all(len(p) == wearer.settings.samples_per_packet for p in packets)
    joined = SampleBatch.concat(packets)
    for chunk_s in (0.3, 7.0, 45.0, 1000.0):
        chunks = list(wearer.batches(chunk_s, 0, 200))
        batched = SampleBatch.concat(chunks)
        assert np.array_equal(joined.t_s, batched.t_s)
        assert np.array_equal(joined.acc_g, batched.acc_g)
        assert np.array_equal(joined.gyro_dps, batched.gyro_dps)
    assert len(list(wearer.batches(45.0, 0, 200))) == 5


def test_gyro_off_gives_accelerometer_only_batches():
    batch = next(SimulatedWearer(SimSettings(gyro=False)).batches(10))
    assert batch.gyro_dps is None and not batch.has_gyro


@pytest.mark.parametrize("bad", [dict(rate_hz=20), dict(rate_hz=101), dict(samples_per_packet=0),
                                 dict(drop_prob=0.7), dict(acc_noise_g=-1), dict(day_s=60)])
def test_bad_settings_are_refused_with_the_field_named(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SimSettings(**bad)


# -- physics ----------------------------------------------------------------------------------


def test_at_rest_the_accelerometer_reads_one_g():
    wearer = SimulatedWearer(SimSettings(seed=1))
    start = window(wearer, 0, 30)
    desk = episode(wearer, "off_desk")
    lying = window(wearer, desk.start_s + 5, desk.start_s + 65)
    for batch in (start, lying):
        magnitude = np.linalg.norm(batch.acc_g, axis=1)
        assert abs(magnitude.mean() - 1.0) < 0.02  # bias is up to 0.01 g per axis
        assert magnitude.std() < 0.01


@pytest.mark.parametrize("mount", MOUNTS, ids=str)
def test_upright_with_no_inclination_the_up_axis_reads_plus_one_g(mount):
    wearer = SimulatedWearer(SimSettings(mount=mount, inclination_deg=0.0, twist_deg=0.0, **NOISELESS))
    batch = window(wearer, 0, 20)
    expected = mount.up_vector
    assert np.allclose(batch.acc_g.mean(axis=0), expected, atol=0.01)
    assert np.linalg.det(mount_matrix(mount)) == pytest.approx(1.0)
    assert np.allclose(mount_matrix(mount) @ mount.out_vector, [-1, 0, 0])


def test_the_mounting_inclination_looks_like_a_forward_bend():
    mount = Mount.parse("+y,-z")
    wearer = SimulatedWearer(SimSettings(mount=mount, inclination_deg=20.0, twist_deg=0.0, **NOISELESS))
    acc = window(wearer, 0, 20).acc_g.mean(axis=0)
    up, out = acc @ mount.up_vector, acc @ mount.out_vector
    assert np.degrees(np.arctan2(out, up)) == pytest.approx(20.0, abs=0.3)


@pytest.mark.parametrize("mount", ["+y,-z", "-x,+z", "+z,+y"])
def test_true_flexion_is_recovered_from_noiseless_gravity(mount):
    m = Mount.parse(mount)
    incl, twist = 17.0, -6.0
    wearer = SimulatedWearer(SimSettings(seed=3, mount=m, inclination_deg=incl, twist_deg=twist,
                                         **NOISELESS, **PERFECT_RADIO))
    sensor_to_body = stick_on_matrix(m, incl, twist)
    checked = Counter()
    for e in wearer.episodes:
        if e.kind == "take_off":
            break  # the first stick-on holds until then
        if e.kind not in ("upright", "slouch", "lean_back", "lean_side"):
            continue
        batch = window(wearer, e.plateau_start_s + 1, min(e.end_s - 1, e.plateau_start_s + 40))
        flex, lat = flexion_lateral_from_gravity(to_body(batch.acc_g, sensor_to_body))
        true_flex, true_lat, label = wearer.truth(batch.t_s)
        assert set(label) == {e.kind}
        assert np.abs(flex - true_flex).max() < 0.1
        assert np.abs(lat - true_lat).max() < 0.1
        assert np.nanmean(true_flex) == pytest.approx(e.flexion_deg, abs=1.0)
        checked[e.kind] += 1
    assert len(checked) == 4


def test_gyro_integrates_to_the_orientation_change_of_a_slow_slouch():
    wearer = SimulatedWearer(SimSettings(seed=6, **NOISELESS, **PERFECT_RADIO))
    slouch = wearer.first_clear_slouch
    batch = window(wearer, slouch.start_s - 2, slouch.plateau_start_s + 2)
    dt = np.diff(batch.t_s)
    # Integrate the body rate (sensor frame) sample by sample with the midpoint rate.
    rot = Rotation.identity()
    for rate, step in zip((batch.gyro_dps[1:] + batch.gyro_dps[:-1]) / 2, dt, strict=True):
        rot = rot * Rotation.from_rotvec(np.radians(rate) * step)
    # Gravity seen at the end = the start's, carried by the integrated rotation.
    predicted = rot.inv().apply(batch.acc_g[0])
    measured = batch.acc_g[-1]
    angle = np.degrees(np.arccos(np.clip(predicted @ measured / np.linalg.norm(predicted)
                                         / np.linalg.norm(measured), -1, 1)))
    turned = np.degrees(np.arccos(np.clip(batch.acc_g[0] @ measured / np.linalg.norm(measured)
                                          / np.linalg.norm(batch.acc_g[0]), -1, 1)))
    assert turned > CLEAR_SLOUCH_MIN_DEG - 2
    assert angle < 0.2


def test_gyro_matches_the_orientation_during_fast_moves_too():
    """The fast path (closed-form rate) agrees with differentiating the full sensor orientation."""
    day = SimulatedWearer(SimSettings(seed=2)).day(0)
    moves = [e for e in day.episodes if e.kind in ("reach", "stand_up", "walk", "sit_down", "put_on")]
    t = np.concatenate([np.linspace(e.start_s, min(e.end_s, e.start_s + 20), 400) for e in moves])
    acc_fast, gyro_fast = day.imu(t)
    acc_exact, gyro_exact = day.imu(t, exact=True)
    assert np.abs(gyro_fast).max() > 60
    assert np.abs(gyro_fast - gyro_exact).max() < 0.01
    assert np.abs(acc_fast - acc_exact).max() < 1e-6


def test_a_sensor_on_the_desk_has_no_micro_motion_while_a_sitting_wearer_breathes():
    wearer = SimulatedWearer(SimSettings(seed=1))
    s = wearer.settings
    desk = episode(wearer, "off_desk")
    lying = window(wearer, desk.start_s + 10, desk.start_s + 70)
    upright = episode(wearer, "upright", min_s=60)
    sitting = window(wearer, upright.plateau_start_s, upright.plateau_start_s + 60)
    # On the desk only sensor noise is left, on every axis.
    assert np.allclose(lying.acc_g.std(axis=0), s.acc_noise_g, rtol=0.15)
    assert np.allclose(lying.gyro_dps.std(axis=0), s.gyro_noise_dps, rtol=0.15)
    # On the back, breathing rocks the trunk: far above the noise floor.
    assert sitting.gyro_dps.std(axis=0).max() > 4 * s.gyro_noise_dps
    assert sitting.acc_g.std(axis=0).max() > 1.5 * s.acc_noise_g
    # And the desk pose is one no back takes while worn: the up axis is not up.
    up = lying.acc_g.mean(axis=0) @ s.mount.up_vector
    assert abs(up) < 0.1


def test_walking_shows_a_step_frequency_peak_near_two_hertz():
    wearer = SimulatedWearer(SimSettings(seed=1, rate_hz=50, **PERFECT_RADIO))
    walk = episode(wearer, "walk", min_s=60)
    batch = window(wearer, walk.plateau_start_s + 2, walk.plateau_start_s + 62)
    vertical = batch.acc_g @ wearer.settings.mount.up_vector
    spectrum = np.abs(np.fft.rfft(vertical - vertical.mean()))
    freqs = np.fft.rfftfreq(len(vertical), 1 / 50)
    peak = freqs[np.argmax(spectrum)]
    assert 1.7 <= peak <= 2.1
    assert 0.15 < vertical.max() - 1.0 < 0.45  # a bounce of about a quarter g


@pytest.mark.parametrize("seed", range(12))
def test_taking_the_sensor_off_and_on_is_a_smooth_hand_movement(seed):
    day = SimulatedWearer(SimSettings(seed=seed, day_s=3 * 3600)).day(0)
    handled = [e for e in day.episodes if e.kind in ("take_off", "put_on")]
    assert handled
    for e in handled:
        t = np.arange(e.start_s - 0.5, e.end_s + 0.5, 0.005)
        acc, gyro = day.imu(t)
        assert np.abs(gyro).max() < 400
        assert np.abs(np.diff(gyro, axis=0)).max() < 30  # no flips of the turning axis
        assert np.abs(np.linalg.norm(acc, axis=1) - 1).max() < 0.3


def test_standing_up_and_reaching_carry_real_acceleration():
    wearer = SimulatedWearer(SimSettings(seed=1, **NOISELESS, **PERFECT_RADIO))
    for kind in ("stand_up", "reach", "sit_down"):
        e = episode(wearer, kind)
        magnitude = np.linalg.norm(window(wearer, e.start_s, e.end_s).acc_g, axis=1)
        assert 0.05 < np.abs(magnitude - 1).max() < 0.8, kind


# -- radio ------------------------------------------------------------------------------------


def test_dropped_and_duplicated_packet_rates_match_the_settings():
    s = SimSettings(seed=9, drop_prob=0.05, dup_prob=0.03, gaps_per_hour=0.0, day_s=1800)
    wearer = SimulatedWearer(s)
    packets = list(wearer.packets())
    sent = wearer.samples_per_day // s.samples_per_packet
    starts = np.array([p.t_s[0] for p in packets])
    dups = int(np.sum(starts[1:] == starts[:-1]))
    delivered = len(packets) - dups
    assert (sent - delivered) / sent == pytest.approx(0.05, rel=0.15)
    assert dups / delivered == pytest.approx(0.03, rel=0.2)


def test_packet_times_are_evenly_spaced_inside_and_jittered_between():
    s = SimSettings(seed=3, rate_hz=40, samples_per_packet=8, **{**PERFECT_RADIO, "jitter_s": 0.01})
    packets = list(SimulatedWearer(s).packets(0, 60))
    for p in packets:
        assert np.allclose(np.diff(p.t_s), 1 / 40)
    true_start = np.arange(len(packets)) * 8 / 40
    lag = np.array([p.t_s[0] for p in packets]) - true_start
    assert lag.min() >= 0 and lag.max() <= 0.01 and lag.std() > 0.002


def test_a_fast_sensor_clock_delivers_more_samples_than_its_nominal_rate(tmp_path):
    s = SimSettings(seed=3, rate_hz=50, clock_error_ppm=20_000, **PERFECT_RADIO)
    wearer = SimulatedWearer(s)
    packets = list(wearer.packets(0, 60))
    assert sum(len(p) for p in packets) == pytest.approx(60 * 51, abs=5)
    assert all(np.allclose(np.diff(p.t_s), 1 / 50) for p in packets)  # nominal inside a packet
    arrivals = np.array([p.t_s[-1] for p in packets])
    assert np.median(np.diff(arrivals)) == pytest.approx(5 / 51, rel=1e-6)  # true rate between
    out = tmp_path / "fast.csv"
    write_csv(wearer, out, hours=60 / 3600)
    t = np.loadtxt(out, delimiter=",", skiprows=1, usecols=0)
    assert np.allclose(np.diff(t), 1 / 50) and len(t) == pytest.approx(60 * 50, abs=5)


def test_radio_gaps_deliver_no_packets():
    s = SimSettings(seed=2, gaps_per_hour=6.0, gap_min_s=5, gap_max_s=20, day_s=3600)
    wearer = SimulatedWearer(s)
    gaps = wearer.radio_gaps
    assert len(gaps) >= 2 and all(g.kind == "gap" and 5 <= g.duration_s <= 20 for g in gaps)
    times = np.concatenate([p.t_s for p in wearer.packets()])
    for g in gaps:
        inside = (times > g.start_s + 0.2) & (times < g.end_s - 0.2)
        assert not inside.any()
    assert np.diff(times).max() >= min(g.duration_s for g in gaps) - 0.2


# -- the script -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(0, 40))
def test_the_first_clear_slouch_starts_within_five_minutes(seed):
    wearer = SimulatedWearer(SimSettings(seed=seed))
    first = wearer.first_clear_slouch
    assert first.plateau_start_s < FIRST_CLEAR_SLOUCH_BY_S
    assert first.flexion_deg >= CLEAR_SLOUCH_MIN_DEG
    assert first.end_s - first.plateau_start_s >= CLEAR_SLOUCH_MIN_HOLD_S
    opening = wearer.episodes[0]
    assert opening.kind == "upright" and opening.duration_s >= 30


@pytest.mark.parametrize("seed", [1, 2, 3, 11])
def test_a_day_holds_every_situation_the_detector_must_handle(seed):
    wearer = SimulatedWearer(SimSettings(seed=seed))
    eps = wearer.episodes
    kinds = Counter(e.kind for e in eps)
    for kind in ("upright", "slouch", "stand_up", "standing", "walk", "sit_down", "lean_back",
                 "lean_side", "take_off", "off_desk", "put_on"):
        assert kinds[kind] >= 1, kind
    assert kinds["reach"] + kinds["type_arms"] >= 3
    assert all(a.end_s == b.start_s for a, b in pairwise(eps))
    assert eps[-1].end_s == pytest.approx(wearer.day_length_s)
    slouches = [e for e in eps if e.kind == "slouch"]
    assert any(8 <= e.flexion_deg <= 12 for e in slouches)
    assert any(e.flexion_deg >= 18 for e in slouches)
    assert any(e.end_s - e.plateau_start_s < 120 for e in slouches + [e for e in eps if e.kind == "reach"])
    assert any(e.kind == "walk" and e.duration_s >= 120 for e in eps)
    assert all(-20 <= e.flexion_deg <= -10 for e in eps if e.kind == "lean_back")
    assert all(10 <= abs(e.lateral_deg) <= 20 and e.flexion_deg == 0 for e in eps if e.kind == "lean_side")
    # Each time on the feet is either a real break (a walk of 2 min or more) or under 2 min.
    ups = [i for i, e in enumerate(eps) if e.kind == "stand_up"]
    downs = [i for i, e in enumerate(eps) if e.kind == "sit_down"]
    assert len(ups) == len(downs) >= 3
    for i, j in zip(ups, downs, strict=True):
        on_feet = eps[j].end_s - eps[i].start_s
        walked = max([e.duration_s for e in eps[i:j] if e.kind == "walk"], default=0.0)
        assert walked >= 120 or on_feet < 120
    # Sitting stretches: time between getting up; one of them longer than 50 minutes.
    ups = [0.0] + [e.start_s for e in eps if e.kind in ("stand_up", "take_off")]
    assert sorted(np.diff(ups))[-2] > 50 * 60  # two of them, in fact


@pytest.mark.parametrize("seed", range(20))
def test_shorter_days_keep_the_break_and_off_desk_guarantees(seed):
    eps = SimulatedWearer(SimSettings(seed=seed, day_s=3 * 3600)).episodes
    assert any(e.kind == "off_desk" and e.duration_s >= 300 for e in eps)
    assert any(e.kind == "walk" and e.duration_s >= 150 for e in eps)
    first_up = next(e.start_s for e in eps if e.kind == "stand_up")
    assert first_up > 55 * 60
    lunch = SimulatedWearer(SimSettings(seed=seed, day_s=4 * 3600)).episodes
    assert any(e.kind == "walk" and e.duration_s >= 480 for e in lunch)


def test_putting_the_sensor_back_on_changes_the_stick_on_a_little():
    wearer = SimulatedWearer(SimSettings(seed=2))
    sessions = wearer.stick_on
    assert len(sessions) == 1 + sum(e.kind == "put_on" for e in wearer.episodes) >= 2
    for (i0, t0), (i1, t1) in pairwise(sessions):
        assert (i0, t0) != (i1, t1)
        assert abs(i1 - i0) <= 4 and abs(t1 - t0) <= 4
    same = SimulatedWearer(SimSettings(seed=2, restick_deg=0.0)).stick_on
    assert len(set(same)) == 1 and len(same) == len(sessions)


def test_truth_is_not_a_number_while_the_sensor_is_off():
    wearer = SimulatedWearer(SimSettings(seed=1, start_s=1_700_000_000.0))
    desk = episode(wearer, "off_desk")
    t = wearer.settings.start_s + np.array([desk.start_s + 1, desk.end_s - 1, 10.0])
    flex, lat, label = wearer.truth(t)
    assert np.isnan(flex[:2]).all() and np.isnan(lat[:2]).all()
    assert list(label) == ["off_desk", "off_desk", "upright"]
    assert flex[2] == pytest.approx(0.0, abs=1.0)


def test_looping_days_continue_the_clock_with_new_scripts():
    s = SimSettings(seed=4, day_s=600, loop=True, start_s=1000.0)
    wearer = SimulatedWearer(s)
    day0, day1 = wearer.episodes_of_day(0), wearer.episodes_of_day(1)
    assert day1[0].start_s == pytest.approx(wearer.day_length_s)
    assert [e.kind for e in day0] != [e.kind for e in day1] or day0[1].duration_s != day1[1].duration_s
    batch = window(wearer, 590, 610)
    assert np.all(np.diff(batch.t_s) > -0.02)
    assert batch.t_s[-1] > 1000 + 605
    _, _, label = wearer.truth(np.array([1000 + 650.0]))
    assert label[0] == "upright"


# -- as a live sensor -------------------------------------------------------------------------


async def test_the_simulated_sensor_paces_the_day_and_keeps_every_buzz():
    s = SimSettings(seed=1, start_s=local_time_today(9.0))
    wearer = SimulatedWearer(s)
    sensor = SimulatedSensor(wearer, speed=3000.0)
    assert isinstance(sensor, SensorSource)
    batches = []
    began = time.monotonic()
    async with sensor:
        assert sensor.status.connected
        async for batch in sensor:
            batches.append(batch)
            if batch.t_s[-1] >= s.start_s + 300:
                break
        assert await sensor.buzz(2)
    elapsed = time.monotonic() - began
    assert not sensor.status.connected
    assert elapsed >= 0.9 * 300 / 3000  # paced: not faster than asked
    joined = SampleBatch.concat(batches)
    expected = SampleBatch.concat(list(wearer.batches(60.0, 0, joined.t_s[-1] - s.start_s - 0.05)))
    assert np.array_equal(joined.acc_g[: len(expected)], expected.acc_g)
    assert sensor.status.samples == len(joined) and sensor.status.packets == len(joined) // 5
    assert sensor.buzzes == [(float(joined.t_s[-1]), 2)]
    hour = time.localtime(s.start_s)
    assert (hour.tm_hour, hour.tm_min) == (9, 0)


async def test_an_unpaced_simulated_sensor_runs_as_fast_as_it_can():
    sensor = SimulatedSensor(SimulatedWearer(SimSettings(day_s=600)), speed=None)
    async with sensor:
        total = sum([len(b) async for b in sensor])
    assert total > 0.99 * 600 * 50
    with pytest.raises(ValueError, match="speed"):
        SimulatedSensor(SimulatedWearer(), speed=0)


# -- CSV --------------------------------------------------------------------------------------


def test_cli_writes_a_replay_csv_with_ground_truth(tmp_path):
    out = tmp_path / "day.csv"
    assert main(["--seed", "3", "--rate", "25", "--hours", "0.05", str(out)]) == 0
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["t", "ax", "ay", "az", "gx", "gy", "gz", "true_flexion_deg",
                       "true_lateral_deg", "label"]
    t = np.array([float(r[0]) for r in rows[1:]])
    assert t[0] == 0.0 and np.all(np.diff(t) > 0) and t[-1] < 180
    assert abs(len(t) - 180 * 25) < 100
    assert {r[-1] for r in rows[1:]} <= {"upright", "reach", "type_arms", "slouch"}


def test_csv_without_gyro_or_truth_has_the_bare_replay_header(tmp_path):
    out = tmp_path / "acc.csv"
    wearer = SimulatedWearer(SimSettings(gyro=False, dup_prob=0.2, jitter_s=0.05))
    rows = write_csv(wearer, out, truth=False, hours=0.01)
    lines = out.read_text().splitlines()
    assert lines[0] == "t,ax,ay,az" and len(lines) == rows + 1
    t = np.array([float(line.split(",")[0]) for line in lines[1:]])
    assert np.all(np.diff(t) > 0)  # duplicates dropped and sensor-clock times, as a recorder keeps


def test_cli_refuses_a_bad_rate(capsys, tmp_path):
    assert main(["--rate", "5", str(tmp_path / "x.csv")]) == 2
    assert "rate_hz" in capsys.readouterr().err


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rate=st.floats(25, 100), spp=st.integers(1, 10),
       jitter=st.floats(0, 0.05), gyro=st.booleans(), ppm=st.floats(-20_000, 20_000))
def test_any_seed_and_rate_give_sane_packets(seed, rate, spp, jitter, gyro, ppm):
    s = SimSettings(seed=seed, rate_hz=rate, samples_per_packet=spp, jitter_s=jitter, gyro=gyro,
                    clock_error_ppm=ppm)
    wearer = SimulatedWearer(s)
    for p in wearer.packets(0, 20):
        assert len(p) == spp and np.all(np.diff(p.t_s) > 0)
        assert np.isfinite(p.acc_g).all() and np.abs(p.acc_g).max() < 4
        assert (p.gyro_dps is not None) == gyro
    # And anywhere in the day, the physics stays bounded.
    day = wearer.day(0)
    t = np.random.default_rng(seed).uniform(0, wearer.day_length_s, 2000)
    acc, omega = day.imu(np.sort(t))
    assert np.isfinite(acc).all() and np.linalg.norm(acc, axis=1).max() < 3
    assert np.isfinite(omega).all() and np.abs(omega).max() < 400
    flex, lat, label = wearer.truth(np.sort(t))
    worn = ~np.isnan(flex)
    assert np.all((flex[worn] > -25) & (flex[worn] < 65)) and np.all(np.abs(lat[worn]) < 25)
    assert set(label) <= {"upright", "slouch", "reach", "type_arms", "stand_up", "standing", "walk",
                          "sit_down", "lean_back", "lean_side", "take_off", "off_desk", "put_on"}


# -- desk vibration and fast moves (opt-in) ---------------------------------------------------


def _band_rms_per_2s(acc: np.ndarray, rate: float) -> np.ndarray:
    from scipy import signal

    sos = signal.butter(4, [0.8, 20.0], btype="band", fs=rate, output="sos")
    y = signal.sosfiltfilt(sos, acc, axis=0)
    w = round(2 * rate)
    n = len(y) // w
    return np.sqrt(np.mean(np.sum(y[:n * w].reshape(n, w, 3) ** 2, axis=2), axis=1))


def test_desk_vibration_has_the_recorded_statistics_while_seated_and_nothing_elsewhere():
    s = SimSettings(seed=3, day_s=3 * 3600.0, desk_vibration=True, **NOISELESS)
    wearer = SimulatedWearer(s)
    n, nb = wearer.samples_per_day, wearer.block_samples
    vib = np.concatenate([wearer.desk_vibration(0, a, min(nb, n - a)) for a in range(0, n, nb)])
    _, _, label = wearer.truth(np.arange(n) / wearer.rate_hz)
    seated = np.isin(label, ("upright", "slouch", "type_arms", "lean_back", "lean_side"))
    rms = _band_rms_per_2s(vib[seated], 50.0)
    # The recording (Casale subject 15, working at computer): p50 0.013 g, p75 0.028, p90 0.079.
    assert 0.010 <= np.median(rms) <= 0.020
    assert 0.020 <= np.percentile(rms, 75) <= 0.045
    assert 0.05 <= np.percentile(rms, 90) <= 0.12
    assert rms.max() <= 0.45
    away = np.isin(label, ("walk", "standing", "off_desk"))
    assert away.any() and np.abs(vib[away]).max() == 0.0


def test_desk_vibration_is_added_to_the_delivered_samples_the_same_whichever_way_they_are_read():
    base = dict(seed=4, day_s=900.0, **NOISELESS, **PERFECT_RADIO)
    calm = window(SimulatedWearer(SimSettings(**base)), 100, 220)
    shaken_wearer = SimulatedWearer(SimSettings(desk_vibration=True, **base))
    shaken = window(shaken_wearer, 100, 220)
    fresh = SimulatedWearer(SimSettings(desk_vibration=True, **base))
    again = SampleBatch.concat(list(fresh.packets(100, 220)))
    assert np.array_equal(shaken.acc_g, again.acc_g)
    diff = np.asarray(shaken.acc_g) - np.asarray(calm.acc_g)
    assert 0.004 < np.sqrt(np.mean(np.sum(diff**2, axis=1))) < 0.3
    assert np.array_equal(shaken.gyro_dps, calm.gyro_dps)  # vibration is specific force only


def test_fast_moves_turn_the_trunk_at_up_to_400_degrees_per_second_with_a_consistent_gyro():
    wearer = SimulatedWearer(SimSettings(seed=2, day_s=2 * 3600.0, fast_moves=True, **NOISELESS))
    moves = [e for e in wearer.episodes if e.kind == "fast_move"]
    assert len(moves) >= 5
    day = wearer.day(0)
    peaks = []
    for e in moves[:6]:
        t = np.arange(e.start_s, e.end_s, 0.002)
        acc_fast, gyro_fast = day.imu(t)
        acc_exact, gyro_exact = day.imu(t, exact=True)
        assert np.abs(gyro_fast - gyro_exact).max() < 0.05
        assert np.abs(acc_fast - acc_exact).max() < 1e-5
        peaks.append(np.linalg.norm(gyro_fast, axis=1).max())
    assert max(peaks) > 150 and max(peaks) < 420


def test_the_csv_writer_can_switch_desk_vibration_and_fast_moves_on(tmp_path):
    calm, shaken = tmp_path / "calm.csv", tmp_path / "shaken.csv"
    assert main(["--hours", "0.02", str(calm)]) == 0
    assert main(["--hours", "0.02", "--desk-vibration", "--fast-moves", str(shaken)]) == 0
    a = np.loadtxt(calm, delimiter=",", skiprows=1, usecols=(0, 1, 2, 3))
    b = np.loadtxt(shaken, delimiter=",", skiprows=1, usecols=(0, 1, 2, 3))
    assert a.shape == b.shape and np.array_equal(a[:, 0], b[:, 0])
    assert 0.004 < np.sqrt(np.mean(np.sum((a[:, 1:] - b[:, 1:]) ** 2, axis=1))) < 0.3
