"""Firmware profiles: one TOML file per sensor firmware, loaded and validated at start.

A profile says how to recognise a sensor (advertised name, service UUIDs, manufacturer data),
what to do after connecting (writes, reads, waits), which characteristic notifies samples, how
the payload is laid out (a ``struct`` format or a named decoder from :mod:`slouchd.sensors.decoders`),
how raw counts scale to g and deg/s (the sign is part of the scale: decoded samples follow the
project convention that, at rest, the axis pointing up reads +1 g), the sensor's usual mount as
worn, and optionally a battery characteristic and a haptic (vibrate/beep) write.

The format is documented in ``docs/sensors.md``. Errors name the file and the dotted key::

    firmware_profiles/microbit.toml: stream.acc_scale = [0.001]: needs 3 numbers (x, y, z)
"""

from __future__ import annotations

import fnmatch
import re
import struct
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slouchd.model import Mount
from slouchd.schema import SettingsError, build, setting

HEX = r"(?:[0-9a-fA-F]{2}[ :]?)*"
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
UUID_OR_EMPTY = rf"(?:{UUID})?"
PROFILE_NAME = r"[a-z0-9][a-z0-9_\-]{0,39}"

#: Named decoders and how many raw columns each produces per sample (see decoders.py).
DECODER_COLUMNS: dict[str, int] = {"polar_pmd": 3, "witmotion": 9, "ruuvi_rawv2": 3}
DECODERS = ("struct", *DECODER_COLUMNS)
#: Options each named decoder accepts in ``[stream.options]``.
DECODER_OPTIONS: dict[str, set[str]] = {"polar_pmd": {"factor"}}

STEP_OPS = ("write", "read", "patch", "subscribe", "wait_notify", "wait")

#: Where the built-in profiles live: ``firmware_profiles/`` at the top of the source tree, or
#: ``<prefix>/share/slouchd/firmware_profiles`` for an installed (non-editable) package.
_CANDIDATES = (Path(__file__).resolve().parents[2] / "firmware_profiles",
               Path(sys.prefix) / "share" / "slouchd" / "firmware_profiles")
BUILTIN_DIR = next((d for d in _CANDIDATES if d.is_dir()), _CANDIDATES[0])


def parse_hex(text: str) -> bytes:
    """Bytes from hex written with optional spaces or colons (``"55 61"``, ``"55:61"``)."""
    return bytes.fromhex(re.sub(r"[\s:]", "", text))


@dataclass(frozen=True)
class MatchSpec:
    """How a sensor is recognised from its advertisement (``[match]``). Any one rule matching is enough."""

    names: list[str] = setting(
        factory=list, doc='advertised-name patterns, shell style ("BBC micro:bit*"), case-insensitive')
    service_uuids: list[str] = setting(factory=list, doc="advertised 128-bit service UUIDs")
    manufacturer_id: int = setting(-1, min=-1, max=0xFFFF, doc="Bluetooth SIG company id; -1 = none")
    manufacturer_prefix: str = setting(
        "", pattern=HEX, doc="hex bytes the manufacturer data must start with (after the company id)")

    def validate(self) -> None:
        for i, u in enumerate(self.service_uuids):
            if not re.fullmatch(UUID, u):
                raise SettingsError(f'service_uuids[{i}] = "{u}": must be a full 128-bit UUID')
        if self.manufacturer_prefix and self.manufacturer_id < 0:
            raise SettingsError("manufacturer_prefix: needs manufacturer_id")

    def matches(self, name: str | None, service_uuids: Iterable[str],
                manufacturer_data: Mapping[int, bytes]) -> bool:
        """True if the advertisement fits any rule of this spec."""
        if name and any(fnmatch.fnmatch(name.lower(), p.lower()) for p in self.names):
            return True
        advertised = {u.lower() for u in service_uuids}
        if any(u.lower() in advertised for u in self.service_uuids):
            return True
        if self.manufacturer_id >= 0 and self.manufacturer_id in manufacturer_data:
            return manufacturer_data[self.manufacturer_id].startswith(parse_hex(self.manufacturer_prefix))
        return False


