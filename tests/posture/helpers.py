"""Run a tracker over samples and look at what came out (shared by the posture tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from slouchd.model import Event, EventKind, Mount, PostureFrame, SampleBatch
from slouchd.posture.settings import (
    ActivitySettings,
    CalibrationSettings,
    DetectionSettings,
    WellbeingSettings,
)
from slouchd.posture.tracker import PostureTracker
from tests.posture.synth import BACK, split


@dataclass
class Run:
    """Everything a tracker produced over one input."""

    tracker: PostureTracker
    frames: list[PostureFrame] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def feed(self, batch: SampleBatch, packet_s: float = 0.5) -> Run:
        for b in split(batch, packet_s):
            out = self.tracker.process(b)
            self.frames += out.frames
            self.events += out.events
        return self

    def of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]

    @property
    def alerts(self) -> list[Event]:
        return self.of(EventKind.SLOUCH_ALERT)

    def postures(self, start_s: float = -1e18, end_s: float = 1e18) -> set[str]:
        return {f.posture.value for f in self.frames if start_s <= f.t_s < end_s}

    def frame_at(self, t_s: float) -> PostureFrame:
        return min(self.frames, key=lambda f: abs(f.t_s - t_s))


def tracker(mount: Mount | None = BACK, *, tz: tzinfo | None = None, epoch_offset_s: float = 0.0,
            calibration: Any = None, cal: dict[str, Any] | None = None, act: dict[str, Any] | None = None,
            well: dict[str, Any] | None = None, frame_interval_s: float = 1.0, **detection: Any) -> Run:
    """A tracker with default settings except the ones given (``detection`` keys directly)."""
    return Run(PostureTracker(
        DetectionSettings(**detection), WellbeingSettings(**(well or {})), mount,
        calibration=calibration, calibration_settings=CalibrationSettings(**(cal or {})),
        activity=ActivitySettings(**(act or {})), frame_interval_s=frame_interval_s,
        epoch_offset_s=epoch_offset_s, tz=tz))
