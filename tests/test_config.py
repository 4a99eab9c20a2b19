"""Configuration: every key documented, every mistake named precisely, defaults in one place."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from slouchd.config import Config, ConfigError, load_config, parse_config, set_dotted
from slouchd.schema import describe
from tests.cli_helpers import run_cli

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "config" / "slouchd.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "slouchd.toml"
    p.write_text(text)
    return p


def test_reference_config_is_valid_and_equals_the_defaults() -> None:
    cfg = load_config(REFERENCE)
    assert cfg == load_config(None)


def test_reference_config_documents_every_key() -> None:
    text = REFERENCE.read_text()
    for dotted, _default, doc in describe(Config):
        if dotted == "source":
            continue
        leaf = dotted.rsplit(".", 1)[-1]
        pattern = rf"^#?\s*({re.escape(leaf)} = |\[[\w.]*\b{re.escape(leaf)}\])"
        assert re.search(pattern, text, re.M), f"{dotted} missing from reference"
        assert doc, f"{dotted} has no doc string"


def test_bad_value_names_file_key_value_and_range(tmp_path: Path) -> None:
    p = write(tmp_path, "[detection]\nthreshold_deg = -5\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert str(err.value) == f"{p}: detection.threshold_deg = -5: must be 3..60"


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    p = write(tmp_path, "[detection]\ndwell = 30\n")
    with pytest.raises(ConfigError, match=r"detection.dwell: unknown key \(did you mean 'dwell_s'\?\)"):
        load_config(p)


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, "[detecton]\n")
    with pytest.raises(ConfigError, match=r"detecton: unknown key \(did you mean 'detection'\?\)"):
        load_config(p)


def test_wrong_type_says_what_is_allowed(tmp_path: Path) -> None:
    p = write(tmp_path, '[mqtt]\nport = "1883"\n')
    with pytest.raises(ConfigError, match=r'mqtt.port = "1883": must be an integer in 1..65535'):
        load_config(p)


def test_bool_is_not_a_number(tmp_path: Path) -> None:
    p = write(tmp_path, "[detection]\ndwell_s = true\n")
    with pytest.raises(ConfigError, match=r"detection\.dwell_s = true: must be a number"):
        load_config(p)


def test_choice_lists_the_choices(tmp_path: Path) -> None:
    p = write(tmp_path, '[detection]\nmode = "silent"\n')
    with pytest.raises(ConfigError, match=r'must be one of "training", "tracking"'):
        load_config(p)


def test_hysteresis_must_stay_below_threshold(tmp_path: Path) -> None:
    p = write(tmp_path, "[detection]\nthreshold_deg = 8\nhysteresis_deg = 9\n")
    with pytest.raises(ConfigError, match=r"detection.hysteresis_deg = 9: must be below threshold_deg \(8\)"):
        load_config(p)


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[detection\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))}: not valid TOML"):
        load_config(p)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_password_is_never_echoed(tmp_path: Path) -> None:
    p = write(tmp_path, "[mqtt]\npassword = 123456789\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "123456789" not in str(err.value)
    assert "mqtt.password = ***" in str(err.value)


def test_wearer_overrides_are_validated_and_merged(tmp_path: Path) -> None:
    p = write(tmp_path, '[[wearers]]\nname = "ana"\n[wearers.detection]\nthreshold_deg = 20\n'
                        '[[wearers]]\nname = "bo"\n')
    cfg = load_config(p)
    assert cfg.wearer_detection(cfg.wearer("ana")).threshold_deg == 20
    assert cfg.wearer_detection(cfg.wearer("bo")).threshold_deg == 15
    bad = write(tmp_path, '[[wearers]]\nname = "ana"\n[wearers.detection]\nthreshold_deg = 99\n')
    with pytest.raises(ConfigError, match=r"wearers\[0\].detection.threshold_deg = 99: must be 3..60"):
        load_config(bad)


def test_duplicate_wearer_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="wearer names must be unique"):
        parse_config({"wearers": [{"name": "a"}, {"name": "a"}]})


def test_bad_mount_is_explained() -> None:
    with pytest.raises(ConfigError, match=r"wearers\[0\].mount = \"\+x,-x\": .*different axes"):
        parse_config({"wearers": [{"name": "a", "mount": "+x,-x"}]})


def test_set_override_parses_toml_values() -> None:
    data: dict = {}
    set_dotted(data, "detection.dwell_s=45")
    set_dotted(data, "detection.mode=tracking")
    set_dotted(data, "detection.quiet_hours=[\"22:00-07:00\"]")
    cfg = parse_config(data)
    assert cfg.detection.dwell_s == 45.0
    assert cfg.detection.mode == "tracking"
    assert cfg.detection.quiet_hours == ["22:00-07:00"]


def test_check_config_cli_reports_one_line_and_exit_2(tmp_path: Path) -> None:
    p = write(tmp_path, "[detection]\nthreshold_deg = -5\n")
    res = run_cli("check-config", str(p))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"slouchd check-config: error: {p}: detection.threshold_deg = -5: must be 3..60"]
    ok = run_cli("check-config", str(REFERENCE))
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout


def test_unknown_subcommand_and_option_exit_2_without_traceback() -> None:
    for args in (["frobnicate"], ["check-config", "--nope"]):
        res = run_cli(*args)
        assert res.returncode == 2
        assert "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_a_directory_or_unreadable_config_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: is a directory$"):
        load_config(tmp_path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text|not valid TOML"):
        load_config(bad)


EXAMPLE = REPO / "config" / "slouchd.example.toml"


def test_the_example_for_etc_passes_check_config_and_has_no_simulated_wearer(
        capsys: pytest.CaptureFixture[str]) -> None:
    from slouchd.cli import main

    assert main(["check-config", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.startswith(f"{EXAMPLE}: ok: 1 wearer(s): ana (C4:AA:10:2B:33:01)")
    cfg = load_config(EXAMPLE)
    assert cfg.wearers and all(w.sensor != "simulated" and not w.sensor.startswith("replay:")
                               for w in cfg.wearers)
    assert cfg.mqtt.host  # a real broker, not the embedded one
    # Uncommenting the documented extras keeps it valid.
    text = re.sub(r"^# (name|sensor|profile|threshold_deg|\[\[wearers\]\]|\[wearers\.detection\])",
                  r"\1", EXAMPLE.read_text(), flags=re.M)
    assert [w.name for w in parse_config(tomllib.loads(text)).wearers] == ["ana", "ben"]


def test_install_docs_copy_the_example_not_the_reference_with_its_demo_wearer() -> None:
    install = (REPO / "docs" / "install.md").read_text()
    copies = re.findall(r"install .*?(config/\S+\.toml) /etc/slouchd/slouchd\.toml", install)
    assert copies == ["config/slouchd.example.toml"]
