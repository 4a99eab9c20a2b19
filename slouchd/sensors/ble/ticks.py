"""When a source must wake its consumer: a batch whose newest sample starts a new decision tick
(and reaches the tick the consumer's next hand-over waits for).

The tracker decides on a fixed grid of sample time, tick index ``floor(t_s / tick_s)`` with
``tick_s`` = :data:`~slouchd.posture.filters.TICK_S` (0.1 s), and the daemon's
:class:`~slouchd.sample_buffer.SampleBuffer` hands samples over when the newest one starts a new
tick. Waking the consumer for any other notification buys nothing: it would only hold the
samples. A source that gets one sample per notification (50-100 a second) therefore keeps them
until :class:`TickGate` says a tick started, then wakes its consumer once.
"""

from __future__ import annotations

import math

from slouchd.posture.filters import TICK_S


class TickGate:
    """Says whether a batch's newest sample time starts a tick later than any seen before.

    Times are sample times in seconds (Unix time, as the batches are stamped); the grid is the
    tracker's and the sample buffer's: tick index ``math.floor(t_s / tick_s)``, ``tick_s`` in
    seconds. The first batch always starts a tick; times that go back or stand still never do;
    a non-finite time does (the consumer then sees and drops it at once, as the buffer does).

    Args:
        tick_s: the decision tick, seconds (default :data:`~slouchd.posture.filters.TICK_S`).
    """

    __slots__ = ("_next_k", "tick_s")

    def __init__(self, tick_s: float = TICK_S) -> None:
        if not tick_s > 0:
            raise ValueError(f"tick_s must be > 0 seconds, got {tick_s}")
        self.tick_s = tick_s
        self._next_k = -math.inf  # the tick index (float) whose first sample wakes the consumer

    def starts_tick(self, t_last_s: float, due_k: float = -math.inf) -> bool:
        """True when ``t_last_s`` (the newest sample's time, seconds) is in a tick after every
        earlier one and at or past ``due_k``, the tick the consumer's next hand-over waits for
        (:attr:`SampleBuffer.due_k`: while calm the daemon takes samples once a second, and
        waking it for the ticks between would only hold them); remembers it. Same arithmetic as
        ``SampleBuffer.add``: ``t / tick_s``."""
        k = t_last_s / self.tick_s
        if k < self._next_k or k < due_k:
            return False
        if math.isfinite(k):
            self._next_k = math.floor(k) + 1
        return True

    def reset(self) -> None:
        """Forget the last tick: the next batch starts one (a new link)."""
        self._next_k = -math.inf
