"""Readable logs that do not flood, and the sd_notify datagrams."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

from slouchd.logs import JsonFormatter, RateLimitFilter
from slouchd.sdnotify import Notifier


def record(msg: str, *args: object, name: str = "slouchd.wearer.ana") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_a_flapping_sensor_does_not_flood_the_log() -> None:
    now = [0.0]
    f = RateLimitFilter(burst=5, window_s=60.0, clock=lambda: now[0])
    passed = sum(f.filter(record("disconnected: %s", i)) for i in range(1000))
    assert passed == 5
    now[0] = 61.0
    r = record("disconnected: %s", "again")
    assert f.filter(r)
    assert "995 similar messages suppressed" in r.getMessage()


def test_different_messages_are_limited_separately() -> None:
    f = RateLimitFilter(burst=1, window_s=60.0, clock=lambda: 0.0)
    assert f.filter(record("a"))
    assert f.filter(record("b"))
    assert not f.filter(record("a"))


def test_each_rate_key_is_limited_on_its_own_and_reload_refusals_always_pass() -> None:
    f = RateLimitFilter(burst=1, window_s=60.0, clock=lambda: 0.0)
    by_kind = []
    for kind in ("cmd:not_json", "cmd:not_json", "cmd:out_of_range"):
        r = record("refused MQTT command on %s: %s", "t", "why")
        r.rate_key = kind
        by_kind.append(f.filter(r))
    assert by_kind == [True, False, True]
    refusals = [logging.LogRecord("slouchd", logging.ERROR, __file__, 1, "reload refused: %s", ("x",), None)
                for _ in range(20)]
    for r in refusals:
        r.unlimited = True
    assert all(f.filter(r) for r in refusals)
    crashes = [logging.LogRecord("slouchd", logging.ERROR, __file__, 1, "apply failed: %s", ("x",), None)
               for _ in range(20)]
    assert sum(f.filter(r) for r in crashes) == 1  # an error triggered from outside cannot flood


def test_json_log_lines_carry_level_logger_message_and_extras() -> None:
    r = record("slouch alert level %d", 2)
    r.wearer = "ana"
    doc = json.loads(JsonFormatter().format(r))
    assert doc["level"] == "warning" and doc["logger"] == "slouchd.wearer.ana"
    assert doc["msg"] == "slouch alert level 2" and doc["wearer"] == "ana"


def test_notifier_sends_datagrams_to_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
    assert n.watchdog_s == 30.0
    assert n.ready("mqtt=connected wearers=1/1 streaming")
    assert sock.recv(1024).decode().splitlines() == ["READY=1", "STATUS=mqtt=connected wearers=1/1 streaming"]
    assert n.reloading()
    lines = sock.recv(1024).decode().splitlines()
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    n.close()
    sock.close()


def test_notifier_never_blocks_on_a_socket_nobody_reads(tmp_path: Path) -> None:
    """systemd stuck: the datagram queue fills (about 10); sends then drop and count, never block."""
    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))  # never read
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
    t0 = time.monotonic()
    results = [n.watchdog() for _ in range(2000)]
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0  # a blocking sendto would hang here forever
    assert results[0] is True and results[-1] is False
    assert n.sent == results.count(True) and n.sent >= 1
    assert n.dropped == results.count(False) and n.dropped >= 1000
    # Once systemd reads again, messages flow again.
    sock.setblocking(False)
    while True:
        try:
            sock.recv(64)
        except BlockingIOError:
            break
    assert n.status("back") is True
    assert sock.recv(64) == b"STATUS=back"
    n.close()
    sock.close()


def test_notifier_is_silent_outside_systemd() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_s is None
    assert n.ready() is False


def test_two_flapping_sensors_each_keep_their_own_log_quota() -> None:
    """BLE sources log through one logger; each sensor is its own subject for the limiter."""
    from slouchd.sensors.ble import make_ble_source
    from slouchd.sensors.settings import BleSettings

    f = RateLimitFilter(burst=2, window_s=60.0, clock=lambda: 0.0)
    handler = logging.Handler()
    handler.addFilter(f)
    passed: list[str] = []
    handler.emit = lambda r: passed.append(r.getMessage())  # type: ignore[method-assign, assignment]
    logger = logging.getLogger("slouchd.sensors.ble")
    logger.addHandler(handler)
    try:
        for target in ("AA:BB:CC:DD:EE:01",) * 5 + ("AA:BB:CC:DD:EE:02",) * 5:
            src = make_ble_source(target, "microbit", BleSettings())
            src._log.warning("%s: connect failed (%s)", target, "timeout")
    finally:
        logger.removeHandler(handler)
    assert [m[:17] for m in passed] == ["AA:BB:CC:DD:EE:01"] * 2 + ["AA:BB:CC:DD:EE:02"] * 2
