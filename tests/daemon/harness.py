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
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"rec-{time.time_ns()}")
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        for t in self.topics:
            client.subscribe(t, qos=1)

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
