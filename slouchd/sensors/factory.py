"""Turn a ``[[wearers]]`` table into a sample source, the mount to use and a stable sensor id."""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from slouchd.config import Config, WearerSettings
from slouchd.model import Mount
from slouchd.publish.wearer import stable_sensor_id
from slouchd.sensors.base import SensorSource
from slouchd.sensors.paced import PacedSource
from slouchd.sensors.recording import Recording, read_recording

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
    """Decide the kind of source, its id and mount (no I/O beyond reading profile files)."""
    mount = Mount.parse(wearer.mount) if wearer.mount else None
    sensor = wearer.sensor
    sensor_id = stable_sensor_id(sensor, wearer.name)
    if sensor == "simulated":
        from slouchd.sensors.simulation.settings import SimSettings  # light: no scipy

        return SourcePlan("simulated", sensor_id, mount or SimSettings().mount, "Simulated wearer")
    if sensor.startswith("replay:"):
        return SourcePlan("replay", sensor_id, mount, f"Recording {Path(sensor[7:]).name}")
    from slouchd.sensors.profiles import get_profile, load_profiles  # BLE-only path

    profiles = load_profiles(config.ble.profiles_dir or None)
    profile = get_profile(profiles, wearer.profile) if wearer.profile else None
    if mount is None and profile is not None:
        mount = Mount.parse(profile.mount)
    model = (profile.description or profile.name) if profile is not None else "BLE IMU"
    return SourcePlan("ble", sensor_id, mount, model, wearer.profile)


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
        path = wearer.sensor[len("replay:"):]
        return PacedSource(lambda: shared_recording(path).batches(REPLAY_CHUNK_S),
                           speed=wearer.speed, start_epoch_s=start_epoch_s, loop=True,
                           preload=lambda: shared_recording(path))
    from slouchd.sensors.ble import make_ble_source

    return make_ble_source(wearer.sensor, plan.profile, config.ble)