@dataclass(frozen=True)
class Step:
    """One start-up (or haptic) step, run in order after notifications are on.

    ``write`` data to uuid; ``read`` uuid (and check ``expect`` if given); ``patch`` reads uuid,
    puts data at ``offset`` and writes it back only if that changes it (settings kept in flash);
    ``subscribe`` turns on notifications/indications of a control characteristic so a later
    ``wait_notify`` can see its answer; ``wait_notify`` waits up to ``timeout_s`` for a
    notification of uuid starting with one of ``expect``; ``wait`` sleeps ``delay_s``.
    """

    op: str = setting("write", choices=STEP_OPS, doc="what to do")
    uuid: str = setting("", pattern=UUID_OR_EMPTY, doc="characteristic UUID")
    data: str = setting("", pattern=HEX, doc="hex bytes to write")
    offset: int = setting(0, min=0, max=512, doc="patch: byte offset of data in the value read")
    response: bool = setting(True, doc="write with response")
    expect: list[str] = setting(factory=list, doc="hex prefixes an answer may start with")
    timeout_s: float = setting(5.0, min=0.1, max=60, doc="wait_notify: give up after, seconds")
    delay_s: float = setting(0.0, min=0, max=30, doc="pause after this step, seconds")
    optional: bool = setting(False, doc="a failure of this step is logged, not fatal")

    def validate(self) -> None:
        for i, e in enumerate(self.expect):
            if not re.fullmatch(HEX, e):
                raise SettingsError(f'expect[{i}] = "{e}": must be hex bytes')
        needs_uuid = self.op != "wait"
        if needs_uuid and not self.uuid:
            raise SettingsError(f'uuid: op "{self.op}" needs a characteristic uuid')
        if self.op in ("write", "patch") and not self.data:
            raise SettingsError(f'data: op "{self.op}" needs hex data')
        if self.op == "wait_notify" and not self.expect:
            raise SettingsError('expect: op "wait_notify" needs at least one hex prefix')
        if self.op == "wait" and self.delay_s <= 0:
            raise SettingsError('delay_s: op "wait" needs delay_s > 0')

    @property
    def data_bytes(self) -> bytes:
        return parse_hex(self.data)

    @property
    def expect_bytes(self) -> list[bytes]:
        return [parse_hex(e) for e in self.expect]


