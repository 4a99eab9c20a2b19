"""The daemon's MQTT side: one publisher (and the embedded broker when ``[mqtt] host`` is empty),
kept running, and switched to a new session when a reload changes [mqtt] or [homeassistant]."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slouchd.broker import EmbeddedBroker
from slouchd.config import Config, ConfigError
from slouchd.daemon.constants import SHUTDOWN_MQTT_S, SWITCH_CLOSE_S
from slouchd.publish.commands import Command, CommandResult
from slouchd.publish.mqtt import MqttPublisher
from slouchd.publish.outbox import Outbox
from slouchd.publish.wearer import WearerInfo

log = logging.getLogger("slouchd")

OnCommand = Callable[[str, Command], Awaitable[CommandResult]]
Spawn = Callable[[Any, str], "asyncio.Task[None]"]
"""Starts a supervised task (coroutine, name): the daemon's task group."""


class MqttSession:
    """The publisher in use, its task, and the embedded broker.

    Args:
        on_command: applies a command from MQTT.
        outbox: alerts and reminders that must survive a crash (moves with a switch).
        publisher_class: the publisher to build (``slouchd.daemon.MqttPublisher`` by default).
    """

    def __init__(self, on_command: OnCommand, outbox: Outbox,
                 publisher_class: Callable[..., MqttPublisher] = MqttPublisher) -> None:
        self.on_command = on_command
        self.outbox = outbox
        self.publisher_class = publisher_class
        self.publisher: MqttPublisher | None = None
        self.broker: EmbeddedBroker | None = None
        self.task: asyncio.Task[None] | None = None
        self._switched = asyncio.Event()
        self._switched.set()
        self._closing = False

    # ----- building ---------------------------------------------------------------------------
    def make(self, config: Config, broker: EmbeddedBroker | None, wearers: list[WearerInfo]) -> MqttPublisher:
        """A publisher for ``config``'s [mqtt]/[homeassistant]; raises on unreadable secrets."""
        mqtt_settings = config.mqtt
        if broker is not None:
            # amqtt speaks MQTT 3.1.1 only (a v5 CONNECT with a will stalls it).
            mqtt_settings = dataclasses.replace(mqtt_settings, host=broker.host, port=broker.port,
                                                protocol="3.1.1")
        try:
            return self.publisher_class(mqtt_settings, config.homeassistant, wearers,
                                        on_command=self.on_command, outbox=self.outbox)
        except ConfigError as err:  # an unreadable password file, CA or key: name the config file
            raise ConfigError(f"{config.source}: {err}") from None

    async def open(self, config: Config, wearers: list[WearerInfo], spawn: Spawn) -> None:
        """Start-up: the embedded broker if wanted, the publisher, its task."""
        if not config.mqtt.host:
            self.broker = EmbeddedBroker(config.mqtt.port)
            await self.broker.start()
        self.publisher = self.make(config, self.broker, wearers)
        for info in wearers:
            # Not streaming yet: replaces an "online" a killed earlier run left retained.
            self.publisher.set_availability(info.name, False)
        self.task = spawn(self._keep_running(self.publisher), "mqtt")

    async def _keep_running(self, publisher: MqttPublisher, before: Awaitable[None] | None = None) -> None:
        """Run ``publisher`` (after ``before``); start it again should it end while in use."""
        if before is not None:
            await before
        while True:
            try:
                await publisher.run()
            except Exception as err:
                if publisher is not self.publisher or self._closing:
                    return
                log.error("MQTT task ended unexpectedly; restarting it", exc_info=err)
                continue
            if publisher is not self.publisher or self._closing:
                return  # closed on purpose: shutdown or a switch
            log.error("MQTT task ended unexpectedly; restarting it")

    @property
    def running(self) -> bool:
        """The MQTT task is alive (the watchdog pings only then)."""
        return self.task is not None and not self.task.done()

    # ----- reload: a new session --------------------------------------------------------------
    def prepare(self, old: Config, new: Config) -> tuple[MqttPublisher, EmbeddedBroker | None]:
        """The publisher (and embedded broker) a reload to ``new`` would switch to.

        Built before anything changes, so an unreadable password file or TLS key refuses the
        whole reload. An embedded broker on an unchanged port is kept; a new one is only
        started by :meth:`switch`.
        """
        broker: EmbeddedBroker | None = None
        if not new.mqtt.host:
            keep = self.broker is not None and not old.mqtt.host and new.mqtt.port == old.mqtt.port
            broker = self.broker if keep else EmbeddedBroker(new.mqtt.port)
        # No wearers yet: switch() gives it the reloaded list (a wearer removed by this reload
        # must not get clears queued on a broker it was never announced on).
        return self.make(new, broker, wearers=[]), broker

    def switch(self, publisher: MqttPublisher, broker: EmbeddedBroker | None, wearers: list[WearerInfo],
               *, clear_discovery: bool, clear_topics: bool, spawn: Spawn) -> None:
        """Switch MQTT sessions after a reload changed [mqtt] or [homeassistant].

        Queued alerts, sequence numbers and the newest values move to the new publisher at
        once (nothing published from now on is lost); the old session then sends its
        clean-up and ``offline`` and disconnects before the new one connects, so the same
        client id on the same broker never fights itself and ``online`` is the last word.
        :meth:`switched` returns once the old session is gone and the broker is up.
        """
        previous, previous_task = self.publisher, self.task
        assert previous is not None
        publisher.set_wearers(wearers)
        publisher.take_over(previous)
        previous.retire(clear_discovery=clear_discovery, clear_topics=clear_topics)
        self.publisher = publisher
        self._switched.clear()
        self.task = spawn(self._keep_running(publisher, self._retire(previous, previous_task, broker)),
                          "mqtt")

    async def _retire(self, previous: MqttPublisher, previous_task: asyncio.Task[None] | None,
                      broker: EmbeddedBroker | None) -> None:
        try:
            try:
                with contextlib.suppress(Exception):
                    await previous.close(timeout_s=SWITCH_CLOSE_S)
            finally:  # even when cancelled (shutdown): the old session must not live on
                if previous_task is not None:
                    previous_task.cancel()
            if previous_task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await previous_task
            await self._move_broker(broker)
        finally:
            self._switched.set()  # a reload that waited for this switch goes ahead now

    async def _move_broker(self, broker: EmbeddedBroker | None) -> None:
        if broker is self.broker:
            return
        if self.broker is not None:
            await self.broker.stop()
        self.broker = broker
        if broker is not None:
            try:
                await broker.start()
            except Exception as err:  # the publisher keeps retrying; say why
                log.error("embedded MQTT broker failed to start on port %d: %s", broker.port, err)

    async def switched(self) -> None:
        """Return once no switch is under way."""
        await self._switched.wait()

    # ----- shutdown ---------------------------------------------------------------------------
    async def close(self, wearers: list[str]) -> None:
        """``offline`` for every wearer, then the session's goodbye within SHUTDOWN_MQTT_S."""
        self._closing = True
        publisher = self.publisher
        if publisher is not None:
            for name in wearers:
                publisher.set_availability(name, False)
            with contextlib.suppress(Exception):
                await publisher.close(timeout_s=SHUTDOWN_MQTT_S)
            if publisher.queue_depth:
                log.warning("%d queued event(s) not delivered: the MQTT broker was not reachable "
                            "before the shutdown deadline", publisher.queue_depth)
        task = self.task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def stop_broker(self) -> None:
        if self.broker is not None:
            await self.broker.stop()
