"""Time for everything that waits: one clock interface, one timeout helper, one backoff.

The BLE session, the MQTT publisher and the daemon's supervision all wait on a :class:`Clock`
passed in, so tests can run them on virtual time (``tests/fake_clock.py``) instead of sleeping.
All durations are seconds.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """Injectable time source."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""
        ...

    def wall(self) -> float:
        """Unix time, seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.time` and :func:`asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


#: The process-wide real clock; pass another :class:`Clock` to run on virtual time.
SYSTEM_CLOCK = SystemClock()


async def within(clock: Clock, aw: Awaitable[T], timeout_s: float) -> T:
    """Await ``aw`` for at most ``timeout_s`` on ``clock``; TimeoutError (and cancel it) after.

    A cancelled operation is not awaited: a D-Bus call that ignores cancellation must not hang us.
    """
    task = asyncio.ensure_future(aw)
    timer = asyncio.ensure_future(clock.sleep(timeout_s))
    try:
        await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        timer.cancel()
    if task.done():
        return task.result()
    task.cancel()
    task.add_done_callback(_consume_result)
    raise TimeoutError(f"no answer within {timeout_s:g} s")


def _consume_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Backoff:
    """Exponential backoff with jitter: ``min_s``, 2x, 4x ... capped at ``max_s``, each wait
    multiplied by a random factor in ``[jitter_low, 1]`` so many clients do not retry in step.

    Args:
        min_s: first wait, seconds.
        max_s: longest wait, seconds.
        jitter_low: lower end of the random factor (1.0 = no jitter).
        rng: random source (seeded in tests).
    """

    def __init__(self, min_s: float = 1.0, max_s: float = 60.0, *, jitter_low: float = 0.5,
                 rng: random.Random | None = None) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got {min_s}, {max_s}")
        if not 0 <= jitter_low <= 1:
            raise ValueError(f"jitter_low must be in [0, 1], got {jitter_low}")
        self.min_s = min_s
        self.max_s = max_s
        self.jitter_low = jitter_low
        self._rng = rng or random.Random()
        self.attempt = 0

    def base_s(self, attempt: int) -> float:
        """The un-jittered wait before retry number ``attempt`` (0-based), seconds."""
        return min(self.max_s, self.min_s * 2.0 ** min(attempt, 60))

    def delay_s(self, attempt: int) -> float:
        """The jittered wait before retry number ``attempt`` (0-based), seconds."""
        return self.base_s(attempt) * self._rng.uniform(self.jitter_low, 1.0)

    def next_s(self) -> float:
        """The wait before the next retry, seconds; counts the attempt."""
        delay = self.delay_s(self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Success: the next failure waits ``min_s`` again."""
        self.attempt = 0
