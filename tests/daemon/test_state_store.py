"""Per-wearer state survives restarts; a corrupt file never stops a wearer from starting."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from slouchd.state import StateStore, default_state_dir


def test_saved_state_loads_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s")
    doc = {"calibration": {"up": [0.0, 1.0, 0.0]}, "overrides": {"threshold_deg": 18.0}}
    store.save("ana", doc)
    assert StateStore(tmp_path / "s").load("ana") == doc


def test_missing_state_is_a_fresh_start(tmp_path: Path) -> None:
    assert StateStore(tmp_path).load("nobody") == {}


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    for i in range(5):
        store.save("ana", {"i": i})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ana.json"]
    assert store.load("ana") == {"i": 4}


@pytest.mark.parametrize("garbage", [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'{"version": 99}'])
def test_corrupt_state_is_moved_aside_with_a_warning(
        tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    store = StateStore(tmp_path)
    (tmp_path / "ana.json").write_bytes(garbage)
    with caplog.at_level(logging.WARNING):
        assert store.load("ana") == {}
    assert not (tmp_path / "ana.json").exists()
    aside = list(tmp_path.glob("ana.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert "corrupt" in caplog.text
    store.save("ana", {"ok": True})  # and the wearer carries on
    assert store.load("ana") == {"ok": True}


@pytest.mark.parametrize("state", [
    b'{"version": 1, "state": [1, 2]}',
    b'{"version": 1, "state": {"tracker": "x"}}',
    b'{"version": 1, "state": {"overrides": [1, 2]}}',
    b'{"version": 1, "state": {"snooze_until_s": "soon"}}',
    b'{"version": 1, "state": {"snooze_until_s": NaN}}',
])
def test_a_state_file_of_the_wrong_shape_is_moved_aside(tmp_path: Path, state: bytes) -> None:
    store = StateStore(tmp_path)
    (tmp_path / "ana.json").write_bytes(state)
    assert store.load("ana") == {}
    assert len(list(tmp_path.glob("ana.json.corrupt-*"))) == 1


def test_a_save_cut_short_by_a_crash_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("ana", {"i": 1})
    (tmp_path / ".ana.x1y2.tmp").write_bytes(b'{"vers')  # kill -9 in the middle of a write
    assert store.load("ana") == {"i": 1}
    assert not list(tmp_path.glob("*.tmp"))


def test_nan_is_refused_rather_than_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        StateStore(tmp_path).save("ana", {"x": float("nan")})
    assert not (tmp_path / "ana.json").exists()


def test_state_dir_prefers_config_then_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "sd"))
    assert default_state_dir(str(tmp_path / "cfg")) == tmp_path / "cfg"
    assert default_state_dir("") == tmp_path / "sd"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir("") == tmp_path / "xdg" / "slouchd"


def test_file_format_is_versioned_json(tmp_path: Path) -> None:
    StateStore(tmp_path).save("ana", {"a": 1})
    doc = json.loads((tmp_path / "ana.json").read_text())
    assert doc["version"] == 1 and doc["state"] == {"a": 1} and doc["saved_at"] > 0


def test_an_older_snapshot_saved_late_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save("ana", {"i": 2}, generation=2)  # the final save at shutdown
    store.save("ana", {"i": 1}, generation=1)  # a slow background save finishing after it
    assert store.load("ana") == {"i": 2}
