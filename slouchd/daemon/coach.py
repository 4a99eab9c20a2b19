"""The coach of one wearer in the daemon: built after the tracker's restore, fed each batch, its
history written in worker threads (docs/coach.md, "Wiring").

:class:`ThreadedHistory` is the history store the daemon gives every coach: loads are synchronous
(once, at a wearer's start), saves go to a worker thread (fsync on an SD card can take 100 ms),
ordered by generation so an older snapshot never lands after a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from slouchd.coaching import CoachOutput, CoachRuntime
from slouchd.config import Config, WearerSettings
from slouchd.history import History, HistoryStore
from slouchd.posture.stretch_catalog import StretchCatalog
from slouchd.posture.tracker import PostureTracker
from slouchd.timing import Clock

HISTORY_EVERY_S = 60.0
"""Today's record changes all day: the retained history goes out this often (like the stats)
besides when a day closes or a session ends, seconds."""


class _Retained(Protocol):
    def retained(self, wearer: str, name: str, doc: dict[str, Any]) -> bool: ...


class ThreadedHistory:
    """A :class:`~slouchd.coaching.HistorySink` that writes in worker threads.

    Args:
        store: the daemon's history store (``<state_dir>/history/``).
    """

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self._writes: set[asyncio.Task[None]] = set()
        self.errors = 0

    def load(self, wearer: str) -> History:
        return self.store.load(wearer)

    def save_doc(self, wearer: str, doc: dict[str, Any], generation: int | None = None) -> None:
        """Write ``doc`` (a snapshot taken on the loop thread) in a worker thread; without a
        running loop (tests, shutdown) write it now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(wearer, doc, generation)
            return
        task = loop.create_task(asyncio.to_thread(self._write, wearer, doc, generation))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _write(self, wearer: str, doc: dict[str, Any], generation: int | None) -> None:
        try:
            self.store.save_doc(wearer, doc, generation)
        except OSError as err:  # a full disk must not stop the wearer; the state file has the counts
            self.errors += 1
            logging.getLogger(f"slouchd.wearer.{wearer}").error("cannot save the history: %s", err)

    async def drain(self, wait_s: float) -> None:
        """Wait up to ``wait_s`` seconds for the writes under way (on stop)."""
        if self._writes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*list(self._writes), return_exceptions=True), wait_s)


def new_coach(name: str, config: Config, settings: WearerSettings, catalog: StretchCatalog,
              sink: ThreadedHistory, tracker: PostureTracker, saved: dict[str, Any], *,
              haptic: bool, log: logging.Logger) -> CoachRuntime:
    """The coach of one wearer, its saved part of the state file taken back (after the tracker's
    restore: it then observes the tracker's live totals).

    Args:
        haptic: the wearer's sensor can buzz (its profile declares ``[haptic]``, ``[ble] haptic``).
    """
    coach = CoachRuntime(name, catalog, stretch=config.stretch, coach=config.wearer_coach(settings),
                         store=sink, haptic=haptic, keep_days=config.history.keep_days)
    if saved.get("coach"):
        try:
            coach.restore(saved["coach"])
        except ValueError as err:
            log.warning("saved coach state unusable (%s); starting afresh", err)
    coach.observe_totals(tracker.totals)
    return coach


def retune(coach: CoachRuntime, config: Config, settings: WearerSettings, catalog: StretchCatalog) -> None:
    """A reload: new ``[stretch]``/``[coach]`` settings and catalogue for the next session; the
    goal applies at once. (Notice thresholds are read when the wearer's coach is built.)"""
    coach.catalog = catalog
    coach.stretch_settings = config.stretch
    coach.settings = config.wearer_coach(settings)


class CoachTopics:
    """The retained ``stretch`` and ``history`` topics of one wearer (docs/mqtt.md).

    Args:
        host: publishes a retained document (the daemon; False while there is no MQTT session).
        name: the wearer.
        coach: the wearer's coach.
        clock: for the history's cadence (monotonic seconds).
    """

    def __init__(self, host: _Retained, name: str, coach: CoachRuntime, clock: Clock) -> None:
        self.host = host
        self.name = name
        self.coach = coach
        self.clock = clock
        self.published = False
        """Both topics went out once (at the first batch, or when the sensor started streaming)."""
        self._history_at = -HISTORY_EVERY_S

    def history(self) -> bool:
        """Publish the history (closed days and today so far); False without MQTT."""
        self._history_at = self.clock.monotonic()
        return self.host.retained(self.name, "history", self.coach.history_payload())

    def publish_all(self) -> None:
        """Both topics, now (the stretch topic is ``{"status": "idle"}`` before any session)."""
        shown = self.history()
        self.host.retained(self.name, "stretch", self.coach.stretch_state())
        self.published = shown

    def after(self, co: CoachOutput, *, stretch_due: bool) -> None:
        """After a coach output: the stretch topic each second (``stretch_due``) while a session
        runs and at each of its events; the history when it changed or once a minute."""
        if not self.published:
            self.publish_all()
            return
        if co.history_changed or self.clock.monotonic() - self._history_at >= HISTORY_EVERY_S:
            self.history()
        if (self.coach.needs_ticks and stretch_due) or any(
                e.kind.value.startswith("stretch_") for e in co.events):
            self.host.retained(self.name, "stretch", self.coach.stretch_state())
