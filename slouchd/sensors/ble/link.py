"""One BLE connection and its life: :class:`LinkState`, :class:`Link`, the per-adapter lock.

A link goes ``CONNECTING -> STREAMING``; the sensor (or BlueZ) dropping it makes it ``LOST``;
teardown makes it ``CLOSED`` exactly once, from any state. Callbacks of a ``CLOSED`` link are
ignored, so a notification handler left behind by a hanging disconnect never delivers samples
twice. Decoded samples wait in the link (:meth:`Link.hold`) until the consumer takes them
(:meth:`Link.take`); the link's queue only carries wake-ups. See docs/sensors.md ("Staying
connected for days").
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import weakref
from dataclasses import dataclass, field
from typing import Any

from slouchd.model import SampleBatch, SampleRows

#: Notifications buffered between the callback and the consumer before dropping ("overflow").
QUEUE_MAX = 2000
#: Held samples that wake the consumer even if no tick started (times standing still), samples.
WAKE_SAMPLES = 256

#: Put in a link's queue to wake its consumer: the link is lost or closed.
LOST = object()
#: Put in a link's queue to wake its consumer: held samples are ready (a tick started).
READY = object()


class LinkState(enum.Enum):
    """Where one connection is in its life."""

    #: The client exists; connecting, enabling notifications or running the start-up steps.
    CONNECTING = "connecting"
    #: Set up: notifications flow to the consumer.
    STREAMING = "streaming"
    #: The sensor or BlueZ dropped the link; its teardown is still to come.
    LOST = "lost"
    #: Torn down: every callback of this link is ignored from now on.
    CLOSED = "closed"


@dataclass(eq=False)
class Link:
    """One connection: its client, state, held samples, wake-ups and what to undo at teardown.

    Attributes:
        number: counts the links of one source (1, 2, ...), for log lines.
        client: the ``BleakClient`` (None until it is made).
        state: see :class:`LinkState`.
        delivered: samples delivered from this link.
        queue: wake-ups of the consumer: :data:`READY`, :data:`LOST` (or the streamer's ``SILENT``).
        held: decoded samples of this link the consumer has not taken yet, in order: batches, and
            runs of one-sample notifications kept as floats (:class:`SampleRows`).
        held_samples: samples in ``held``.
        held_packets: notifications in ``held`` (the callback drops more than :data:`QUEUE_MAX`).
        seen: monotonic time of the last notification, seconds (the silence watchdog reads it).
        subscribed: characteristics notifying, to stop at teardown (in reverse).
        control: answers of subscribed control characteristics (``wait_notify`` reads them).
        tasks: background tasks of this link (battery poll, buzz stop), cancelled at teardown.
    """

    number: int
    client: Any = None
    state: LinkState = LinkState.CONNECTING
    delivered: int = 0
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    subscribed: list[str] = field(default_factory=list)
    control: dict[str, asyncio.Queue[bytes]] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    held: list[SampleBatch | SampleRows] = field(default_factory=list)
    held_samples: int = 0
    held_packets: int = 0
    seen: float = float("-inf")
    _ready_queued: bool = field(default=False, init=False, repr=False)

    @property
    def active(self) -> bool:
        """Not torn down: its callbacks still count."""
        return self.state is not LinkState.CLOSED

    @property
    def gone(self) -> bool:
        """Lost or closed: steps still running on it fail for that reason."""
        return self.state is LinkState.LOST or self.state is LinkState.CLOSED

    def streaming(self) -> None:
        """Set up completely (a link lost or closed meanwhile stays so)."""
        if self.state is LinkState.CONNECTING:
            self.state = LinkState.STREAMING

    def lose(self) -> None:
        """The sensor or BlueZ dropped the link (bleak's disconnected callback): wake the consumer."""
        if self.state is LinkState.CONNECTING or self.state is LinkState.STREAMING:
            self.state = LinkState.LOST
            self.wake()

    def close(self) -> bool:
        """Mark the link torn down and stop its tasks; False if it was already (teardown runs once)."""
        if self.state is LinkState.CLOSED:
            return False
        self.state = LinkState.CLOSED
        self.wake()  # a consumer waiting on this link must not wait for the silence timeout
        for task in self.tasks:
            task.cancel()
        return True

    def wake(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(LOST)

    def hold(self, batch: SampleBatch | SampleRows, ready: bool) -> None:
        """Keep ``batch`` for the consumer; wake it (once until it takes) if ``ready`` or if
        :data:`WAKE_SAMPLES` samples are held. Rows following rows join them (no new entry)."""
        held = self.held
        if not (type(batch) is SampleRows and held and type(last := held[-1]) is SampleRows
                and last.extend(batch)):
            held.append(batch)
        self.held_samples += len(batch)
        self.held_packets += 1
        if (ready or self.held_samples >= WAKE_SAMPLES) and not self._ready_queued:
            self._ready_queued = True
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(READY)

    def take(self) -> list[SampleBatch]:
        """The held samples as batches, in order (the link holds none after)."""
        held, self.held = self.held, []
        self.held_samples = 0
        self.held_packets = 0
        self._ready_queued = False
        return [b.batch() if isinstance(b, SampleRows) else b for b in held]


_ADAPTER_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


def adapter_lock(adapter: str) -> asyncio.Lock:
    """The lock serialising scans and connection attempts on one adapter ("" = default adapter).

    BlueZ handles one connection attempt per adapter badly at best (``InProgress``), and a scan
    running during a connect slows it down; locks are per event loop (tests run many loops).
    """
    locks = _ADAPTER_LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(adapter, asyncio.Lock())
