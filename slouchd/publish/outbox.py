"""Events the broker has not acknowledged yet, kept on disk so that a crash does not lose them.

The MQTT publisher keeps its queue in memory; this journal mirrors the events a wearer must not
miss (slouch alerts, break reminders). After ``kill -9``, a power cut or an OOM kill, the next
start sends them first, with their original payload: the same ``(boot, seq)``, so a consumer
that already got one drops the repeat (delivery stays at-least-once, never at-most-once).

The file is an append-only journal of JSON lines, one per change::

    {"add": "<key>", "wearer": "alice", "kind": "slouch_alert", "payload": "{...}"}
    {"ack": "<key>"}

Each append is flushed and fsync'ed before :meth:`Outbox.add` returns, so an event the daemon
has queued survives any kill after that. A kill in the middle of an append leaves a torn last
line, which :meth:`Outbox.load` ignores. Now and then (and at load) the journal is rewritten
with only the pending events, atomically like the state files (temporary file, fsync, rename,
fsync of the directory), so it never grows without bound. At most ``max_entries`` events are
kept; beyond that the oldest are forgotten (and counted), as the in-memory queue drops them.

Pure apart from its own file: no asyncio, no MQTT. Errors writing it are raised as OSError for
the caller to log and count; the events then still live in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

MAX_ENTRIES = 1000
"""Most events kept on disk (the publisher's ``queue_max`` default)."""
MAX_LINE_BYTES = 64 * 1024
"""A journal line longer than this is not one of ours (an event payload is < 1 KiB)."""


@dataclass(frozen=True)
class OutboxEntry:
    """One event waiting for the broker's acknowledgement.

    Attributes:
        key: unique per event, e.g. ``"alice/1764520000000/17"`` (wearer, boot, seq).
        wearer: the wearer the event belongs to (its topic).
        kind: the event kind (``slouch_alert``...).
        payload: the exact MQTT payload (JSON bytes) to send.
    """

    key: str
    wearer: str
    kind: str
    payload: bytes


class Outbox:
    """The on-disk journal of unacknowledged events (one file; None = memory only).

    Args:
        path: the journal file, e.g. ``<state_dir>/outbox.jsonl``; None keeps nothing on disk.
        max_entries: most events kept; adding more forgets the oldest.
        compact_every: rewrite the journal after this many appended lines.

    Attributes:
        forgotten: events dropped because more than ``max_entries`` were pending.
        skipped: journal lines that could not be read at load (torn or foreign), ignored.
        writes: journal appends and rewrites done.
    """

    def __init__(self, path: Path | None, max_entries: int = MAX_ENTRIES, compact_every: int = 256) -> None:
        self.path = None if path is None else Path(path)
        self.max_entries = max(1, int(max_entries))
        self.compact_every = max(1, int(compact_every))
        self._pending: OrderedDict[str, OutboxEntry] = OrderedDict()
        self._lines = 0  # lines in the journal file since its last rewrite
        self.loaded = False
        self.rewrite_error: OSError | None = None
        self.forgotten = 0
        self.skipped = 0
        self.writes = 0

    def __len__(self) -> int:
        return len(self._pending)

    def pending(self) -> list[OutboxEntry]:
        """The events not acknowledged yet, oldest first."""
        return list(self._pending.values())

    # ----- start-up
    def load(self) -> list[OutboxEntry]:
        """Read the journal left by an earlier run: the events still owed, oldest first.

        Unreadable lines are skipped (counted in :attr:`skipped`); the journal is then rewritten
        with only what is pending (if that fails, e.g. a read-only directory, the error is kept
        in :attr:`rewrite_error` and the journal stays as it was). Calling it again is a no-op
        that returns the pending list.

        Raises:
            OSError: the file exists but cannot be read.
        """
        if self.loaded:
            return self.pending()
        self.loaded = True
        if self.path is None:
            return []
        self._remove_leftovers()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            self._lines += 1
            if len(line) > MAX_LINE_BYTES:
                self.skipped += 1
                continue
            try:
                self._replay(json.loads(line))
            except (ValueError, TypeError, KeyError, UnicodeDecodeError):
                self.skipped += 1
        self._bound()
        try:
            self._rewrite()
        except OSError as err:
            self.rewrite_error = err
        return self.pending()

    def _replay(self, rec: object) -> None:
        if not isinstance(rec, dict):
            raise TypeError("not an object")
        if "ack" in rec:
            self._pending.pop(str(rec["ack"]), None)
            return
        key, wearer, kind, payload = rec["add"], rec["wearer"], rec["kind"], rec["payload"]
        if not all(isinstance(x, str) for x in (key, wearer, kind, payload)) or not key:
            raise TypeError("a field is not a string")
        json.loads(payload)  # a payload that is not JSON is not ours
        self._pending[key] = OutboxEntry(key, wearer, kind, payload.encode())

    # ----- changes
    def add(self, entry: OutboxEntry) -> list[OutboxEntry]:
        """Keep ``entry`` until :meth:`ack`; durable on disk when this returns.

        Returns the entries forgotten to stay within ``max_entries`` (oldest first), which the
        caller should drop from its queue too.

        Raises:
            OSError: the journal could not be written (the entry is still kept in memory).
        """
        self._pending[entry.key] = entry
        forgotten = self._bound()
        self._append({"add": entry.key, "wearer": entry.wearer, "kind": entry.kind,
                      "payload": entry.payload.decode()})
        return forgotten

    def ack(self, key: str) -> bool:
        """Forget an event the broker acknowledged. Returns whether it was pending.

        Raises:
            OSError: the journal could not be written (it is forgotten in memory anyway; after
                a crash it would be sent once more, which (boot, seq) lets consumers spot).
        """
        if self._pending.pop(key, None) is None:
            return False
        if not self._pending and self.path is not None:
            self._rewrite()  # nothing owed: an empty file, the cheapest state to load
        else:
            self._append({"ack": key})
        return True

    def _bound(self) -> list[OutboxEntry]:
        out = []
        while len(self._pending) > self.max_entries:
            out.append(self._pending.popitem(last=False)[1])
            self.forgotten += 1
        return out

    # ----- the file
    def _append(self, rec: dict[str, str]) -> None:
        if self.path is None:
            return
        if self._lines >= self.compact_every:
            self._rewrite()
            if rec.get("add") in self._pending:
                return  # the rewrite already holds it
            if "ack" in rec:
                return
        line = json.dumps(rec, separators=(",", ":")).encode() + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._lines += 1
        self.writes += 1

    def _rewrite(self) -> None:
        """Replace the journal by the pending events alone (atomic, durable)."""
        if self.path is None:
            return
        data = b"".join(
            json.dumps({"add": e.key, "wearer": e.wearer, "kind": e.kind, "payload": e.payload.decode()},
                       separators=(",", ":")).encode() + b"\n"
            for e in self._pending.values())
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._lines = len(self._pending)
        self.writes += 1

    def _remove_leftovers(self) -> None:
        """Temporary files of a rewrite that a crash interrupted (the journal itself is intact)."""
        assert self.path is not None
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
