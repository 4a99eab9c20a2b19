"""What the parts of one BLE source share: settings, clock, status, logging, and closing.

One :class:`SourceContext` per :class:`~slouchd.sensors.ble.session.BleSensorSource`; the parts
(scanner, connector, step runner, streamer, health) get it instead of a back reference to the
source, so each can be read (and tested) on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from slouchd.logs import OncePerKind
from slouchd.sensors.base import HandOver, SensorStatus
from slouchd.sensors.ble.errors import one_line
from slouchd.sensors.profiles import Profile
from slouchd.sensors.settings import BleSettings
from slouchd.timing import Clock, within


@dataclass(eq=False)
class SourceContext:
    """The shared state of one BLE source.

    Attributes:
        target: the sensor's address or advertised name ("" = the first one any profile matches).
        settings: the ``[ble]`` settings.
        clock: monotonic/wall/sleep (a fake one in tests).
        status: the link facts the daemon publishes.
        log: the package logger with this sensor as the journal limiter's subject (``rate_key``).
        profile: the profile in use (None until matched by advertisement).
        hand_over: see :class:`~slouchd.sensors.base.HandOver`.
        closed: set by ``aclose()``: every loop ends and nothing new starts.
    """

    target: str
    settings: BleSettings
    clock: Clock
    status: SensorStatus
    log: logging.LoggerAdapter[logging.Logger]
    profile: Profile | None = None
    #: The consumer's next hand-over (the daemon's sample buffer), or None: wake it every tick.
    hand_over: HandOver | None = None
    closed: bool = False
    closed_event: asyncio.Event = field(default_factory=asyncio.Event)
    #: Scan/listen waits that closing must end at once (resolved to None).
    waiting: list[asyncio.Future[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Bad input and failing clean-ups are said once per kind, later ones at debug: a sensor
        # that sends garbage for hours must not flood the journal. The adapter (not the bare
        # logger) keeps this sensor as the limiter's subject, as every other line of the source.
        self._once = OncePerKind(self.log, float("inf"), self.clock.monotonic)

    def who(self) -> str:
        """The sensor as log lines name it: the target, else the profile's name."""
        return self.target or (self.profile.name if self.profile else "ble")

    def note(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        """Log ``message`` once per ``kind`` at ``level`` (later ones at debug)."""
        self._once.warn(kind, "%s: %s", self.who(), message, level=level)

    def close(self) -> None:
        """Closing: end the loops and wake every wait that closing must end."""
        self.closed = True
        self.closed_event.set()
        for fut in self.waiting:
            if not fut.done():
                fut.set_result(None)

    async def nap(self, seconds: float) -> None:
        """Sleep on the clock, waking early when the source is closed."""
        with contextlib.suppress(TimeoutError):
            await within(self.clock, self.closed_event.wait(), seconds)

    async def bounded(self, aw: Awaitable[Any], timeout_s: float, kind: str, what: str,
                      level: int = logging.WARNING) -> None:
        """Await a clean-up call for at most ``timeout_s``; failures are noted once per kind, not raised."""
        try:
            await within(self.clock, aw, timeout_s)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as err:
            self.note(kind, f"{what} failed ({one_line(err)})", level)
