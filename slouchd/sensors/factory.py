"""Turn a ``[[wearers]]`` table into a sample source, the mount to use and a stable sensor id."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from slouchd.config import REPLAY_PREFIX, Config, WearerSettings
from slouchd.files import unreadable
from slouchd.model import Mount
from slouchd.publish.wearer import stable_sensor_id
from slouchd.schema import SettingsError
from slouchd.sensors.base import SensorSource
from slouchd.sensors.paced import PacedSource
from slouchd.sensors.recording import Recording, RecordingError, read_recording

# Recording seconds read at a time; PacedSource regroups them per 0.1 s of wall time.
REPLAY_CHUNK_S = 1.0


@dataclass(frozen=True)
class SourcePlan:
    """What a wearer's sensor is, before it is opened.

    Attributes:
        kind: ``"simulated"``, ``"replay"`` or ``"ble"``.
        sensor_id: stable id for MQTT unique ids (the BLE address without colons, lowercase).
        mount: the mount to use, or None when it must be learned.
        model: human-readable model for the Home Assistant device.
        profile: firmware profile name for BLE, else "".
    """

    kind: str
    sensor_id: str
    mount: Mount | None
    model: str
    profile: str = ""


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

        return SourcePlan("simulated", sensor_id, mount or SimSettings().mount, "Simulated wearer")
    if sensor.startswith(REPLAY_PREFIX):
        check_replay(wearer, config, parse=False)
        return SourcePlan("replay", sensor_id, mount, f"Recording {Path(replay_path(wearer)).name}")
    from slouchd.sensors.profiles import get_profile, load_profiles  # BLE-only path

    profiles = load_profiles(config.ble.profiles_dir or None)
    if wearer.profile and wearer.profile not in profiles:
        raise SettingsError(f'{config.source}: {_key(config, wearer, "profile")} = "{wearer.profile}": '
                            f'unknown profile (known: {", ".join(sorted(profiles))})')
    profile = get_profile(profiles, wearer.profile) if wearer.profile else None
    if mount is None and profile is not None:
        mount = Mount.parse(profile.mount)
    model = (profile.description or profile.name) if profile is not None else "BLE IMU"
    return SourcePlan("ble", sensor_id, mount, model, wearer.profile)


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


def check_replay(wearer: WearerSettings, config: Config, *, parse: bool) -> None:
    """Check that a replay wearer's file can be read and, with ``parse``, is a valid recording.

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
    if parse:
        try:
            read_recording(path)
        except RecordingError as err:
            raise SettingsError(f"{where}: not a valid recording ({err})") from None


@functools.lru_cache(maxsize=16)
def _parsed(path: str, mtime_ns: int, size: int) -> Recording:
    return read_recording(path)


def shared_recording(path: str) -> Recording:
    """One parsed copy of a recording for every wearer replaying it (until the file changes)."""
    st = os.stat(path)
    return _parsed(path, st.st_mtime_ns, st.st_size)


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
        return PacedSource(lambda: shared_recording(path).batches(REPLAY_CHUNK_S),
                           speed=wearer.speed, start_epoch_s=start_epoch_s, loop=True,
                           preload=lambda: shared_recording(path))
    from slouchd.sensors.ble import make_ble_source

    return make_ble_source(wearer.sensor, plan.profile, config.ble)

