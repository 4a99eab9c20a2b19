"""``slouchd run`` whose ``replay:`` wearers notify like a BLE sensor: N samples per notification.

Usage (what ``bench/live_load.py`` starts)::

    python bench/_packet_daemon.py SAMPLES_PER_NOTIFICATION run --config FILE

``replay:`` wearers normally come through :class:`slouchd.sensors.paced.PacedSource`, which
delivers 0.1 s of samples at a time (5 samples at 50 Hz). Here every replay wearer's recording is
cut into notifications of ``SAMPLES_PER_NOTIFICATION`` samples (1 = micro:bit, Thingy:52,
WitMotion; 36 = Polar H10), each handed over when its last sample is due on the wall clock.

Like BLE, where one D-Bus reader calls every sensor's notification callback, one shared pacer
task releases the due notifications of all wearers into per-wearer queues; each wearer's task
wakes once per notification (``await queue.get()``), as with a BLE source. The rest of the daemon
is the real one, unchanged.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class Pacer:
    """One task for all wearers: every ``period_s`` it releases the notifications now due."""

    def __init__(self) -> None:
        self.sources: list[PacketSource] = []
        self.period_s = 1.0
        self._task: asyncio.Task[None] | None = None

    def add(self, source: PacketSource) -> None:
        self.sources.append(source)
        self.period_s = min(self.period_s, source.interval_s)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="bench-pacer")

    def remove(self, source: PacketSource) -> None:
        if source in self.sources:
            self.sources.remove(source)

    async def _run(self) -> None:
        due = time.monotonic()
        while True:
            due += self.period_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.time()
            for s in self.sources:
                s.release(now)


PACER = Pacer()


class PacketSource:
    """A recording (looped) as notifications of ``size`` samples on the wall-clock timeline."""

    def __init__(self, path: str, size: int) -> None:
        from slouchd.daemon.sources import replay_batches
        from slouchd.sensors.base import SensorStatus

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
        self.status = SensorStatus()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.start = 0.0
        self.i = 0  # next sample index on the looped timeline

    async def __aenter__(self) -> PacketSource:
        self.start = time.time()
        self.status.connected = True
        PACER.add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        PACER.remove(self)
        self.status.connected = False

    async def buzz(self, level: int) -> bool:
        return False

    def release(self, now: float) -> None:
        """Queue every notification whose last sample is due by ``now`` (wall clock)."""
        from slouchd.model import SampleBatch

        n = len(self.t)
        while True:
            loop, a = divmod(self.i, n)
            b = min(a + self.size, n)
            offset = self.start + loop * self.span_s
            if offset + self.t[b - 1] > now:
                return
            gyro = None if self.gyro is None else self.gyro[a:b]
            self.queue.put_nowait(SampleBatch(self.t[a:b] + offset, self.acc[a:b], gyro))
            self.i += b - a

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            batch = await self.queue.get()
            self.status.packets += 1
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
