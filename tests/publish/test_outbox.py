"""The on-disk outbox of unacknowledged events (pure: its own file, no MQTT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slouchd.publish.outbox import Outbox, OutboxEntry


def entry(i: int, wearer: str = "alice") -> OutboxEntry:
    payload = json.dumps({"event": "slouch_alert", "seq": i, "boot": 1000}).encode()
    return OutboxEntry(f"{wearer}/1000/{i}", wearer, "slouch_alert", payload)


def reopened(path: Path, **kw: int) -> Outbox:
    box = Outbox(path, **kw)
    box.load()
    return box


def test_an_added_event_is_on_disk_before_add_returns(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    assert box.load() == []
    box.add(entry(1))
    box.add(entry(2))
    # A second process (the restarted daemon) sees both, byte for byte, in order.
    assert reopened(path).pending() == [entry(1), entry(2)]


def test_acknowledged_events_are_not_sent_again(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    box.load()
    for i in range(1, 6):
        box.add(entry(i))
    assert box.ack("alice/1000/2") and box.ack("alice/1000/4")
    assert not box.ack("alice/1000/4")  # twice: nothing more to do
    assert [e.key for e in reopened(path).pending()] == ["alice/1000/1", "alice/1000/3", "alice/1000/5"]


def test_all_acknowledged_leaves_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    box.load()
    box.add(entry(1))
    box.ack(entry(1).key)
    assert path.read_bytes() == b""
    assert reopened(path).pending() == []


def test_a_torn_last_line_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    box.load()
    box.add(entry(1))
    box.add(entry(2))
    with path.open("ab") as fh:  # a kill in the middle of an append
        fh.write(b'{"add":"alice/1000/3","wearer":"alice","ki')
    with path.open("ab") as fh:
        fh.write(b"\n[1,2]\n" + b'{"add": 5}\n')
        fh.write(b'{"add":"k","wearer":"a","kind":"x","payload":"not json"}\n')
    again = Outbox(path)
    assert [e.key for e in again.load()] == ["alice/1000/1", "alice/1000/2"]
    assert again.skipped == 4
    # The load rewrote the journal clean.
    assert reopened(path).skipped == 0


def test_bounded_the_oldest_are_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path, max_entries=3)
    box.load()
    forgotten = [g for i in range(1, 6) for g in box.add(entry(i))]
    assert [g.key for g in forgotten] == ["alice/1000/1", "alice/1000/2"]
    assert box.forgotten == 2
    assert [e.key for e in reopened(path, max_entries=3).pending()] == [f"alice/1000/{i}" for i in (3, 4, 5)]


def test_the_journal_is_compacted_and_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path, compact_every=10)
    box.load()
    for i in range(1, 201):
        box.add(entry(i))
        if i % 4:
            box.ack(entry(i).key)
    lines = path.read_bytes().count(b"\n")
    assert len(box) == 50
    assert lines <= 50 + 10 + 1
    assert [e.key for e in reopened(path).pending()] == [f"alice/1000/{i}" for i in range(4, 201, 4)]


def test_leftover_temporary_files_are_removed_at_load(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    (tmp_path / ".outbox.jsonl.abc123.tmp").write_bytes(b"half")
    Outbox(path).load()
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_place_raises_and_keeps_the_event_in_memory(tmp_path: Path) -> None:
    # The state directory replaced by a file: fails for root too (read-only needs a mount).
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / "outbox.jsonl"
    box = Outbox(path)
    box.load()
    (tmp_path / "state").rmdir()
    (tmp_path / "state").write_bytes(b"")
    with pytest.raises(OSError):
        box.add(entry(1))
    assert box.pending() == [entry(1)]


def test_memory_only_without_a_path() -> None:
    box = Outbox(None)
    assert box.load() == []
    box.add(entry(1))
    assert len(box) == 1 and box.ack(entry(1).key) and len(box) == 0
