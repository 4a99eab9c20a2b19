"""systemd's notify protocol: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1, RELOADING=1.

It is one datagram to the AF_UNIX socket named in ``$NOTIFY_SOCKET``, so no dependency is needed.
Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op.

The send never blocks: the socket is non-blocking, and a datagram the receiver has no room for
(systemd stuck, or a socket nobody reads: the queue holds about 10) is dropped and counted in
:attr:`Notifier.dropped`. A blocking ``sendto`` there would freeze the whole event loop, MQTT and
SIGTERM included; a lost ``WATCHDOG=1`` at worst gets us restarted, which is what the watchdog is for.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages; silent when not started by systemd."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        self.address = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s: float | None = None
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._sock: socket.socket | None = None
        self._warned = False
        self._warned_full = False
        self.sent = 0
        self.dropped = 0
        """Messages dropped because the receiver's queue was full (or the socket is gone)."""

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram. Returns False if it could not be sent."""
        if not self.address:
            return False
        addr = self.address
        if addr.startswith("@"):  # abstract namespace socket
            addr = "\0" + addr[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            self._sock.sendto("\n".join(fields).encode(), addr)
            self.sent += 1
            return True
        except BlockingIOError:
            self.dropped += 1
            if not self._warned_full:
                log.warning("systemd notify socket is not being read (queue full): dropping "
                            "notifications, counted as notify_dropped")
                self._warned_full = True
            return False
        except OSError as err:
            self.dropped += 1
            if not self._warned:
                log.warning("cannot reach systemd notify socket: %s", err)
                self._warned = True
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets Type=notify-reload units (systemd >= 253) match the reload.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
