"""The sender: hands queued retained payloads, events and states to the broker, pipelined.

One :class:`Sender` per broker session. It never awaits one publish before starting the next
(issue 11: at 100 wearers, a PUBACK round trip per event and a loop iteration per state made the
sender the daemon's limit, docs/performance.md). Instead it starts up to ``PUBLISH_IN_FLIGHT``
publishes and learns of each one's outcome in a done callback:

* order: publishes are started in queue order and aiomqtt hands each to paho on its first step,
  so they go on the wire in that order; every topic has a single QoS, so paho's own QoS 1 window
  cannot reorder a topic either;
* retained payloads leave the queue when started and come back (unless a newer one was queued
  meanwhile) when their publish fails, so a reconnect sends them again;
* events leave the queue only on their PUBACK (and then the on-disk outbox): **at least once**.
  One sent without a PUBACK before its session died is counted in ``resent`` when sent again;
* the first failed publish ends the session (the connection loop reconnects).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable, Coroutine
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from slouchd.publish.core import PublishCore
from slouchd.publish.payloads import to_json
from slouchd.publish.records import QueuedEvent, WearerRecord

PUBLISH_IN_FLIGHT = 64
"""Most publishes started and not yet confirmed at once (states, events, retained together)."""

_Done = Callable[["asyncio.Task[None]"], None]


class Sender:
    """Drains the core's queue into ``client`` until the session ends (see the module doc)."""

    def __init__(self, core: PublishCore, client: aiomqtt.Client) -> None:
        self._core = core
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._starved = False  # a pass found the window full: a completion must wake us
        self._timer: asyncio.Task[None] | None = None  # wakes us when the next state falls due
        self._timer_due = math.inf

    async def run(self) -> None:
        """Send until a publish fails (raised: the session ends) or the task is cancelled."""
        core = self._core
        core.send_events_now = self._start_events
        try:
            while True:
                core.wake.clear()
                if self._failure is not None:
                    raise self._failure
                self._arm(self._send_what_fits())
                core.notify()
                await core.wake.wait()
        finally:
            if core.send_events_now == self._start_events:
                core.send_events_now = None
            for task in self._tasks:
                task.cancel()
            if self._timer is not None:
                self._timer.cancel()

    def _send_what_fits(self) -> float:
        """Start what the window allows, retained first, then events, then states; returns
        when the next rate-limited state falls due (monotonic seconds, inf if none)."""
        core = self._core
        self._starved = False
        self._start_retained()
        if core.retained:
            self._starved = True  # the window is full: a completion wakes us
            return math.inf
        self._start_events()
        if core.closing:
            return math.inf
        return self._start_states()

    def _arm(self, due: float) -> None:
        """Have the wake event set at monotonic time ``due`` (one timer, re-armed only when
        something falls due earlier than it is set for: no timer per wait)."""
        timer = self._timer
        if timer is not None and not timer.done() and self._timer_due <= due:
            return
        if math.isinf(due):
            return
        if timer is not None:
            timer.cancel()
        self._timer_due = due
        self._timer = asyncio.create_task(self._ring(due - self._core.clock.monotonic()))

    async def _ring(self, delay_s: float) -> None:
        await self._core.clock.sleep(max(0.0, delay_s))
        self._timer_due = math.inf
        self._core.wake.set()

    def _free(self) -> int:
        return PUBLISH_IN_FLIGHT - len(self._tasks)

    def _launch(self, coro: Coroutine[Any, Any, None], done: Callable[[bool], None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        self._core.in_flight += 1
        task.add_done_callback(functools.partial(self._finished, done))

    def _finished(self, done: Callable[[bool], None], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._core.in_flight -= 1
        ok = not task.cancelled() and task.exception() is None
        if not ok and not task.cancelled() and self._failure is None:
            self._failure = task.exception()
        done(ok)
        if self._starved or not ok:
            self._core.wake.set()
        self._core.notify()

    # ------------------------------------------------------------------ the three kinds

    def _start_retained(self) -> None:
        retained = self._core.retained
        for topic in list(retained)[:max(0, self._free())]:
            payload = retained.pop(topic)
            self._launch(self._client.publish(topic, payload, qos=1, retain=True),
                         functools.partial(self._retained_done, topic, payload))

    def _retained_done(self, topic: str, payload: bytes, ok: bool) -> None:
        if not ok:  # send it again after a reconnect, unless a newer payload is queued
            self._core.retained.setdefault(topic, payload)

    def _start_events(self) -> None:
        """Start the queued events the window has room for, oldest first."""
        core = self._core
        if self._failure is not None:
            core.wake.set()  # the session is ending: the run loop raises it
            return
        free = self._free()
        batch: list[QueuedEvent] = []
        for item in core.events:
            if len(batch) >= free:
                self._starved = True
                break
            if not item.sending:
                batch.append(item)
        properties = self._event_properties()
        for item in batch:
            if item.sent:
                # Sent before a connection died, with no PUBACK: the broker may already have
                # it, so this is a possible duplicate (at-least-once).
                core.counts.resent += 1
            item.sending = item.sent = True
            self._launch(self._client.publish(core.topics.event(item.wearer), item.payload, qos=1,
                                              retain=False, properties=properties),
                         functools.partial(self._event_done, item))

    def _event_done(self, item: QueuedEvent, ok: bool) -> None:
        item.sending = False
        if ok:
            self._core.event_acked(item)

    def _event_properties(self) -> Properties | None:
        """MQTT 5 message expiry for an event (None on 3.1.1 or with ``event_expiry_s = 0``)."""
        core = self._core
        if not core.v5 or not core.settings.event_expiry_s:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = core.settings.event_expiry_s
        return props

    def _start_states(self) -> float:
        core = self._core
        now = core.clock.monotonic()
        interval = core.settings.state_interval_s
        next_due = math.inf
        for record in core.records.values():
            if not record.state_pending:
                continue
            due = record.state_due(now, interval)
            if due > now:
                next_due = min(next_due, due)
            elif self._free() > 0:
                self._start_state(record, now)
            else:
                self._starved = True
        return next_due

    def _start_state(self, record: WearerRecord, now: float) -> None:
        state = record.state
        record.state_pending = record.state_now = False
        if state is None:
            return
        record.state_sent_at = now
        record.state_sent_posture = state.get("posture")
        self._launch(self._client.publish(self._core.topics.state(record.name), to_json(state),
                                          qos=0, retain=True),
                     self._state_done)

    def _state_done(self, ok: bool) -> None:
        if ok:
            self._core.counts.state_published += 1
