"""Start the real `slouchd run` process, listen on its notify socket, and watch its MQTT output."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Recorder:
    """A separate MQTT subscriber (paho in its own thread) that keeps every message."""

    host: str
    port: int
    topics: tuple[str, ...] = ("#",)
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self.subscribed = threading.Event()
        """Set once the broker acknowledged every subscription (nothing published after is missed)."""
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"rec-{time.time_ns()}")
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        with self._lock:
            for t in self.topics:
                mid = client.subscribe(t, qos=1)[1]
                if mid is not None:
                    self._pending.add(mid)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, *args: Any) -> None:
        with self._lock:
            self._pending.discard(mid)
            if not self._pending:
                self.subscribed.set()

    def wait_subscribed(self, timeout_s: float = 10.0) -> Recorder:
        if not self.subscribed.wait(timeout_s):
            raise AssertionError(f"MQTT subscriptions not acknowledged within {timeout_s} s")
        return self

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))

    def on(self, topic: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, pred: Callable[[Message], bool], timeout_s: float = 30.0,
                 since: float = 0.0) -> Message:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                for m in self.messages:
                    if m.at >= since and pred(m):
                        return m
            time.sleep(0.05)
        raise AssertionError(f"no matching MQTT message within {timeout_s} s; "
                             f"topics seen: {sorted({m.topic for m in self.messages})[:40]}")

    def count(self, pred: Callable[[Message], bool], n: int, timeout_s: float = 30.0,
              since: float = 0.0) -> list[Message]:
        """Wait until ``n`` messages arrived since ``since`` that match ``pred``; them."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                got = [m for m in self.messages if m.at >= since and pred(m)]
            if len(got) >= n or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        assert len(got) >= n, f"{len(got)} of {n} matching MQTT messages within {timeout_s} s"
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.received.append((time.monotonic(), line))

    def lines(self, prefix: str) -> list[str]:
        return [line for _, line in list(self.received) if line.startswith(prefix)]

    def wait_for(self, line_prefix: str, timeout_s: float = 20.0, since: float = 0.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, line in list(self.received):
                if at >= since and line.startswith(line_prefix):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no {line_prefix!r} on the notify socket within {timeout_s} s; "
                             f"got {[line for _, line in self.received][-10:]}")

    def count(self, line_prefix: str, n: int, timeout_s: float = 20.0) -> list[float]:
        """Wait until ``n`` lines starting with ``line_prefix`` arrived; their arrival times."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = [at for at, line in list(self.received) if line.startswith(line_prefix)]
            if len(got) >= n or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        assert len(got) >= n, f"{len(got)} of {n} {line_prefix!r} lines within {timeout_s} s"
        return got

    def close(self) -> None:
        self._stop = True
        self.sock.close()


class DaemonProcess:
    """`slouchd run --config FILE` as a real child process."""

    def __init__(self, config: Path, notify: NotifySocket | None = None,
                 watchdog_usec: int | None = None, log_path: Path | None = None) -> None:
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = str(notify.path)
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.log_path = log_path or config.with_suffix(".log")
        self._log = self.log_path.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slouchd.cli", "run", "--config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def write_config(path: Path, *, port: int, state_dir: Path, wearers: str,
                 detection: str = "", base_topic: str = "slouchd", extra: str = "") -> Path:
    path.write_text(
        f'[daemon]\nstate_dir = "{state_dir}"\nlog_level = "info"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nbase_topic = "{base_topic}"\n'
        f"{extra}\n"
        f"[detection]\n{detection}\n"
        f"{wearers}\n")
    return path


async def until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Wait (in the event loop) until ``condition()`` holds; AssertionError after ``timeout_s``."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.01)


async def started(daemon: Any, run: Any, timeout_s: float = 10.0) -> None:
    """Wait until ``daemon`` (running as the task ``run``) has started, or surface why it ended."""
    import asyncio

    ready = asyncio.ensure_future(daemon.started())
    try:
        done, _ = await asyncio.wait({ready, run}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if run in done:
        run.result()
        raise AssertionError("the daemon ended before it started")
    if ready not in done:
        raise AssertionError(f"the daemon did not start within {timeout_s} s")
