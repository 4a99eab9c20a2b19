"""Per-wearer state that must survive restarts and crashes.

One JSON file per wearer in the state directory: calibration, settings changed from Home
Assistant, and today's totals. Writes are atomic (temporary file, fsync, rename, fsync of the
directory), so ``kill -9`` at any moment leaves either the old or the new file, never a torn one.
A corrupt file is moved aside with a warning and the wearer starts fresh.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
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


class StateStore:
    """Loads and atomically saves one JSON document per wearer."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, wearer: str) -> Path:
        return self.directory / f"{wearer}.json"

    def load(self, wearer: str) -> dict[str, Any]:
        """The saved state of ``wearer``, or ``{}`` when there is none or it was corrupt."""
        p = self.path(wearer)
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
            return dict(doc.get("state") or {})
        except (ValueError, UnicodeDecodeError) as err:
            aside = p.with_name(f"{p.name}.corrupt-{int(time.time())}")
            try:
                p.replace(aside)
                log.warning("state file %s is corrupt (%s); moved aside to %s, starting fresh",
                            p, err, aside.name)
            except OSError as move_err:
                log.warning("state file %s is corrupt (%s) and cannot be moved aside: %s",
                            p, err, move_err)
            return {}

    def save(self, wearer: str, state: dict[str, Any]) -> None:
        """Atomically replace the state of ``wearer``. Raises OSError on failure."""
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
