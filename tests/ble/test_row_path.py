"""The row path: one-sample notifications decoded and stamped as Python floats, no numpy call.

The BLE source keeps samples of decoders with a row path (struct layouts, WitMotion) as floats
until its consumer takes them (``PacketPath.decode_held``, ``Link.hold``). These tests hold it to
the array path it replaces: the same samples, times, drops and counts, compared to the bit (``==``
on float64 arrays, not ``allclose``), on documented vectors and fuzzed packet streams.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slouchd.model import SampleBatch, SampleRows
from slouchd.sensors.base import SensorStatus
from slouchd.sensors.ble.context import SourceContext
from slouchd.sensors.ble.link import Link
from slouchd.sensors.ble.stamping import spread_back_floats
from slouchd.sensors.ble.streaming import PacketPath
from slouchd.sensors.decoders import ProfileDecoder
from slouchd.sensors.profiles import Profile, load_profiles
from slouchd.sensors.settings import BleSettings
from tests.fake_clock import FakeClock

PROFILES = load_profiles()
ROWS = sorted(n for n, p in PROFILES.items() if ProfileDecoder(p).has_rows)
T0 = 1_750_000_000.0

#: WitMotion's documented 0x61 data frame (WIT standard protocol: acc, gyro, angle as 9 x int16),
#: the same vector as tests/ble/test_decoders.py's.
WIT = "55 61 00 00 00 00 00 08 00 00 00 00 00 00 00 00 00 00 00 00"


def _float_generic() -> Profile:
    """The generic layout with float32 fields: the one kind of struct that can carry NaN."""
    g = PROFILES["generic"]
    stream = dataclasses.replace(g.stream, format="<fff", acc_scale=[1.0, 1.0, 1.0])
    return dataclasses.replace(g, stream=stream)


def _good_packet(prof: Profile, body: bytes) -> bytes:
    """A packet of the profile's own length, the bytes after its header taken from ``body``."""
    s = prof.stream
    if s.decoder == "witmotion":
        return bytes.fromhex("5561") + (body + bytes(18))[:18]
    size = struct.calcsize(s.format)
    n = s.samples or 1 + len(body) // size % 4
    pre = s.header_bytes if s.skip < 0 else (s.header_bytes + bytes(s.skip))[:s.skip]
    return pre + (body * (n * size // max(len(body), 1) + 1) + bytes(n * size))[:n * size]


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=True))


def _packets(prof: Profile):
    """Streams of packets: mostly well-formed ones of random content, some malformed bytes."""
    good = st.binary(min_size=1, max_size=64).map(lambda b: _good_packet(prof, b))
    return st.lists(st.one_of(good, good, good, st.binary(max_size=40)), min_size=1, max_size=12)


@pytest.mark.parametrize("name", ROWS)
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_the_row_path_decodes_every_profile_to_the_same_floats_and_drops(name: str, data) -> None:
    prof = PROFILES[name]
    arrays, rows = ProfileDecoder(prof), ProfileDecoder(prof)
    for pkt in data.draw(_packets(prof)):
        a, r = arrays.feed(pkt), rows.feed_rows(pkt)
        assert r.drops == a.drops
        acc = np.array(r.acc_g, dtype=float).reshape(-1, 3)
        assert _same(acc, a.acc_g)
        gyro = None if r.gyro_dps is None else np.array(r.gyro_dps, dtype=float).reshape(-1, 3)
        assert _same(gyro, a.gyro_dps)
        assert arrays.pending() == rows.pending()


def test_the_row_path_reads_documented_vectors_as_the_array_path_does() -> None:
    # micro:bit (codal MicroBitAccelerometerService: <hhh milli-g) and WitMotion's 0x61 frame.
    for name, hexstr in (("microbit", "F0 FF 28 00 04 FC"), ("witmotion", WIT),
                         ("thingy52", "00 00 00 00 00 04 30 00 00 00 F0 FF 40 01 B0 FF 80 02")):
        pkt = bytes.fromhex(hexstr)
        a, r = ProfileDecoder(PROFILES[name]).feed(pkt), ProfileDecoder(PROFILES[name]).feed_rows(pkt)
        assert len(r.acc_g) == len(a) == 1
        assert r.acc_g == [tuple(a.acc_g[0])]
        assert (r.gyro_dps is None) == (a.gyro_dps is None)
        if r.gyro_dps is not None:
            assert r.gyro_dps == [tuple(a.gyro_dps[0])]
    assert ProfileDecoder(PROFILES["microbit"]).feed_rows(bytes.fromhex("F0FF280004FC")).acc_g == [
        (-16 * -0.001, 40 * -0.001, -1020 * -0.001)]


