"""Connecting and tearing down: a fresh client per link, notifications on, start-up steps run.

* one connection attempt at a time per adapter (:func:`~slouchd.sensors.ble.link.adapter_lock`),
  after closing BlueZ's stale connections to the address (bleak-retry-connector);
* every attempt bounded by ``connect_timeout_s``; every clean-up call by its own cap
  (``disconnect()`` 5 s: it can hang), failures logged once per kind, never raised;
* teardown is undone in reverse: notifications off, then disconnect.

See docs/sensors.md ("Staying connected for days").
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from slouchd.sensors.ble.context import SourceContext
from slouchd.sensors.ble.errors import LinkLost, one_line
from slouchd.sensors.ble.link import Link, adapter_lock
from slouchd.sensors.ble.scanning import Sighting
from slouchd.sensors.ble.steps import NotifyCallback, StepRunner
from slouchd.sensors.profiles import Profile
from slouchd.timing import within

#: Cap on every disconnect(), seconds (bleak-retry-connector and HA use 5 s too).
DISCONNECT_TIMEOUT_S = 5.0
#: Cap on each stop_notify at teardown, seconds.
STOP_NOTIFY_TIMEOUT_S = 2.0
#: Cap on one battery level read, seconds.
BATTERY_READ_TIMEOUT_S = 5.0

StaleCloser = Callable[[str], Awaitable[None]]


def default_stale_closer() -> StaleCloser | None:
    """bleak-retry-connector's ``close_stale_connections_by_address`` on Linux (BlueZ), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        from bleak_retry_connector import close_stale_connections_by_address
    except ImportError:  # pragma: no cover - declared dependency
        return None
    return close_stale_connections_by_address


class Connector:
    """Opens and releases links of one source.

    Args:
        ctx: the source's shared state.
        client_cls: a class with bleak's ``BleakClient`` API.
        close_stale: closes BlueZ's stale connections to an address before connecting, or None.
        steps: runs the profile's start-up steps.
    """

    def __init__(self, ctx: SourceContext, client_cls: Any, close_stale: StaleCloser | None,
                 steps: StepRunner) -> None:
        self.ctx = ctx
        self.client_cls = client_cls
        self.close_stale = close_stale
        self.steps = steps

    async def open(self, link: Link, sighting: Sighting, on_notify: NotifyCallback) -> None:
        """Connect ``link`` with a new client, start notifications, run the start-up steps.

        ``on_notify`` receives the sample notifications. On failure the caller tears the link
        down (the source does: it may have been torn down meanwhile by ``aclose()``).
        """
        ctx = self.ctx
        kwargs: dict[str, Any] = {"timeout": ctx.settings.connect_timeout_s}
        if ctx.settings.adapter:
            kwargs["bluez"] = {"adapter": ctx.settings.adapter}
        address = str(sighting.device.address)

        def on_disconnect(_client: Any) -> None:
            link.lose()

        async with adapter_lock(ctx.settings.adapter):
            if self.close_stale is not None:
                await ctx.bounded(self.close_stale(address), DISCONNECT_TIMEOUT_S * 2, "stale",
                                  "closing stale connections")
            link.client = self.client_cls(sighting.device, disconnected_callback=on_disconnect, **kwargs)
            await within(ctx.clock, link.client.connect(), ctx.settings.connect_timeout_s)
        await self._setup(link, sighting.profile, on_notify)

    async def _setup(self, link: Link, prof: Profile, on_notify: NotifyCallback) -> None:
        await self.steps.start_notify(link, prof.stream.notify_uuid, on_notify)
        for step in prof.startup:
            await self.steps.run(link, step)
            if link.gone:
                raise LinkLost("the sensor disconnected during setup")
        if link.gone:
            raise LinkLost("the sensor disconnected during setup")
        link.streaming()
        if prof.battery is not None:
            link.tasks.append(asyncio.create_task(self._poll_battery(link, prof.battery.uuid,
                                                                     prof.battery.poll_s)))

    async def _poll_battery(self, link: Link, uuid: str, every_s: float) -> None:
        while link.active:
            try:
                value = bytes(await within(self.ctx.clock, link.client.read_gatt_char(uuid),
                                           BATTERY_READ_TIMEOUT_S))
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.ctx.note("battery", f"battery level unreadable ({one_line(err)})")
                return
            if value and value[0] <= 100:
                self.ctx.status.battery_pct = float(value[0])
            await self.ctx.clock.sleep(every_s)

    async def release(self, link: Link) -> None:
        """Undo a closed link, bounded in time: notifications off (reversed), then disconnect."""
        client = link.client
        if client is None:
            return
        for uuid in reversed(link.subscribed):
            # Fails as a matter of course when the sensor has already gone.
            await self.ctx.bounded(client.stop_notify(uuid), STOP_NOTIFY_TIMEOUT_S, "stop_notify",
                                   f"stop_notify {uuid}", logging.DEBUG)
        await self.ctx.bounded(client.disconnect(), DISCONNECT_TIMEOUT_S, "disconnect", "disconnect")
