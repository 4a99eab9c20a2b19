"""The MQTT session: connect, reconnect forever, publish state/events/discovery, take commands.

One :class:`MqttPublisher` per daemon. The daemon calls its non-blocking ``publish_*`` and
``set_*`` methods from anywhere in the event loop; they only update an in-memory outbox, and a
sender drains it while the broker is reachable:

* retained topics (bridge state, discovery, availability, stats) keep the newest payload per topic;
* events are a bounded FIFO sent at QoS 1 and removed only once the broker acknowledged them
  (PUBACK), so after a broker restart every queued event is sent, in order. An event whose PUBACK
  was lost is sent again: delivery is **at least once** (``seq`` lets a consumer drop the rare
  duplicate);
* posture state keeps only the newest value per wearer and goes out at most every
  ``state_interval_s``, or at once when ``posture`` changes.

The parts (see docs/mqtt.md and docs/architecture.md): :mod:`~slouchd.publish.core` (the shared
state: one :class:`~slouchd.publish.records.WearerRecord` per wearer and the send queue),
:mod:`~slouchd.publish.session` (the connection loop), :mod:`~slouchd.publish.sender`
(pipelined publishing), :mod:`~slouchd.publish.listener` (commands and Home Assistant's birth),
:mod:`~slouchd.publish.handover` (config reload) and :mod:`~slouchd.publish.internals` (all
use of aiomqtt's and paho's private parts). Built on aiomqtt 2.x (paho-mqtt underneath).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from typing import Any

import aiomqtt

from slouchd import __version__
from slouchd.model import EventKind
from slouchd.publish import handover
from slouchd.publish.core import KEEP_EVENTS, LOG_REPEAT_S, PublishCore
from slouchd.publish.credentials import read_password, tls_context
from slouchd.publish.internals import INCOMING_MAX_BYTES, INCOMING_MAX_MESSAGES
from slouchd.publish.listener import OTHER_PAYLOAD_MAX_BYTES, REPLIES_IN_FLIGHT, CommandHandler, Listener
from slouchd.publish.outbox import Outbox
from slouchd.publish.payloads import to_json
from slouchd.publish.records import STATE_MIN_GAP_S, CounterField, Counters, QueuedEvent, WearerRecord
from slouchd.publish.sender import PUBLISH_IN_FLIGHT
from slouchd.publish.session import PROBE_EVERY_S, Connection
from slouchd.publish.settings import HomeAssistantSettings, MqttSettings
from slouchd.publish.topics import OFFLINE, ONLINE
from slouchd.publish.wearer import WearerInfo
from slouchd.timing import SYSTEM_CLOCK, Backoff, Clock, within

__all__ = [
    "INCOMING_MAX_BYTES", "INCOMING_MAX_MESSAGES", "KEEP_EVENTS", "LOG_REPEAT_S",
    "OTHER_PAYLOAD_MAX_BYTES", "PROBE_EVERY_S", "PUBLISH_IN_FLIGHT", "REPLIES_IN_FLIGHT",
    "STATE_MIN_GAP_S", "CommandHandler", "MqttPublisher", "WearerInfo", "read_password",
    "tls_context", "to_json",
]


class MqttPublisher:
    """The daemon's MQTT session (an async context manager; or call :meth:`run` yourself).

    Args:
        mqtt: the ``[mqtt]`` settings.
        ha: the ``[homeassistant]`` settings.
        wearers: the wearers to publish (see :meth:`set_wearers` to change them).
        on_command: ``await on_command(wearer_name, command) -> CommandResult``; applies a
            validated command. Its result is published on ``…/set/result``; an exception it
            raises is logged and replied as a refusal, never propagated.
        version: the slouchd version announced in the discovery ``origin`` block.
        connect_timeout_s: how long to wait for the broker's CONNACK, seconds. With protocol
            "auto", no answer in time also makes the next attempt use the other MQTT version.
        backoff_min_s: first wait after a failed connection, seconds (doubles up to
            ``mqtt.reconnect_max_s``, each wait jittered to 50-100 %).
        rng: random source for jitter and the HA birth delay (tests pass a seeded one).
        outbox: the on-disk journal of unacknowledged alerts and reminders (see
            :mod:`slouchd.publish.outbox`); events it holds from an earlier run are sent first,
            with their original ``(boot, seq)``. None keeps the queue in memory only.
        clock: every time read and pause (rate limits, backoff, HA birth delay, the ``boot``
            stamp, command age); the system clock by default.

    Raises:
        SettingsError: an unreadable password file, CA bundle or client certificate.

    Attributes:
        connected: whether a broker session is up right now (see :meth:`wait_connected`).
        published: events acknowledged by the broker.
        dropped: events dropped because the queue was full.
        resent: events sent again after a connection died before their PUBACK (each one a
            possible duplicate at subscribers).
        reconnects: successful connections after the first one.
        refused: commands refused.
        commands: command messages handled (applied or refused).
        payloads_dropped: incoming messages dropped unread (too big, or a flood beyond the
            incoming queue's budget).
        alerts, reminders: slouch alerts and break reminders queued for publishing.
        outbox_restored: events from an earlier run's outbox queued at start.
        outbox_errors: failed writes of the outbox journal (the event stays queued in memory).
    """

    published = CounterField()
    dropped = CounterField()
    reconnects = CounterField()
    refused = CounterField()
    resent = CounterField()
    state_published = CounterField()
    commands = CounterField()
    payloads_dropped = CounterField()
    alerts = CounterField()
    reminders = CounterField()
    outbox_restored = CounterField()
    outbox_errors = CounterField()

    def __init__(
        self,
        mqtt: MqttSettings,
        ha: HomeAssistantSettings,
        wearers: list[WearerInfo],
        on_command: CommandHandler,
        *,
        version: str = __version__,
        connect_timeout_s: float = 5.0,
        backoff_min_s: float = 1.0,
        rng: random.Random | None = None,
        outbox: Outbox | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._rng = rng or random.Random()
        self._password = read_password(mqtt)
        self._core = core = PublishCore(mqtt, ha, version, clock, outbox)
        self._listener = Listener(core, on_command, self._rng)
        max_s = mqtt.reconnect_max_s
        self._connection = Connection(
            core, self._listener, password=self._password, tls=tls_context(mqtt),
            connect_timeout_s=connect_timeout_s,
            backoff=Backoff(min(backoff_min_s, max_s), max_s, rng=self._rng))
        core.records = {w.name: WearerRecord(w) for w in wearers}
        self._done = asyncio.Event()
        self._done.set()  # not running: close() before run() returns at once
        self._topics_cleared = False  # retire(clear_topics=True): no "offline" for the wearers
        self._task: asyncio.Task[None] | None = None
        # Identifies this run of slouchd in every event: ``seq`` restarts at 1 with a new boot, so
        # consumers drop repeats by (boot, seq). Unix time of start, milliseconds.
        self.boot = int(clock.wall() * 1000)
        if outbox is not None and not outbox.loaded:
            core.restore(outbox)

    def counters(self) -> dict[str, int]:
        """Delivery and input counters for the health line and the diagnostics entities."""
        outbox = self._core.outbox
        return self._core.counts.as_dict(0 if outbox is None else len(outbox))

    # ----------------------------------------------------------------- state for tests and tools

    @property
    def connected(self) -> bool:
        return self._core.connected

    @property
    def settings(self) -> MqttSettings:
        """The ``[mqtt]`` settings this publisher runs with."""
        return self._core.settings

    @property
    def connected_event(self) -> asyncio.Event:
        """Set while a broker session is up (subscribed, ``online`` published)."""
        return self._core.connected_event

    @property
    def payloads_dropped_by_reason(self) -> dict[str, int]:
        return self._core.counts.payloads_dropped_by_reason

    @property
    def counts(self) -> Counters:
        return self._core.counts

    @property
    def _client(self) -> aiomqtt.Client | None:
        """The session's client while connected (read by the fault tests)."""
        return self._core.client

    @property
    def _seq(self) -> dict[str, int]:
        """The last event number per wearer (read by the fault tests)."""
        return self._core.seq

    @property
    def _events(self) -> deque[QueuedEvent]:
        """The queued events, oldest first (read by tests)."""
        return self._core.events

    @property
    def attempts(self) -> int:
        """Connection attempts made so far (failed or not)."""
        return self._connection.attempts

    @property
    def queue_depth(self) -> int:
        """Events waiting for the broker's acknowledgement."""
        return len(self._core.events)

    @property
    def protocol(self) -> str:
        """The MQTT version of the current session: "5", "3.1.1" or "" when disconnected."""
        if not self.connected:
            return ""
        return "5" if self._core.v5 else "3.1.1"

    async def wait_connected(self) -> None:
        """Return once a broker session is up (at once if it is). Wrap it in a timeout."""
        await self._core.connected_event.wait()

    async def flushed(self) -> None:
        """Return once everything queued so far has been handed to the broker and confirmed:
        retained payloads and events acknowledged (PUBACK), states due at once written
        (QoS 0: handed to the socket). Rate-limited periodic states do not count. Waits
        through disconnections (nothing is sent without a broker): wrap it in a timeout."""
        core = self._core
        await core.wait_until(lambda: core.connected and core.is_flushed())

    # ----------------------------------------------------------------- daemon-facing API

    def publish_state(self, wearer: str, state: dict[str, Any]) -> None:
        """Queue the wearer's posture state (JSON on ``<base>/<wearer>/state``, retained).

        Only the newest state is kept; it goes out at most every ``state_interval_s``, at once
        when ``state["posture"]`` differs from the last one sent. The settings in force
        (threshold_deg, hysteresis_deg, dwell_s, mode, alerts_enabled) are filled in from the
        wearer's :class:`WearerInfo` unless ``state`` has them. Never blocks.
        """
        core = self._core
        record = core.records.get(wearer)
        if record is None or core.closing:
            return
        record.state = merged = {**record.info.settings_state(), **state}
        record.want_state(now=merged.get("posture") != record.state_sent_posture)
        core.wake.set()

    def publish_event(self, wearer: str, event: dict[str, Any]) -> None:
        """Queue an event (``<base>/<wearer>/event``, QoS 1, not retained, in order).

        ``event`` is :meth:`slouchd.model.Event.to_dict` output (``{"t", "event", ...}``). The
        payload adds ``event_type`` (= ``event``, what HA's event entity reads), ``seq`` (1, 2,
        ... per wearer since start) and ``boot`` (this run's start, Unix ms): (boot, seq) spots a
        duplicate. Never blocks; when ``queue_max`` events
        wait, the oldest event that is neither a slouch alert nor a break reminder is dropped
        (or the oldest of all when only those wait).
        """
        core = self._core
        if wearer not in core.records or core.closing:
            return
        kind = str(event.get("event", event.get("event_type", "")))
        core.seq[wearer] = seq = core.seq.get(wearer, 0) + 1
        payload = to_json({**event, "event_type": event.get("event_type", kind), "seq": seq,
                           "boot": self.boot})
        if kind == EventKind.SLOUCH_ALERT.value:
            core.counts.alerts += 1
        elif kind == EventKind.BREAK_REMINDER.value:
            core.counts.reminders += 1
        key = ""
        if kind in KEEP_EVENTS:
            key = core.journal(f"{wearer}/{self.boot}/{seq}", wearer, kind, payload)
        core.events.append(QueuedEvent(wearer, kind, payload, key))
        if len(core.events) > core.settings.queue_max:
            core.drop_one_event()
        core.event_queued()

    def publish_stats(self, wearer: str, stats: dict[str, Any]) -> None:
        """Publish daily totals (``<base>/<wearer>/stats``, retained; newest value wins).

        Keys read by Home Assistant: ``upright_pct``, ``slouched_min``, ``sitting_min``, ``alerts``.
        """
        core = self._core
        record = core.records.get(wearer)
        if record is None or core.closing:
            return
        record.stats = payload = to_json(stats)
        core.put_retained(core.topics.stats(wearer), payload)

    def publish_retained(self, wearer: str, name: str, doc: dict[str, Any]) -> None:
        """Publish a retained JSON document on ``<base>/<wearer>/<name>`` (newest value wins):
        the coach's ``stretch`` (the session's current step) and ``history`` (per-day totals).
        Sent again after a reconnect, like the stats."""
        core = self._core
        record = core.records.get(wearer)
        if record is None or core.closing:
            return
        topic = f"{core.topics.base}/{wearer}/{name}"
        record.documents[topic] = payload = to_json(doc)
        core.put_retained(topic, payload)

    def set_availability(self, wearer: str, online: bool) -> None:
        """Publish the sensor link (``<base>/<wearer>/availability``: online/offline, retained)."""
        core = self._core
        record = core.records.get(wearer)
        if record is None or core.closing:
            return
        record.availability = online
        core.put_retained(core.topics.availability(wearer), (ONLINE if online else OFFLINE).encode())

    def set_wearers(self, wearers: list[WearerInfo]) -> None:
        """Replace the wearer list (config reload).

        New or changed wearers get their discovery (re)published; removed ones get an empty
        retained payload on their discovery, state, stats and availability topics, so Home
        Assistant deletes their entities and no ghost comes back.
        """
        handover.set_wearers(self._core, wearers)

    def password_changed(self, settings: MqttSettings) -> bool:
        """Whether ``settings`` (its ``password_file`` read again) give another password.

        Raises:
            SettingsError: the password file cannot be read.
        """
        return read_password(settings) != self._password

    def take_over(self, old: MqttPublisher) -> None:
        """Carry ``old``'s queue and newest values into this publisher (a config reload).

        Queued events move here in order, keeping their sequence numbers, and the numbering
        goes on from ``old``'s; the newest state, stats and sensor link of the wearers this
        publisher has are sent on its first connection; counters keep counting. Call it
        before this publisher runs and before ``old.close()``. An event ``old`` was sending at
        that moment may reach subscribers twice (at-least-once, as after any reconnect).
        """
        handover.take_over(self._core, old._core)
        self.boot = old.boot  # the same run of slouchd: numbering goes on

    def retire(self, *, clear_discovery: bool, clear_topics: bool) -> None:
        """Queue the clean-up of what this publisher leaves behind on its broker (a reload).

        ``clear_discovery`` empties the retained Home Assistant discovery of every wearer (so
        its entities go away); ``clear_topics`` empties their retained state, stats and
        availability (the base topic moved). :meth:`close` sends them before ``offline``.
        """
        handover.retire(self._core, clear_discovery=clear_discovery, clear_topics=clear_topics)
        if clear_topics:
            self._topics_cleared = True

    async def run(self) -> None:
        """Connect and stay connected until :meth:`close`; never raises for broker trouble."""
        self._done.clear()
        try:
            await self._connection.run()
        finally:
            if self._listener.birth_task is not None:
                self._listener.birth_task.cancel()
            self._done.set()

    async def close(self, timeout_s: float = 3.0) -> None:
        """Flush queued events, publish ``offline`` (sensors and bridge), disconnect.

        Waits at most ``timeout_s`` in all. Events still queued after that are lost (counted in
        ``queue_depth`` when this returns); with no broker the bridge's last will says offline.
        """
        core = self._core
        clock = core.clock
        deadline = clock.monotonic() + timeout_s
        core.closing = True
        for record in core.records.values():
            record.state_pending = False
        if core.connected:
            await self._flush_while_up(deadline - timeout_s * 0.3)
            for name, record in ([] if self._topics_cleared else core.records.items()):
                if record.availability is False:
                    continue  # already said (or queued): once is enough
                core.put_retained(core.topics.availability(name), OFFLINE.encode())
            core.retained.pop(core.topics.bridge_state, None)
            core.put_retained(core.topics.bridge_state, OFFLINE.encode())  # last, after the sensors
            await self._flush_while_up(deadline)
        self._connection.stop.set()
        core.wake.set()
        wait = asyncio.shield(self._task) if self._task is not None else self._done.wait()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await within(clock, wait, max(0.05, deadline - clock.monotonic()))
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _flush_while_up(self, deadline: float) -> None:
        """Wait until flushed, the session is lost or ``deadline`` (monotonic seconds) passes."""
        core = self._core
        left = deadline - core.clock.monotonic()
        if left <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await within(core.clock, core.wait_until(lambda: not core.connected or core.is_flushed()), left)

    async def __aenter__(self) -> MqttPublisher:
        self._task = asyncio.create_task(self.run(), name="slouchd-mqtt")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
