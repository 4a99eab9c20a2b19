"""What one wearer's runtime may ask of the daemon, and what the daemon's live view receives.

:class:`WearerHost` is the whole of it: a sink for states, events, stats and availability, plus
read-only context (the configuration in force, the gateway's counters, a way to open the
wearer's sensor). The runtime never sees the MQTT publisher, the view or the other wearers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from slouchd.config import Config, WearerSettings
from slouchd.daemon.coach import ThreadedHistory
from slouchd.daemon.sources import SourcePlan
from slouchd.model import Event, PostureFrame
from slouchd.posture.stretch_catalog import StretchCatalog
from slouchd.sensors.base import SensorSource

StatePayload = Callable[[PostureFrame], dict[str, Any]]
"""Builds the MQTT state of a frame; only called when someone will publish it."""


class View(Protocol):
    """Something that shows what happens (the demo's terminal view)."""

    def on_frame(self, wearer: str, frame: PostureFrame) -> None: ...

    def on_event(self, wearer: str, event: Event) -> None: ...


class WearerHost(Protocol):
    """The daemon as one wearer's runtime sees it."""

    @property
    def config(self) -> Config:
        """The configuration in force (replaced by a reload; read it each time)."""
        ...

    @property
    def catalog(self) -> StretchCatalog:
        """The stretch catalogue in force (``[stretch] catalog``; replaced by a reload)."""
        ...

    @property
    def history(self) -> ThreadedHistory:
        """Where every wearer's coach keeps its per-day history (written in worker threads)."""
        ...

    def retained(self, wearer: str, name: str, doc: dict[str, Any]) -> bool:
        """Publish ``doc`` on the retained ``<base>/<wearer>/<name>`` (``stretch``, ``history``);
        False when there is no MQTT session (yet) to publish it."""
        ...

    def open_source(self, plan: SourcePlan, settings: WearerSettings) -> SensorSource:
        """Build (not enter) the wearer's sensor source."""
        ...

    def diagnostics(self) -> dict[str, Any]:
        """``mqtt_queue``, ``gateway`` and ``gateway_drops``: the gateway's counters that every
        wearer's state carries (docs/mqtt.md)."""
        ...

    def state(self, wearer: str, frame: PostureFrame, payload: StatePayload, *, show: bool = True) -> None:
        """A new state: publish ``payload(frame)``; with ``show``, also to the live view (a
        re-announce after a command or reload is not a new frame)."""
        ...

    def event(self, wearer: str, event: Event, doc: dict[str, Any]) -> None:
        """An event (``doc`` is its MQTT payload)."""
        ...

    def stats(self, wearer: str, stats: dict[str, Any]) -> None:
        """Today's totals."""
        ...

    def availability(self, wearer: str, online: bool) -> None:
        """The wearer's sensor started or stopped streaming."""
        ...

    def settings_changed(self) -> None:
        """A wearer's settings in force changed (Home Assistant shows them)."""
        ...
