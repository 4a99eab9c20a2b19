"""Per-packet cost of the BLE path: notification bytes -> decoded, stamped SampleBatch.

What the consumer task of a BLE source does for every notification (decode with the profile,
count drops, stamp the samples, drop sensor-clocked repeats, build the batch), measured without
a radio or an event loop, for three shapes of traffic:

* ``generic-1``: the generic layout, one sample per notification (host-stamped);
* ``generic-4``: the generic layout, four samples per notification (host-stamped, spread back);
* ``polar-10``: Polar H10 PMD frames of ten raw samples (stamped from the sensor clock).

Each shape is measured twice: ``decode`` calls the per-packet function directly; ``stream``
runs the consumer loop of a link on the real clock (queue get bounded by the silence watchdog,
i.e. :func:`slouchd.timing.within` per notification, then the same per-packet function), with
every notification already queued.

Figures are process CPU time per packet (best of ``--repeat`` runs of ``--packets`` packets),
in microseconds. Works on the package ``slouchd.sensors.ble`` (per-packet path
``BleSensorSource._packets.decode``) and on the single module it replaced (``_decode``), so a
figure from before the split can be reproduced by checking out that commit.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import fmt_kv, parser, table, write_results

PACKETS = 100_000


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


def make_source(profile_name: str) -> Any:
    from slouchd.sensors.ble import BleSensorSource
    from slouchd.sensors.profiles import load_profiles
    from slouchd.sensors.settings import BleSettings

    profiles = load_profiles()
    return BleSensorSource("C4:AA:10:2B:33:01", profiles[profile_name], BleSettings(), profiles=profiles,
                           scanner_cls=object, client_cls=object)


def decode_fn(src: Any) -> Callable[[float, bytes], Any]:
    """The per-packet function of a fresh source (package layout, or the module before the split)."""
    packets = getattr(src, "_packets", None)
    if packets is not None:
        packets.start_link()
        return packets.decode  # type: ignore[no-any-return]
    return src._decode  # type: ignore[no-any-return]  # before the split


def stream_fn(src: Any) -> tuple[Any, Callable[[Any], Any], object]:
    """A new link, the source's consumer loop for it, and the marker that ends it."""
    streamer = getattr(src, "_streamer", None)
    if streamer is not None:
        from slouchd.sensors.ble.link import LOST, Link

        return Link(1), streamer.stream, LOST
    module = sys.modules[type(src).__module__]  # before the split
    return module._Link(1), src._stream, module._LOST


def arrivals(data: list[bytes], rate_hz: float) -> list[tuple[float, bytes]]:
    return [(1000.0 + (k + 1) / rate_hz, pkt) for k, pkt in enumerate(data)]


def run_decode(profile_name: str, items: list[tuple[float, bytes]]) -> tuple[float, int]:
    decode = decode_fn(make_source(profile_name))
    delivered = 0
    started = time.process_time()
    for arrival, pkt in items:
        batch = decode(arrival, pkt)
        if batch is not None:
            delivered += len(batch)
    return time.process_time() - started, delivered


def run_stream(profile_name: str, items: list[tuple[float, bytes]]) -> tuple[float, int]:
    src = make_source(profile_name)
    link, stream, lost = stream_fn(src)
    link.queue = asyncio.Queue()  # unbounded: every notification is queued before the loop starts
    for item in items:
        link.queue.put_nowait(item)
    link.queue.put_nowait(lost)

    async def consume() -> tuple[float, int]:
        delivered = 0
        started = time.process_time()
        async for batch in stream(link):
            delivered += len(batch)
        return time.process_time() - started, delivered

    return asyncio.run(consume())


def run_case(path: str, profile_name: str, data: list[bytes], rate_hz: float, repeat: int) -> dict[str, Any]:
    items = arrivals(data, rate_hz)
    run = run_decode if path == "decode" else run_stream
    results = [run(profile_name, items) for _ in range(repeat)]
    best = min(cpu for cpu, _ in results)
    return {"packets": len(data), "samples": results[0][1], "cpu_s": best,
            "us_per_packet": best / len(data) * 1e6}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--packets", type=int, default=PACKETS, help="notifications per run")
    p.add_argument("--repeat", type=int, default=3, help="runs per case (the best counts)")
    args = p.parse_args()
    n = 2_000 if args.quick else args.packets
    repeat = 1 if args.quick else args.repeat
    cases = {
        "generic-1": ("generic", packets_generic(n, 1), 25.0),
        "generic-4": ("generic", packets_generic(n, 4), 25.0 / 4),
        "polar-10": ("polar-h10", packets_polar(n), 5.0),
    }
    rows = []
    for path in ("decode", "stream"):
        for name, (profile_name, data, packet_rate) in cases.items():
            row = run_case(path, profile_name, data, packet_rate, repeat)
            rows.append({"path": path, "case": name, **row})
    print(table(rows, ["path", "case", "packets", "samples", "cpu_s", "us_per_packet"]))
    # Key figures: the consumer loop per notification, and the % of one core a 50 Hz sensor
    # sending one sample per notification costs in it.
    stream_1 = next(r["us_per_packet"] for r in rows if r["path"] == "stream" and r["case"] == "generic-1")
    key = {"stream_us_per_packet(generic-1)": stream_1,
           "pct_core_at_50_notifications_per_s": stream_1 * 50 / 1e4}
    out = write_results("ble_packets", {"rows": rows, "packets": n, "repeat": repeat, "key": key},
                        args.out, args.quick)
    print(fmt_kv({"results": out}))
    print("ble_packets: " + fmt_kv(key))


if __name__ == "__main__":
    main()
