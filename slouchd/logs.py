"""Logging people can read: one line per event, JSON for machines, repeats rate-limited.

Under systemd (``$JOURNAL_STREAM`` set) the text format leaves out the timestamp, which the
journal adds itself. A flapping sensor must not flood the journal: the same message template
from the same logger is let through a few times per window, then counted and summarised.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any


class RateLimitFilter(logging.Filter):
    """Pass at most ``burst`` records per (logger, template) every ``window_s`` seconds.

    Critical records and those marked ``unlimited`` always pass. Errors are limited too: some
    (a command that fails to apply) can be triggered from outside and must not flood the journal.

    A record's ``rate_key`` attribute (``extra={"rate_key": ...}``) splits one template into
    several, e.g. one per kind of refused command.

    Args:
        burst: records let through per window for one template.
        window_s: window length, seconds.
        clock: monotonic clock, seconds (injectable for tests).
    """

    def __init__(self, burst: int = 5, window_s: float = 60.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[str, str, str], list[float]] = {}  # key -> [window start, count, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL or getattr(record, "unlimited", False):
            # Critical lines, and those marked ``extra={"unlimited": True}`` (a refused reload: the
            # operator asked for it and needs the reason every time), always pass.
            return True
        key = (record.name, str(record.msg), str(getattr(record, "rate_key", "")))
        now = self.clock()
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.window_s:
            suppressed = int(entry[2]) if entry else 0
            self._seen[key] = [now, 1, 0]
            if suppressed:
                record.msg = f"{record.msg} [{suppressed} similar messages suppressed]"
            if len(self._seen) > 4096:  # bound memory if messages are built without templates
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window_s}
            return True
        entry[1] += 1
        if entry[1] <= self.burst:
            return True
        entry[2] += 1
        return False


class OncePerKind:
    """Log the first occurrence of each kind of problem as a warning, then at most once per
    ``repeat_s`` (the lines in between go to debug and are counted in the next warning).

    Args:
        logger: where the lines go.
        repeat_s: shortest time between two warnings of one kind, seconds (``inf`` = once ever).
        clock: monotonic clock, seconds (injectable for tests).
    """

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any], repeat_s: float = 60.0,
                 clock: Any = time.monotonic) -> None:
        self._log = logger
        self._repeat_s = repeat_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._hidden: dict[str, int] = {}

    def warn(self, kind: str, msg: str, *args: Any, level: int = logging.WARNING) -> bool:
        """Log ``msg % args`` for ``kind``; True when it was logged at ``level``."""
        now = self._clock()
        last = self._last.get(kind)
        if last is None or now - last >= self._repeat_s:
            hidden = self._hidden.pop(kind, 0)
            suffix = f" ({hidden} more like this not shown)" if hidden else ""
            # rate_key: the journal's repeat limiter counts each kind on its own, so five of one
            # kind cannot silence the first one of another kind.
            self._log.log(level, msg + suffix, *args, extra={"rate_key": kind})
            self._last[kind] = now
            return True
        self._hidden[kind] = self._hidden.get(kind, 0) + 1
        self._log.debug(msg, *args, extra={"rate_key": kind})
        return False

    def forget(self, kind: str) -> None:
        """The problem went away: its next occurrence is logged loudly again."""
        self._last.pop(kind, None)
        self._hidden.pop(kind, None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and any ``extra`` fields given."""

    _skip = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._skip and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(level: str = "info", fmt: str = "text", stream: Any = None) -> None:
    """Configure the root logger for the daemon (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter (amqtt logs every packet at info) stays out of a readable log.
    for noisy in ("amqtt", "transitions", "bleak", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
