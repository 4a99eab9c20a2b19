"""Command intake: what the broker sends us (commands, Home Assistant's birth, old discovery).

One :class:`Listener` per publisher; :meth:`Listener.run` reads one session's messages. Commands
are validated (:func:`slouchd.publish.commands.parse_command`), applied by the daemon's
``on_command`` and answered on ``…/set/result``; replies are not awaited one by one (at 500
commands/s a PUBACK round trip each made the last command wait 13 s), at most
``REPLIES_IN_FLIGHT`` at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from slouchd.publish import homeassistant as ha_discovery
from slouchd.publish.commands import DROP_PAYLOAD_BYTES, Command, CommandRefused, CommandResult, parse_command
from slouchd.publish.core import PublishCore, log
from slouchd.publish.internals import HardenedClient
from slouchd.publish.topics import ONLINE

CommandHandler = Callable[[str, Command], Awaitable[CommandResult]]

OTHER_PAYLOAD_MAX_BYTES = 256 * 1024
"""Largest non-command message taken (Home Assistant status, retained discovery), bytes. Also
the MQTT 5 Maximum Packet Size we announce: the broker then never sends us anything bigger."""
REPLIES_IN_FLIGHT = 100
"""Command replies awaiting their PUBACK at once; the next command waits for a free slot."""


def _payload_bytes(message: aiomqtt.Message) -> bytes:
    payload = message.payload
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


class Listener:
    """Handles incoming messages for the publisher sharing ``core``.

    Args:
        core: the publisher's shared state.
        on_command: applies a validated command (see :class:`~slouchd.publish.mqtt.MqttPublisher`).
        rng: random source of the Home Assistant birth delay.
    """

    def __init__(self, core: PublishCore, on_command: CommandHandler, rng: random.Random) -> None:
        self._core = core
        self._on_command = on_command
        self._rng = rng
        self.status_topic = ha_discovery.status_topic(core.ha.discovery_prefix, core.ha.status_topic)
        self._replies: set[asyncio.Task[None]] = set()
        self.birth_task: asyncio.Task[None] | None = None

    async def run(self, client: aiomqtt.Client) -> None:
        """Handle ``client``'s messages until the session ends (its MqttError is raised)."""
        try:
            async for message in client.messages:
                payload = _payload_bytes(message)
                if isinstance(client, HardenedClient):
                    client.handled(len(payload))
                try:
                    await self._on_message(client, message, payload)
                except (aiomqtt.MqttError, asyncio.CancelledError):
                    raise  # the session itself: reconnect
                except Exception:  # one odd message must never cost the session
                    log.exception("MQTT: handling a message on %s failed", str(message.topic)[:120])
        finally:
            for task in list(self._replies):
                task.cancel()

    def payload_limit(self, topic: str) -> int:
        """Largest payload taken on ``topic``, bytes (bigger ones are dropped unread)."""
        if self._core.topics.parse_command(topic) is not None:
            return DROP_PAYLOAD_BYTES
        return OTHER_PAYLOAD_MAX_BYTES

    def count_drop(self, reason: str) -> None:
        """An incoming message dropped unread (called from paho's callback, on the loop)."""
        counts = self._core.counts
        counts.payloads_dropped += 1
        counts.payloads_dropped_by_reason[reason] = counts.payloads_dropped_by_reason.get(reason, 0) + 1
        self._core.problems.warn(f"drop:{reason}", "MQTT: dropped an incoming message unread (%s; "
                                 "%d so far)", "too big" if reason == "oversized" else "too many at once",
                                 counts.payloads_dropped)

    async def _on_message(self, client: aiomqtt.Client, message: aiomqtt.Message, payload: bytes) -> None:
        topic = str(message.topic)
        if topic == self.status_topic:
            if payload.strip() == ONLINE.encode():
                self._schedule_reannounce()
            return
        if message.retain and topic.startswith(self._core.ha.discovery_prefix + "/device/"):
            self._clear_leftover(topic, payload)
            return
        parsed = self._core.topics.parse_command(topic)
        if parsed is not None:
            await self._handle_command(client, parsed[0], parsed[1], payload, message)

    def _clear_leftover(self, topic: str, payload: bytes) -> None:
        """Clear a retained slouchd discovery (and its topics) that no configured wearer owns."""
        core = self._core
        current = {ha_discovery.device_id(r.info) for r in core.records.values()}
        name = ha_discovery.leftover_wearer(topic, payload, core.ha.discovery_prefix, core.topics, current)
        if name is None:
            return
        log.info("clearing Home Assistant discovery left by a removed wearer: %s", topic)
        core.put_retained(topic, b"")
        if name and name not in core.records:
            for t in core.topics.wearer_topics(name):
                core.put_retained(t, b"")

    def _schedule_reannounce(self) -> None:
        if self.birth_task is not None and not self.birth_task.done():
            return  # one re-announce is already on its way
        delay = self._rng.uniform(0, self._core.ha.birth_delay_max_s)

        async def later() -> None:
            await self._core.clock.sleep(delay)
            log.info("Home Assistant came online: re-sending discovery and state")
            self._core.announce_all()

        self.birth_task = asyncio.create_task(later(), name="mqtt-ha-birth")

    async def _handle_command(self, client: aiomqtt.Client, wearer: str, key: str | None,
                              payload: bytes, message: aiomqtt.Message) -> None:
        core = self._core
        topic = str(message.topic)
        core.counts.commands += 1
        if wearer not in core.records:
            core.counts.refused += 1
            core.problems.warn("cmd:unknown_wearer", "refused MQTT command on %s: no wearer named %r",
                               topic, wearer[:40])
            return
        try:
            command = parse_command(payload, key=key, retained=bool(message.retain),
                                    now_s=core.clock.wall(), max_age_s=core.settings.command_max_age_s)
        except CommandRefused as err:
            core.counts.refused += 1
            core.problems.warn(f"cmd:{err.kind}", "refused MQTT command on %s: %s", topic, err.reason)
            result = CommandResult(False, {}, err.reason, err.request_id)
        else:
            result = await self._apply(wearer, command)
            self._record_result(wearer, topic, result)
        await self._reply(client, wearer, result, message)

    async def _apply(self, wearer: str, command: Command) -> CommandResult:
        """The daemon's verdict on ``command``; its exception becomes a refusal."""
        try:
            result = await self._on_command(wearer, command)
            if not isinstance(result, CommandResult):
                raise TypeError(f"on_command returned {type(result).__name__}, not CommandResult")
        except Exception:
            log.exception("applying the MQTT command %s for %s failed", dict(command.values), wearer)
            return CommandResult(False, {}, "internal error while applying the command", command.request_id)
        if result.request_id is None and command.request_id is not None:
            result = dataclasses.replace(result, request_id=command.request_id)
        return result

    def _record_result(self, wearer: str, topic: str, result: CommandResult) -> None:
        """Count a refusal, or fold applied settings into the wearer and its state."""
        core = self._core
        if not result.ok:
            core.counts.refused += 1
            core.problems.warn("cmd:not_applied", "MQTT command on %s not applied: %s", topic, result.error)
            return
        record = core.records.get(wearer)
        if not result.applied or record is None:
            return
        record.info = record.info.with_settings(result.applied)
        if record.state is not None:
            applied_state = {k: v for k, v in result.applied.items() if k != "calibrate"}
            record.state = {**record.state, **applied_state}
            record.want_state(now=True)
            core.wake.set()

    async def _reply(self, client: aiomqtt.Client, wearer: str, result: CommandResult,
                     message: aiomqtt.Message) -> None:
        properties = None
        correlation = getattr(message.properties, "CorrelationData", None) if self._core.v5 else None
        if correlation:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        while len(self._replies) >= REPLIES_IN_FLIGHT:
            await asyncio.wait(set(self._replies), return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(client.publish(self._core.topics.command_result(wearer), result.to_json(),
                                                  qos=1, retain=False, properties=properties))
        self._replies.add(task)
        task.add_done_callback(self._reply_done)

    def _reply_done(self, task: asyncio.Task[None]) -> None:
        self._replies.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The session is going down (the receiver notices too); the reply is lost with it.
            log.debug("MQTT: a command reply was not delivered: %s", task.exception())
