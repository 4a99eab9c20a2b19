"""What the publisher keeps: one record per wearer, queued events, and its counters."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from slouchd.publish.wearer import WearerInfo

STATE_MIN_GAP_S = 0.2
"""Closest two posture states of one wearer are ever published, seconds."""
STATE_EARLY = 0.1
"""A rate-limited state may go out this fraction of ``state_interval_s`` early: sends anchored
on the previous send alone drift later by the sender's own delay each time, until every state
waits almost a whole interval (seen at 100 in-step wearers: state lag p50 1.0 s)."""

_NEVER: Any = object()  # "no state sent yet": unequal to every posture, None included


@dataclass(eq=False)
class WearerRecord:
    """Everything the publisher holds for one wearer: added, removed or carried over whole.

    Attributes:
        info: the wearer as configured, with the settings in force.
        state: the newest posture state (merged with the settings in force), or None.
        state_pending: ``state`` has not been published yet.
        state_now: send it as soon as the minimum gap allows (posture changed, reconnect).
        state_sent_at: when the last state was handed to the broker, monotonic seconds.
        state_sent_posture: ``posture`` of the last state sent.
        stats: the newest daily totals payload (JSON), or None.
        documents: other retained JSON documents by topic (the coach's ``stretch`` and
            ``history``), sent again after a reconnect like ``stats``.
        availability: the sensor link (True online, False offline), or None if never said.
        discovery_sent: the Home Assistant discovery payload last queued, or None.
    """

    info: WearerInfo
    state: dict[str, Any] | None = None
    state_pending: bool = False
    state_now: bool = False
    state_sent_at: float = -math.inf
    state_sent_posture: Any = _NEVER
    stats: bytes | None = None
    documents: dict[str, bytes] = field(default_factory=dict)
    availability: bool | None = None
    discovery_sent: bytes | None = None

    @property
    def name(self) -> str:
        return self.info.name

    def want_state(self, *, now: bool) -> None:
        """The state is to be sent (``now``: as soon as the minimum gap allows)."""
        if self.state is None:
            return
        self.state_pending = True
        self.state_now = self.state_now or now

    def refresh_settings(self) -> None:
        """Fold the settings in force into the held state and send it at once."""
        if self.state is not None:
            self.state = {**self.state, **self.info.settings_state()}
            self.want_state(now=True)

    def state_due(self, now: float, interval_s: float) -> float:
        """When the pending state may go out, monotonic seconds: at once (never closer than
        STATE_MIN_GAP_S to the previous one, so a flickering posture cannot flood the broker)
        when ``state_now``, else ``interval_s`` (less :data:`STATE_EARLY`) after the previous one."""
        if self.state_now:
            return max(now, self.state_sent_at + STATE_MIN_GAP_S)
        return self.state_sent_at + interval_s * (1.0 - STATE_EARLY)

    def carry_from(self, old: WearerRecord) -> None:
        """Take over ``old``'s newest values (a new publisher after a reload)."""
        if old.state is not None:
            self.state = {**old.state, **self.info.settings_state()}
            self.want_state(now=True)
        if old.stats is not None:
            self.stats = old.stats
        self.documents = {**old.documents, **self.documents}
        if old.availability is not None:
            self.availability = old.availability

    def forget_values(self) -> None:
        """Hold no state, stats or link any more (their topics were cleared)."""
        self.state = None
        self.state_pending = False
        self.stats = None
        self.documents = {}
        self.availability = None


@dataclass(eq=False)
class QueuedEvent:
    """One event waiting for the broker's PUBACK (compared by identity).

    Attributes:
        wearer, kind, payload: whose event, its ``event`` kind, and the JSON sent.
        key: its key in the on-disk outbox, or "" when it is not journalled.
        sending: a publish of it is running now (it is not dropped or sent twice meanwhile).
        sent: it went out at least once without a PUBACK: sending it again may duplicate it.
    """

    wearer: str
    kind: str
    payload: bytes
    key: str = ""
    sending: bool = False
    sent: bool = False

    def moved(self) -> QueuedEvent:
        """A copy for another publisher (a reload): the old one's PUBACK no longer removes it."""
        return dataclasses.replace(self, sending=False, sent=self.sent or self.sending)


@dataclass
class Counters:
    """Delivery and input counters; a new publisher after a reload goes on counting."""

    published: int = 0
    dropped: int = 0
    reconnects: int = 0
    refused: int = 0
    resent: int = 0
    state_published: int = 0
    commands: int = 0
    payloads_dropped: int = 0
    alerts: int = 0
    reminders: int = 0
    outbox_restored: int = 0
    outbox_errors: int = 0
    payloads_dropped_by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, other: Counters) -> None:
        """Add ``other``'s counts to these (not the per-reason split of dropped payloads)."""
        for f in dataclasses.fields(self):
            if f.type == "int" or f.type is int:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self, outbox_len: int) -> dict[str, int]:
        """The counters as the health line and the diagnostics entities name them."""
        return {
            "mqtt_alerts": self.alerts,
            "mqtt_reminders": self.reminders,
            "mqtt_published": self.published,
            "mqtt_dropped": self.dropped,
            "mqtt_resent": self.resent,
            "mqtt_reconnects": self.reconnects,
            "mqtt_commands": self.commands,
            "mqtt_commands_refused": self.refused,
            "mqtt_payloads_dropped": self.payloads_dropped,
            "mqtt_outbox": outbox_len,
            "mqtt_outbox_restored": self.outbox_restored,
            "mqtt_outbox_errors": self.outbox_errors,
        }


class CounterField:
    """A counter attribute of an object whose ``counts`` is a :class:`Counters` (the publisher
    keeps its public ``published``, ``dropped``... attributes this way)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: Any, owner: type) -> Any:
        return self if obj is None else getattr(obj.counts, self._name)

    def __set__(self, obj: Any, value: int) -> None:
        setattr(obj.counts, self._name, value)
