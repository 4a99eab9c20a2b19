"""Firmware profiles: the built-in ones are valid; a bad profile names its file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from slouchd.model import Mount
from slouchd.schema import SettingsError
from slouchd.sensors.profiles import BUILTIN_DIR, get_profile, load_profile, load_profiles, match_profile

EXPECTED = {"microbit", "thingy52", "sensortag", "polar-h10", "witmotion", "upright-go2", "ruuvitag",
            "generic"}

MINIMAL = '''mount = "+y,+z"
rate_hz = 25
[match]
names = ["X*"]
[stream]
notify_uuid = "5f0b0002-7e2c-4d3a-9c11-3a5d2b8e6f10"
format = "<hhh"
'''


def write(tmp_path: Path, text: str, name: str = "mine") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def test_every_builtin_profile_loads_with_sources_and_a_mount() -> None:
    profiles = load_profiles()
    assert set(profiles) == EXPECTED
    for name, prof in profiles.items():
        assert Path(prof.path) == BUILTIN_DIR / f"{name}.toml"
        assert prof.sources, f"{name} cites no source"
        assert isinstance(prof.usual_mount, Mount)
        assert prof.stream.passive == (name == "ruuvitag")


def test_minimal_profile_loads(tmp_path: Path) -> None:
    prof = load_profile(write(tmp_path, MINIMAL))
    assert prof.name == "mine" and prof.stream.samples == 1 and prof.stream.acc_scale == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(("change", "message"), [
    (("format = \"<hhh\"", "formt = \"<hhh\""), r"stream\.formt: unknown key \(did you mean 'format'\?\)"),
    (("format = \"<hhh\"", "format = \"<hhh\"\nacc_scale = [0.001]"),
     r"stream\.acc_scale = \[0\.001\]: needs 3 numbers"),
    (("format = \"<hhh\"", "format = \"hhh\""), r'stream\.format = "hhh": start with < or >'),
    (("format = \"<hhh\"", "format = \"<hh\""), r"stream\.acc = \[0, 1, 2\]: columns must be 0\.\.1"),
    (("format = \"<hhh\"", "format = \"<3s\""), r"stream\.format = \"<3s\": only number fields"),
    (("mount = \"+y,+z\"", "mount = \"+y,+y\""), r'mount = "\+y,\+y": .*different axes'),
    (("rate_hz = 25", "rate_hz = 0"), r"rate_hz = 0: must be 0\.01\.\.2000"),
    (("notify_uuid = \"5f0b0002-7e2c-4d3a-9c11-3a5d2b8e6f10\"", "notify_uuid = \"ffe4\""),
     r'stream\.notify_uuid = "ffe4": must match'),
    (("format = \"<hhh\"", "format = \"<hhh\"\ndecoder = \"polar\""),
     r"stream\.decoder = \"polar\": must be one of .*did you mean 'polar_pmd'"),
    (("names = [\"X*\"]", "names = []"), r"match: give names, service_uuids or manufacturer_id"),
    (("format = \"<hhh\"", "format = \"<hhh\"\nsync = \"55\"\nframe_len = 8"),
     r"stream\.frame_len = 8: a frame must hold 0 header bytes and whole 6-byte samples \(1\)"),
])
def test_bad_profile_names_file_and_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    p = write(tmp_path, MINIMAL.replace(*change))
    with pytest.raises(SettingsError, match=message) as err:
        load_profile(p)
    assert str(err.value).startswith(f"{p}: ")


def test_bad_startup_step_is_named_by_its_index(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + '[[startup]]\nop = "write"\nuuid = "5f0b0002-7e2c-4d3a-9c11-3a5d2b8e6f10"\n'
              'data = "01"\n[[startup]]\nop = "write"\ndata = "01"\n')
    with pytest.raises(SettingsError, match=r"startup\[1\]\.uuid: op \"write\" needs a characteristic uuid"):
        load_profile(p)
    step = '[[startup]]\nop = "wait_notify"\nuuid = "5f0b0002-7e2c-4d3a-9c11-3a5d2b8e6f10"\n'
    p = write(tmp_path, MINIMAL + step)
    with pytest.raises(SettingsError, match=r"startup\[0\]\.expect"):
        load_profile(p)


def test_file_problems_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_profile(write(tmp_path, "mount = "))
    with pytest.raises(SettingsError, match="cannot read"):
        load_profile(tmp_path / "missing.toml")
    with pytest.raises(SettingsError, match=r'name = "other": must equal the file name \("mine"\)'):
        load_profile(write(tmp_path, 'name = "other"\n' + MINIMAL))
    with pytest.raises(SettingsError, match="give a notify_uuid, or passive = true"):
        load_profile(write(tmp_path, MINIMAL.replace(
            'notify_uuid = "5f0b0002-7e2c-4d3a-9c11-3a5d2b8e6f10"\n', "")))


def test_profiles_dir_overrides_by_name_and_must_exist(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL.replace("rate_hz = 25", "rate_hz = 12.5"), name="generic")
    profiles = load_profiles(tmp_path)
    assert profiles["generic"].rate_hz == 12.5 and "microbit" in profiles
    with pytest.raises(SettingsError, match=r'ble\.profiles_dir = ".*nope": not a directory'):
        load_profiles(tmp_path / "nope")
    with pytest.raises(SettingsError, match=r'profile "micro:bit": unknown \(known: .*microbit'):
        get_profile(profiles, "micro:bit")


def test_profiles_are_matched_by_advertisement() -> None:
    profiles = load_profiles().values()
    assert match_profile(profiles, "BBC micro:bit [zogiv]", [], {}).name == "microbit"
    ruuvi = {0x0499: bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")}
    assert match_profile(profiles, None, [], ruuvi).name == "ruuvitag"
    assert match_profile(profiles, None, [], {0x0499: b"\x03"}) is None  # RAWv1 is not supported
    assert match_profile(profiles, "Polar H10 9A1B2C3D", [], {}).name == "polar-h10"
    assert match_profile(profiles, "x", ["5F0B0001-7E2C-4D3A-9C11-3A5D2B8E6F10"], {}).name == "generic"
    assert match_profile(profiles, "Some Headphones", [], {}) is None


def test_make_ble_source_resolves_the_profile_and_its_mount() -> None:
    from slouchd.sensors.ble import make_ble_source
    from slouchd.sensors.settings import BleSettings

    src = make_ble_source("C4:AA:10:2B:33:01", "sensortag", BleSettings())
    assert src.profile is not None and src.profile.name == "sensortag"
    assert src.mount == Mount.parse("+y,+z")
    assert make_ble_source("slouchd-desk", "", BleSettings()).mount is None
    with pytest.raises(SettingsError, match='profile "sensortg": unknown'):
        make_ble_source("x", "sensortg", BleSettings())
    with pytest.raises(SettingsError, match="not a directory"):
        make_ble_source("x", "", BleSettings(profiles_dir="/nonexistent/profiles"))
