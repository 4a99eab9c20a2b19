"""The slouchd configuration: TOML files into typed, validated settings.

Every default lives in the settings dataclasses (``slouchd/*/settings.py`` and below);
``config/slouchd.toml`` is the annotated reference of every key. Errors are one line naming the
file, the key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from slouchd.files import unreadable
from slouchd.history import DEFAULT_KEEP_DAYS, MAX_KEEP_DAYS, MIN_KEEP_DAYS
from slouchd.model import Mount
from slouchd.posture.coach import CoachSettings
from slouchd.posture.settings import (
    ActivitySettings,
    CalibrationSettings,
    DetectionSettings,
    WellbeingSettings,
)
from slouchd.posture.stretch import StretchSettings
from slouchd.publish.settings import HomeAssistantSettings, MqttSettings
from slouchd.publish.topics import BRIDGE
from slouchd.publish.wearer import first_sensor_id_clash
from slouchd.schema import SettingsError, build, check_partial, errors_to_raise, setting
from slouchd.sensors.settings import BleSettings

ConfigError = SettingsError
T = TypeVar("T")


class OverrideError(ConfigError):
    """A malformed ``--set KEY=VALUE``: a command-line mistake (exit 2), not a bad config file."""


WEARER_NAME = r"[a-z0-9][a-z0-9_\-]{0,31}"
RESERVED_NAMES = (BRIDGE,)
"""Wearer names that would collide with slouchd's own topics (``<base>/bridge/state``)."""
REPLAY_PREFIX = "replay:"


@dataclass(frozen=True)
class DaemonSettings:
    """Process-level settings (``[daemon]``)."""

    state_dir: str = setting(
        "", doc='where per-wearer state is kept; "" = $STATE_DIRECTORY or ~/.local/state/slouchd')
    log_level: str = setting("info", choices=("debug", "info", "warning", "error"), doc="log level")
    log_format: str = setting(
        "text", choices=("text", "json"), doc="text = one readable line; json = one object per line")


@dataclass(frozen=True)
class WearerSettings:
    """One person wearing one sensor (a ``[[wearers]]`` table)."""

    name: str = setting(pattern=WEARER_NAME, doc="used in MQTT topics and Home Assistant names")
    sensor: str = setting(
        "simulated", doc='BLE address or advertised name, "simulated", or "replay:PATH" (a replay CSV)')
    profile: str = setting("", doc='firmware profile for BLE sensors, e.g. "microbit"; "" = auto-match')
    mount: str = setting(
        "", doc='sensor axes as worn, "UP,OUT" e.g. "+y,-z"; "" = the profile\'s usual mount')
    speed: float = setting(1.0, min=0.01, max=100000, doc="simulated/replay sources only: 1 = real time")
    seed: int = setting(1, min=0, max=2**31 - 1, doc="simulated sources only: which scripted day")
    detection: dict[str, Any] = setting(factory=dict, doc="per-wearer overrides of [detection] keys")
    wellbeing: dict[str, Any] = setting(
        factory=dict, doc="per-wearer overrides of [wellbeing] keys (e.g. break_after_min)")
    coach: dict[str, Any] = setting(
        factory=dict, doc="per-wearer overrides of [coach] keys, sub-tables too ([wearers.coach.goal])")

    def validate(self) -> None:
        if self.name in RESERVED_NAMES:
            raise SettingsError(f'name = "{self.name}": reserved (<base_topic>/{self.name}/state is '
                                f"slouchd's own topic); choose another name")
        if not self.sensor.strip():
            raise SettingsError(f'sensor = "{self.sensor}": must be a BLE address or advertised name, '
                                f'"simulated", or "replay:PATH"')
        if self.sensor.startswith(REPLAY_PREFIX) and not self.sensor[len(REPLAY_PREFIX):].strip():
            raise SettingsError(f'sensor = "{self.sensor}": needs the path of a replay CSV after "replay:"')
        if self.mount:
            try:
                Mount.parse(self.mount)
            except ValueError as err:
                raise SettingsError(f'mount = "{self.mount}": {err}') from None


@dataclass(frozen=True)
class StretchConfig(StretchSettings):
    """``[stretch]``: how strictly guided stretches are judged, and which catalogue they come from."""

    catalog: str = setting(
        "", doc='the stretch catalogue (TOML, see docs/coach.md); "" = the built-in one')


@dataclass(frozen=True)
class HistorySettings:
    """``[history]``: the per-day history in the state directory (docs/coach.md)."""

    keep_days: int = setting(
        DEFAULT_KEEP_DAYS, min=MIN_KEEP_DAYS, max=MAX_KEEP_DAYS,
        doc="days of history kept per wearer (about 350 bytes a day), days")


BREAK_AFTER_MIN = 30.0
"""Default ``[wellbeing] break_after_min`` of the daemon: short breaks every 20-30 min of sitting
(docs/coach.md). The tracker's own default (50) is the pure engine's, for replays of old runs."""


