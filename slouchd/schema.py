"""Declarative settings: dataclass fields that carry their own bounds, choices and docs.

Every settings section of slouchd is a dataclass whose fields are made with :func:`setting`. The
loader (:func:`build`) turns a TOML table into such a dataclass and reports any problem as one
line naming the file, the dotted key, the bad value and what is allowed, for example::

    config/slouchd.toml: detection.threshold_deg = -5: must be 3..60

It checks every key before giving up, so a file with three mistakes gets three lines at once
(one :class:`SettingsError` whose message has one line per problem, in file order).

:func:`check_value` is the one check of a single value; MQTT commands use it too
(``slouchd.publish.exposes``), so a command and the config file can never disagree. That is why
this module is a little over 400 lines: the loader and the check are kept together.

Pure Python: no I/O, so the posture engine may use it for its own settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING = dataclasses.MISSING


class SettingsError(ValueError):
    """A setting has a bad value or name. ``str(err)`` is the message for the user: one line per
    problem (usually one; :func:`build` reports every problem of a file at once)."""

    @property
    def problems(self) -> list[str]:
        """One line per problem."""
        return str(self).splitlines()


def errors_to_raise(errors: list[str]) -> SettingsError:
    """One :class:`SettingsError` listing ``errors`` (one line each, duplicates dropped)."""
    return SettingsError("\n".join(dict.fromkeys(errors)))


def setting(
    default: Any = _MISSING,
    *,
    doc: str = "",
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
    pattern: str | None = None,
    secret: bool = False,
    factory: Any = _MISSING,
) -> Any:
    """A dataclass field with validation metadata.

    Args:
        default: the default value (immutable values only; use ``factory`` for lists/tables).
        doc: one-line description, with the unit.
        min, max: inclusive numeric bounds.
        choices: the allowed values.
        pattern: a regular expression a string must match in full.
        secret: never echo the value in messages or logs.
        factory: a callable producing the default (for lists and nested tables).
    """
    meta = {"doc": doc, "min": min, "max": max, "choices": choices, "pattern": pattern,
            "secret": secret}
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{...}"
    return repr(value)


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _is_dataclass_type(tp: Any) -> bool:
    """A dataclass itself, not an instance (annotations are types)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0]).removeprefix('a ')}s"
    if _is_dataclass_type(tp):
        return "a table"
    return str(tp)


class _Ctx:
    """Where the table came from, and the problems found so far (every key is checked)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def record(self, err: SettingsError) -> None:
        if not isinstance(err, _Recorded):
            self.errors.append(str(err))

    def fail(self, key: str, value: Any, why: str, secret: bool = False) -> SettingsError:
        shown = "***" if secret else _fmt(value)
        return SettingsError(f"{self.source}: {key} = {shown}: {why}")


class _Recorded(SettingsError):
    """A table that could not be built at all (a required key missing); its problems are recorded."""


def _convert(tp: Any, value: Any, key: str, meta: Mapping[str, Any], ctx: _Ctx) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(tp, value, key, meta, ctx)
    if _is_dataclass_type(tp):
        if not isinstance(value, Mapping):
            raise ctx.fail(key, value, "must be a table")
        return _build(tp, value, key + ".", ctx)
    if origin is list:
        return _convert_list(tp, value, key, meta, ctx)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ctx.fail(key, value, "must be a table")
        return dict(value)
    return _check(tp, value, key, meta, ctx)


def _convert_union(tp: Any, value: Any, key: str, meta: Mapping[str, Any], ctx: _Ctx) -> Any:
    """``X | None`` and other unions: None, or the first alternative that fits; else the first
    alternative's complaint."""
    if value is None:
        return None
    first: SettingsError | None = None
    for alt in (a for a in typing.get_args(tp) if a is not type(None)):
        try:
            return _convert(alt, value, key, meta, ctx)
        except SettingsError as err:
            first = first or err
    assert first is not None
    raise first


def _convert_list(tp: Any, value: Any, key: str, meta: Mapping[str, Any], ctx: _Ctx) -> list[Any]:
    """Bounds, choices and patterns of a list setting apply to each item; a bad item is recorded
    and left out, so the items after it are checked too."""
    (item_tp,) = typing.get_args(tp)
    if not isinstance(value, list):
        raise ctx.fail(key, value, f"must be {_type_name(tp)}", bool(meta.get("secret")))
    items = []
    for i, v in enumerate(value):
        try:
            items.append(_convert(item_tp, v, f"{key}[{i}]", meta, ctx))
        except SettingsError as err:
            ctx.record(err)
    return items


