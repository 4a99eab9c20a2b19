"""The posture engine of a live wearer, and the wall-clock time its states carry."""

from __future__ import annotations

import functools
from datetime import datetime

from slouchd.config import Config
from slouchd.model import Mount
from slouchd.posture.settings import DetectionSettings, WellbeingSettings
from slouchd.posture.tracker import PostureTracker


@functools.lru_cache(maxsize=256)
def wall_iso(t_s: float) -> str:
    """Local ISO-8601 time of a sample-clock time (Unix seconds), to the second.

    Cached: every wearer's state of one second has the same ``t_s`` (frames fall on whole
    seconds of the shared sample clock), so one conversion serves them all.
    """
    return datetime.fromtimestamp(t_s).astimezone().isoformat(timespec="seconds")


def new_tracker(config: Config, detection: DetectionSettings, mount: Mount | None,
                wellbeing: WellbeingSettings | None = None) -> PostureTracker:
    """The posture engine of one live wearer (one state a second; ``wellbeing``: the wearer's
    ``[wellbeing]`` with its overrides, default the global one)."""
    return PostureTracker(detection, wellbeing or config.wellbeing, mount,
                          calibration_settings=config.calibration, activity=config.activity,
                          frame_interval_s=1.0)
