"""One wearer's state file: periodic and prompt saves in a worker thread, a final one on stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from slouchd.state import StateStore
from slouchd.timing import Clock


class WearerSaver:
    """Saves one wearer's snapshot, one save at a time, never losing the newest.

    Args:
        store: where state files live.
        name: the wearer.
        snapshot: takes the state to save (called on the event loop thread: consistent).
        clock: for :attr:`last_save` (monotonic seconds).
        log: the wearer's logger.
    """

    def __init__(self, store: StateStore, name: str, snapshot: Callable[[], dict[str, Any]],
                 clock: Clock, log: logging.Logger) -> None:
        self.store = store
        self.name = name
        self._snapshot = snapshot
        self._clock = clock
        self._log = log
        self.last_save = clock.monotonic()
        """When the last save was started (monotonic seconds)."""
        self._saving: asyncio.Task[None] | None = None
        self._save_again = False
        self._snapshots = 0

    def _generation(self) -> int:
        self._snapshots += 1
        return self._snapshots

    def save_now(self) -> None:
        """Save synchronously (on stop)."""
        try:
            self.store.save(self.name, self._snapshot(), self._generation())
        except OSError as err:
            self._log.error("cannot save state: %s", err)
        self.last_save = self._clock.monotonic()

    def save_soon(self) -> None:
        """Save in a worker thread (fsync on an SD card can take 100 ms), one save at a time."""
        self.last_save = self._clock.monotonic()
        if self._saving is not None and not self._saving.done():
            self._save_again = True  # e.g. a calibration during a periodic save: save it right after
            return
        self._save_again = False
        snap = self._snapshot()  # taken on the loop thread: consistent
        generation = self._generation()

        async def write() -> None:
            try:
                await asyncio.to_thread(self.store.save, self.name, snap, generation)
            except OSError as err:
                self._log.error("cannot save state: %s", err)
            if self._save_again:
                self._saving = None
                self.save_soon()

        self._saving = asyncio.get_running_loop().create_task(write())

    async def final(self, wait_s: float) -> None:
        """The last save: wait up to ``wait_s`` for one under way, then save the newest state."""
        self._save_again = False  # the final save below covers it
        if self._saving is not None and not self._saving.done():
            with contextlib.suppress(Exception):
                # shield: a slow save keeps going in its thread; its older snapshot cannot
                # overwrite the final one (generations), so there is no need to wait it out.
                await asyncio.wait_for(asyncio.shield(self._saving), wait_s)
        self.save_now()