def _wellbeing_default() -> WellbeingSettings:
    return WellbeingSettings(break_after_min=BREAK_AFTER_MIN)


def _default_wearers() -> list[WearerSettings]:
    return [WearerSettings(name="demo", sensor="simulated")]


@dataclass(frozen=True)
class Config:
    """The whole configuration. Build it with :func:`load_config` or :func:`parse_config`."""

    daemon: DaemonSettings = setting(factory=DaemonSettings)
    detection: DetectionSettings = setting(factory=DetectionSettings)
    wellbeing: WellbeingSettings = setting(factory=_wellbeing_default)
    calibration: CalibrationSettings = setting(factory=CalibrationSettings)
    activity: ActivitySettings = setting(factory=ActivitySettings)
    mqtt: MqttSettings = setting(factory=MqttSettings)
    homeassistant: HomeAssistantSettings = setting(factory=HomeAssistantSettings)
    ble: BleSettings = setting(factory=BleSettings)
    stretch: StretchConfig = setting(factory=StretchConfig)
    coach: CoachSettings = setting(factory=CoachSettings)
    history: HistorySettings = setting(factory=HistorySettings)
    wearers: list[WearerSettings] = setting(factory=_default_wearers)
    source: str = dataclasses.field(default="<defaults>", compare=False)

    def validate(self) -> None:
        seen: set[str] = set()
        for i, w in enumerate(self.wearers):
            if w.name in seen:
                raise SettingsError(f'wearers[{i}].name = "{w.name}": wearer names must be unique')
            seen.add(w.name)
        clash = first_sensor_id_clash([(w.sensor, w.name) for w in self.wearers])
        if clash is not None:
            i, j, sensor_id = clash
            key_i, key_j = self._id_key(self.wearers[i]), self._id_key(self.wearers[j])
            advice = "rename one of them" if key_j == "name" else "one sensor per wearer"
            raise SettingsError(
                f'wearers[{j}].{key_j} = "{getattr(self.wearers[j], key_j)}": gives the same Home '
                f'Assistant device id "{sensor_id}" as wearers[{i}].{key_i} = '
                f'"{getattr(self.wearers[i], key_i)}"; {advice}')

    @staticmethod
    def _id_key(wearer: WearerSettings) -> str:
        """The key a wearer's sensor id is made from: its name (simulated, replay) or its sensor."""
        sensor = wearer.sensor.strip().lower()
        return "name" if sensor == "simulated" or sensor.startswith(REPLAY_PREFIX) else "sensor"

    def wearer_detection(self, wearer: WearerSettings) -> DetectionSettings:
        """The ``[detection]`` settings in force for one wearer (global plus overrides)."""
        return dataclasses.replace(self.detection, **wearer.detection)

    def wearer_wellbeing(self, wearer: WearerSettings) -> WellbeingSettings:
        """The ``[wellbeing]`` settings in force for one wearer (global plus overrides)."""
        return dataclasses.replace(self.wellbeing, **wearer.wellbeing) if wearer.wellbeing else self.wellbeing

    def wearer_coach(self, wearer: WearerSettings) -> CoachSettings:
        """The ``[coach]`` settings in force for one wearer (global plus overrides, sub-tables merged)."""
        return merge_partial(self.coach, wearer.coach, self.source, f"wearers.{wearer.name}.coach.")

    def wearer(self, name: str) -> WearerSettings:
        for w in self.wearers:
            if w.name == name:
                return w
        raise KeyError(name)


def parse_config(data: dict[str, Any], source: str = "<config>", errors: list[str] | None = None) -> Config:
    """Validate a parsed TOML document into a :class:`Config`.

    Args:
        errors: collect every problem here instead of raising, and return the config made of
            the good values (defaults for the bad ones) so that it can be checked further.

    Raises:
        ConfigError: one line per problem, each naming ``source``, the key and what is allowed.
    """
    data = dict(data)
    data.pop("source", None)
    found: list[str] = []
    cfg = build(Config, data, source, errors=found)
    # From the file's own list: a wearer refused above is not in cfg.wearers, and the index in
    # the message must be the one in the file.
    raw_wearers = data.get("wearers")
    for i, w in enumerate(raw_wearers if isinstance(raw_wearers, list) else []):
        for section in ("detection", "wellbeing", "coach"):
            table = w.get(section) if isinstance(w, dict) else None
            if not isinstance(table, dict):
                continue  # absent, or already reported as "must be a table"
            try:
                merge_partial(getattr(cfg, section), table, source, f"wearers[{i}].{section}.")
            except SettingsError as err:
                found.extend(err.problems)
    if found:
        if errors is None:
            raise errors_to_raise(found)
        errors.extend(found)
    return dataclasses.replace(cfg, source=source)


