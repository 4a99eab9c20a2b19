"""The daemon's housekeeping, one named job each (they were one 0.25 s, later 1 s, poll).

* :class:`StatusLine` - systemd's STATUS= line, sent when it changes (looked at every
  STATUS_EVERY_S: the MQTT connection has no change signal of its own).
* :class:`Watchdog` - WATCHDOG=1 every half ``WatchdogSec`` while the MQTT task is alive.
* :class:`IdleStates` - every STATS_EVERY_S, the state of wearers that are not streaming.
* :class:`Reloader` - a reload on each SIGHUP (several while one runs make one more), event-driven.
* Restarting a failed wearer or MQTT task is not polled at all: each supervised task restarts
  itself (:meth:`slouchd.daemon.wearer.WearerRuntime.run`, ``MqttSession._keep_running``).

Each job is a coroutine the daemon runs in its task group; all wait on the injected clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from slouchd.daemon.wearer import WearerRuntime
from slouchd.model import Activity, Posture
from slouchd.publish.mqtt import MqttPublisher
from slouchd.sdnotify import Notifier
from slouchd.timing import Clock

log = logging.getLogger("slouchd")


async def every(clock: Clock, period_s: float, job: Callable[[], None], *, at_once: bool = False) -> None:
    """Run ``job`` every ``period_s`` seconds of ``clock``: first after one period, or with
    ``at_once`` right away."""
    if at_once:
        job()
    while True:
        await clock.sleep(period_s)
        job()


class StatusLine:
    """Sends systemd the daemon's one-line status whenever it changed."""

    def __init__(self, notifier: Notifier, status: Callable[[], str]) -> None:
        self.notifier = notifier
        self.status = status
        self.last = ""

    def __call__(self) -> None:
        status = self.status()
        if status != self.last:
            self.notifier.status(status)
            self.last = status


class Watchdog:
    """Pings systemd's watchdog while ``healthy()`` (the MQTT task runs)."""

    def __init__(self, notifier: Notifier, healthy: Callable[[], bool]) -> None:
        self.notifier = notifier
        self.healthy = healthy

    @property
    def period_s(self) -> float | None:
        """Half of ``WatchdogSec`` (systemd's advice), or None without a watchdog."""
        wd = self.notifier.watchdog_s
        return wd / 2.0 if wd else None

    def __call__(self) -> None:
        if self.healthy():
            self.notifier.watchdog()


class _Wearers(Protocol):
    @property
    def publisher(self) -> MqttPublisher | None: ...

    wearers: dict[str, WearerRuntime]
    clock: Clock


class IdleStates:
    """A wearer whose sensor is not streaming still shows its counters (reconnects, packets,
    task restarts) in Home Assistant, with the posture unknown."""

    def __init__(self, daemon: _Wearers) -> None:
        self.daemon = daemon

    def __call__(self) -> None:
        publisher = self.daemon.publisher
        if publisher is None:
            return
        for rt in self.daemon.wearers.values():
            if rt.streaming:
                continue
            frame = dataclasses.replace(
                rt.tracker.frame, t_s=self.daemon.clock.wall(), flexion_deg=None, lateral_deg=None,
                posture=Posture.UNKNOWN, activity=Activity.UNKNOWN, worn=False)
            rt.coach_idle(frame)  # the "not worn all morning" check runs on it
            publisher.publish_state(rt.name, rt.state_payload(frame))


class Reloader:
    """Runs ``reload`` once per :meth:`request`; requests made while one runs make one more."""

    def __init__(self, reload: Callable[[], Awaitable[object]]) -> None:
        self._reload = reload
        self._wanted = asyncio.Event()

    def request(self) -> None:
        """SIGHUP: reload soon (never in the signal handler itself)."""
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                await self._reload()
            except Exception:  # a reload must never take the daemon down with it
                log.exception("reload failed half-way; restart slouchd to be sure of its state")
