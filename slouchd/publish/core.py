"""What every part of the MQTT publisher shares: wearer records, the send queue, counters.

The daemon-facing :class:`~slouchd.publish.mqtt.MqttPublisher`, the connection loop, the sender
and the listener all work on one :class:`PublishCore`. It holds no connection: it is the
in-memory outbox (see docs/mqtt.md, "Delivery: QoS, retain and queueing"):

* retained topics (bridge state, discovery, availability, stats) keep the newest payload per topic;
* events are a bounded FIFO removed only once the broker acknowledged them (at least once);
* posture state is one newest value per wearer, in its :class:`WearerRecord`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import aiomqtt

from slouchd.logs import OncePerKind
from slouchd.model import EventKind
from slouchd.publish import homeassistant as ha_discovery
from slouchd.publish.outbox import Outbox, OutboxEntry
from slouchd.publish.payloads import to_json
from slouchd.publish.records import Counters, QueuedEvent, WearerRecord
from slouchd.publish.settings import HomeAssistantSettings, MqttSettings
from slouchd.publish.topics import OFFLINE, ONLINE, Topics
from slouchd.timing import Clock

log = logging.getLogger("slouchd.publish.mqtt")

# Events a wearer must not miss; when the queue is full, other events are dropped first.
KEEP_EVENTS = frozenset({EventKind.SLOUCH_ALERT.value, EventKind.BREAK_REMINDER.value})
# Repeated log lines of one kind (a refused command, the broker still down) are written at most
# this often at WARNING; in between they go to DEBUG, with a count.
LOG_REPEAT_S = 600.0


class PublishCore:
    """The publisher's shared state (no I/O of its own, except the outbox journal).

    Args:
        mqtt, ha: the ``[mqtt]`` and ``[homeassistant]`` settings.
        version: the slouchd version announced in discovery.
        clock: every time read and pause of the publisher.
        outbox: the on-disk journal of unacknowledged alerts and reminders, or None.
    """

    def __init__(self, mqtt: MqttSettings, ha: HomeAssistantSettings, version: str, clock: Clock,
                 outbox: Outbox | None) -> None:
        self.settings = mqtt
        self.ha = ha
        self.version = version
        self.clock = clock
        self.topics = Topics(mqtt.base_topic)
        self.records: dict[str, WearerRecord] = {}
        self.retained: dict[str, bytes] = {}  # newest payload per topic (b"" clears the topic)
        self.events: deque[QueuedEvent] = deque()
        # Event numbers of this run: they outlive a wearer's record (removed, then added back
        # by a reload) so that (boot, seq) never repeats.
        self.seq: dict[str, int] = {}
        self.counts = Counters()
        self.outbox = outbox
        self.problems = OncePerKind(log, LOG_REPEAT_S, clock.monotonic)
        self.wake = asyncio.Event()  # the sender has something new to look at
        self.connected_event = asyncio.Event()
        self.closing = False
        self.v5 = False
        self.client: aiomqtt.Client | None = None
        self.in_flight = 0  # publishes handed to the client, not yet confirmed
        # The running sender's "start queued events now" (None between sessions): an alert
        # starts on its way in the loop iteration that queued it, not one iteration later.
        self.send_events_now: Callable[[], None] | None = None
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    # ------------------------------------------------------------------ waiting on progress

    @property
    def connected(self) -> bool:
        return self.connected_event.is_set()

    def set_connected(self, up: bool) -> None:
        if up:
            self.connected_event.set()
        else:
            self.connected_event.clear()
        self.notify()

    def is_flushed(self) -> bool:
        """Nothing queued is left to hand to the broker: no retained payload or event waiting,
        no publish unconfirmed, no state due at once (rate-limited periodic states do not count)."""
        if self.retained or self.events or self.in_flight:
            return False
        return not any(r.state_pending and r.state_now for r in self.records.values())

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds; it is checked whenever the publisher made progress."""
        if condition():
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, fut))
        try:
            await fut
        finally:
            self._waiters = [(c, f) for c, f in self._waiters if f is not fut]

    def notify(self) -> None:
        """Something changed (a publish confirmed, connected, disconnected): wake waiters."""
        for condition, fut in self._waiters:
            if not fut.done() and condition():
                fut.set_result(None)

    # ------------------------------------------------------------------ the send queue

    def put_retained(self, topic: str, payload: bytes) -> None:
        self.retained[topic] = payload
        self.wake.set()

    def event_queued(self) -> None:
        """An event was queued: start it at once if a session is up and no retained payload
        goes first, else let the sender look at it."""
        if self.send_events_now is not None and not self.retained:
            self.send_events_now()
        else:
            self.wake.set()

    def event_acked(self, item: QueuedEvent) -> None:
        """The broker acknowledged ``item``: it leaves the queue and the journal."""
        if self.events and self.events[0] is item:
            self.events.popleft()
        elif item in self.events:
            self.events.remove(item)
        self.ack_outbox(item.key)
        self.counts.published += 1

    def drop_one_event(self) -> None:
        """The queue is full: drop the oldest event that is neither an alert nor a reminder (or
        the oldest of all when only those wait); never one being sent right now."""
        victim = next((i for i in self.events if not i.sending and i.kind not in KEEP_EVENTS), None)
        if victim is None:
            victim = next((i for i in self.events if not i.sending), None)
        if victim is None:
            return
        self.events.remove(victim)
        self.ack_outbox(victim.key)  # lost for good: not to be sent after a restart either
        self.counts.dropped += 1
        self.problems.warn("queue_full", "MQTT event queue full (%d): dropped a %s event of %s",
                           self.settings.queue_max, victim.kind or "?", victim.wearer)

    def forget(self, key: str) -> None:
        """Drop the queued event the outbox forgot (beyond its bound)."""
        for item in self.events:
            if item.key == key and not item.sending:
                self.events.remove(item)
                self.counts.dropped += 1
                return

    def restore(self, outbox: Outbox) -> None:
        """Queue the events an earlier run left unacknowledged in ``outbox``."""
        counts = self.counts
        try:
            restored = outbox.load()
        except OSError as err:
            counts.outbox_errors += 1
            log.error("cannot read the MQTT outbox %s: %s; events from before are lost", outbox.path, err)
            restored = []
        if outbox.rewrite_error is not None:
            counts.outbox_errors += 1
            log.error("cannot rewrite the MQTT outbox %s: %s", outbox.path, outbox.rewrite_error)
        for e in restored:
            self.events.append(QueuedEvent(e.wearer, e.kind, e.payload, e.key))
        counts.outbox_restored = len(restored)
        if restored:
            log.info("%d unacknowledged event(s) from the last run queued again (outbox %s)",
                     len(restored), outbox.path)

    def journal(self, key: str, wearer: str, kind: str, payload: bytes) -> str:
        """Write an alert or reminder to the on-disk outbox; returns ``key`` ("" without one)."""
        if self.outbox is None:
            return ""
        try:
            for gone in self.outbox.add(OutboxEntry(key, wearer, kind, payload)):
                self.forget(gone.key)
        except OSError as err:
            self.counts.outbox_errors += 1
            self.problems.warn("outbox", "cannot write the MQTT outbox %s: %s (events are kept "
                               "in memory only)", self.outbox.path, err)
        return key

    def ack_outbox(self, key: str) -> None:
        if not key or self.outbox is None:
            return
        try:
            self.outbox.ack(key)
        except OSError as err:
            self.counts.outbox_errors += 1
            self.problems.warn("outbox", "cannot write the MQTT outbox %s: %s (an acknowledged "
                               "event may be sent again after a restart)", self.outbox.path, err)

    # ------------------------------------------------------------------ announcing

    def announce_wearer(self, record: WearerRecord, force: bool = False) -> None:
        """Queue the wearer's discovery (if it changed, or ``force``) and refresh its state."""
        if self.ha.discovery:
            info = record.info
            payload = to_json(ha_discovery.discovery_payload(info, self.topics, self.ha.expire_after_s,
                                                             self.version))
            topic = ha_discovery.discovery_topic(self.ha.discovery_prefix, info)
            # A settings command changes the wearer but not its 12 KB discovery: send it again
            # only when it changed, or when a (re)connect or HA's birth asks for everything.
            if force or record.discovery_sent != payload:
                record.discovery_sent = payload
                self.put_retained(topic, payload)
        # Settings in force may have changed: refresh the merged state at once.
        record.refresh_settings()

    def announce_all(self) -> None:
        """Everything a fresh subscriber (or a restarted HA) needs, queued in a sensible order."""
        records = list(self.records.values())
        for record in records:
            self.announce_wearer(record, force=True)
        for record in records:
            if record.availability is not None:
                self.put_retained(self.topics.availability(record.name),
                                  (ONLINE if record.availability else OFFLINE).encode())
        for record in records:
            if record.stats is not None:
                self.put_retained(self.topics.stats(record.name), record.stats)
            for topic, payload in record.documents.items():
                self.put_retained(topic, payload)
        for record in records:
            record.want_state(now=True)
        self.wake.set()
