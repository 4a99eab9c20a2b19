"""Decoders: real and documented byte vectors per profile, malformed input, hypothesis fuzzing.

Every vector names where it comes from. "Documented" vectors are bytes built from the vendor's
documented layout (the expected values follow from the layout, not from our code); "real" ones
are copied from the vendor's or an SDK's own tests.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slouchd.sensors.decoders import ProfileDecoder
from slouchd.sensors.profiles import Profile, load_profiles

PROFILES = load_profiles()
KNOWN_REASONS = {"short", "long", "wrong_header", "garbage", "bad_frame", "bad_delta", "not_available",
                 "duplicate", "not_finite", "needs_factor"}


def decode(profile: str | Profile, hexstr: str):
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    return ProfileDecoder(prof).feed(bytes.fromhex(hexstr))


def assert_close(actual, expected, atol: float = 1e-9) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=1e-9, atol=atol)


def reasons(samples) -> list[str]:
    return [d.reason for d in samples.drops]


# -- micro:bit --------------------------------------------------------------------------------

def test_microbit_milli_g_with_the_gravity_sign_flipped() -> None:
    # Layout: lancaster-university microbit-dal/codal MicroBitAccelerometerService.cpp: <hhh milli-g.
    # Sign: codal-core Accelerometer::instantaneousPosture treats z < -1000+tol as FACE_UP, i.e.
    # the axis pointing up reads -1 g: flipped so that up reads +1 g.
    s = decode("microbit", "F0 FF 28 00 04 FC")  # x=-16, y=40, z=-1020 mg (face up)
    assert_close(s.acc_g, [[0.016, -0.040, 1.020]])
    assert s.gyro_dps is None and s.t_sensor_s is None
    flat = decode("microbit", "00 00 00 00 18 FC")  # z = -1000 mg: lying face up
    assert flat.acc_g[0, 2] == pytest.approx(1.0)


# -- Thingy:52 --------------------------------------------------------------------------------

def test_thingy52_q6_10_g_and_q11_5_dps_with_the_inverted_accelerometer_flipped() -> None:
    # Layout: Nordic-Thingy52-FW 02_firmware_architecture.dox, raw data EF680406: 9 x int16,
    # accel Q6.10 g, gyro Q11.5 deg/s, compass Q12.4 uT (m_motion.c shifts the MPL's Q16.16).
    # Sign: drv_motion.c sets the accelerometer orientation matrix to -I, "inverted to get
    # positive readings when axis is aligned with g (down)": z = +1024 means z points down.
    s = decode("thingy52", "00 00 00 00 00 04 30 00 00 00 F0 FF 40 01 B0 FF 80 02")
    assert_close(s.acc_g, [[0.0, 0.0, -1.0]])
    assert_close(s.gyro_dps, [[1.5, 0.0, -0.5]])
    face_up = decode("thingy52", "00 00 00 02 00 FC 00 00 00 00 00 00 00 00 00 00 00 00")
    assert_close(face_up.acc_g, [[0.0, -0.5, 1.0]])


# -- CC2650 SensorTag -------------------------------------------------------------------------

def test_sensortag_gyro_then_accel_at_8g() -> None:
    # Layout: TI BLE SDK movementservice.c: 18 bytes <9h gyro xyz, accel xyz, mag xyz.
    # Scale: SensorMpu9250.c accConvert raw/(32768/8) at the +-8 g range the profile writes
    # (config 0x023F), gyroConvert raw*500/65536.
    s = decode("sensortag", "83 00 00 00 BE FF 33 FF 66 00 00 10 00 00 00 00 00 00")
    assert_close(s.gyro_dps, [[131 * 500 / 65536, 0.0, -66 * 500 / 65536]])
    assert_close(s.acc_g, [[-205 / 4096, 102 / 4096, 1.0]])
    start = [st_.data for st_ in PROFILES["sensortag"].startup]
    assert start == ["0a", "3f 02"]  # 100 ms period; gyro+accel, range bits 8-9 = 2 (+-8 g)


# -- Polar H10 --------------------------------------------------------------------------------

# Real frame: polarofficial/polar-ble-sdk AccDataTest.kt "process acc raw data frame type 1"
# (header 02 | timestamp 2 000 000 000 ns | frame type 01, then 36 samples of <hhh mG).
POLAR_FRAME_TYPE1 = (
    "02 00 94 35 77 00 00 00 00 01 F7 FF FF FF E7 03 F8 FF FE FF E5 03 F9 FF FF FF E5 03 FA FF FF FF E6 03 "
    "FA FF FE FF E6 03 F9 FF FF FF E5 03 F8 FF FF FF E6 03 F8 FF FE FF E6 03 FA FF FF FF E5 03 FA FF FF FF "
    "E7 03 FA FF FF FF E5 03 F8 FF FF FF E6 03 F7 FF FF FF E6 03 F8 FF FE FF E6 03 F9 FF FE FF E7 03 F9 FF "
    "00 00 E6 03 F9 FF FF FF E6 03 F7 FF FE FF E5 03 F9 FF FF FF E5 03 F9 FF FF FF E5 03 FA FF 00 00 E6 03 "
    "F9 FF FE FF E6 03 F8 FF FF FF E6 03 F8 FF FF FF E5 03 F9 FF FF FF E6 03 F9 FF FF FF E5 03 FA FF FF FF "
    "E6 03 F9 FF FF FF E5 03 F9 FF FF FF E5 03 F8 FF FE FF E6 03 F9 FF FF FF E6 03 F9 FF FF FF E6 03 F9 FF "
    "00 00 E5 03 F9 FF FE FF E6 03 F8 FF FE FF E6 03 F7 FF FE FF E6 03")


def test_polar_raw_frame_type_1_real_vector() -> None:
    s = decode("polar-h10", POLAR_FRAME_TYPE1)
    assert len(s) == 36
    assert_close(s.acc_g[:2], [[-0.009, -0.001, 0.999], [-0.008, -0.002, 0.997]])
    # The timestamp is the LAST sample's, ns since 2000-01-01; earlier ones at the profile's 50 Hz.
    assert s.t_sensor_s[-1] == pytest.approx(2.0)
    assert np.allclose(np.diff(s.t_sensor_s), 1 / 50)


def test_polar_delta_frame_type_1_real_vector() -> None:
    # AccDataTest.kt "process acc compressed data type 1": reference (-15, 20, 1008) mG and one
    # 6-bit delta (-5, -3, 0). (The test's comment says -22 for FFF1; its assertion uses -15.)
    s = decode("polar-h10", "02 65 00 00 00 00 00 00 00 81 F1 FF 14 00 F0 03 06 01 7B 0F 08")
    assert_close(s.acc_g, [[-0.015, 0.020, 1.008], [-0.020, 0.017, 1.008]])


def test_polar_delta_frame_type_0_real_vector_with_factor() -> None:
    # AccDataTest.kt "process acc compressed data type 0": factor 2.44E-4 g per count,
    # 1 reference + 56 ten-bit deltas; first delta (+190, -105, -85).
    hexstr = (
        "02 00 94 35 77 00 00 00 00 80 71 07 F0 6A 9E 8D 0A 38 BE 5C BE BA 2F 96 B3 EE 4B E5 AD FB 42 B9 "
        "EB BE 4C FE BA 2F 92 BF EE 4B E4 B1 FB 12 B9 EC BD 3C 3E BB 2F 8F D3 DE 4B E3 B5 F7 D2 B8 ED BD 30 "
        "7E 7B 2F 8B E3 CE 8B E2 BA F7 A2 B8 EE BC 20 BE 7B 2F 88 F3 CE CB E1 BD EF 52 F8 EF BC 18 FE 3B 2F "
        "84 03 BF CB E0 C2 EF 32 B8 F0 BB 04 4E BC 2E 81 13 AF 0B E0 C6 EF F2 F7 F1 B9 FC 7D BC 2E 7D 27 9F "
        "4B DF CA EB C2 F7 F2 B8 EC CD 7C 2E 7B 37 8F 4B DE CE E3 92 F7 F3 B8 E0 0D FD 2D 77 4B 7F CB DD D2 "
        "DF 62 37 F5 B7 D4 4D BD 2D 74 5B 6F CB DC D7 D7 32 37 F6 B5 C8 8D 7D 2D 71 6B 4F 4B DC DC D3 F2 36 "
        "F7 B4 BC DD FD 2C 6F 7B 3F 4B DB E0 CF D2 36 F8 B2 B0 2D BE 2C 6C 8F 1F CB DA E3 C7 A2 76 F9")
    base = PROFILES["polar-h10"]
    prof = dataclasses.replace(base, stream=dataclasses.replace(base.stream, options={"factor": 2.44e-4}))
    s = decode(prof, hexstr)
    assert len(s) == 57
    f = 2.44e-4
    assert_close(s.acc_g[0], [1905 * f, 27376 * f, -29282 * f])
    assert_close(s.acc_g[1], [(1905 + 190) * f, (27376 - 105) * f, (-29282 - 85) * f])
    assert np.all(np.abs(s.acc_g) <= 8.0)  # the test's +-8 g range check


def test_polar_compressed_type_0_without_its_factor_is_dropped_not_read_as_milli_g() -> None:
    # The same AccDataTest.kt frame; the factor lives in the PMD settings, not in the frame.
    s = decode("polar-h10", "02 00 94 35 77 00 00 00 00 80 71 07 F0 6A 9E 8D")
    assert len(s) == 0 and reasons(s) == ["needs_factor"]


def test_polar_start_request_is_the_documented_one() -> None:
    # bleakheart/PMD: [START=02, ACC=02, (SAMPLE_RATE=00, 1, 50), (RESOLUTION=01, 1, 16), (RANGE=02, 1, 8)]
    writes = [s for s in PROFILES["polar-h10"].startup if s.op == "write"]
    assert bytes.fromhex(writes[0].data) == bytes([2, 2, 0, 1, 50, 0, 1, 1, 16, 0, 2, 1, 8, 0])


def test_polar_malformed_frames() -> None:
    assert reasons(decode("polar-h10", "02 00 94")) == ["short"]
    assert reasons(decode("polar-h10", "00" + POLAR_FRAME_TYPE1.replace(" ", "")[2:])) == ["wrong_header"]
    assert reasons(decode("polar-h10", POLAR_FRAME_TYPE1 + " 01 02")) == ["long"]
    assert reasons(decode("polar-h10", "02 00 00 00 00 00 00 00 00 07 01 02 03 04 05 06")) == ["bad_frame"]
    truncated = "02 65 00 00 00 00 00 00 00 81 F1 FF 14 00 F0 03 06 05 7B 0F 08"  # 5 deltas announced
    assert reasons(decode("polar-h10", truncated)) == ["bad_delta"]


# -- WitMotion --------------------------------------------------------------------------------

WIT = "55 61 00 00 00 FC EE 06 00 00 10 00 00 00 AB EA 00 00 00 40"


def test_witmotion_documented_packet() -> None:
    # Layout and scale: WITMOTION/WitBluetooth_BWT901BLE5_0 device_model.py processData:
    # acc int16/32768*16 g, gyro int16/32768*2000 deg/s (angles are not used).
    s = decode("witmotion", WIT)
    assert_close(s.acc_g, [[0.0, -0x400 / 32768 * 16, 0x6EE / 32768 * 16]])
    assert s.acc_g[0, 2] == pytest.approx(0.8662, abs=1e-4)
    assert_close(s.gyro_dps, [[0.0, 16 / 32768 * 2000, 0.0]])


def test_witmotion_stream_split_across_notifications_with_a_register_reply_between() -> None:
    dec = ProfileDecoder(PROFILES["witmotion"])
    pkt = bytes.fromhex(WIT)
    reply = bytes.fromhex("55 71 03 00 06 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
    assert len(dec.feed(pkt[:7])) == 0 and dec.pending() == 7
    assert len(dec.feed(pkt[7:] + reply[:5])) == 1
    s = dec.feed(reply[5:] + pkt + pkt[:3])
    assert len(s) == 1 and s.drops == []
    assert len(dec.feed(pkt[3:])) == 1


def test_witmotion_garbage_is_skipped_and_counted() -> None:
    dec = ProfileDecoder(PROFILES["witmotion"])
    s = dec.feed(bytes.fromhex("01 02 55 03") + bytes.fromhex(WIT))
    assert len(s) == 1 and reasons(s) == ["garbage"]
    assert reasons(dec.feed(b"\x00" * 25)) == ["garbage"]


# -- RuuviTag ---------------------------------------------------------------------------------

def test_ruuvitag_rawv2_spec_vectors() -> None:
    # ruuvi/ruuvi-sensor-protocols dataformat_05.md "Test vectors" (from ttu/ruuvitag-sensor).
    valid = decode("ruuvitag", "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
    assert_close(valid.acc_g, [[0.004, -0.004, 1.036]])
    top = decode("ruuvitag", "057FFFFFFEFFFE7FFF7FFF7FFFFFDEFEFFFECBB8334C884F")
    assert_close(top.acc_g, [[32.767, 32.767, 32.767]])
    bottom = decode("ruuvitag", "058001000000008001800180010000000000CBB8334C884F")
    assert_close(bottom.acc_g, [[-32.767, -32.767, -32.767]])
    invalid = decode("ruuvitag", "058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF")
    assert len(invalid) == 0 and reasons(invalid) == ["not_available"]


def test_ruuvitag_company_id_prefix_and_repeated_measurements() -> None:
    dec = ProfileDecoder(PROFILES["ruuvitag"])
    adv = bytes.fromhex("9904" "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
    assert len(dec.feed(adv)) == 1
    assert reasons(dec.feed(adv)) == ["duplicate"]  # same measurement sequence number 205
    dec.reset()
    assert len(dec.feed(bytes.fromhex("1BFF") + adv)) == 1  # the whole AD structure
    assert reasons(dec.feed(bytes.fromhex("03291A1ECE1EFC18F94202CA0B53"))) == ["wrong_header"]  # RAWv1
    assert reasons(dec.feed(bytes.fromhex("0512FC5394"))) == ["short"]
    assert reasons(dec.feed(adv[2:] + b"\x00")) == ["long"]


def test_ruuvitag_whole_advertisement_as_scanner_apps_show_it() -> None:
    # dataformat_05.md valid vector inside a full advertisement: flags (02 01 06), then the
    # manufacturer-specific AD structure (1B FF 99 04 ...), as nRF Connect's raw view shows it.
    s = decode("ruuvitag", "020106" "1BFF9904" "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
    assert_close(s.acc_g, [[0.004, -0.004, 1.036]])
    other = decode("ruuvitag", "020106" "05FF5900AABB")  # flags + another maker's data only
    assert len(other) == 0 and reasons(other) == ["wrong_header"]


# -- UPRIGHT GO 2, generic ---------------------------------------------------------------------

def test_upright_go2_little_endian_shorts() -> None:
    # citizen-hub-android UpRightGo2Protocol.java: (short)((b[1] << 8) + b[0]) per axis; the
    # scale (assumed milli-g) is UNVERIFIED and documented as such in the profile.
    s = decode("upright-go2", "38 FF E8 03 0A 00")
    assert_close(s.acc_g, [[-0.2, 1.0, 0.01]])


def test_generic_layout_batches_samples_oldest_first() -> None:
    # docs/sensors.md "The generic layout": N x <hhh milli-g, specific force.
    s = decode("generic", struct.pack("<6h", 0, 0, 1000, 17, -250, 968).hex())
    assert_close(s.acc_g, [[0, 0, 1.0], [0.017, -0.25, 0.968]])
    assert reasons(decode("generic", "e8 03 00")) == ["short"]
    assert reasons(decode("generic", "e8 03 00 00 00 00 01")) == ["long"]


def test_struct_header_filter_and_stream_framing(tmp_path) -> None:
    # A MetaWear-style layout (MetaWear-SDK-Cpp test_accelerometer_bmi160.py: 03 04 + <hhh at
    # +-4 g, 8192 LSB/g; real vector 03 04 16 C4 94 A2 2A D0 -> (-1.872, -2.919, -1.495) g).
    from slouchd.sensors.profiles import load_profile

    p = tmp_path / "metawear-test.toml"
    p.write_text('mount = "+y,+z"\nrate_hz = 50\n[match]\nnames = ["MetaWear"]\n[stream]\n'
                 'notify_uuid = "326a9006-85cb-9195-d9dd-464cfbbae75a"\nformat = "<hhh"\nheader = "03 04"\n'
                 'acc_scale = [0.0001220703125, 0.0001220703125, 0.0001220703125]\n')
    prof = load_profile(p)
    s = decode(prof, "03 04 16 C4 94 A2 2A D0")
    assert_close(s.acc_g, [[-1.872, -2.919, -1.495]], atol=5e-4)
    assert reasons(decode(prof, "03 1C 16 C4 94 A2 2A D0")) == ["wrong_header"]
    assert reasons(decode(prof, "03")) == ["short"]
    framed = dataclasses.replace(prof, stream=dataclasses.replace(prof.stream, sync="03 04", frame_len=8))
    dec = ProfileDecoder(framed)
    s = dec.feed(bytes.fromhex("FF 03 04 16 C4 94 A2 2A D0 03 04 16"))
    assert len(s) == 1 and reasons(s) == ["garbage"] and dec.pending() == 3


# -- malformed input for every profile, fuzzing ------------------------------------------------

@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_drops_short_and_long_packets(name: str) -> None:
    prof = PROFILES[name]
    dec = ProfileDecoder(prof)
    good = {
        "microbit": "F0FF2800 04FC", "thingy52": "000000000004300000" "00F0FF4001B0FF8002",
        "sensortag": "830000 00BEFF33FF66000010000000000000", "polar-h10": POLAR_FRAME_TYPE1,
        "witmotion": WIT, "upright-go2": "38FFE8030A00", "generic": "e8030000 0000",
        "ruuvitag": "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F",
    }[name]
    pkt = bytes.fromhex(good.replace(" ", ""))
    assert len(dec.feed(pkt)) >= 1
    dec.reset()
    short = dec.feed(pkt[:3])
    assert len(short) == 0
    if name == "witmotion":  # a byte stream: a short piece waits for the rest of its frame
        assert short.drops == [] and dec.pending() == 3
        return
    assert reasons(short) == ["short"]
    dec.reset()
    long = dec.feed(pkt + b"\x00")
    assert len(long) == 0 and reasons(long) == ["long"]


def _chunks():
    return st.lists(st.binary(max_size=64), min_size=1, max_size=8)


@pytest.mark.parametrize("name", sorted(PROFILES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=_chunks())
def test_fuzzing_never_crashes_and_yields_well_formed_samples(name: str, chunks: list[bytes]) -> None:
    dec = ProfileDecoder(PROFILES[name])
    for chunk in chunks:
        s = dec.feed(chunk)
        n = len(s)
        assert s.acc_g.shape == (n, 3) and np.isfinite(s.acc_g).all()
        if s.gyro_dps is not None:
            assert s.gyro_dps.shape == (n, 3)
        if s.t_sensor_s is not None:
            assert s.t_sensor_s.shape == (n,)
        assert {d.reason for d in s.drops} <= KNOWN_REASONS
        assert dec.pending() <= 64


def _framed_generic() -> Profile:
    g = PROFILES["generic"]
    return dataclasses.replace(g, stream=dataclasses.replace(g.stream, sync="A5 5A", header="A5 5A",
                                                             frame_len=14, samples=2))


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.one_of(st.binary(max_size=40), st.just(bytes.fromhex("A55A") + bytes(12))),
                       min_size=1, max_size=10))
def test_fuzzing_struct_stream_framing(chunks: list[bytes]) -> None:
    dec = ProfileDecoder(_framed_generic())
    total = 0
    for chunk in chunks:
        s = dec.feed(chunk)
        assert s.acc_g.shape == (len(s), 3)
        assert {d.reason for d in s.drops} <= KNOWN_REASONS
        assert dec.pending() < 14 + 2
        total += len(s)
    assert total % 2 == 0  # whole frames only


@settings(max_examples=300, deadline=None)
@given(body=st.binary(min_size=0, max_size=240), ftype=st.sampled_from([0x00, 0x01, 0x02, 0x80, 0x81, 0x85]))
def test_fuzzing_polar_frames_with_a_valid_header(body: bytes, ftype: int) -> None:
    dec = ProfileDecoder(PROFILES["polar-h10"])
    s = dec.feed(b"\x02" + (123).to_bytes(8, "little") + bytes([ftype]) + body)
    assert s.acc_g.shape == (len(s), 3)
    assert len(s) > 0 or s.drops
