"""Fewer event-loop wake-ups when small events come thick and fast: the daemon's selector.

A sensor that sends one sample per notification (micro:bit, Thingy:52, WitMotion) makes BlueZ
send 50-100 D-Bus messages a second, and N such sensors N times that. Waking the event loop for
each costs far more than handling it: on the measured VM one wake-up from ``epoll_wait`` costs
40-90 µs of CPU, our whole notification path ~23 µs (docs/performance.md, "Session 6").

:class:`CoalescingSelector` is interrupt moderation for the event loop: while events are dense
(waking it on average less than half of ``quantum_s`` apart), it lets ``quantum_s`` pass since the
last wake-up before it looks again, in one sleep, and then takes everything that arrived meanwhile
in one go (dbus-fast's reader reads every message waiting on its socket). A timer of the loop is
never delayed: the sleep ends at the loop's next timer. When events are sparse (one sensor, commands,
the idle daemon) nothing changes: the loop blocks as usual and wakes at the first event.

The price: an I/O event may be handled up to ``quantum_s`` later (10 ms; the alert budget is
50 ms at the 99th percentile, ``bench/alert_latency.py``).
"""

from __future__ import annotations

import asyncio
import select
import selectors
import time
from collections.abc import Callable
from typing import Any

WAKE_QUANTUM_S = 0.01
"""While events come denser than this, the loop wakes at most once per this many seconds."""


GAP_WEIGHT = 0.2
"""Weight of the newest gap between event wake-ups in their moving average."""
DENSE_GAP = 0.5
"""Events are dense (naps pay) when that average is under this fraction of the quantum: at the
default 10 ms, more than about 200 events a second."""


def nap(seconds: float) -> None:
    """Block for ``seconds`` in ``select()`` with no descriptors: unlike ``time.sleep``
    (``clock_nanosleep``), it works under libfaketime, which the fault tests run us under."""
    select.select([], [], [], seconds)


class CoalescingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The platform's default selector, waking at most once per ``quantum_s`` under dense events.

    Args:
        quantum_s: seconds; 0 turns coalescing off (a plain selector).
        clock: monotonic seconds; sleep: blocks for seconds (injectable for tests).

    Attributes:
        wakeups: blocking waits that ended (an event or a timeout), for tests and benchmarks.
        coalesced: of those, the ones that slept out the quantum instead of blocking.
    """

    def __init__(self, quantum_s: float = WAKE_QUANTUM_S, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = nap) -> None:
        super().__init__()
        if quantum_s < 0:
            raise ValueError(f"quantum_s must be >= 0 seconds, got {quantum_s}")
        self.quantum_s = quantum_s
        self._clock = clock
        self._sleep = sleep
        self._last_wake = -float("inf")
        self._dense = False
        # Smoothed time between event wake-ups, seconds: one quick pair (a write that is ready at
        # once after a read) is not a dense stream, and a nap for it would cost a wake-up.
        self._gap_s = quantum_s
        self.wakeups = 0
        self.coalesced = 0

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        """As :meth:`selectors.BaseSelector.select` (seconds; None = block until an event)."""
        if timeout is not None and timeout <= 0:
            return super().select(timeout)  # the loop has work ready: no wait, nothing to save
        if self._dense:
            # (At most one quantum: a clock that steps back, as libfaketime's can, never stalls us.)
            wait = min(self._last_wake + self.quantum_s - self._clock(), self.quantum_s)
            if wait > 0:
                if timeout is not None and timeout < wait:
                    wait = timeout  # a timer is due first: never later than asked
                self._sleep(wait)
                ready = super().select(0)
                if ready or (timeout is not None and timeout <= wait):
                    self.wakeups += 1
                    self.coalesced += 1
                    self._last_wake = self._clock()
                    return ready
                if timeout is not None:
                    timeout -= wait
        ready = super().select(timeout)
        now = self._clock()
        self.wakeups += 1
        if ready and self._last_wake > -float("inf"):
            gap = min(max(now - self._last_wake, 0.0), 1.0)
            self._gap_s += GAP_WEIGHT * (gap - self._gap_s)
        # Dense: events have been waking us at well under a quantum apart.
        self._dense = bool(ready) and self._gap_s < DENSE_GAP * self.quantum_s
        self._last_wake = now
        return ready


def new_event_loop(quantum_s: float = WAKE_QUANTUM_S) -> asyncio.AbstractEventLoop:
    """The daemon's event loop: asyncio's selector loop on a :class:`CoalescingSelector`."""
    return asyncio.SelectorEventLoop(CoalescingSelector(quantum_s))
