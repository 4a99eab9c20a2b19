"""Sample stamping on its own: arrival times and sensor clocks -> Unix times that never go back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slouchd.sensors.ble.stamping import (
    SENSOR_CLOCK_RESYNC_S,
    SampleStamper,
    first_newer,
    map_sensor_clock,
    spread_back,
)

T0 = 1_750_000_000.0


def test_a_batch_is_spread_back_from_its_arrival_at_the_nominal_rate() -> None:
    t = spread_back(T0, 4, 25.0, None)
    assert np.allclose(t, [T0 - 0.12, T0 - 0.08, T0 - 0.04, T0])


def test_a_batch_arriving_early_starts_one_period_after_the_last_sample() -> None:
    # The previous batch ended 0.1 s before this one arrived: 4 samples at 25 Hz need 0.12 s.
    t = spread_back(T0, 4, 25.0, T0 - 0.1)
    assert t[0] == pytest.approx(T0 - 0.1 + 0.04) and t[-1] == T0
    assert np.allclose(np.diff(t), 0.02)


def test_a_batch_with_no_room_after_the_last_sample_shares_the_arrival_time() -> None:
    # Not even one period fits between the last sample and the arrival.
    t = spread_back(T0, 4, 25.0, T0 - 0.02)
    assert np.all(t == T0)


def test_a_batch_arriving_before_the_last_sample_is_pushed_forward_to_it() -> None:
    t = spread_back(T0, 3, 25.0, T0 + 1.0)
    assert np.all(t == T0 + 1.0)


def test_the_sensor_clock_is_anchored_at_the_newest_sample_and_kept_while_close() -> None:
    t_sensor = np.array([10.00, 10.02, 10.04])
    t, offset = map_sensor_clock(t_sensor, T0, None)
    assert offset == T0 - 10.04 and t[-1] == T0
    # 1.5 s of drift later: still within SENSOR_CLOCK_RESYNC_S, the sensor's spacing is kept.
    t2, offset2 = map_sensor_clock(t_sensor + 1.0, T0 + 2.5, offset)
    assert offset2 == offset and t2[-1] == pytest.approx(T0 + 1.0)


def test_a_sensor_clock_that_jumped_is_anchored_again() -> None:
    _, offset = map_sensor_clock(np.array([10.0]), T0, None)
    t, offset2 = map_sensor_clock(np.array([500.0]), T0 + 0.1, offset)
    assert offset2 != offset and t[-1] == T0 + 0.1


def test_first_newer_finds_where_repeats_end() -> None:
    t = np.array([1.0, 2.0, 3.0])
    assert first_newer(t, None) == 0
    assert first_newer(t, 0.5) == 0
    assert first_newer(t, 2.0) == 2
    assert first_newer(t, 3.0) is None


def test_repeated_sensor_frames_are_dropped_and_overlaps_trimmed() -> None:
    stamper = SampleStamper(50.0)
    frame = np.array([1.00, 1.02, 1.04])
    first = stamper.stamp(T0, 3, frame)
    assert first is not None and first.first == 0
    assert stamper.stamp(T0 + 0.06, 3, frame) is None  # the same frame again
    overlap = stamper.stamp(T0 + 0.08, 3, frame + 0.04)  # 1.04 again, then two new ones
    assert overlap is not None and overlap.first == 1 and len(overlap.t_s) == 2
    assert overlap.t_s[0] > first.t_s[-1]


def test_a_new_link_takes_the_sensor_clock_offset_again() -> None:
    stamper = SampleStamper(50.0)
    stamper.stamp(T0, 1, np.array([100.0]))
    stamper.new_link()  # the sensor rebooted: its clock starts again near 0
    again = stamper.stamp(T0 + 5.0, 1, np.array([0.5]))
    assert again is not None and again.t_s[-1] == T0 + 5.0


arrival_gaps = st.lists(st.floats(-0.5, 2.0, allow_nan=False), min_size=1, max_size=40)
sizes = st.integers(1, 12)
rates = st.sampled_from([1.0, 12.5, 25.0, 50.0, 100.0])


@given(gaps=arrival_gaps, n=sizes, rate=rates)
def test_host_times_never_go_back_and_end_at_the_later_of_arrival_and_last(
        gaps: list[float], n: int, rate: float) -> None:
    # Arrivals jitter, burst and even go back a little (host scheduling): times never do.
    stamper = SampleStamper(rate)
    arrival = T0
    previous: float | None = None
    for gap in gaps:
        arrival += gap
        out = stamper.stamp(arrival, n, None)
        assert out is not None and out.first == 0 and len(out.t_s) == n
        assert np.all(np.diff(out.t_s) >= 0)
        if previous is not None:
            assert out.t_s[0] >= previous
        assert out.t_s[-1] == (arrival if previous is None else max(arrival, previous))
        previous = float(out.t_s[-1])


@given(n=sizes, rate=rates, packets=st.integers(1, 30))
def test_host_times_of_evenly_arriving_batches_keep_the_nominal_spacing(
        n: int, rate: float, packets: int) -> None:
    stamper = SampleStamper(rate)
    times = np.concatenate([stamper.stamp(T0 + k * n / rate, n, None).t_s  # type: ignore[union-attr]
                            for k in range(packets)])
    assert np.allclose(np.diff(times), 1.0 / rate, rtol=0, atol=1e-6)


@given(frames=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 10)), min_size=1, max_size=30),
       lag=st.floats(0.0, 1.5), rate=rates)
def test_sensor_times_strictly_increase_and_stay_near_arrival(
        frames: list[tuple[int, int]], lag: float, rate: float) -> None:
    # Frames of a sensor counter (start tick, n samples), re-sent and overlapping at random.
    stamper = SampleStamper(rate)
    delivered: list[float] = []
    for start, n in frames:
        t_sensor = (start + np.arange(n)) / rate
        arrival = T0 + float(t_sensor[-1]) + lag
        out = stamper.stamp(arrival, n, t_sensor)
        if out is None:
            assert delivered and delivered[-1] >= float(t_sensor[-1]) + T0 - SENSOR_CLOCK_RESYNC_S - 1e-6
            continue
        assert len(out.t_s) == n - out.first
        assert abs(out.t_s[-1] - arrival) <= SENSOR_CLOCK_RESYNC_S + 1e-6
        delivered.extend(out.t_s.tolist())
    assert np.all(np.diff(delivered) > 0)
