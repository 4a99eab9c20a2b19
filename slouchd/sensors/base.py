"""The one interface every sample source offers: BLE sensors, recordings, the simulated wearer.

A source is an async context manager and an async iterator of :class:`SampleBatch`. It keeps
itself going (a BLE source reconnects by itself) and only stops when closed or, for finite
sources such as a recording, at the end. Link health is read from :attr:`SensorSource.status`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from slouchd.model import SampleBatch


class SourceFatal(RuntimeError):
    """Restarting this source cannot help: stop the daemon and exit with :attr:`exit_code`.

    A source raises it out of its iterator when the trouble lies below it in the process or the
    host (e.g. a Bluetooth adapter that failed every attempt for a long time, see
    ``AdapterWedged`` in :mod:`slouchd.sensors.ble`), so the daemon needs no knowledge of any
    concrete source to decide to exit. The message states what failed and for how long; the
    daemon's log line adds what it does about it. See docs/sensors.md.
    """

    #: The daemon's exit status: 75 is sysexits' EX_TEMPFAIL ("try again later"), on which
    #: systemd restarts the whole process (``Restart=on-failure``), starting every source afresh.
    exit_code: ClassVar[int] = 75


@dataclass
class SensorStatus:
    """Live link facts of one source, published as diagnostic entities.

    Attributes:
        connected: the source is delivering samples (for BLE: connected and notifying).
        battery_pct: battery level in percent, when the sensor exposes it.
        rssi_dbm: received signal strength in dBm, when known.
        reconnects: how many times the link was re-established.
        packets: notifications (or rows) received.
        samples: samples delivered.
        dropped: packets dropped, by reason (``"short"``, ``"bad_header"``, ``"duplicate"``...).
        last_error: the last link error, one line, for logs and status.
    """

    connected: bool = False
    battery_pct: float | None = None
    rssi_dbm: float | None = None
    reconnects: int = 0
    packets: int = 0
    samples: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    last_error: str = ""

    def count_drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class HandOver(Protocol):
    """When the consumer (the daemon's :class:`~slouchd.sample_buffer.SampleBuffer`) next does
    anything with samples: a source may hold what it has until then instead of waking it."""

    @property
    def due_k(self) -> float:
        """The tick index (``t_s / TICK_S`` of sample time, the buffer's own arithmetic) a
        delivered batch's newest sample must reach to complete the next hand-over; -inf: any."""
        ...


@runtime_checkable
class SensorSource(Protocol):
    """What the daemon needs from a source of samples."""

    status: SensorStatus

    async def __aenter__(self) -> SensorSource: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def __aiter__(self) -> AsyncIterator[SampleBatch]: ...

    async def buzz(self, level: int) -> bool:
        """Vibrate/beep the sensor for an alert of ``level`` (1..5); False if it cannot."""
        ...
