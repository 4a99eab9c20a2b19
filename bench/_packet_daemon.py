"""``slouchd run`` whose ``replay:`` wearers notify like a BLE sensor: N samples per notification.

Usage (what ``bench/live_load.py`` starts)::

    python bench/_packet_daemon.py SAMPLES_PER_NOTIFICATION run --config FILE

``replay:`` wearers normally come through :class:`slouchd.sensors.paced.PacedSource`, which
delivers 0.1 s of samples at a time (5 samples at 50 Hz). Here every replay wearer's recording is
cut into notifications of ``SAMPLES_PER_NOTIFICATION`` samples (1 = micro:bit, Thingy:52,
WitMotion; 36 = Polar H10), each handed over when its last sample is due on the wall clock.

Where the notifications come from, as on a real gateway: with bleak on Linux, bluetoothd sends
each notification as a D-Bus signal over the system bus socket, and dbus-fast's reader callback
reads every message waiting on that socket whenever the event loop wakes
(``dbus_fast/aio/message_reader.py``: ``while True: message = unmarshaller._unmarshall()``; bleak
3 uses ``StartNotify``, i.e. D-Bus signals, by default). So here a separate *radio* process (our
stand-in for bluetoothd: its own CPU is not the daemon's) keeps every wearer's notification
times and writes one 4-byte record per notification to a socket; the daemon's loop wakes when the
socket is readable and its reader hands each record's notification to its wearer's source. The
daemon process sets no timer per notification: a timer wake-up costs about twice a socket
wake-up on the measured VM (docs/performance.md, "Session 6"), and a real daemon pays the latter.

The source mirrors the BLE source (``slouchd.sensors.ble.streaming``): the notification is held in
a :class:`~slouchd.sensors.ble.link.Link` and the wearer's task is woken only when the
notification's newest sample starts a new 0.1 s tick at or past the wearer's next hand-over
(:class:`~slouchd.sensors.ble.ticks.TickGate`, ``hand_over``); it then yields everything held as
one batch.

Real sensors are not in step: each wearer gets a random phase (seeded by ``SLOUCHD_BENCH_SEED``,
default 11; uniform within one notification interval) added to its release times and sample
times, so wearers notify, and complete ticks, at different instants. Notifications due within
``SLACK_S`` of each other go out in one write, so the daemon wakes about once per notification of
any wearer (N x rate a second, as for N real sensors), not once per notification interval for
all wearers together. The rest of the daemon is the real one, unchanged.

    python bench/_packet_daemon.py --radio SAMPLES   # the radio process (started by the daemon side)
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import os
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


#: Notifications due this close after the radio's wake-up go out with it, seconds.
SLACK_S = 0.0005
RECORD = struct.Struct("<I")  # one notification: the wearer source's id


class Radio:
    """The daemon side of the radio process: ids of notifying sources come in on a socket."""

    def __init__(self) -> None:
        self.sources: dict[int, PacketSource] = {}
        self._ids = itertools.count()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._rest = b""

    def _start(self, size: int) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._proc = subprocess.Popen([sys.executable, __file__, "--radio", str(size), str(theirs.fileno())],
                                      stdin=subprocess.PIPE, pass_fds=[theirs.fileno()])
        theirs.close()
        mine.setblocking(False)
        self._sock = mine
        asyncio.get_running_loop().add_reader(mine.fileno(), self._read)

    def _send(self, line: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(line.encode() + b"\n")
        self._proc.stdin.flush()

    def add(self, source: PacketSource) -> None:
        if self._proc is None:
            self._start(source.size)
        source.id = next(self._ids)
        self.sources[source.id] = source
        self._send(f"add {source.id} {source.start!r} {source.path}")

    def remove(self, source: PacketSource) -> None:
        if self.sources.pop(source.id, None) is not None:
            self._send(f"remove {source.id}")

    def _read(self) -> None:
        """Everything waiting on the socket (as dbus-fast's reader does), each to its source."""
        assert self._sock is not None
        try:
            data = self._rest + self._sock.recv(1 << 16)
        except BlockingIOError:
            return
        whole = len(data) - len(data) % RECORD.size
        self._rest = data[whole:]
        sources = self.sources
        for (sid,) in RECORD.iter_unpack(data[:whole]):
            source = sources.get(sid)
            if source is not None:
                source.notify()


def radio_main(size: int, fd: int) -> int:
    """The radio process: notification times of every source added on stdin, records to ``fd``."""
    import select

    from slouchd.daemon.sources import replay_batches

    out = socket.socket(fileno=fd)
    timelines: dict[str, tuple[np.ndarray, float]] = {}  # path: (due offsets in one loop, span)
    heap: list[tuple[float, int, int]] = []  # (wall time due, source id, notification index)
    active: dict[int, tuple[float, np.ndarray, float]] = {}  # id: (start, offsets, span)
    ctrl = sys.stdin.buffer
    pending = b""
    while True:
        timeout = None if not heap else max(0.0, heap[0][0] - time.time())
        readable, _, _ = select.select([ctrl], [], [], timeout)
        if readable:
            chunk = os.read(ctrl.fileno(), 1 << 16)
            if not chunk:
                return 0  # the daemon is gone
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                op, sid_s, *rest = line.decode().split(" ", 3)
                sid = int(sid_s)
                if op == "remove":
                    active.pop(sid, None)
                    continue
                start, path = float(rest[0]), rest[1]
                if path not in timelines:
                    t = np.concatenate([b.t_s for b in replay_batches(path)])
                    t = t - t[0]
                    dt = float(np.median(np.diff(t[:1000])))
                    ends = np.minimum(np.arange(size, len(t) + size, size), len(t)) - 1
                    timelines[path] = (t[ends], float(t[-1]) + dt)
                offsets, span = timelines[path]
                active[sid] = (start, offsets, span)
                heapq.heappush(heap, (start + float(offsets[0]), sid, 0))
        limit = time.time() + SLACK_S
        batch = bytearray()
        while heap and heap[0][0] <= limit:
            _, sid, k = heapq.heappop(heap)
            entry = active.get(sid)
            if entry is None:
                continue
            batch += RECORD.pack(sid)
            start, offsets, span = entry
            k += 1
            loop, i = divmod(k, len(offsets))
            heapq.heappush(heap, (start + loop * span + float(offsets[i]), sid, k))
        if batch:
            try:
                out.sendall(batch)
            except OSError:
                return 0


from slouchd.model import SampleRows  # noqa: E402  (after the sys.path set-up above)

RADIO = Radio()
_PHASES = random.Random(int(os.environ.get("SLOUCHD_BENCH_SEED", "11")))


BENCH_PROFILE = ROOT / "bench" / "profiles" / "bench-imu.toml"


class Encoded:
    """One recording as the stand-in sensor sends it (shared by every wearer that plays it):
    notification payloads in the ``bench-imu`` profile's layout, and their sample times."""

    _cache: ClassVar[dict[tuple[str, int], Encoded]] = {}

    def __init__(self, path: str, size: int) -> None:
        from slouchd.daemon.sources import replay_batches

        blocks = list(replay_batches(path))  # a bench recording of minutes
        t = np.concatenate([b.t_s for b in blocks])
        self.t = t - t[0]
        acc = np.concatenate([b.acc_g for b in blocks])
        gyros = [b.gyro_dps for b in blocks if b.gyro_dps is not None]
        gyro = np.concatenate(gyros) if len(gyros) == len(blocks) else np.zeros_like(acc)
        rows = np.clip(np.round(np.hstack((acc * 1000.0, gyro * 100.0))), -32768, 32767).astype("<i2")
        self.payloads = [rows[a:a + size].tobytes() for a in range(0, len(rows), size)]
        self.dt = float(np.median(np.diff(self.t[:1000])))
        self.span_s = float(self.t[-1]) + self.dt  # loop without a gap: one more sample interval

    @classmethod
    def of(cls, path: str, size: int) -> Encoded:
        key = (path, size)
        if key not in cls._cache:
            cls._cache[key] = cls(path, size)
        return cls._cache[key]


class PacketSource:
    """A recording (looped) as notifications of ``size`` samples, each decoded and stamped as the
    BLE source does it: the bytes go through the real per-packet path
    (:class:`~slouchd.sensors.ble.streaming.PacketPath`: the profile's decoder, host-arrival
    stamping spread back at the profile's rate), then into a :class:`Link` and its tick gate."""

    def __init__(self, path: str, size: int) -> None:
        import dataclasses
        import logging

        from slouchd.sensors.base import SensorStatus
        from slouchd.sensors.ble.context import SourceContext
        from slouchd.sensors.ble.link import Link
        from slouchd.sensors.ble.streaming import PacketPath
        from slouchd.sensors.ble.ticks import TickGate
        from slouchd.sensors.profiles import load_profile
        from slouchd.sensors.settings import BleSettings
        from slouchd.timing import SYSTEM_CLOCK

        self.rec = Encoded.of(path, size)
        self.size = size
        self.interval_s = size * self.rec.dt
        #: This wearer's offset from the others, seconds (release times).
        self.phase_s = _PHASES.uniform(0.0, self.interval_s)
        self.status = SensorStatus()
        profile = dataclasses.replace(load_profile(BENCH_PROFILE), rate_hz=1.0 / self.rec.dt)
        log = logging.LoggerAdapter(logging.getLogger("slouchd.ble"), {"rate_key": path})
        self.packets = PacketPath(SourceContext(path, BleSettings(), SYSTEM_CLOCK, self.status, log, profile))
        self.link = Link(1)
        self.gate = TickGate()
        self.start = 0.0
        self.k = 0  # the next notification's number
        self.path = path
        self.id = -1  # given by the radio
        self.hand_over: Any = None  # the wearer's sample buffer (the daemon sets it, as for BLE)

    async def __aenter__(self) -> PacketSource:
        self.start = time.time() + self.phase_s
        self.status.connected = True
        self.k = 0
        self.packets.start_link()
        RADIO.add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        RADIO.remove(self)
        self.link.close()
        self.status.connected = False

    async def buzz(self, level: int) -> bool:
        return False

    def notify(self) -> None:
        """The next notification arrives (called by the radio reader): decode, stamp and hold it,
        and wake the consumer at the tick its next hand-over waits for (``on_notify``'s work)."""
        payloads = self.rec.payloads
        data = payloads[self.k % len(payloads)]
        self.k += 1
        got = self.packets.decode_held(time.monotonic(), data)
        if got is not None:
            due_k = -math.inf if self.hand_over is None else self.hand_over.due_k
            t_last = got.t_last_s if isinstance(got, SampleRows) else float(got.t_s[-1])
            self.link.hold(got, self.gate.starts_tick(t_last, due_k))

    async def __aiter__(self) -> AsyncIterator[Any]:
        from slouchd.model import SampleBatch

        link = self.link
        while link.active:
            await link.queue.get()
            held = link.take()
            if not held:
                continue
            yield held[0] if len(held) == 1 else SampleBatch.concat(held)


def main() -> int:
    if sys.argv[1] == "--radio":
        return radio_main(int(sys.argv[2]), int(sys.argv[3]))
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
