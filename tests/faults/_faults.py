"""Shared parts of the fault-injection suite: scale (short/long form), figures, process probes.

The short form runs in the normal test suite; ``SLOUCHD_FAULTS_LONG=1`` runs the long form (the
campaign of issue 12: 10 broker kills, 10 freezes, 50 daemon kill -9s, 10,000 hostile commands).
Every scenario prints one line of figures; with ``SLOUCHD_FAULTS_REPORT=<file>`` the lines are
also appended there as JSON (docs/reliability.md keeps the latest table).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

LONG = os.environ.get("SLOUCHD_FAULTS_LONG", "") not in ("", "0")


def scale(short: Any, long: Any) -> Any:
    """``short`` in the normal suite, ``long`` with SLOUCHD_FAULTS_LONG=1."""
    return long if LONG else short


def figures(scenario: str, verdict: str, **figs: Any) -> None:
    """Print (and record) one scenario's figures and verdict ("holds" or "fails: ...")."""
    text = "; ".join(f"{k}={v}" for k, v in figs.items())
    print(f"\nFAULTS | {scenario} | {text} | {verdict}", flush=True)
    out = os.environ.get("SLOUCHD_FAULTS_REPORT")
    if out:
        with Path(out).open("a") as fh:
            fh.write(json.dumps({"scenario": scenario, "long": LONG, "figures": figs,
                                 "verdict": verdict, "at": time.time()}) + "\n")


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_until(pred: Any, timeout_s: float, step_s: float = 0.02) -> float:
    """Poll ``pred`` until true; returns the seconds it took. Raises AssertionError on timeout."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(step_s)
    return time.monotonic() - t0


class PhoneRecorder:
    """A phone-like subscriber: persistent MQTT session at QoS 1, reconnecting every 0.1-0.5 s,
    so the broker keeps what arrives while it is away (paho in its own thread)."""

    def __init__(self, host: str, port: int, topics: tuple[str, ...]) -> None:
        import threading

        import paho.mqtt.client as paho

        self.messages: list[tuple[float, str, bytes]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"phone-{time.time_ns()}",
                                  clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self._topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: Any, *args: Any) -> None:
        for t in self._topics:
            client.subscribe(t, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((time.monotonic(), msg.topic, bytes(msg.payload)))

    def on(self, topic: str) -> list[Any]:
        with self._lock:
            return [json.loads(p) for _, t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def persistent_broker(workdir: Path, autosave_s: int | None = None) -> Any:
    """Mosquitto keeping sessions and queued QoS 1 messages across its restarts; with
    ``autosave_s`` it also writes them to disk that often (seconds) and on every change, so that a
    kill -9 loses as little as Mosquitto allows."""
    from tests._broker import MosquittoBroker

    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    autosave = "" if autosave_s is None else f"autosave_interval {autosave_s}\n"
    return MosquittoBroker(workdir, extra_conf=f"persistence true\npersistence_location {store}/\n{autosave}")
