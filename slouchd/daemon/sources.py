"""Turn a ``[[wearers]]`` table into a sample source, the mount to use and a stable sensor id.

Daemon wiring (it names MQTT ids via :mod:`slouchd.publish.wearer`), so it lives here and not in
``slouchd/sensors/``, which stays free of ``publish`` and the daemon. ``slouchd check-config``
runs the same checks (:func:`plan_source`, :func:`check_replay`) as a start-up.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from slouchd.config import REPLAY_PREFIX, Config, WearerSettings
from slouchd.files import unreadable
from slouchd.model import Mount, SampleBatch
from slouchd.publish.wearer import ALL_CAPABILITIES, sensor_capabilities, stable_sensor_id
from slouchd.schema import SettingsError
from slouchd.sensors.base import SensorSource
from slouchd.sensors.paced import PacedSource
from slouchd.sensors.recording import ReadReport, RecordingError, RecordingReader

REPLAY_BLOCK_ROWS = 4096
"""Rows a ``replay:`` wearer parses at a time (a few ms in the event loop; about 80 s at 50 Hz);
PacedSource regroups them per 0.1 s of wall time."""

log = logging.getLogger("slouchd.sensors")  # the name the log has always used


@dataclass(frozen=True)
class SourcePlan:
    """What a wearer's sensor is, before it is opened.

    Attributes:
        kind: ``"simulated"``, ``"replay"`` or ``"ble"``.
        sensor_id: stable id for MQTT unique ids (the BLE address without colons, lowercase).
        mount: the mount to use, or None when it must be learned.
        model: human-readable model for the Home Assistant device.
        profile: firmware profile name for BLE, else "".
        capabilities: what the sensor can ever report (``battery``, ``rssi``): Home Assistant
            entities for the rest are not announced (see ``slouchd.publish.wearer``).
        haptic: the sensor can buzz (its profile has a ``[haptic]`` write): the coach's events
            that want a buzz get one (docs/coach.md, "Haptics").
    """

    kind: str
    sensor_id: str
    mount: Mount | None
    model: str
    profile: str = ""
    capabilities: frozenset[str] = ALL_CAPABILITIES
    haptic: bool = False


def plan_source(wearer: WearerSettings, config: Config) -> SourcePlan:
    """Decide the kind of source, its id and mount.

    The daemon calls this for every wearer before it starts (and before a reload changes
    anything), so it also checks what the config names on disk: ``[ble] profiles_dir``, the
    wearer's profile, and that a replay file can be opened (its contents are parsed later, in a
    worker). No other I/O beyond reading profile files.

    Raises:
        SettingsError: one line naming the config file and key (``wearers[0].profile = ...``).
    """
    check_profiles_dir(config)
    mount = Mount.parse(wearer.mount) if wearer.mount else None
    sensor = wearer.sensor
    sensor_id = stable_sensor_id(sensor, wearer.name)
    if sensor == "simulated":
        from slouchd.sensors.simulation.settings import SimSettings  # light: no scipy

        return SourcePlan("simulated", sensor_id, mount or SimSettings().mount, "Simulated wearer",
                          capabilities=sensor_capabilities(wearer.sensor, None))
    if sensor.startswith(REPLAY_PREFIX):
        # Read to the end now: a file that cannot be played is a config error at start (exit 78,
        # as check-config says), not a sensor that fails again and again (cached per file version).
        check_replay(wearer, config, parse=True)
        return SourcePlan("replay", sensor_id, mount, f"Recording {Path(replay_path(wearer)).name}",
                          capabilities=sensor_capabilities(wearer.sensor, None))
    from slouchd.sensors.profiles import get_profile, load_profiles  # BLE-only path

    profiles = load_profiles(config.ble.profiles_dir or None)
    if wearer.profile and wearer.profile not in profiles:
        raise SettingsError(f'{config.source}: {_key(config, wearer, "profile")} = "{wearer.profile}": '
                            f'unknown profile (known: {", ".join(sorted(profiles))})')
    profile = get_profile(profiles, wearer.profile) if wearer.profile else None
    if mount is None and profile is not None:
        mount = Mount.parse(profile.mount)
    model = (profile.description or profile.name) if profile is not None else "BLE IMU"
    return SourcePlan("ble", sensor_id, mount, model, wearer.profile,
                      capabilities=sensor_capabilities(wearer.sensor, profile),
                      haptic=profile is not None and profile.haptic is not None)


def _key(config: Config, wearer: WearerSettings, field: str) -> str:
    """``wearers[i].<field>``: where the wearer's setting is in the config, for messages."""
    index = next((i for i, w in enumerate(config.wearers) if w.name == wearer.name), None)
    return f"wearers[{'?' if index is None else index}].{field}"


