"""slouchd.schema.check_value: the one check of a value, for config files and MQTT commands."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from slouchd.posture.settings import DetectionSettings
from slouchd.publish.commands import CommandRefused, parse_command
from slouchd.schema import SettingsError, ValueProblem, build, check_value, field_spec, setting


@dataclass(frozen=True)
class Sample:
    free: float = setting(1.0, doc="no bounds")
    ratio: float = setting(1.0, min=0, max=5, doc="bounded")
    count: int = setting(2, min=1, max=9)
    on: bool = setting(True)
    only_yes: bool = setting(True, choices=(True,))
    word: str = setting("a", choices=("a", "b"))


META = {f.name: f.metadata for f in dataclasses.fields(Sample)}


@pytest.mark.parametrize("name,value,kind,why", [
    ("ratio", "1", "wrong_type", "must be a number in 0..5"),
    ("ratio", True, "wrong_type", "must be a number in 0..5"),  # true is not 1
    ("ratio", None, "wrong_type", "must be a number in 0..5"),
    ("ratio", 6, "out_of_range", "must be 0..5"),
    ("ratio", -0.5, "out_of_range", "must be 0..5"),
    ("ratio", float("nan"), "not_finite", "must be a finite number in 0..5"),
    ("ratio", float("inf"), "not_finite", "must be a finite number in 0..5"),
    ("ratio", 10**400, "out_of_range", "must be 0..5"),  # float() would raise OverflowError
    ("free", float("nan"), "not_finite", "must be a finite number"),
    ("free", -10**400, "out_of_range", "must be a number of at most 308 digits"),
    ("count", 2.5, "wrong_type", "must be an integer in 1..9"),
    ("count", 10**400, "out_of_range", "must be 1..9"),
    ("on", 1, "wrong_type", "must be true or false"),
    ("only_yes", False, "out_of_range", "must be true"),
    ("word", "c", "out_of_range", 'must be one of "a", "b"'),
    ("word", 3, "wrong_type", "must be a string"),
])
def test_each_problem_has_a_kind_and_says_what_is_allowed(
        name: str, value: object, kind: str, why: str) -> None:
    with pytest.raises(ValueProblem) as err:
        check_value(field_spec(Sample, name).type, value, META[name])
    assert (err.value.kind, err.value.why) == (kind, why)


def test_good_values_pass_and_ints_become_floats() -> None:
    three = check_value(float, 3, META["ratio"])
    assert three == 3.0 and isinstance(three, float)
    assert check_value(int, 9, META["count"]) == 9
    assert check_value(str, "b", META["word"]) == "b"
    assert check_value(bool, True, META["only_yes"]) is True


def test_config_files_get_one_line_instead_of_a_crash_for_nan_and_huge_numbers() -> None:
    # Before: an unbounded NaN raised TypeError, a 400-digit number OverflowError, inf was taken.
    with pytest.raises(SettingsError) as err:
        build(Sample, {"free": float("nan"), "ratio": 10**400, "count": 0}, "f.toml")
    assert err.value.problems[0] == "f.toml: free = nan: must be a finite number"
    assert err.value.problems[1].startswith("f.toml: ratio = 1000") and err.value.problems[1].endswith(
        ": must be 0..5")
    assert err.value.problems[2] == "f.toml: count = 0: must be 1..9"
    with pytest.raises(SettingsError, match="free = inf: must be a finite number"):
        build(Sample, {"free": float("inf")}, "f.toml")


@pytest.mark.parametrize("key,value,text", [
    ("threshold_deg", 90, b"90"),
    ("dwell_s", -5, b"-5"),
    ("threshold_deg", "18", b'"18"'),
    ("alerts_enabled", 1, b"1"),
    ("mode", "panic", b'"panic"'),
])
def test_a_command_is_refused_with_the_words_of_the_config_file(key: str, value: object, text: bytes) -> None:
    """One validator: a bad command and the same bad value in the config file read alike."""
    with pytest.raises(SettingsError) as config_err:
        build(DetectionSettings, {key: value}, "slouchd.toml")
    with pytest.raises(CommandRefused) as command_err:
        parse_command(text, key=key)
    assert str(config_err.value) == f"slouchd.toml: {command_err.value.reason}"