def test_nan_and_infinity_are_dropped_whole_on_both_paths() -> None:
    prof = _float_generic()
    for bad in (float("nan"), float("inf")):
        pkt = struct.pack("<fff", 0.0, bad, 1.0)
        a, r = ProfileDecoder(prof).feed(pkt), ProfileDecoder(prof).feed_rows(pkt)
        assert len(a) == 0 and r.acc_g == [] and [d.reason for d in r.drops] == ["not_finite"] == [
            d.reason for d in a.drops]
    ok = ProfileDecoder(prof).feed_rows(struct.pack("<fff", 0.25, -0.5, 1.0))
    assert ok.acc_g == [(0.25, -0.5, 1.0)] and ok.drops == []


@settings(max_examples=500, deadline=None)
@given(arrival=st.floats(1.6e9, 1.9e9), n=st.integers(1, 40),
       rate=st.sampled_from([3.0, 25.0, 50.0, 52.0, 104.0]), last=st.one_of(st.none(), st.floats(-2.0, 0.5)))
def test_float_stamps_are_numpy_linspace_to_the_bit(arrival: float, n: int, rate: float,
                                                     last: float | None) -> None:
    last_t = None if last is None else arrival + last
    got = spread_back_floats(arrival, n, rate, last_t)
    end = arrival if last_t is None else max(arrival, last_t)
    start = end - (n - 1) / rate
    if last_t is not None and start <= last_t:
        start = min(last_t + 1.0 / rate, end)
    assert np.array_equal(np.array(got), np.linspace(start, end, n))


def _path(prof: Profile, clock: FakeClock) -> PacketPath:
    log = logging.LoggerAdapter(logging.getLogger("slouchd.sensors.ble"), {"rate_key": prof.name})
    path = PacketPath(SourceContext("", BleSettings(), clock, SensorStatus(), log, prof))
    path.start_link()
    return path


@pytest.mark.parametrize("name", ROWS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_held_rows_are_the_array_paths_batches_times_and_counts(name: str, data) -> None:
    prof = PROFILES[name]
    clock = FakeClock()
    arrays, rows = _path(prof, clock), _path(prof, clock)
    assert rows.rows and rows.epoch_offset == arrays.epoch_offset
    mute_at = data.draw(st.integers(0, 12))
    packets = data.draw(_packets(prof))
    # Arrivals as BlueZ gives them: mostly at the rate, sometimes bursts at one instant.
    gaps = data.draw(st.lists(st.sampled_from([0.0, 0.0, 0.001, 1 / prof.rate_hz, 0.3]),
                              min_size=len(packets), max_size=len(packets)))
    want: list[SampleBatch] = []
    link = Link(1)
    arrival = 1000.0
    for k, (pkt, gap) in enumerate(zip(packets, gaps, strict=True)):
        arrival += gap
        if k == mute_at:
            arrays.mute(arrival + 0.05)
            rows.mute(arrival + 0.05)
        a = arrays.decode(arrival, pkt)
        r = rows.decode_held(arrival, pkt)
        assert (a is None) == (r is None)
        if a is not None and r is not None:
            assert isinstance(r, SampleRows) and r.t_last_s == float(a.t_s[-1])
            want.append(a)
            link.hold(r, ready=False)
    assert rows.status == arrays.status
    got = link.take()
    assert link.held == [] and link.held_samples == 0 and link.held_packets == 0
    assert len(got) <= 1  # one run of rows, however many notifications
    if want:
        joined = SampleBatch.concat(want)
        (one,) = got
        assert _same(one.t_s, joined.t_s) and _same(one.acc_g, joined.acc_g)
        assert _same(one.gyro_dps, joined.gyro_dps)


def test_a_link_keeps_rows_and_batches_in_order_and_apart_where_gyro_differs() -> None:
    def rows(t: float, gyro: bool) -> SampleRows:
        return SampleRows([t], [(t, 0.0, 1.0)], [(1.0, 2.0, 3.0)] if gyro else None)

    def arrays(t: float) -> SampleBatch:
        return SampleBatch(np.array([t]), np.array([[t, 0.0, 1.0]]), np.array([[1.0, 2.0, 3.0]]))

    link = Link(1)
    for item in (rows(1.0, True), rows(2.0, True), arrays(3.0), rows(4.0, True), rows(5.0, False),
                 rows(6.0, False)):
        link.hold(item, ready=False)
    assert link.held_packets == 6 and link.held_samples == 6 and link.queue.empty()
    got = link.take()
    assert [b.t_s.tolist() for b in got] == [[1.0, 2.0], [3.0], [4.0], [5.0, 6.0]]
    assert [b.has_gyro for b in got] == [True, True, True, False]
    assert all(isinstance(b, SampleBatch) for b in got)
    assert got[0].acc_g.tolist() == [[1.0, 0.0, 1.0], [2.0, 0.0, 1.0]]
    link.hold(rows(7.0, True), ready=True)
    assert link.queue.qsize() == 1 and math.isclose(link.take()[0].t_s[0], 7.0)
