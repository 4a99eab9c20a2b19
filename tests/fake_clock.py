"""Virtual time for tests of anything that waits on a :class:`slouchd.timing.Clock`."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """Virtual time: ``sleep`` waits until :meth:`run` advances to its deadline.

    :meth:`run` (a task) lets every runnable task settle, then jumps to the earliest pending
    deadline, so minutes of backoff take milliseconds. ``wall()`` is Unix time.
    """

    def __init__(self, start: float = 1000.0, wall_at_start: float = 1_750_000_000.0) -> None:
        self.now = start
        self._wall_offset = wall_at_start - start
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.now + seconds, next(self._seq), fut))
        await fut

    async def run(self) -> None:
        while True:
            # Let every runnable task settle before time jumps: closing a source wakes a chain
            # of nested waits (close event, within(), the scanner's stop) that needs more than a
            # few dozen loop turns, and a jump before it settles shows up as time that never passed.
            for _ in range(200):
                await asyncio.sleep(0)
            while self._heap and self._heap[0][2].done():
                heapq.heappop(self._heap)
            if not self._heap:
                await asyncio.sleep(0.001)
                continue
            when, _, fut = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            fut.set_result(None)
