"""Alert latency: from the arrival of the sample that completes the dwell to the alert at a subscriber.

Method (an instrumented harness around the real daemon pieces):

* The real :class:`slouchd.daemon.Daemon` (its WearerRuntime, PostureTracker and MqttPublisher)
  runs in this process, publishing to a private Mosquitto on loopback. Only the sensor is the
  benchmark's: ``open_source`` is swapped for a source that behaves like a 50 Hz BLE sensor
  (packets of 5 accelerometer samples every 0.1 s, stamped on the wall clock) and notes, for
  every packet, the ``time.time()`` at which it hands the packet to the daemon (its arrival).
* Each wearer sits upright (auto calibration), then repeats: bend forward to 30 degrees over
  1 s, hold 5 s, straighten over 1 s, sit upright 4 s, with ``dwell_s = 1``: about one alert per
  wearer every 11 s. Wearers are out of phase so alerts do not all coincide.
* ``mosquitto_sub`` (a separate process, Mosquitto's own C client) subscribes to
  ``<base>/+/event`` and prints its receive time (``%U``, Unix ns) per message.
* The tracker decides per 0.1 s tick; a tick is closed by the first sample of the next one, so
  the alert with sample time ``t`` (the tick's end) is completed by the first sample at or after
  ``t``. Its arrival is the hand-over time of the packet holding it. Latency = receive time at
  mosquitto_sub - that arrival. Both clocks are this machine's ``CLOCK_REALTIME``.
* Split: the time the daemon queued the event (``MqttPublisher.publish_event``, wrapped to note
  the time) divides it into the daemon's sample path and the MQTT path (sender, broker, client).
* Context: how late the event loop runs a 50 ms timer (``loop_lag``: how busy or starved it is)
  and the deepest the publisher's event queue got.

Run with few wearers (idle) and many (loaded). Budget: p99 <= 50 ms.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from _common import daemon_config, fmt_kv, parser, start_mosquitto, summary_ms, table, write_results

BUDGET_P99_MS = 50.0
RATE_HZ = 50.0
PER_PACKET = 5
UPRIGHT_START_S = 10.0
CYCLE = ((1.0, "up"), (5.0, "hold"), (1.0, "down"), (4.0, "rest"))  # seconds, phase
CYCLE_S = sum(d for d, _ in CYCLE)
SLOUCH_DEG = 30.0


def flexion_deg(t_rel: np.ndarray, phase_s: float) -> np.ndarray:
    """The scripted forward flexion (degrees) at seconds since the wearer started."""
    out = np.zeros_like(t_rel)
    c = np.mod(t_rel - UPRIGHT_START_S - phase_s, CYCLE_S)
    active = t_rel >= UPRIGHT_START_S + phase_s
    up, hold, down = CYCLE[0][0], CYCLE[1][0], CYCLE[2][0]
    out = np.where(c < up, SLOUCH_DEG * c / up, out)
    out = np.where((c >= up) & (c < up + hold), SLOUCH_DEG, out)
    falling = (c >= up + hold) & (c < up + hold + down)
    out = np.where(falling, SLOUCH_DEG * (1 - (c - up - hold) / down), out)
    return np.where(active, out, 0.0)


class BenchSensor:
    """A 50 Hz accelerometer-only sensor on mount ``+y,-z``, paced by the wall clock.

    Attributes:
        arrivals: per packet ``(t_first, t_last, handed_at)``: sample times and the
            ``time.time()`` at which the packet was handed to the daemon.
    """

    def __init__(self, phase_s: float, seed: int) -> None:
        from slouchd.sensors.base import SensorStatus

        self.phase_s = phase_s
        self.rng = np.random.default_rng(seed)
        self.status = SensorStatus()
        self.arrivals: list[tuple[float, float, float]] = []

    async def __aenter__(self) -> BenchSensor:
        self.status.connected = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.status.connected = False

    async def buzz(self, level: int) -> bool:
        return False

    async def __aiter__(self) -> AsyncIterator[Any]:
        from slouchd.model import SampleBatch

        start = math.ceil(time.time() * 10) / 10  # on the 0.1 s grid: packets fill whole ticks
        k = 0
        dt = 1.0 / RATE_HZ
        while True:
            t = start + (k + np.arange(PER_PACKET)) * dt
            k += PER_PACKET
            rel = t - start
            f = np.radians(flexion_deg(rel, self.phase_s)
                           + 0.6 * np.sin(2 * np.pi * 0.25 * rel))  # breathing: never lifeless
            acc = np.column_stack((np.zeros_like(f), np.cos(f), -np.sin(f)))
            acc += self.rng.normal(0.0, 0.003, acc.shape)
            delay = t[-1] - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.status.packets += 1
            self.status.samples += PER_PACKET
            self.arrivals.append((float(t[0]), float(t[-1]), time.time()))
            yield SampleBatch(t, acc, None)


LOOP_PROBE_S = 0.05


async def _probe_loop(lags: list[float], depths: list[int], daemon: Any) -> None:
    """How late the event loop runs a 50 ms timer (its busyness), and the MQTT event queue."""
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(LOOP_PROBE_S)
        lags.append(time.monotonic() - t0 - LOOP_PROBE_S)
        pub = daemon.publisher
        depths.append(0 if pub is None else pub.queue_depth)


async def run_daemon(cfg_path: Path, n: int, duration_s: float,
                     probe: tuple[list[float], list[int]] | None = None,
                     ) -> tuple[dict[str, BenchSensor], list[tuple]]:
    """The real Daemon with bench sensors for ``duration_s``; returns sensors and queued events."""
    import slouchd.daemon as daemon_mod
    from slouchd.config import load_config
    from slouchd.publish.mqtt import MqttPublisher
    from slouchd.sdnotify import Notifier

    sensors: dict[str, BenchSensor] = {}
    queued: list[tuple[str, float, float, str]] = []  # wearer, event t, queued at, kind

    def open_source(plan: Any, wearer: Any, config: Any, *,
                    start_epoch_s: float | None = None) -> BenchSensor:
        i = len(sensors)
        sensors[wearer.name] = s = BenchSensor(phase_s=(i * CYCLE_S / max(n, 1)) % CYCLE_S, seed=i)
        return s

    class TimedPublisher(MqttPublisher):
        def publish_event(self, wearer: str, event: dict[str, Any]) -> None:
            queued.append((wearer, float(event["t"]), time.time(), str(event.get("event"))))
            super().publish_event(wearer, event)

    daemon_mod.open_source = open_source  # type: ignore[assignment]
    daemon_mod.MqttPublisher = TimedPublisher  # type: ignore[misc]
    config = load_config(str(cfg_path))
    d = daemon_mod.Daemon(config, config_path=str(cfg_path), notifier=Notifier(env={}))
    watch = asyncio.get_running_loop().create_task(_probe_loop(*probe, d)) if probe else None
    await d.run(duration_s=duration_s)
    if watch is not None:
        watch.cancel()
    return sensors, queued


def measure(work: Path, port: int, n: int, duration_s: float) -> tuple[dict[str, Any], list[float]]:
    from slouchd.daemon.wakeups import new_event_loop

    wearers = "\n".join(f'[[wearers]]\nname = "a{i:03d}"\nsensor = "simulated"\n' for i in range(n))
    cfg = daemon_config(work / f"lat{n}.toml", port=port, state_dir=work / f"state{n}", wearers=wearers,
                        extra="[detection]\ndwell_s = 1\nrepeat_s = 10\nthreshold_deg = 15\n")
    out = (work / f"sub{n}.txt").open("w")
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                            "-t", "bench/+/event", "-F", "%U %t %p"], stdout=out)
    time.sleep(0.5)
    try:
        lags: list[float] = []
        depths: list[int] = []
        with asyncio.Runner(loop_factory=new_event_loop) as runner:  # the daemon's own loop
            sensors, queued = runner.run(run_daemon(cfg, n, duration_s, (lags, depths)))
        time.sleep(0.5)
    finally:
        sub.terminate()
        sub.wait(5)
        out.close()
    q_at = {(w, round(t, 3)): at for w, t, at, kind in queued if kind == "slouch_alert"}
    total, daemon_part, mqtt_part = [], [], []
    for line in (work / f"sub{n}.txt").read_text().splitlines():
        recv, topic, payload = line.split(" ", 2)
        doc = json.loads(payload)
        if doc.get("event") != "slouch_alert":
            continue
        wearer = topic.split("/")[1]
        t_ev = float(doc["t"])
        arr = sensors[wearer].arrivals
        lasts = [a[1] for a in arr]
        i = bisect.bisect_left(lasts, t_ev - 1e-6)  # first packet reaching the tick's end
        if i >= len(arr):
            continue
        arrived = arr[i][2]
        total.append(float(recv) - arrived)
        qa = q_at.get((wearer, round(t_ev, 3)))
        if qa is not None:
            daemon_part.append(qa - arrived)
            mqtt_part.append(float(recv) - qa)
    s = summary_ms(total)
    row = {"wearers": n, "seconds": duration_s, "alerts": len(total),
           **{k: v for k, v in s.items() if k != "n"},
           "daemon_p99_ms": summary_ms(daemon_part)["p99_ms"], "mqtt_p99_ms": summary_ms(mqtt_part)["p99_ms"],
           "loop_lag_p99_ms": summary_ms(lags)["p99_ms"], "mqtt_queue_max": max(depths, default=0)}
    return row, total


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=None, help="WEARERSxSECONDS,... (default 5x60,50x90)")
    args = p.parse_args()
    spec = args.runs or ("3x22" if args.quick else "5x60,50x90")
    runs = [(int(a), float(b)) for a, b in (x.split("x") for x in spec.split(","))]
    if shutil.which("mosquitto_sub") is None:
        raise SystemExit("mosquitto_sub not found: `sudo apt-get install -y mosquitto-clients`")
    rows = []
    with tempfile.TemporaryDirectory(prefix="slouchd-bench-latency-") as tmp:
        work = Path(tmp)
        broker = start_mosquitto(work / "broker")
        try:
            for n, secs in runs:
                row, _ = measure(work, broker.port, n, secs)
                rows.append(row)
        finally:
            broker.stop()
    print("alert latency: completing sample's arrival -> alert at mosquitto_sub (loopback)")
    print(table(rows, ["wearers", "seconds", "alerts", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms",
                       "daemon_p99_ms", "mqtt_p99_ms", "loop_lag_p99_ms", "mqtt_queue_max"]))
    worst = max(rows, key=lambda r: r["p99_ms"] if r["alerts"] else -1)
    key = {"p50_ms": worst["p50_ms"], "p99_ms": worst["p99_ms"], "max_ms": worst["max_ms"],
           "alerts": sum(r["alerts"] for r in rows), "at_wearers": worst["wearers"]}
    if not key["alerts"]:
        raise SystemExit("no alerts were measured")
    path = write_results("alert_latency", {"rows": rows, "budget": {"p99_ms": BUDGET_P99_MS}, "key": key},
                         args.out, args.quick)
    print(f"results: {path}")
    print("alert_latency: " + fmt_kv({**key, "budget": f"p99<={BUDGET_P99_MS:g}ms",
                                      "met": key["p99_ms"] <= BUDGET_P99_MS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