def replay_path(wearer: WearerSettings) -> str:
    """The file of a ``sensor = "replay:PATH"`` wearer."""
    return wearer.sensor[len(REPLAY_PREFIX):]


def check_profiles_dir(config: Config) -> None:
    """SettingsError naming ``ble.profiles_dir`` when it is set but not a directory."""
    extra = config.ble.profiles_dir
    if extra and not Path(extra).is_dir():
        why = "not a directory" if Path(extra).exists() else "no such directory"
        raise SettingsError(f'{config.source}: ble.profiles_dir = "{extra}": {why}')


def check_replay(wearer: WearerSettings, config: Config, *, parse: bool) -> ReadReport | None:
    """Check that a replay wearer's file can be read and, with ``parse``, is a valid recording
    (read to the end in bounded memory; the verdict is cached until the file changes).

    Returns:
        With ``parse``, what reading found (dropped and re-timed rows, rate); else None.

    Raises:
        SettingsError: naming the config file and ``wearers[i].sensor``, then why.
    """
    path = Path(replay_path(wearer))
    where = f'{config.source}: {_key(config, wearer, "sensor")} = "{wearer.sensor}"'
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except OSError as err:
        why = unreadable(path, err).removeprefix(f"{path}: ")
        raise SettingsError(f"{where}: cannot read the recording ({why})") from None
    if not parse:
        return None
    try:
        st = os.stat(path)
        verdict = _validated(str(path), st.st_mtime_ns, st.st_size)
    except OSError as err:
        why = unreadable(path, err).removeprefix(f"{path}: ")
        raise SettingsError(f"{where}: cannot read the recording ({why})") from None
    if isinstance(verdict, str):
        raise SettingsError(f"{where}: not a valid recording ({verdict})")
    return verdict


@functools.lru_cache(maxsize=16)
def _validated(path: str, mtime_ns: int, size: int) -> ReadReport | str:
    """Read the whole file once per version (path, mtime, size): its report, or why it is invalid.
    Each warning (dropped rows, low rate, ...) is logged once per file version."""
    try:
        with RecordingReader(path, block_rows=REPLAY_BLOCK_ROWS * 16) as reader:
            for _ in reader.samples():
                pass
    except RecordingError as err:
        return str(err)
    for line in reader.report.warnings():
        log.warning("recording %s", line)
    return reader.report


def replay_batches(path: str) -> Iterator[SampleBatch]:
    """The samples of a recording, streamed from the file (re-read on every loop, never held)."""
    with RecordingReader(path, block_rows=REPLAY_BLOCK_ROWS) as reader:
        yield from reader.samples()


def open_source(plan: SourcePlan, wearer: WearerSettings, config: Config, *,
                start_epoch_s: float | None = None) -> SensorSource:
    """Build (not yet enter) the source for ``wearer``."""
    if plan.kind == "simulated":
        from slouchd.sensors.simulated import SimSettings, SimulatedSensor, SimulatedWearer

        # One scripted day after another (seed, seed + 1, ...), like a person who keeps coming back.
        settings = SimSettings(seed=wearer.seed, mount=plan.mount or SimSettings().mount, loop=True,
                               start_s=time.time() if start_epoch_s is None else start_epoch_s)
        return SimulatedSensor(SimulatedWearer(settings), speed=wearer.speed)
    if plan.kind == "replay":
        path = replay_path(wearer)
        return PacedSource(lambda: replay_batches(path), speed=wearer.speed,
                           start_epoch_s=start_epoch_s, loop=True)
    from slouchd.sensors.ble import make_ble_source

    return make_ble_source(wearer.sensor, plan.profile, config.ble)

