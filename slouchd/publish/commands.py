"""Commands from MQTT (``<base>/<wearer>/set`` and ``…/set/<key>``): parse, validate, refuse.

A command either passes every check and becomes a :class:`Command`, or it is refused whole with a
:class:`CommandRefused` naming the kind of problem and the reason; nothing is half-applied.
Validation is pure (no I/O): the publisher replies, the daemon applies.

Accepted keys (one or several in one JSON object)::

    {"calibrate": true}          take the current posture as upright
    {"use_file_settings": true}  drop the settings changed from Home Assistant / MQTT: the config
                                 file's values apply again (docs/mqtt.md, "Which value wins")
    {"threshold_deg": 18}        detection.threshold_deg, degrees
    {"dwell_s": 45}              detection.dwell_s, seconds
    {"snooze_min": 30}           no alerts for this long, minutes; 0 cancels a snooze
    {"alerts_enabled": false}    detection.alerts_enabled
    {"mode": "tracking"}         detection.mode

plus two optional fields: ``"ts"`` (Unix time the command was made, seconds: refused when older
than ``[mqtt] command_max_age_s``) and ``"id"`` (a string echoed in the reply).

The keys, their types, bounds and choices come from the exposes table
(:data:`slouchd.publish.exposes.COMMANDS`: ``DetectionSettings``' field metadata for the settings,
``Actions``' for the rest) and each value is checked by :func:`slouchd.schema.check_value`, the
check the config file goes through, so a command can never set what the config file could not
(docs/homeassistant.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slouchd.publish.exposes import COMMANDS, SETTING_KEYS, SNOOZE_MAX_MIN
from slouchd.schema import ValueProblem

__all__ = ["COMMAND_KEYS", "DROP_PAYLOAD_BYTES", "MAX_KEYS", "MAX_PAYLOAD_BYTES", "SETTING_KEYS",
           "SNOOZE_MAX_MIN", "SPECS", "Command", "CommandRefused", "CommandResult", "parse_command"]

MAX_PAYLOAD_BYTES = 1024
"""Larger command payloads are refused with a reply (``oversized``)."""
DROP_PAYLOAD_BYTES = 4096
"""Larger payloads on a command topic are dropped before they are looked at: no parsing, no
reply (a flood of them must cost nothing), only counted by the publisher."""
ID_MAX_CHARS = 64

SPECS = COMMANDS
"""Command key -> its settings field (type, bounds, choices), from the exposes table."""
COMMAND_KEYS = tuple(SPECS)
META_KEYS = ("ts", "id")
MAX_KEYS = len(COMMAND_KEYS) + len(META_KEYS)


class CommandRefused(ValueError):
    """A command that is not applied. ``kind`` is a short tag for counting and log rate limits."""

    def __init__(self, kind: str, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.request_id = request_id  # the command's valid "id", echoed in the refusal


@dataclass(frozen=True)
class Command:
    """A validated command.

    Attributes:
        values: the accepted keys and values (a subset of ``COMMAND_KEYS``), numbers as float.
        request_id: the command's ``"id"``, echoed in the reply; None when absent.
    """

    values: Mapping[str, Any]
    request_id: str | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The DetectionSettings changes (threshold_deg, dwell_s, alerts_enabled, mode)."""
        return {k: v for k, v in self.values.items() if k in SETTING_KEYS}

    @property
    def calibrate(self) -> bool:
        return bool(self.values.get("calibrate", False))

    @property
    def snooze_min(self) -> float | None:
        """Minutes to snooze (0 = cancel), or None when the command does not snooze."""
        return self.values.get("snooze_min")