@dataclass(frozen=True)
class Stream:
    """Where samples come from and how their bytes are laid out (``[stream]``)."""

    decoder: str = setting("struct", choices=DECODERS, doc="struct, or a named decoder")
    notify_uuid: str = setting("", pattern=UUID_OR_EMPTY, doc="characteristic that notifies samples")
    passive: bool = setting(False, doc="samples come in advertisements: never connect")
    format: str = setting("", doc='struct format of ONE sample, e.g. "<hhh" (struct decoder)')
    header: str = setting("", pattern=HEX, doc="hex bytes every notification starts with")
    skip: int = setting(-1, min=-1, max=64, doc="bytes before the first sample; -1 = the header length")
    samples: int = setting(1, min=0, max=512, doc="samples per notification; 0 = as many as fit")
    sync: str = setting("", pattern=HEX, doc="byte-stream framing: hex sync word each frame starts with")
    frame_len: int = setting(0, min=0, max=512, doc="byte-stream framing: bytes per frame incl. sync")
    acc: list[int] = setting(factory=lambda: [0, 1, 2], doc="columns holding acceleration x, y, z")
    acc_scale: list[float] = setting(
        factory=lambda: [1.0, 1.0, 1.0], doc="g per count for x, y, z; a negative scale flips the axis")
    gyro: list[int] = setting(factory=list, doc="columns holding angular rate x, y, z; [] = none")
    gyro_scale: list[float] = setting(factory=list, doc="deg/s per count for x, y, z")
    options: dict[str, Any] = setting(factory=dict, doc="named-decoder options")

    def validate(self) -> None:
        if self.passive == bool(self.notify_uuid):
            raise SettingsError("notify_uuid: give a notify_uuid, or passive = true (never both)")
        self._validate_format()
        self._validate_options()
        self._validate_framing()
        self._validate_columns()

    def _validate_format(self) -> None:
        """A struct decoder needs a fixed-order format of numbers; named decoders take none."""
        if self.decoder != "struct":
            if self.format:
                raise SettingsError(f'format: the {self.decoder} decoder has a fixed layout; remove format')
            return
        if not self.format:
            raise SettingsError('format: the struct decoder needs a format such as "<hhh"')
        try:
            size = struct.calcsize(self.format)
        except struct.error as err:
            raise SettingsError(f'format = "{self.format}": not a struct format ({err})') from None
        if size == 0:
            raise SettingsError(f'format = "{self.format}": describes no bytes')
        if self.format[:1] not in "<>!":
            raise SettingsError(f'format = "{self.format}": start with < or > to fix the byte order')
        values = struct.unpack(self.format, bytes(size))
        if not values or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise SettingsError(f'format = "{self.format}": only number fields (b B h H i I q Q e f d)')

    def _validate_options(self) -> None:
        allowed = DECODER_OPTIONS.get(self.decoder, set())
        for key, value in self.options.items():
            if key not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise SettingsError(f"options.{key}: unknown option of the {self.decoder} decoder "
                                    f"(known: {known})")
            if isinstance(value, bool) or not isinstance(value, int | float) or value == 0:
                raise SettingsError(f"options.{key} = {value!r}: must be a non-zero number")

    def _validate_framing(self) -> None:
        """Byte-stream framing: both sync and frame_len, and frames that hold whole samples."""
        if self.sync and self.decoder != "struct":
            raise SettingsError(f"sync: the {self.decoder} decoder does its own framing; remove sync")
        if bool(self.sync) != bool(self.frame_len):
            raise SettingsError("sync: byte-stream framing needs both sync and frame_len")
        if not self.sync:
            return
        if self.frame_len < len(parse_hex(self.sync)) + 1:
            raise SettingsError(f"frame_len = {self.frame_len}: must be longer than the sync word")
        skip = len(self.header_bytes) if self.skip < 0 else self.skip
        payload = self.frame_len - skip
        size = struct.calcsize(self.format)
        fits = payload == self.samples * size if self.samples else payload > 0 and payload % size == 0
        if not fits:
            raise SettingsError(f"frame_len = {self.frame_len}: a frame must hold {skip} header bytes "
                                f"and whole {size}-byte samples ({self.samples or 'any number'})")

    def _validate_columns(self) -> None:
        ncol = self.columns
        for key, cols, scale in (("acc", self.acc, self.acc_scale), ("gyro", self.gyro, self.gyro_scale)):
            if key == "acc" and len(cols) != 3:
                raise SettingsError(f"acc = {cols}: needs 3 column numbers (x, y, z)")
            if cols and len(cols) != 3:
                raise SettingsError(f"{key} = {cols}: needs 3 column numbers (x, y, z) or []")
            if len(scale) != len(cols):
                raise SettingsError(f"{key}_scale = {scale}: needs {len(cols)} numbers (one per column)")
            if any(not 0 <= c < ncol for c in cols):
                raise SettingsError(f"{key} = {cols}: columns must be 0..{ncol - 1}")
            if any(s == 0 for s in scale):
                raise SettingsError(f"{key}_scale = {scale}: a scale of 0 loses the axis")

    @property
    def columns(self) -> int:
        """How many raw numbers the decoder yields per sample."""
        if self.decoder == "struct":
            try:
                return len(struct.unpack(self.format, bytes(struct.calcsize(self.format))))
            except struct.error:
                return 0
        return DECODER_COLUMNS[self.decoder]

    @property
    def header_bytes(self) -> bytes:
        return parse_hex(self.header)

    @property
    def sync_bytes(self) -> bytes:
        return parse_hex(self.sync)


@dataclass(frozen=True)
class Battery:
    """A readable battery level characteristic (``[battery]``)."""

    uuid: str = setting(
        "00002a19-0000-1000-8000-00805f9b34fb", pattern=UUID, doc="characteristic (default: SIG 0x2A19)")
    poll_s: float = setting(600.0, min=10, max=86400, doc="read it again every, seconds")


@dataclass(frozen=True)
class Haptic:
    """The sensor's vibrate/beep command (``[haptic]``)."""

    steps: list[Step] = setting(factory=list, doc="writes that start the buzz/beep")
    stop: list[Step] = setting(factory=list, doc="writes that end it after buzz_s ([] = it stops by itself)")
    buzz_s: float = setting(0.5, min=0, max=10, doc="how long the motor/buzzer runs, seconds")
    settle_s: float = setting(0.5, min=0, max=10, doc="samples ignored this long after it stops, seconds")

    def validate(self) -> None:
        if not self.steps:
            raise SettingsError("steps: a [haptic] table needs at least one step")


