"""Declarative settings: dataclass fields that carry their own bounds, choices and docs.

Every settings section of slouchd is a dataclass whose fields are made with :func:`setting`. The
loader (:func:`build`) turns a TOML table into such a dataclass and reports any problem as one
line naming the file, the dotted key, the bad value and what is allowed, for example::

    config/slouchd.toml: detection.threshold_deg = -5: must be 3..60

It checks every key before giving up, so a file with three mistakes gets three lines at once
(one :class:`SettingsError` whose message has one line per problem, in file order).

Pure Python: no I/O, so the posture engine may use it for its own settings.
"""

from __future__ import annotations

import dataclasses
import difflib
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
    if dataclasses.is_dataclass(tp):
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
    secret = bool(meta.get("secret"))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        # Try each alternative; report the first one's error if none fits.
        first: SettingsError | None = None
        for alt in args:
            try:
                return _convert(alt, value, key, meta, ctx)
            except SettingsError as err:
                first = first or err
        assert first is not None
        raise first
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ctx.fail(key, value, "must be a table")
        return _build(tp, value, key + ".", ctx)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ctx.fail(key, value, f"must be {_type_name(tp)}", secret)
        # Bounds, choices and patterns of a list setting apply to each item; a bad item is
        # recorded and left out, so the items after it are checked too.
        items = []
        for i, v in enumerate(value):
            try:
                items.append(_convert(item_tp, v, f"{key}[{i}]", meta, ctx))
            except SettingsError as err:
                ctx.record(err)
        return items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ctx.fail(key, value, "must be a table")
        return dict(value)
    return _check(tp, value, key, meta, ctx)


def _check(tp: Any, value: Any, key: str, meta: Mapping[str, Any], ctx: _Ctx) -> Any:
    secret = bool(meta.get("secret"))
    shown = value  # report what the user wrote, not the converted value
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.fail(key, value, "must be true or false", secret)
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.fail(key, value, f"must be an integer{_range_hint(meta)}", secret)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ctx.fail(key, value, f"must be a number{_range_hint(meta)}", secret)
        value = float(value)
    elif tp is str and not isinstance(value, str):
        raise ctx.fail(key, value, "must be a string", secret)
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, int | float) and not isinstance(value, bool) and (
        (lo is not None and value < lo) or (hi is not None and value > hi)
        or value != value  # NaN
    ):
        raise ctx.fail(key, shown, f"must be {_bounds(lo, hi)}", secret)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(_fmt(c) for c in choices)
        hint = _did_you_mean(str(value), [str(c) for c in choices])
        raise ctx.fail(key, value, f"must be one of {allowed}{hint}", secret)
    pattern = meta.get("pattern")
    if pattern is not None and isinstance(value, str) and not re.fullmatch(pattern, value):
        raise ctx.fail(key, value, f"must match {pattern}", secret)
    return value


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
        if dataclasses.is_dataclass(tp):
            out.extend(describe(tp, f"{prefix}{f.name}."))
            continue
        args = typing.get_args(tp)
        if typing.get_origin(tp) is list and args and dataclasses.is_dataclass(args[0]):
            out.extend(describe(args[0], f"{prefix}{f.name}[]."))
            continue
        default = f.default if f.default is not _MISSING else (
            f.default_factory() if f.default_factory is not _MISSING else None)
        out.append((prefix + f.name, default, f.metadata.get("doc", "")))
    return out
