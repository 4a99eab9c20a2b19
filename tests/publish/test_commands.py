"""Command validation: what is accepted, and every way a command is refused (changing nothing)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from slouchd.posture.settings import DetectionSettings
from slouchd.publish.commands import (
    MAX_KEYS,
    MAX_PAYLOAD_BYTES,
    SNOOZE_MAX_MIN,
    SPECS,
    CommandRefused,
    CommandResult,
    parse_command,
)

NOW = 1_800_000_000.0
META = {f.name: f.metadata for f in dataclasses.fields(DetectionSettings)}


def test_each_documented_command_is_accepted() -> None:
    assert parse_command(b'{"calibrate": true}').calibrate is True
    assert parse_command(b'{"threshold_deg": 18}').settings == {"threshold_deg": 18.0}
    assert parse_command(b'{"dwell_s": 45}').settings == {"dwell_s": 45.0}
    assert parse_command(b'{"snooze_min": 30}').snooze_min == 30.0
    assert parse_command(b'{"snooze_min": 0}').snooze_min == 0.0  # 0 cancels a snooze
    assert parse_command(b'{"alerts_enabled": false}').settings == {"alerts_enabled": False}
    assert parse_command(b'{"mode": "tracking"}').settings == {"mode": "tracking"}


def test_several_keys_with_id_and_fresh_ts() -> None:
    cmd = parse_command(json.dumps({"threshold_deg": 20.5, "dwell_s": 10, "id": "abc",
                                    "ts": NOW - 5}).encode(), now_s=NOW, max_age_s=60)
    assert cmd.settings == {"threshold_deg": 20.5, "dwell_s": 10.0}
    assert cmd.request_id == "abc"
    assert not cmd.calibrate and cmd.snooze_min is None


def test_bounds_come_from_the_detection_settings_metadata() -> None:
    for key in ("threshold_deg", "dwell_s"):
        lo, hi = META[key]["min"], META[key]["max"]
        assert (SPECS[key].lo, SPECS[key].hi) == (lo, hi)
        parse_command(json.dumps({key: lo}).encode())
        parse_command(json.dumps({key: hi}).encode())
        for bad in (lo - 0.01, hi + 0.01):
            with pytest.raises(CommandRefused) as err:
                parse_command(json.dumps({key: bad}).encode())
            assert err.value.kind == "out_of_range"
    assert SPECS["mode"].choices == META["mode"]["choices"]


@pytest.mark.parametrize("key,payload,expected", [
    ("threshold_deg", b"18", {"threshold_deg": 18.0}),
    ("threshold_deg", b"18.5", {"threshold_deg": 18.5}),  # what HA's number entity sends
    ("dwell_s", b"45.0", {"dwell_s": 45.0}),
    ("snooze_min", b"30", {"snooze_min": 30.0}),
    ("alerts_enabled", b"false", {"alerts_enabled": False}),  # the switch's payload_off
    ("calibrate", b"true", {"calibrate": True}),  # the button's payload_press
    ("mode", b"tracking", {"mode": "tracking"}),  # what HA's select sends: a bare word
    ("mode", b'"training"', {"mode": "training"}),
])
def test_per_entity_command_topics_take_one_value(key: str, payload: bytes, expected: dict) -> None:
    assert dict(parse_command(payload, key=key).values) == expected


MALFORMED: list[tuple[str, bytes, str | None, str]] = [
    # (id, payload, key, expected kind)
    ("not_json", b"{threshold_deg: 18}", None, "not_json"),
    ("truncated_json", b'{"threshold_deg": 18', None, "not_json"),
    ("not_utf8", b'{"mode": "\xff\xfe"}', None, "not_utf8"),
    ("empty", b"", None, "empty"),
    ("whitespace", b"   \n", None, "empty"),
    ("array", b'[{"calibrate": true}]', None, "not_object"),
    ("string", b'"calibrate"', None, "not_object"),
    ("number", b"18", None, "not_object"),
    ("null", b"null", None, "not_object"),
    ("unknown_key", b'{"threshold": 18}', None, "unknown_key"),
    ("unknown_key_with_good_one", b'{"threshold_deg": 18, "rm_rf": true}', None, "unknown_key"),
    ("only_meta", b'{"id": "x"}', None, "empty"),
    ("empty_object", b"{}", None, "empty"),
    ("string_number", b'{"threshold_deg": "18"}', None, "wrong_type"),
    ("bool_as_number", b'{"threshold_deg": true}', None, "wrong_type"),
    ("number_as_bool", b'{"alerts_enabled": 1}', None, "wrong_type"),
    ("string_as_bool", b'{"alerts_enabled": "false"}', None, "wrong_type"),
    ("null_value", b'{"dwell_s": null}', None, "wrong_type"),
    ("object_value", b'{"dwell_s": {"v": 3}}', None, "wrong_type"),
    ("mode_number", b'{"mode": 1}', None, "wrong_type"),
    ("nan", b'{"threshold_deg": NaN}', None, "not_finite"),
    ("infinity", b'{"threshold_deg": Infinity}', None, "not_finite"),
    ("minus_infinity", b'{"dwell_s": -Infinity}', None, "not_finite"),
    ("overflow_to_inf", b'{"threshold_deg": 1e999}', None, "not_finite"),
    ("huge_int", b'{"threshold_deg": ' + b"9" * 400 + b"}", None, "out_of_range"),
    ("below_min", b'{"threshold_deg": 0}', None, "out_of_range"),
    ("negative", b'{"dwell_s": -5}', None, "out_of_range"),
    ("above_max", b'{"threshold_deg": 90}', None, "out_of_range"),
    ("snooze_too_long", json.dumps({"snooze_min": SNOOZE_MAX_MIN + 1}).encode(), None, "out_of_range"),
    ("negative_snooze", b'{"snooze_min": -1}', None, "out_of_range"),
    ("bad_mode", b'{"mode": "panic"}', None, "out_of_range"),
    ("calibrate_false", b'{"calibrate": false}', None, "out_of_range"),
    ("duplicate_key", b'{"threshold_deg": 18, "threshold_deg": 50}', None, "duplicate_key"),
    ("too_many_keys", json.dumps({f"k{i}": i for i in range(MAX_KEYS + 1)}).encode(), None,
     "too_many_keys"),
    ("oversized", b'{"mode": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}', None, "oversized"),
    ("deep_nesting", b"[" * 1000 + b"]" * 24, None, "not_json"),
    ("stale_ts", json.dumps({"calibrate": True, "ts": NOW - 3600}).encode(), None, "stale"),
    ("future_ts", json.dumps({"calibrate": True, "ts": NOW + 3600}).encode(), None, "stale"),
    ("ts_not_number", b'{"calibrate": true, "ts": "yesterday"}', None, "wrong_type"),
    # A 400-digit "ts" used to raise OverflowError and drop the whole MQTT session.
    ("ts_400_digits", b'{"calibrate": true, "ts": ' + b"9" * 400 + b"}", None, "wrong_type"),
    ("ts_negative_400_digits", b'{"calibrate": true, "ts": -' + b"9" * 400 + b"}", None, "wrong_type"),
    ("ts_overflow_float", b'{"calibrate": true, "ts": 1e999}', None, "wrong_type"),
    ("ts_nan", b'{"calibrate": true, "ts": NaN}', None, "not_finite"),
    ("ts_year_3000", b'{"calibrate": true, "ts": 32503680000}', None, "wrong_type"),
    ("ts_bool", b'{"calibrate": true, "ts": true}', None, "wrong_type"),
    ("huge_negative_int", b'{"dwell_s": -' + b"9" * 400 + b"}", None, "out_of_range"),
    ("snooze_huge_int", b'{"snooze_min": ' + b"9" * 300 + b"}", None, "out_of_range"),
    ("entity_huge_int", b"9" * 400, "threshold_deg", "out_of_range"),
    ("id_not_string", b'{"calibrate": true, "id": 7}', None, "wrong_type"),
    ("id_too_long", json.dumps({"calibrate": True, "id": "x" * 65}).encode(), None, "wrong_type"),
    ("entity_unknown_key", b"18", "volume", "unknown_key"),
    ("entity_not_json_number", b"eighteen", "threshold_deg", "not_json"),
    ("entity_bool_as_number", b"true", "dwell_s", "wrong_type"),
    ("entity_button_press_word", b"PRESS", "calibrate", "not_json"),
    ("entity_nan", b"NaN", "threshold_deg", "not_finite"),
    ("entity_bad_mode", b"sleeping", "mode", "out_of_range"),
    ("entity_object", b'{"threshold_deg": 18}', "threshold_deg", "wrong_type"),
]


@pytest.mark.parametrize("payload,key,kind", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_commands_are_refused_with_a_reason(payload: bytes, key: str | None, kind: str) -> None:
    with pytest.raises(CommandRefused) as err:
        parse_command(payload, key=key, now_s=NOW, max_age_s=60)
    assert err.value.kind == kind
    assert err.value.reason
    # The reason is published and logged: it must be short and must not echo a huge payload.
    assert len(err.value.reason) < 200


def test_retained_commands_are_refused_even_when_valid() -> None:
    with pytest.raises(CommandRefused) as err:
        parse_command(b'{"calibrate": true}', retained=True)
    assert err.value.kind == "retained"


def test_result_json_shape() -> None:
    assert json.loads(CommandResult(True, {"dwell_s": 45.0}, "", "r1").to_json()) == {
        "ok": True, "applied": {"dwell_s": 45.0}, "error": "", "id": "r1"}
    assert json.loads(CommandResult(False, {}, "nope").to_json()) == {
        "ok": False, "applied": {}, "error": "nope"}