@dataclass(frozen=True)
class CommandResult:
    """What happened to a command, published on ``…/set/result``.

    Attributes:
        ok: whether the command was applied.
        applied: the keys and values now in force (empty when refused).
        error: why it was refused; "" when ok.
        request_id: the command's ``"id"``, if it had one.
    """

    ok: bool
    applied: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    request_id: str | None = None

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"ok": self.ok, "applied": self.applied, "error": self.error}
        if self.request_id is not None:
            body["id"] = self.request_id
        return json.dumps(body, separators=(",", ":")).encode()


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN, Infinity and -Infinity by default; they are not JSON.
    raise CommandRefused("not_finite", f"{name} is not a finite number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise CommandRefused("duplicate_key", f'key "{_clip(k)}" appears twice')
        out[k] = v
    return out


def _clip(text: str, n: int = 40) -> str:
    """A piece of untrusted text safe to put in a log line or reply."""
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= n else text[:n] + "..."


def _decode(payload: bytes) -> Any:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandRefused("not_utf8", "payload is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except CommandRefused:
        raise
    except RecursionError:
        raise CommandRefused("not_json", "payload is nested too deeply") from None
    except ValueError as err:
        raise CommandRefused("not_json", f"payload is not JSON ({err.args[0].split(':')[0]})") from None


def _check_value(key: str, value: Any) -> Any:
    """``value`` checked by the one validator (slouchd.schema) against the key's settings field."""
    try:
        return SPECS[key].check(value)
    except ValueProblem as problem:
        raise CommandRefused(problem.kind, f"{key} = {_shown(value)}: {problem.why}") from None


def _shown(value: Any) -> str:
    """A refused JSON value, short whatever its size (a 400-digit number is not echoed whole)."""
    if isinstance(value, str):
        return f'"{_clip(value)}"'
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return _clip(str(value), 20)
    return "{...}" if isinstance(value, dict) else "[...]"


def parse_command(
    payload: bytes,
    *,
    key: str | None = None,
    retained: bool = False,
    now_s: float | None = None,
    max_age_s: float = 60.0,
) -> Command:
    """Validate one command message.

    Args:
        payload: the raw MQTT payload.
        key: for ``…/set/<key>`` topics, the key; the payload is then one JSON value (a bare word
            is accepted for string keys, e.g. ``tracking``). None for ``…/set`` (a JSON object).
        retained: the message's retain flag: a retained command is always refused, because it
            would be applied again at every (re)connect.
        now_s: current Unix time, seconds, for the ``"ts"`` staleness check (None: skip it).
        max_age_s: oldest acceptable ``"ts"``, seconds (also the most it may be in the future).

    Raises:
        CommandRefused: with ``kind`` and a reason safe to log and to publish.
    """
    if retained:
        raise CommandRefused("retained", "retained commands are refused (publish with retain off)")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandRefused("oversized", f"payload is {len(payload)} bytes (max {MAX_PAYLOAD_BYTES})")
    if not payload.strip():
        raise CommandRefused("empty", "payload is empty")
    if key is not None:
        return _parse_one(payload, key)
    return _parse_object(_decode(payload), now_s, max_age_s)


def _known() -> str:
    return f"known: {', '.join(COMMAND_KEYS)}"


def _parse_one(payload: bytes, key: str) -> Command:
    """A ``…/set/<key>`` payload: one JSON value, or a bare word for a string key (HA's select
    sends ``tracking``, not ``"tracking"``)."""
    if key not in SPECS:
        raise CommandRefused("unknown_key", f'unknown command "{_clip(key)}" ({_known()})')
    try:
        value = _decode(payload)
    except CommandRefused as err:
        if err.kind != "not_json" or SPECS[key].type is not str:
            raise
        value = payload.decode("utf-8").strip()  # _decode proved it is UTF-8
    return Command({key: _check_value(key, value)})


def _parse_object(data: Any, now_s: float | None, max_age_s: float) -> Command:
    """A ``…/set`` payload: a JSON object of command keys, ``"ts"`` and ``"id"``."""
    if not isinstance(data, dict):
        raise CommandRefused("not_object", 'payload must be a JSON object such as {"snooze_min": 30}')
    if len(data) > MAX_KEYS:
        raise CommandRefused("too_many_keys", f"{len(data)} keys (max {MAX_KEYS})")
    unknown = [k for k in data if k not in SPECS and k not in META_KEYS]
    if unknown:
        raise CommandRefused("unknown_key", f'unknown key "{_clip(unknown[0])}" ({_known()})')
    request_id = data.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > ID_MAX_CHARS):
        raise CommandRefused("wrong_type", f"id must be a string of at most {ID_MAX_CHARS} characters")
    try:
        if "ts" in data:
            _check_age(data["ts"], now_s, max_age_s)
        values = {k: _check_value(k, v) for k, v in data.items() if k in SPECS}
        if not values:
            raise CommandRefused("empty", f"no command in the payload ({_known()})")
    except CommandRefused as err:
        err.request_id = request_id  # the sender matches the refusal to its request
        raise
    return Command(values, request_id)


def _finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (not a number, NaN/inf, or an int too big for a float).

    ``math.isfinite`` and ``float`` raise OverflowError on a 400-digit int: checked here so
    that no command field can raise anything but :class:`CommandRefused`.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


TS_MIN, TS_MAX = 0.0, 4102444800.0
"""Plausible Unix times for ``"ts"`` (1970 .. 2100), seconds."""


def _check_age(ts: Any, now_s: float | None, max_age_s: float) -> None:
    number = _finite_number(ts)
    if number is None or not TS_MIN <= number <= TS_MAX:
        raise CommandRefused("wrong_type", "ts must be a Unix time in seconds")
    if now_s is None:
        return
    age = now_s - number
    if age > max_age_s:
        raise CommandRefused("stale", f"command is {age:.0f} s old (max {max_age_s:g} s)")
    if age < -max_age_s:
        raise CommandRefused("stale", f"command ts is {-age:.0f} s in the future (clock skew?)")
