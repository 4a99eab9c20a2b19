"""`check-config` accepts exactly what `run` can start: same one-line message, exit 2 vs 78.

Every case here was once "ok" for check-config and then a traceback, a restart loop or a
message without file and key from `slouchd run`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slouchd.cli import main
from slouchd.config import ConfigError, OverrideError, check_resources, load_config, parse_config, set_dotted
from slouchd.posture.settings import DetectionSettings
from slouchd.posture.wellbeing import LocalClock
from slouchd.schema import build
from tests.cli_helpers import run_cli

PROFILES = "generic, microbit, polar-h10, ruuvitag, sensortag, thingy52, upright-go2, witmotion"


def write_config(tmp_path: Path, body: str) -> Path:
    """A config that never starts an embedded broker (no port 1883) and keeps state in tmp_path.

    Port 9 (discard) is never dialled: every case fails before the MQTT session starts.
    """
    p = tmp_path / "slouchd.toml"
    p.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                 f'[mqtt]\nhost = "127.0.0.1"\nport = 9\n{body}')
    return p


def check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check-config", str(path)])
    return code, capsys.readouterr().err.strip().splitlines()


def assert_both_refuse(path: Path, capsys: pytest.CaptureFixture[str], why: str,
                       run_why: str | None = None) -> None:
    """check-config exits 2 and run exits 78, each with the one line ``why`` (``run_why`` for run)."""
    code, err = check_config(path, capsys)
    assert (code, err) == (2, [f"slouchd check-config: error: {why}"])
    res = run_cli("run", "--config", str(path))
    assert res.returncode == 78, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"slouchd run: error: {run_why or why}"


# ----- 1. quiet hours -----------------------------------------------------------------------------
QUIET_WHY = 'must be "HH:MM-HH:MM" in local time, 00:00..23:59, e.g. "22:00-07:00" (may wrap midnight)'


def test_bad_quiet_hours_are_a_config_error_in_check_config_and_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_config(tmp_path, '[detection]\nquiet_hours = ["22:00-07:00", "25:00-07:00"]\n')
    assert_both_refuse(p, capsys, f'{p}: detection.quiet_hours[1] = "25:00-07:00": {QUIET_WHY}')


def test_bad_quiet_hours_in_a_wearer_override_name_the_wearer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_config(tmp_path, '[[wearers]]\nname = "ana"\n'
                               '[wearers.detection]\nquiet_hours = ["22:00-7:00"]\n')
    assert_both_refuse(p, capsys, f'{p}: wearers[0].detection.quiet_hours[0] = "22:00-7:00": {QUIET_WHY}')


def test_bad_quiet_hours_from_set_say_so() -> None:
    res = run_cli("run", "--set", 'detection.quiet_hours=["12:60-13:00"]')
    assert res.returncode == 78
    assert res.stderr.strip().splitlines() == [
        f'slouchd run: error: --set: detection.quiet_hours[0] = "12:60-13:00": {QUIET_WHY}']


@pytest.mark.parametrize(("window", "ok"), [
    ("22:00-07:00", True), ("00:00-23:59", True), (" 12:30-13:15 ", True), ("23:59-00:00", True),
    ("22:00-7:00", False), ("24:00-01:00", False), ("22:00", False), ("2200-0700", False),
    ("ab:cd-ef:gh", False), ("12:00-12:60", False), ("", False), ("22:00-07:00-08:00", False),
])
def test_validation_and_the_run_time_parser_agree(window: str, ok: bool) -> None:
    try:
        LocalClock(quiet_hours=[window])
        runs = True
    except ValueError:
        runs = False
    try:
        build(DetectionSettings, {"quiet_hours": [window]}, "t.toml", "detection.")
        valid = True
    except ConfigError:
        valid = False
    assert (valid, runs) == (ok, ok)


# ----- 2. what check-config missed ---------------------------------------------------------------
def test_unknown_profile_names_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_config(tmp_path, '[[wearers]]\nname = "ana"\nsensor = "C4:AA:10:2B:33:01"\n'
                               'profile = "nosuch"\n')
    assert_both_refuse(p, capsys, f'{p}: wearers[0].profile = "nosuch": unknown profile (known: {PROFILES})')


def test_missing_password_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "pw"
    p = write_config(tmp_path, f'password_file = "{missing}"\n')
    why = f'mqtt.password_file = "{missing}": cannot read it (No such file or directory)'
    assert_both_refuse(p, capsys, f"{p}: {why}")


def test_missing_tls_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = tmp_path / "ca.pem"
    p = write_config(tmp_path, f'tls = true\nca_file = "{ca}"\n')
    why = f'mqtt.ca_file = "{ca}": cannot load it as PEM certificates (No such file or directory)'
    assert_both_refuse(p, capsys, f"{p}: {why}")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    p = write_config(tmp_path, f'tls = true\ncert_file = "{cert}"\nkey_file = "{key}"\n')
    code, err = check_config(p, capsys)
    assert code == 2
    assert err[0].startswith(f'slouchd check-config: error: {p}: mqtt.cert_file = "{cert}" / key_file = ')


def test_unreadable_replay_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_config(tmp_path, '[[wearers]]\nname = "ana"\nsensor = "replay:/nonexistent.csv"\n')
    assert_both_refuse(p, capsys, f'{p}: wearers[0].sensor = "replay:/nonexistent.csv": '
                                  "cannot read the recording (no such file)")
    p = write_config(tmp_path, f'[[wearers]]\nname = "ana"\nsensor = "replay:{tmp_path}"\n')
    assert_both_refuse(p, capsys, f'{p}: wearers[0].sensor = "replay:{tmp_path}": '
                                  "cannot read the recording (is a directory)")


def test_replay_file_that_is_not_a_recording_fails_check_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "bad.csv"
    rec.write_text("t,ax\n0,1\n")
    p = write_config(tmp_path, f'[[wearers]]\nname = "ana"\nsensor = "replay:{rec}"\n')
    assert check_config(p, capsys) == (2, [
        f'slouchd check-config: error: {p}: wearers[0].sensor = "replay:{rec}": not a valid recording '
        f"({rec}: line 1: header needs columns t,ax,ay,az (missing ay,az); got t,ax)"])
    rec.write_text("t,ax,ay,az\n0,0,0,1\n0.02,0,0,1\n")
    assert main(["check-config", str(p)]) == 0


def test_empty_sensor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_config(tmp_path, '[[wearers]]\nname = "ana"\nsensor = ""\n')
    assert_both_refuse(p, capsys, f'{p}: wearers[0].sensor = "": must be a BLE address or advertised '
                                  'name, "simulated", or "replay:PATH"')
    with pytest.raises(ConfigError, match=r'^x: wearers\[0\]\.sensor = "replay:": needs the path'):
        parse_config({"wearers": [{"name": "ana", "sensor": "replay:"}]}, "x")


def test_missing_profiles_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_config(tmp_path, '[ble]\nprofiles_dir = "/nonexistent/profiles"\n')
    assert_both_refuse(p, capsys, f'{p}: ble.profiles_dir = "/nonexistent/profiles": no such directory')
    p = write_config(tmp_path, f'[ble]\nprofiles_dir = "{p}"\n')  # a file
    with pytest.raises(ConfigError, match=r'profiles_dir = ".*slouchd.toml": not a directory$'):
        check_resources(load_config(p))


def test_wearer_named_bridge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_config(tmp_path, '[[wearers]]\nname = "bridge"\n')
    assert_both_refuse(p, capsys, f'{p}: wearers[0].name = "bridge": reserved (<base_topic>/bridge/state '
                                  "is slouchd's own topic); choose another name")
    # Other words in the topic layout stay usable: parse_command tells them apart by position.
    cfg = parse_config({"wearers": [{"name": n} for n in ("set", "result", "state", "status")]})
    assert [w.name for w in cfg.wearers] == ["set", "result", "state", "status"]


def test_wearers_sharing_a_device_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_config(tmp_path, '[[wearers]]\nname = "ana_1"\n[[wearers]]\nname = "ana-1"\n')
    assert_both_refuse(p, capsys, f'{p}: wearers[1].name = "ana-1": gives the same Home Assistant device '
                                  'id "sim-ana-1" as wearers[0].name = "ana_1"; rename one of them')
    p = write_config(tmp_path, '[[wearers]]\nname = "ana"\nsensor = "C4:AA:10:2B:33:01"\n'
                               '[[wearers]]\nname = "bo"\nsensor = "simulated"\n'
                               '[[wearers]]\nname = "cy"\nsensor = "c4-aa-10-2b-33-01"\n')
    assert check_config(p, capsys) == (2, [
        f'slouchd check-config: error: {p}: wearers[2].sensor = "c4-aa-10-2b-33-01": gives the same '
        'Home Assistant device id "c4aa102b3301" as wearers[0].sensor = "C4:AA:10:2B:33:01"; '
        "one sensor per wearer"])
    with pytest.raises(ConfigError,
                       match=r'wearers\[1\]\.sensor = "micro bit".*wearers\[0\]\.sensor = "Micro:Bit"'):
        parse_config({"wearers": [{"name": "a", "sensor": "Micro:Bit"},
                                  {"name": "b", "sensor": "micro bit"}]})
    # Replayed and simulated ids come from the name: two wearers may replay one file.
    parse_config({"wearers": [{"name": "a", "sensor": "replay:x.csv"},
                              {"name": "b", "sensor": "replay:x.csv"}]})


def test_check_config_ok_for_a_config_run_can_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    (tmp_path / "profiles").mkdir()
    p = write_config(tmp_path, f'password_file = "{pw}"\n[ble]\nprofiles_dir = "{tmp_path / "profiles"}"\n'
                               '[detection]\nquiet_hours = ["22:00-07:00"]\n'
                               '[[wearers]]\nname = "ana"\nsensor = "C4:AA:10:2B:33:01"\n'
                               'profile = "microbit"\n')
    assert main(["check-config", str(p)]) == 0
    assert capsys.readouterr().out.startswith(f"{p}: ok: 1 wearer(s): ana (C4:AA:10:2B:33:01)")


# ----- 3. a malformed --set is a command-line mistake --------------------------------------------
@pytest.mark.parametrize("item", ["foo", "=5"])
def test_malformed_set_exits_2_not_78(item: str) -> None:
    res = run_cli("run", "--set", item)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"slouchd run: error: --set {item}: expected KEY=VALUE, e.g. detection.dwell_s=30"]


def test_set_into_a_value_is_a_usage_error_but_a_bad_value_is_a_config_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OverrideError):
        set_dotted({"detection": {"dwell_s": 30}}, "detection.dwell_s.x=1")
    p = write_config(tmp_path, "")
    assert main(["run", "--config", str(p), "--set", "mqtt.port.x=1"]) == 2
    assert capsys.readouterr().err.strip() == "slouchd run: error: --set mqtt.port.x=1: port is not a table"
    assert main(["run", "--config", str(p), "--set", "detection.dwell_s=0"]) == 78
    assert capsys.readouterr().err.strip() == (
        f"slouchd run: error: {p} with --set: detection.dwell_s = 0: must be 1..3600")


def test_bounds_and_patterns_of_a_list_setting_apply_to_each_item() -> None:
    from dataclasses import dataclass

    from slouchd.schema import setting

    @dataclass(frozen=True)
    class Tags:
        tags: list[str] = setting(factory=list, pattern=r"[a-z]+")
        sizes: list[int] = setting(factory=list, min=1, max=9)

    assert build(Tags, {"tags": ["ab"], "sizes": [1, 9]}, "t").sizes == [1, 9]
    with pytest.raises(ConfigError, match=r'^t: tags\[1\] = "B": must match \[a-z\]\+$'):
        build(Tags, {"tags": ["a", "B"]}, "t")
    with pytest.raises(ConfigError, match=r"^t: sizes\[0\] = 0: must be 1..9$"):
        build(Tags, {"sizes": [0]}, "t")


# ----- 4. every problem of a file at once ---------------------------------------------------------
def test_check_config_reports_every_problem_at_once_and_run_lists_them_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_config(tmp_path, 'password_file = "/nonexistent/pw"\n'
                               '[detection]\nthreshold_deg = 100\nhysteresis_deg = 16\ndwel_s = 3\n'
                               'mode = "trainig"\n'
                               '[[wearers]]\nname = "Ana"\n'
                               '[[wearers]]\nsensor = "simulated"\n'
                               '[[wearers]]\nname = "bob"\nsensor = "C4:AA:10:2B:33:01"\nprofile = "nope"\n'
                               'mount = "+q,-z"\n'
                               '[[wearers]]\nname = "cy"\nsensor = "C4:AA:10:2B:33:02"\nprofile = "nope"\n'
                               '[wearers.detection]\nthreshold_deg = 1\n')
    expected = [
        f"{p}: detection.dwel_s: unknown key (did you mean 'dwell_s'?)",
        f"{p}: detection.threshold_deg = 100: must be 3..60",
        f"{p}: detection.hysteresis_deg = 16: must be 0..15",
        f'{p}: detection.mode = "trainig": must be one of "training", "tracking" '
        "(did you mean 'training'?)",
        f'{p}: wearers[0].name = "Ana": must match [a-z0-9][a-z0-9_\\-]{{0,31}}',
        f"{p}: wearers[1].name: missing required key",
        f'{p}: wearers[2].mount = "+q,-z": mount must be UP,OUT with each one of '
        "+x -x +y -y +z -z, got '+q,-z'",
        f"{p}: wearers[3].detection.threshold_deg = 1: must be 3..60",
        f'{p}: wearers[0].profile = "nope": unknown profile (known: {PROFILES})',
        f'{p}: mqtt.password_file = "/nonexistent/pw": cannot read it (No such file or directory)',
    ]
    code, err = check_config(p, capsys)
    assert code == 2
    assert err == [f"slouchd check-config: error: {line}" for line in expected]
    res = run_cli("run", "--config", str(p))
    assert res.returncode == 78
    assert res.stderr.strip().splitlines() == [f"slouchd run: error: {line}" for line in expected]


def test_a_refused_value_does_not_cause_a_second_misleading_complaint() -> None:
    # threshold 100 is refused; "hysteresis 14 must be below threshold 15 (the default)" would mislead.
    with pytest.raises(ConfigError) as err:
        parse_config({"detection": {"threshold_deg": 100, "hysteresis_deg": 14}}, "f.toml")
    assert err.value.problems == ["f.toml: detection.threshold_deg = 100: must be 3..60"]
    # A cross-field problem between good values is still found next to a bad value elsewhere.
    with pytest.raises(ConfigError) as err:
        parse_config({"detection": {"threshold_deg": 10, "hysteresis_deg": 12},
                      "mqtt": {"port": 0}}, "f.toml")
    assert err.value.problems == ["f.toml: detection.hysteresis_deg = 12: must be below threshold_deg (10)",
                                  "f.toml: mqtt.port = 0: must be 1..65535"]
