"""``slouchd run`` whose ``replay:`` wearers notify like a BLE sensor: N samples per notification.

Usage (what ``bench/live_load.py`` starts)::

    python bench/_packet_daemon.py SAMPLES_PER_NOTIFICATION run --config FILE

``replay:`` wearers normally come through :class:`slouchd.sensors.paced.PacedSource`, which
delivers 0.1 s of samples at a time (5 samples at 50 Hz). Here every replay wearer's recording is
cut into notifications of ``SAMPLES_PER_NOTIFICATION`` samples (1 = micro:bit, Thingy:52,
WitMotion; 36 = Polar H10), each handed over when its last sample is due on the wall clock.

Like BLE, where one D-Bus reader calls every sensor's notification callback, one shared pacer
(a plain event-loop callback, not a task, scheduled for the next notification due from any
wearer) hands each due notification to its wearer's source synchronously. The source mirrors
the BLE source (``slouchd.sensors.ble.streaming``): the notification is held in a
:class:`~slouchd.sensors.ble.link.Link` and the wearer's task is woken only when the
notification's newest sample starts a new 0.1 s tick
(:class:`~slouchd.sensors.ble.ticks.TickGate`); it then yields everything held as one batch.

Real sensors are not in step: each wearer gets a random phase (seeded by ``SLOUCHD_BENCH_SEED``,
default 11; uniform within one notification interval) added to its release times and sample
times, so wearers notify, and complete ticks, at different instants. Notifications due within
``SLACK_S`` of each other are released by one pacer call, so the event loop wakes about once per
notification of any wearer (N x rate a second, as bleak's reader does for N real sensors), not
once per notification interval for all wearers together: on the measured VM that loop wake-up,
not the source or the tracker, is most of a 1-sample wearer's cost. The rest of the daemon is
the real one, unchanged.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


#: Notifications due this close after the pacer's call are released by it too, seconds.
SLACK_S = 0.0005


class Pacer:
    """One pacer for all wearers: a loop callback at the next due notification of any wearer."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, PacketSource]] = []  # (wall time due, order, source)
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._next_at = math.inf

    def add(self, source: PacketSource) -> None:
        self._push(source)
        self._schedule()

    def remove(self, source: PacketSource) -> None:
        source.stopped = True  # its heap entry is skipped

    def _push(self, source: PacketSource) -> None:
        heapq.heappush(self.heap, (source.next_due(), next(self._order), source))

    def _schedule(self) -> None:
        if not self.heap or self.heap[0][0] >= self._next_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._next_at = self.heap[0][0]
        self._timer = asyncio.get_running_loop().call_later(max(0.0, self._next_at - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer, self._next_at = None, math.inf
        limit = time.time() + SLACK_S
        heap = self.heap
        while heap and heap[0][0] <= limit:
            _, _, source = heapq.heappop(heap)
            if source.stopped:
                continue
            source.notify()
            self._push(source)
        self._schedule()


PACER = Pacer()
_PHASES = random.Random(int(os.environ.get("SLOUCHD_BENCH_SEED", "11")))


class PacketSource:
    """A recording (looped) as notifications of ``size`` samples on the wall-clock timeline."""

    def __init__(self, path: str, size: int) -> None:
        from slouchd.daemon.sources import replay_batches
        from slouchd.sensors.base import SensorStatus
        from slouchd.sensors.ble.link import Link
        from slouchd.sensors.ble.ticks import TickGate

        blocks = list(replay_batches(path))  # a bench recording of minutes: held whole, once
        t = np.concatenate([b.t_s for b in blocks])
        self.t = t - t[0]
        self.acc = np.concatenate([b.acc_g for b in blocks])
        gyros = [b.gyro_dps for b in blocks if b.gyro_dps is not None]
        self.gyro: np.ndarray | None = np.concatenate(gyros) if len(gyros) == len(blocks) else None
        self.dt = float(np.median(np.diff(self.t[:1000])))
        self.span_s = float(self.t[-1]) + self.dt  # loop without a gap: one more sample interval
        self.size = size
        self.interval_s = size * self.dt
        #: This wearer's offset from the others, seconds (release times and sample times).
        self.phase_s = _PHASES.uniform(0.0, self.interval_s)
        self.status = SensorStatus()
        self.link = Link(1)
        self.gate = TickGate()
        self.start = 0.0
        self.i = 0  # next sample index on the looped timeline
        self.stopped = False

    async def __aenter__(self) -> PacketSource:
        self.start = time.time() + self.phase_s
        self.status.connected = True
        PACER.add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        PACER.remove(self)
        self.link.close()
        self.status.connected = False

    async def buzz(self, level: int) -> bool:
        return False

    def _bounds(self) -> tuple[int, int, float]:
        """The next notification: its sample range [a, b) in the recording and its time offset."""
        n = len(self.t)
        loop, a = divmod(self.i, n)
        return a, min(a + self.size, n), self.start + loop * self.span_s

    def next_due(self) -> float:
        """Wall time the next notification's last sample is due, seconds."""
        _, b, offset = self._bounds()
        return offset + float(self.t[b - 1])

    def notify(self) -> None:
        """The next notification arrives (called by the pacer): hold it, wake at a new tick."""
        from slouchd.model import SampleBatch

        a, b, offset = self._bounds()
        gyro = None if self.gyro is None else self.gyro[a:b]
        batch = SampleBatch(self.t[a:b] + offset, self.acc[a:b], gyro)
        self.i += b - a
        self.status.packets += 1
        self.link.hold(batch, self.gate.starts_tick(float(batch.t_s[-1])))

    async def __aiter__(self) -> AsyncIterator[Any]:
        from slouchd.model import SampleBatch

        link = self.link
        while link.active:
            await link.queue.get()
            held = link.take()
            if not held:
                continue
            batch = held[0] if len(held) == 1 else SampleBatch.concat(held)
            self.status.samples += len(batch)
            yield batch


def main() -> int:
    size = int(sys.argv[1])
    import slouchd.daemon as daemon_mod
    from slouchd.cli import main as cli_main
    from slouchd.daemon.sources import replay_path

    original = daemon_mod.open_source

    def open_source(plan: Any, wearer: Any, config: Any, **kw: Any) -> Any:
        if plan.kind == "replay":
            return PacketSource(replay_path(wearer), size)
        return original(plan, wearer, config, **kw)

    daemon_mod.open_source = open_source  # type: ignore[assignment]
    return cli_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
