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

The price: an I/O event may be handled up to one quantum later. The quantum follows
:class:`WakePace`: 10 ms (:data:`WAKE_QUANTUM_S`) while any wearer *hurries* (an alert or an
answer could come within the next second: ``PostureTracker.urgent``, or a stretch session runs),
50 ms (:data:`CALM_QUANTUM_S`) while none does. The alert budget is 50 ms at the 99th percentile
(``bench/alert_latency.py``), and an alert never comes out of a hand-over its tracker was calm
before (``tests/daemon/test_sample_buffer.py`` checks it over a simulated hour), so every alert is
decided under the 10 ms quantum; what waits up to 50 ms while all are calm is a state (1 Hz), a
command's answer, or each D-Bus round trip of a sensor connecting while others stream densely.
Under load each wake-up costs the measured VM a few hundred µs of CPU (docs/performance.md,
"Session 7"): at 10 one-sample wearers, 100 a second cost more than all their posture maths.
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
CALM_QUANTUM_S = 0.05
"""The same while no wearer hurries (see :class:`WakePace`): half a decision tick, seconds."""


GAP_WEIGHT = 0.2
"""Weight of the newest gap between event wake-ups in their moving average."""
DENSE_GAP = 0.5
"""Events are dense (naps pay) when that average is under this fraction of the quantum in force:
at 10 ms, more than about 200 events a second; at the calm 50 ms, more than about 40 (one
one-sample sensor at 50 Hz)."""


def nap(seconds: float) -> None:
    """Block for ``seconds`` in ``select()`` with no descriptors: unlike ``time.sleep``
    (``clock_nanosleep``), it works under libfaketime, which the fault tests run us under."""
    select.select([], [], [], seconds)


class WakePace:
    """How long the loop may leave dense events waiting: ``quantum_s`` while anyone hurries,
    ``calm_s`` while nobody does (seconds).

    Wearers say whether they hurry after each hand-over (``WearerRuntime.pace``): a wearer whose
    tracker is urgent must have the sample that starts each tick handled within the alert
    budget; a calm one is handed a whole second at a time anyway.
    """

    __slots__ = ("_hurrying", "calm_s", "hurried_s")

    def __init__(self, quantum_s: float = WAKE_QUANTUM_S, calm_s: float = CALM_QUANTUM_S) -> None:
        if quantum_s < 0 or calm_s < quantum_s:
            raise ValueError(f"need 0 <= quantum_s <= calm_s seconds, got {quantum_s} and {calm_s}")
        self.hurried_s = quantum_s
        self.calm_s = calm_s
        self._hurrying: set[object] = set()

    def hurry(self, who: object, hurrying: bool) -> None:
        """``who`` (any hashable, a wearer's runtime) hurries now, or no longer."""
        if hurrying:
            self._hurrying.add(who)
        else:
            self._hurrying.discard(who)

    @property
    def hurried(self) -> bool:
        return bool(self._hurrying)

    @property
    def quantum_s(self) -> float:
        """The quantum now, seconds."""
        return self.hurried_s if self._hurrying else self.calm_s


class CoalescingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The platform's default selector, waking at most once per quantum under dense events.

    Args:
        quantum_s: seconds; 0 turns coalescing off (a plain selector). Fixed, unless ``pace``.
        pace: where the quantum comes from when it changes with the wearers (:class:`WakePace`).
        clock: monotonic seconds; sleep: blocks for seconds (injectable for tests).

    Attributes:
        wakeups: blocking waits that ended (an event or a timeout), for tests and benchmarks.
        coalesced: of those, the ones that slept out the quantum instead of blocking.
    """

    def __init__(self, quantum_s: float = WAKE_QUANTUM_S, *, pace: WakePace | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = nap) -> None:
        super().__init__()
        if quantum_s < 0:
            raise ValueError(f"quantum_s must be >= 0 seconds, got {quantum_s}")
        self.pace = pace if pace is not None else WakePace(quantum_s, quantum_s)
        self._clock = clock
        self._sleep = sleep
        self._last_wake = -float("inf")
        self._dense = False
        # Smoothed time between event wake-ups, seconds: one quick pair (a write that is ready at
        # once after a read) is not a dense stream, and a nap for it would cost a wake-up. It
        # starts at the calm quantum: a start-up's few round trips are not a stream either.
        self._gap_s = self.pace.calm_s
        self.wakeups = 0
        self.coalesced = 0

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        """As :meth:`selectors.BaseSelector.select` (seconds; None = block until an event)."""
        if timeout is not None and timeout <= 0:
            return super().select(timeout)  # the loop has work ready: no wait, nothing to save
        quantum_s = self.pace.quantum_s
        if self._dense:
            # (At most one quantum: a clock that steps back, as libfaketime's can, never stalls us.)
            wait = min(self._last_wake + quantum_s - self._clock(), quantum_s)
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
        self._dense = bool(ready) and self._gap_s < DENSE_GAP * quantum_s
        self._last_wake = now
        return ready


    @property
    def quantum_s(self) -> float:
        """The quantum now, seconds (:attr:`pace`)."""
        return self.pace.quantum_s


class DaemonLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop on a :class:`CoalescingSelector`, its :class:`WakePace` at hand."""

    def __init__(self, pace: WakePace) -> None:
        super().__init__(CoalescingSelector(pace=pace))
        self.wake_pace = pace


def new_event_loop(quantum_s: float = WAKE_QUANTUM_S, calm_s: float = CALM_QUANTUM_S) -> DaemonLoop:
    """The daemon's event loop (seconds: the quanta of :class:`WakePace`)."""
    return DaemonLoop(WakePace(quantum_s, calm_s))


def hurry(who: object, hurrying: bool) -> None:
    """Tell the running loop's :class:`WakePace` that ``who`` hurries or not (no-op on a loop
    that is not a :class:`DaemonLoop`, as in most tests)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if isinstance(loop, DaemonLoop):
        loop.wake_pace.hurry(who, hurrying)