def merge_partial(base: T, table: dict[str, Any], source: str, prefix: str) -> T:
    """``base`` with the per-wearer overrides of ``table`` (a sub-table merges into the nested
    settings of the same name), checked with the file's bounds, then the cross-field rules.

    Raises:
        ConfigError: one line per problem, naming ``source`` and ``prefix`` + the key.
    """
    cls = type(base)
    nested = {f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
              if dataclasses.is_dataclass(getattr(base, f.name))}
    found: list[str] = []
    flat = check_partial(cls, {k: v for k, v in table.items() if k not in nested}, source, prefix,
                         errors=found)
    for key in (k for k in table if k in nested):  # in file order
        sub = table[key]
        if not isinstance(sub, dict):
            found.append(f"{source}: {prefix}{key}: must be a table")
            continue
        try:
            flat[key] = merge_partial(getattr(base, key), sub, source, f"{prefix}{key}.")
        except SettingsError as err:
            found.extend(err.problems)
    if found:
        raise errors_to_raise(found)
    merged = dataclasses.replace(base, **flat)  # type: ignore[type-var]
    validate = getattr(merged, "validate", None)
    if validate is not None:
        try:
            validate()
        except SettingsError as err:
            raise SettingsError(f"{source}: {prefix}{err}") from None
    return merged


def check_resources(config: Config, *, parse_recordings: bool = True,
                    errors: list[str] | None = None) -> None:
    """Check what ``config`` names outside itself, as ``slouchd run`` would use it.

    ``[ble] profiles_dir``, each wearer's profile and replay file (fully parsed with
    ``parse_recordings``), the MQTT password file and TLS files. The same checks the daemon makes
    at start-up, so ``slouchd check-config`` accepts exactly what ``slouchd run`` can start.

    Args:
        errors: collect every problem here instead of raising at the first.

    Raises:
        ConfigError: one line naming the config file, the key and what is wrong.
    """
    # Imported here: both import this module, and check-config is the only caller that needs them.
    from slouchd.daemon.sources import check_profiles_dir, check_replay, plan_source
    from slouchd.publish.mqtt import read_password, tls_context

    found: list[str] = []

    def attempt(check: Any, *args: Any, name_file: bool = False, **kwargs: Any) -> None:
        try:
            check(*args, **kwargs)
        except SettingsError as err:  # password and TLS errors name the key; add the file
            found.append(f"{config.source}: {err}" if name_file else str(err))

    attempt(check_profiles_dir, config)
    for w in config.wearers:
        try:
            replay = plan_source(w, config).kind == "replay"
        except SettingsError as err:  # an unknown profile or a bad profile file
            found.append(str(err))
            continue
        if replay and parse_recordings:
            attempt(check_replay, w, config, parse=True)
    attempt(read_password, config.mqtt, name_file=True)
    attempt(tls_context, config.mqtt, name_file=True)
    attempt(check_catalog, config)
    if found:
        if errors is None:
            raise errors_to_raise(found)
        errors.extend(found)


def check_catalog(config: Config) -> None:
    """``[stretch] catalog`` loads, and every ``default_session`` (``[coach]`` and each wearer's
    override) is one of its sessions.

    Raises:
        ConfigError: one line per problem.
    """
    from slouchd.stretches import load_catalog  # only check-config and the daemon read the file

    try:
        catalog = load_catalog(config.stretch.catalog or None)
    except SettingsError as err:
        raise SettingsError(f"{config.source}: stretch.catalog: {err}") from None
    known = [s.name for s in catalog.sessions]
    found: list[str] = []
    where = [("coach", config.coach)] + [
        (f"wearers[{i}].coach", config.wearer_coach(w)) for i, w in enumerate(config.wearers)
        if "default_session" in w.coach]
    for key, coach in where:
        if coach.default_session not in known:
            found.append(f'{config.source}: {key}.default_session = "{coach.default_session}": no such '
                         f"session in the stretch catalogue (known: {', '.join(known)})")
    if found:
        raise errors_to_raise(found)


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file; any problem becomes a one-line ConfigError naming the file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(unreadable(p, err)) from None


def load_config(path: str | os.PathLike[str] | None, overrides: list[str] | None = None,
                errors: list[str] | None = None) -> Config:
    """Load ``path`` (or built-in defaults when None) and apply ``KEY=VALUE`` overrides.

    Every problem in the file is reported at once (one line each). With ``errors`` they are
    collected there instead, and the config of the good values is returned (see
    :func:`parse_config`); an unreadable file or invalid TOML still raises.
    """
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    if overrides:  # an error may come from a --set value: say so
        source = "--set" if path is None else f"{path} with --set"
    for item in overrides or []:
        set_dotted(data, item)
    return parse_config(data, source, errors)


def parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax if it parses (18, true, "x", [..]), else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_dotted(data: dict[str, Any], item: str) -> None:
    """Apply one ``KEY=VALUE`` (``detection.dwell_s=30``) to a raw TOML document in place."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise OverrideError(f"--set {item}: expected KEY=VALUE, e.g. detection.dwell_s=30")
    parts = key.split(".")
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list):
            raise OverrideError(f"--set {item}: cannot set inside a list of tables")
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise OverrideError(f"--set {item}: {part} is not a table")
    node[parts[-1]] = parse_value(value.strip())
