"""Per-wearer state that must survive restarts and crashes.

One JSON file per wearer in the state directory: calibration, settings changed from Home
Assistant, and today's totals. Writes are atomic (temporary file, fsync, rename, fsync of the
directory), so ``kill -9`` at any moment leaves either the old or the new file, never a torn one.
A corrupt file is moved aside with a warning and the wearer starts fresh.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def default_state_dir(configured: str = "") -> Path:
    """``configured``, else systemd's ``$STATE_DIRECTORY``, else ``~/.local/state/slouchd``."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get("STATE_DIRECTORY", "")
    if env:
        return Path(env.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "slouchd"


def check_shape(state: Any) -> None:
    """Raise ValueError unless ``state`` has the shape :class:`StateStore` saves.

    The values themselves (settings in range, a calibration that makes sense) are checked by
    whoever uses them; this only keeps a hand-edited or foreign file from crashing start-up.
    """
    if not isinstance(state, dict):
        raise ValueError("state is not an object")
    for key, kinds in (("overrides", (dict,)), ("tracker", (dict,)), ("coach", (dict,)),
                       ("snooze_until_s", (int, float))):
        value = state.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise ValueError(f"{key} has the wrong type ({type(value).__name__})")
    snooze = state.get("snooze_until_s")
    if snooze is not None and not math.isfinite(snooze):
        raise ValueError("snooze_until_s is not a finite number")


class StateStore:
    """Loads and atomically saves one JSON document per wearer."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        # Saves run in worker threads; a slow one must never land after a newer one.
        self._lock = threading.Lock()
        self._written: dict[str, int] = {}  # wearer -> generation on disk

    def path(self, wearer: str) -> Path:
        return self.directory / f"{wearer}.json"

    def load(self, wearer: str) -> dict[str, Any]:
        """The saved state of ``wearer``, or ``{}`` when there is none or it was corrupt."""
        p = self.path(wearer)
        self._remove_leftovers(wearer)
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as err:
            log.warning("cannot read state file %s: %s; starting fresh", p, err)
            return {}
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
                raise ValueError("not a slouchd state document")
            state = doc.get("state") or {}
            check_shape(state)
            return dict(state)
        except (ValueError, UnicodeDecodeError) as err:
            self.set_aside(wearer, str(err))
            return {}

    def set_aside(self, wearer: str, why: str) -> None:
        """Move an unusable state file out of the way (kept for a post-mortem), with a warning."""
        p = self.path(wearer)
        aside = p.with_name(f"{p.name}.corrupt-{int(time.time())}")
        try:
            p.replace(aside)
            log.warning("state file %s is corrupt (%s); moved aside to %s, starting fresh",
                        p, why, aside.name)
        except OSError as move_err:
            log.warning("state file %s is corrupt (%s) and cannot be moved aside: %s", p, why, move_err)

    def _remove_leftovers(self, wearer: str) -> None:
        """Temporary files of a save that a crash interrupted (the real file is intact)."""
        for tmp in self.directory.glob(f".{wearer}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    def save(self, wearer: str, state: dict[str, Any], generation: int | None = None) -> None:
        """Atomically replace the state of ``wearer``. Raises OSError on failure.

        ``generation`` (rising with each snapshot taken) makes an older snapshot whose save
        finishes late a no-op instead of overwriting a newer one.
        """
        with self._lock:
            if generation is not None:
                if generation <= self._written.get(wearer, -1):
                    return
                self._written[wearer] = generation
            self._save_locked(wearer, state)

    def _save_locked(self, wearer: str, state: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        data = json.dumps({"version": FORMAT_VERSION, "saved_at": time.time(), "state": state},
                          separators=(",", ":"), allow_nan=False).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{wearer}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(wearer))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