def _check(tp: Any, value: Any, key: str, meta: Mapping[str, Any], ctx: _Ctx) -> Any:
    try:
        return check_value(tp, value, meta)
    except ValueProblem as problem:
        # Report what the user wrote, not the converted value.
        raise ctx.fail(key, value, problem.why, bool(meta.get("secret"))) from None


class ValueProblem(ValueError):
    """One value that does not fit its setting, said without the key or the value (the caller
    knows where the value came from: a config file line, an MQTT command...).

    Attributes:
        kind: ``"wrong_type"``, ``"not_finite"`` (NaN or infinity) or ``"out_of_range"``
            (bounds, choices, pattern, or an integer too big for a float).
        why: what is allowed, e.g. ``"must be 3..60"``.
    """

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind
        self.why = why


def check_value(tp: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    """The one check of a single value against its type and :func:`setting` metadata.

    Used for config files (through :func:`build`) and for MQTT commands alike, so a command can
    never set what the config file could not.

    Args:
        tp: ``bool``, ``int``, ``float`` or ``str`` (other types only get the metadata checks).
        value: the value as parsed from TOML or JSON.
        meta: the field's metadata (``min``, ``max``, ``choices``, ``pattern``).

    Returns:
        The value, an int converted to float for a ``float`` setting.

    Raises:
        ValueProblem: with the kind of problem and what is allowed.
    """
    value = _check_type(tp, value, meta)
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, int | float) and not isinstance(value, bool) and (
            (lo is not None and value < lo) or (hi is not None and value > hi)):
        raise ValueProblem("out_of_range", f"must be {_bounds(lo, hi)}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        if len(choices) == 1:
            raise ValueProblem("out_of_range", f"must be {_fmt(choices[0])}")
        allowed = ", ".join(_fmt(c) for c in choices)
        hint = _did_you_mean(str(value), [str(c) for c in choices])
        raise ValueProblem("out_of_range", f"must be one of {allowed}{hint}")
    pattern = meta.get("pattern")
    if pattern is not None and isinstance(value, str) and not re.fullmatch(pattern, value):
        raise ValueProblem("out_of_range", f"must match {pattern}")
    return value


def _check_type(tp: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    # bool is an int in Python: true must never mean 1 (or 1 degree).
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if tp is bool and not isinstance(value, bool):
        raise ValueProblem("wrong_type", "must be true or false")
    if tp is int and not (is_number and isinstance(value, int)):
        raise ValueProblem("wrong_type", f"must be an integer{_range_hint(meta)}")
    if tp is float:
        if not is_number:
            raise ValueProblem("wrong_type", f"must be a number{_range_hint(meta)}")
        return _finite(value, meta)
    if tp is str and not isinstance(value, str):
        raise ValueProblem("wrong_type", "must be a string")
    return value


def _finite(value: float, meta: Mapping[str, Any]) -> float:
    """``value`` as a finite float. A 400-digit integer overflows a float: out of range, not a
    crash (``float()`` raises OverflowError)."""
    try:
        number = float(value)
    except OverflowError:
        lo, hi = meta.get("min"), meta.get("max")
        bounded = lo is not None or hi is not None
        raise ValueProblem("out_of_range", f"must be {_bounds(lo, hi)}" if bounded
                           else "must be a number of at most 308 digits") from None
    if not math.isfinite(number):
        raise ValueProblem("not_finite", f"must be a finite number{_range_hint(meta)}")
    return number


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One setting's type and metadata, read from its dataclass (see :func:`field_spec`).

    Attributes:
        name: the field name (``threshold_deg``).
        type: its annotation (``float``).
        meta: its :func:`setting` metadata.
    """

    name: str
    type: Any
    meta: Mapping[str, Any]

    @property
    def lo(self) -> float | None:
        """Inclusive lower bound, or None."""
        return self.meta.get("min")

    @property
    def hi(self) -> float | None:
        """Inclusive upper bound, or None."""
        return self.meta.get("max")

    @property
    def choices(self) -> tuple[Any, ...] | None:
        return self.meta.get("choices")

    @property
    def doc(self) -> str:
        return str(self.meta.get("doc", ""))

    def check(self, value: Any) -> Any:
        """:func:`check_value` for this field."""
        return check_value(self.type, value, self.meta)


def field_spec(cls: type, name: str) -> FieldSpec:
    """The type and metadata of the setting ``name`` of dataclass ``cls``.

    Raises:
        KeyError: ``cls`` has no such field.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return FieldSpec(name, typing.get_type_hints(cls)[name], fields[name].metadata)


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{_fmt_num(lo)}..{_fmt_num(hi)}"
    if lo is not None:
        return f">= {_fmt_num(lo)}"
    return f"<= {_fmt_num(hi)}"  # type: ignore[arg-type]


def _range_hint(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    return "" if lo is None and hi is None else f" in {_bounds(lo, hi)}"


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _build(cls: type[T], data: Mapping[str, Any], prefix: str, ctx: _Ctx) -> T:
    """Build ``cls`` from ``data``, recording every problem in ``ctx``.

    A bad value is recorded and its default used, so the other keys are still checked (and a
    caller collecting problems still gets an object to check further). A complaint of the
    cross-field ``validate()`` that names a refused key is not repeated (it would compare with
    the default, not with the file). Raises :class:`_Recorded` when the table cannot be built
    (a required key is missing) or is invalid as a whole: only valid objects are returned.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    failed: list[str] = []  # keys of this table whose value was refused
    for key in data:
        if key not in fields:
            hint = _did_you_mean(key, list(fields))
            allowed = "" if hint else f" (known keys: {', '.join(fields)})"
            ctx.record(SettingsError(f"{ctx.source}: {prefix}{key}: unknown key{hint}{allowed}"))
    kwargs: dict[str, Any] = {}
    missing = False
    for name, f in fields.items():
        if name in data:
            try:
                kwargs[name] = _convert(hints[name], data[name], prefix + name, f.metadata, ctx)
            except SettingsError as err:
                ctx.record(err)
                failed.append(name)
                if f.default is _MISSING and f.default_factory is _MISSING:
                    missing = True
        elif f.default is _MISSING and f.default_factory is _MISSING:
            ctx.record(SettingsError(f"{ctx.source}: {prefix}{name}: missing required key"))
            missing = True
    if missing:
        raise _Recorded(prefix)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except SettingsError as err:
            # A complaint that names a refused key compares with its default, not with what the
            # file says: already reported, and misleading. Either way the object is invalid.
            if not any(re.search(rf"\b{re.escape(name)}\b", str(err)) for name in failed):
                ctx.record(SettingsError(f"{ctx.source}: {prefix}{err}"))
            raise _Recorded(prefix) from None
    return obj


def build(cls: type[T], data: Mapping[str, Any], source: str, prefix: str = "",
          errors: list[str] | None = None) -> T:
    """Make a ``cls`` from a TOML table, validating every key.

    A dataclass may define ``validate()`` for cross-field rules; it raises ``SettingsError`` with
    a message starting with the key (``"hysteresis_deg = 20: must be below threshold_deg"``).

    Args:
        errors: collect the problems here instead of raising, and return the object built from
            the good values (defaults for the bad ones), for further checks. A table that cannot
            be built at all (a missing required key) still raises.

    Raises:
        SettingsError: one line per problem, each naming ``source``, the key and what is allowed.
    """
    ctx = _Ctx(source)
    try:
        obj = _build(cls, data, prefix, ctx)
    except _Recorded:
        raise errors_to_raise(ctx.errors) from None
    if ctx.errors:
        if errors is None:
            raise errors_to_raise(ctx.errors)
        errors.extend(ctx.errors)
    return obj


def check_partial(cls: type, data: Mapping[str, Any], source: str, prefix: str,
                  errors: list[str] | None = None) -> dict[str, Any]:
    """Validate a table of overrides for some of ``cls``'s fields; return the converted values.

    With ``errors``, problems are collected there (the bad keys left out of the result)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    ctx = _Ctx(source)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            hint = _did_you_mean(key, list(fields))
            ctx.record(SettingsError(f"{source}: {prefix}{key}: unknown key{hint}"))
            continue
        try:
            out[key] = _convert(hints[key], value, prefix + key, fields[key].metadata, ctx)
        except SettingsError as err:
            ctx.record(err)
    if ctx.errors:
        if errors is None:
            raise errors_to_raise(ctx.errors)
        errors.extend(ctx.errors)
    return out


def describe(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, doc) for every leaf setting of ``cls``, for docs and tests."""
    out: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_dataclass_type(tp):
            out.extend(describe(tp, f"{prefix}{f.name}."))
            continue
        args = typing.get_args(tp)
        if typing.get_origin(tp) is list and args and _is_dataclass_type(args[0]):
            out.extend(describe(args[0], f"{prefix}{f.name}[]."))
            continue
        default = f.default if f.default is not _MISSING else (
            f.default_factory() if f.default_factory is not _MISSING else None)
        out.append((prefix + f.name, default, f.metadata.get("doc", "")))
    return out