@dataclass(frozen=True)
class Profile:
    """One sensor firmware. Build with :func:`load_profile`."""

    name: str = setting(pattern=PROFILE_NAME, doc="profile name, used in config and on the CLI")
    mount: str = setting(doc='the usual mount as worn, "UP,OUT" (see slouchd.model.Mount)')
    rate_hz: float = setting(doc="nominal sample rate after the start-up steps, Hz", min=0.01, max=2000)
    description: str = setting("", doc="one line for `slouchd profiles`")
    sources: list[str] = setting(factory=list, doc="where the layout comes from (docs, SDK files)")
    pairing: str = setting("", doc="how to pair/enable the sensor, for docs and errors")
    match: MatchSpec = setting(factory=MatchSpec, doc="how the sensor is recognised")
    stream: Stream = setting(factory=Stream, doc="the sample payload")
    startup: list[Step] = setting(factory=list, doc="steps after connecting")
    battery: Battery | None = setting(None, doc="battery level characteristic")
    haptic: Haptic | None = setting(None, doc="vibrate/beep command")
    path: str = setting("", doc="file it was loaded from (set by the loader)")

    def validate(self) -> None:
        try:
            Mount.parse(self.mount)
        except ValueError as err:
            raise SettingsError(f'mount = "{self.mount}": {err}') from None
        m = self.match
        if not (m.names or m.service_uuids or m.manufacturer_id >= 0):
            raise SettingsError("match: give names, service_uuids or manufacturer_id")
        if self.stream.passive and (self.startup or self.haptic or self.battery):
            raise SettingsError("stream.passive: a passive sensor has no startup, battery or haptic")
        subscribed: set[str] = set()
        for i, step in enumerate(self.startup):
            if step.op == "subscribe":
                subscribed.add(step.uuid.lower())
            if step.op == "wait_notify" and step.uuid.lower() not in subscribed:
                raise SettingsError(f"startup[{i}].uuid: wait_notify needs an earlier subscribe step "
                                    "for the same characteristic")
        if self.stream.passive and m.manufacturer_id < 0:
            raise SettingsError("match.manufacturer_id: a passive sensor is read from manufacturer data")

    @property
    def usual_mount(self) -> Mount:
        """The sensor's usual mount as worn (the wearer's ``mount`` overrides it)."""
        return Mount.parse(self.mount)

    @property
    def has_gyro(self) -> bool:
        return bool(self.stream.gyro)


def load_profile(path: str | Path) -> Profile:
    """Load and validate one profile file.

    Raises:
        SettingsError: one line naming the file, the key and what is allowed.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise SettingsError(f"{p}: cannot read ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{p}: not valid TOML ({err})") from None
    if "path" in data:
        raise SettingsError(f"{p}: path: unknown key (set by the loader)")
    data = {"name": p.stem, **data, "path": str(p)}
    profile = build(Profile, data, str(p))
    if profile.name != p.stem:
        raise SettingsError(f'{p}: name = "{profile.name}": must equal the file name ("{p.stem}")')
    return profile


def load_profiles(extra_dir: str | Path | None = None, builtin_dir: Path = BUILTIN_DIR) -> dict[str, Profile]:
    """All profiles by name: the built-in ones, then ``extra_dir``'s (which override by name).

    Raises:
        SettingsError: for the first bad file, naming file and key; or if ``extra_dir`` is missing.
    """
    profiles: dict[str, Profile] = {}
    if not builtin_dir.is_dir():
        raise SettingsError(f"{builtin_dir}: the built-in firmware profiles are missing (broken install?)")
    dirs = [builtin_dir]
    if extra_dir:
        extra = Path(extra_dir)
        if not extra.is_dir():
            raise SettingsError(f'ble.profiles_dir = "{extra}": not a directory')
        dirs.append(extra)
    for d in dirs:
        for f in sorted(d.glob("*.toml")):
            prof = load_profile(f)
            profiles[prof.name] = prof
    return profiles


def get_profile(profiles: Mapping[str, Profile], name: str) -> Profile:
    """The profile called ``name``; SettingsError listing the known ones if there is none."""
    try:
        return profiles[name]
    except KeyError:
        raise SettingsError(
            f'profile "{name}": unknown (known: {", ".join(sorted(profiles))})') from None


def match_profile(profiles: Iterable[Profile], name: str | None, service_uuids: Iterable[str],
                  manufacturer_data: Mapping[int, bytes]) -> Profile | None:
    """The first profile (by name order, ``generic`` last) whose match rules fit an advertisement."""
    uuids = list(service_uuids)
    ordered = sorted(profiles, key=lambda p: (p.name == "generic", p.name))
    for prof in ordered:
        if prof.match.matches(name, uuids, manufacturer_data):
            return prof
    return None
