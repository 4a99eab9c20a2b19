"""Per-packet cost of the BLE path: notification bytes -> decoded, stamped SampleBatch.

What the consumer task of a BLE source does for every notification (decode with the profile,
count drops, stamp the samples, drop sensor-clocked repeats, build the batch), measured without
a radio or an event loop, for three shapes of traffic:

* ``generic-1``: the generic layout, one sample per notification (host-stamped), 50 a second;
* ``generic-4``: the generic layout, four samples per notification (host-stamped, spread back),
  12.5 a second;
* ``polar-10``: Polar H10 PMD frames of ten raw samples (stamped from the sensor clock), 5 a second.

Each shape is measured on two paths:

* ``decode`` calls the per-packet function directly (no event loop): ``PacketPath.decode_held``,
  what the notification callback calls (rows of floats for host-stamped struct layouts; the
  numbers are turned into arrays only when the consumer takes them, which ``notify`` includes);
* ``notify`` runs a link of the real source on a running event loop: the link's real notification
  callback (``Streamer.on_notify``) is called once per notification, and a consumer task iterates
  the real ``Streamer.stream`` of that link, as the daemon does. Between two notifications the
  feeder yields to the loop (``asyncio.sleep(0)``), so the consumer runs whenever it was woken,
  as it would between real notifications. ``notify-paced`` (generic-1 only) calls the callback
  from a timer callback every ``--pace-ms`` of real time instead (as bleak's D-Bus reader does
  from the loop), the loop idle in between, so every notification arrives at an idle loop (the
  expensive kind of wake-up on the measured VM); the figure includes that loop wake-up, which
  bleak's reader costs in any design.
  Arrival times come from a bench clock set to the notifications' nominal times, so the
  source's time-dependent decisions (tick starts, stamps) see the sensor's real rate.
  ``yields_per_packet`` is how often the consumer got a batch per notification.

Figures are process CPU time per packet (best of ``--repeat`` runs of ``--packets`` packets;
``notify-paced`` runs ``--paced-packets``), in microseconds. The ``decode`` path also works on
the single module from before the package split (``_decode``); the ``notify`` path needs the
package layout (``BleSensorSource._streamer``).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import Any

from _common import fmt_kv, parser, table, write_results

PACKETS = 100_000
PACED_PACKETS = 3_000
PACE_MS = 1.0


def packets_generic(n_packets: int, per_packet: int) -> list[bytes]:
    out = []
    seq = 0
    for _ in range(n_packets):
        body = b"".join(struct.pack("<hhh", (seq + i) % 32768, 0, 1000) for i in range(per_packet))
        seq += per_packet
        out.append(body)
    return out


def packets_polar(n_packets: int) -> list[bytes]:
    out = []
    t_ns = 5_000_000_000
    for k in range(n_packets):
        t_ns += 200_000_000  # ten samples at 50 Hz
        body = b"".join(struct.pack("<hhh", (k * 10 + i) % 32768, 0, 1000) for i in range(10))
        out.append(b"\x02" + t_ns.to_bytes(8, "little") + b"\x01" + body)
    return out


def make_source(profile_name: str, clock: Any = None) -> Any:
    from slouchd.sensors.ble import BleSensorSource
    from slouchd.sensors.profiles import load_profiles
    from slouchd.sensors.settings import BleSettings

    profiles = load_profiles()
    return BleSensorSource("C4:AA:10:2B:33:01", profiles[profile_name], BleSettings(), profiles=profiles,
                           scanner_cls=object, client_cls=object, clock=clock)


def decode_fn(src: Any) -> Callable[[float, bytes], Any]:
    """The per-packet function of a fresh source (package layout, or the module before the split)."""
    packets = getattr(src, "_packets", None)
    if packets is not None:
        packets.start_link()
        # What the notification callback calls: rows of floats where the profile allows (session 7).
        return getattr(packets, "decode_held", packets.decode)  # type: ignore[no-any-return]
    return src._decode  # type: ignore[no-any-return]  # before the split


class BenchClock:
    """Monotonic and wall time set by the feeder (the notifications' arrival), real sleeps.

    The silence watchdog sleeps on it in real seconds: longer than a run, so it never fires.
    """

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + 1_750_000_000.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def arrivals(data: list[bytes], rate_hz: float) -> list[tuple[float, bytes]]:
    return [(1000.0 + (k + 1) / rate_hz, pkt) for k, pkt in enumerate(data)]


def run_decode(profile_name: str, items: list[tuple[float, bytes]]) -> tuple[float, int, int]:
    decode = decode_fn(make_source(profile_name))
    delivered = 0
    started = time.process_time()
    for arrival, pkt in items:
        batch = decode(arrival, pkt)
        if batch is not None:
            delivered += len(batch)
    return time.process_time() - started, delivered, 0


async def paced(items: list[tuple[float, bytes]], pace_s: float, clock: BenchClock,
                callback: Callable[[Any, bytearray], None]) -> None:
    """Call ``callback`` from a timer callback every ``pace_s`` real seconds (as bleak's D-Bus
    reader calls it from the loop), the loop idle in between."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    it = iter(items)

    def fire() -> None:
        item = next(it, None)
        if item is None:
            done.set_result(None)
            return
        clock.now = item[0]
        callback(None, bytearray(item[1]))
        loop.call_later(pace_s, fire)

    loop.call_later(pace_s, fire)
    await done


def run_notify(profile_name: str, items: list[tuple[float, bytes]], pace_s: float) -> tuple[float, int, int]:
    """Callback per notification + the consumer task; CPU time, samples delivered, consumer yields."""
    from slouchd.sensors.ble.link import Link

    clock = BenchClock()
    src = make_source(profile_name, clock)
    streamer = src._streamer
    link = Link(1)
    callback = streamer.on_notify(link)
    got = [0, 0]  # samples, yields

    async def consume() -> None:
        async for batch in streamer.stream(link):
            got[0] += len(batch)
            got[1] += 1

    async def feed() -> float:
        consumer = asyncio.ensure_future(consume())
        await asyncio.sleep(0)  # the consumer waits for its first wake-up
        started = time.process_time()
        if pace_s > 0:
            await paced(items, pace_s, clock, callback)
        else:
            for arrival, pkt in items:
                clock.now = arrival
                callback(None, bytearray(pkt))
                await asyncio.sleep(0)
        link.lose()
        await consumer
        return time.process_time() - started

    cpu = asyncio.run(feed())
    return cpu, got[0], got[1]


def run_case(path: str, profile_name: str, data: list[bytes], rate_hz: float, repeat: int,
             pace_s: float = 0.0) -> dict[str, Any]:
    items = arrivals(data, rate_hz)
    if path == "decode":
        results = [run_decode(profile_name, items) for _ in range(repeat)]
    else:
        results = [run_notify(profile_name, items, pace_s) for _ in range(repeat)]
    best = min(cpu for cpu, _, _ in results)
    return {"packets": len(data), "samples": results[0][1], "cpu_s": best,
            "us_per_packet": best / len(data) * 1e6, "yields_per_packet": results[0][2] / len(data)}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--packets", type=int, default=PACKETS, help="notifications per run")
    p.add_argument("--paced-packets", type=int, default=PACED_PACKETS,
                   help="notifications per notify-paced run")
    p.add_argument("--pace-ms", type=float, default=PACE_MS,
                   help="real time between notifications of notify-paced, ms")
    p.add_argument("--repeat", type=int, default=3, help="runs per case (the best counts)")
    args = p.parse_args()
    n = 2_000 if args.quick else args.packets
    n_paced = 300 if args.quick else args.paced_packets
    repeat = 1 if args.quick else args.repeat
    cases = {
        "generic-1": ("generic", packets_generic(n, 1), 50.0),
        "generic-4": ("generic", packets_generic(n, 4), 50.0 / 4),
        "polar-10": ("polar-h10", packets_polar(n), 5.0),
    }
    rows = []
    for path in ("decode", "notify"):
        for name, (profile_name, data, packet_rate) in cases.items():
            row = run_case(path, profile_name, data, packet_rate, repeat)
            rows.append({"path": path, "case": name, **row})
    # One sample per notification at 50 Hz, every notification after the loop went idle.
    paced = run_case("notify", "generic", packets_generic(n_paced, 1), 50.0, repeat, args.pace_ms / 1e3)
    rows.append({"path": "notify-paced", "case": "generic-1@50Hz", **paced})
    print(table(rows, ["path", "case", "packets", "samples", "cpu_s", "us_per_packet", "yields_per_packet"]))
    # Key figures: the whole source per 1-sample notification (callback, consumer, loop), and the
    # % of one core a 50 Hz sensor sending one sample per notification costs in it.
    notify_1 = next(r["us_per_packet"] for r in rows if r["path"] == "notify" and r["case"] == "generic-1")
    key = {"notify_us_per_packet(generic-1)": notify_1,
           "paced_us_per_packet(generic-1)": paced["us_per_packet"],
           "pct_core_at_50_notifications_per_s": paced["us_per_packet"] * 50 / 1e4}
    out = write_results("ble_packets", {"rows": rows, "packets": n, "paced_packets": n_paced,
                                        "pace_ms": args.pace_ms, "repeat": repeat, "key": key},
                        args.out, args.quick)
    print(fmt_kv({"results": out}))
    print("ble_packets: " + fmt_kv(key))


if __name__ == "__main__":
    main()
