"""One wearer: its tracker, its source, its settings and persisted state.

The runtime talks to the daemon only through :class:`~slouchd.daemon.host.WearerHost`; the
daemon runs :meth:`WearerRuntime.run` as one supervised task (see :mod:`slouchd.daemon.core`).
About 460 lines: settings, publishing, the sample path, the coach's glue, persistence and commands
all act on the same per-wearer state; the coach's own parts live in :mod:`slouchd.daemon.coach`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from slouchd.coaching import CoachOutput, EverySecond
from slouchd.config import Config, WearerSettings
from slouchd.daemon.coach import CoachTopics, new_coach, retune
from slouchd.daemon.constants import (
    CALM_DISPATCH_TICKS,
    DISPATCH_TICKS,
    OVERRIDE_KEYS,
    RESTART_BACKOFF_MAX_S,
    RESTART_BACKOFF_MIN_S,
    SAVE_EVERY_S,
    SHUTDOWN_SAVE_S,
    SHUTDOWN_WEARERS_S,
    STATS_EVERY_S,
)
from slouchd.daemon.errors import is_fatal
from slouchd.daemon.host import WearerHost
from slouchd.daemon.persistence import WearerSaver
from slouchd.daemon.sources import SourcePlan, plan_source
from slouchd.daemon.trackers import new_tracker, wall_iso
from slouchd.daemon.wakeups import hurry
from slouchd.model import Event, EventKind, PostureFrame, SampleBatch
from slouchd.overrides import SettingOverrides
from slouchd.posture.settings import DetectionSettings
from slouchd.posture.tracker import PostureTracker
from slouchd.publish.commands import Command, CommandResult
from slouchd.publish.wearer import PLAN, WearerInfo
from slouchd.sample_buffer import SampleBuffer
from slouchd.schema import check_partial
from slouchd.sensors.base import SensorSource
from slouchd.state import StateStore
from slouchd.timing import SYSTEM_CLOCK, Backoff, Clock

log = logging.getLogger("slouchd")


class WearerRuntime:
    """One wearer, fed by :meth:`run` and commanded by :meth:`apply`.

    Args:
        host: the daemon, as far as this wearer may see it.
        settings: the wearer's ``[[wearers]]`` table.
        store: where its state file lives.
        clock: time for save/stats cadence and restart waits.
        backoff: waits between restarts of a failed sensor.
    """

    def __init__(self, host: WearerHost, settings: WearerSettings, store: StateStore, *,
                 clock: Clock = SYSTEM_CLOCK, backoff: Backoff | None = None) -> None:
        self.host = host
        self.settings = settings
        self.store = store
        self.clock = clock
        self.backoff = backoff or Backoff(RESTART_BACKOFF_MIN_S, RESTART_BACKOFF_MAX_S, jitter_low=1.0)
        self._detection: tuple[Config, WearerSettings, dict[str, Any], DetectionSettings] | None = None
        self.name = settings.name
        self.log = logging.getLogger(f"slouchd.wearer.{self.name}")
        self.plan: SourcePlan = plan_source(settings, host.config)
        saved = store.load(self.name)
        self.overrides: dict[str, Any] = {}
        self.overrides_file: dict[str, Any] = {}
        self._reconcile_overrides(SettingOverrides.from_saved(saved), "at start")
        self.snooze_until_s: float | None = saved.get("snooze_until_s")
        self.tracker = self._restored_tracker(saved)
        if self.snooze_until_s is not None:
            self.tracker.snooze_until(self.snooze_until_s)
        self.coach = new_coach(self.name, host.config, settings, host.catalog, host.history, self.tracker,
                               saved, haptic=host.config.ble.haptic and self.plan.haptic, log=self.log)
        self._every_second = EverySecond()
        self.coach_topics = CoachTopics(host, self.name, self.coach, clock)
        self.source: SensorSource | None = None
        self.buffer = SampleBuffer(DISPATCH_TICKS)
        self.task: asyncio.Task[None] | None = None
        """The supervised task running :meth:`run` (set by the daemon)."""
        self.streaming = False
        self.last_batch_wall = 0.0
        self.alerts = 0
        self.events_seen: dict[str, int] = {}
        self.restarts = 0
        self.tracker_calls = 0
        self.saver = WearerSaver(store, self.name, self.snapshot, clock, self.log)
        self._last_stats = 0.0
        self._background: set[asyncio.Task[Any]] = set()

    def _restored_tracker(self, saved: dict[str, Any]) -> PostureTracker:
        cfg = self.host.config
        wellbeing = cfg.wearer_wellbeing(self.settings)
        tracker = new_tracker(cfg, self.detection(), self.plan.mount, wellbeing)
        if saved.get("tracker"):
            try:
                tracker.restore_state(saved["tracker"])
            except Exception as err:  # a foreign or hand-edited file must not stop the daemon
                self.log.warning("saved calibration/totals unusable (%r); starting afresh", err)
                self.store.set_aside(self.name, f"tracker state unusable: {err!r}")
                tracker = new_tracker(cfg, self.detection(), self.plan.mount, wellbeing)
        return tracker

    # ----- settings -------------------------------------------------------------------------
    def _file_values(self) -> dict[str, Any]:
        """The config file's values (with per-wearer sections) of the keys HA may change."""
        base = self.host.config.wearer_detection(self.settings)
        return {k: getattr(base, k) for k in OVERRIDE_KEYS}

    def _reconcile_overrides(self, current: SettingOverrides, when: str) -> None:
        """Keep the Home Assistant values the file has not changed since (docs/mqtt.md,
        "Which value wins"), check them against the file, and say in the log which keys come
        from Home Assistant and why."""
        kept, decisions = current.reconcile(self._file_values())
        for d in decisions:
            self.log.info("%s: %s", when, d.describe())
        values = self._checked_overrides(kept.values)
        self.overrides = values
        self.overrides_file = {k: v for k, v in kept.file_then.items() if k in values}

    def _checked_overrides(self, saved: dict[str, Any]) -> dict[str, Any]:
        """Settings saved from Home Assistant, kept only if they are still valid settings."""
        base = self.host.config.wearer_detection(self.settings)
        kept = {k: v for k, v in saved.items() if k in OVERRIDE_KEYS}
        try:
            # The same bounds and types as the config file; then the cross-field rules.
            kept = check_partial(DetectionSettings, kept, str(self.store.path(self.name)), "")
            candidate = dataclasses.replace(base, **kept)
            candidate.validate()
        except (ValueError, TypeError) as err:
            self.log.warning("saved settings %s are not valid (%s); using the config's", kept, err)
            return {}
        if len(kept) != len(saved):
            self.log.warning("saved settings: ignoring unknown keys %s", sorted(set(saved) - set(kept)))
        return kept

    def update_settings(self, settings: WearerSettings) -> None:
        """A reload: the wearer's new table (the config in force is already the new one).

        A key the file changed since the last Home Assistant change wins (the same rule as at
        start); what is left must still fit the new file (hysteresis < threshold).
        """
        self.settings = settings
        self._reconcile_overrides(SettingOverrides(dict(self.overrides), dict(self.overrides_file)),
                                  "after reload")
        self.tracker.set_detection(self.detection())
        retune(self.coach, self.host.config, settings, self.host.catalog)
        self.pace()

    def replan(self) -> None:
        """Plan the source again for the settings in force (before a restart after a reload)."""
        try:
            self.plan = plan_source(self.settings, self.host.config)
        except Exception as err:  # e.g. the replay file went away since the reload checked it
            log.error("wearer %s: cannot use the new sensor settings (%s); keeping the old ones",
                      self.name, err)

    def detection(self) -> DetectionSettings:
        """[detection] in force: config file, per-wearer overrides, then changes from MQTT.

        Built once per (config, wearer settings, overrides) and kept: every state (1 Hz per
        wearer) reads it; a reload or a command replaces one of the three objects.
        """
        cfg, settings, overrides = self.host.config, self.settings, self.overrides
        cached = self._detection
        if cached is not None and cached[0] is cfg and cached[1] is settings and cached[2] is overrides:
            return cached[3]
        base = cfg.wearer_detection(settings)
        det = dataclasses.replace(base, **overrides) if overrides else base
        self._detection = (cfg, settings, overrides, det)
        return det

    def info(self) -> WearerInfo:
        # The plan's entities exist only while [coach.plan] is enabled for this wearer: otherwise
        # they would sit at "unknown" in Home Assistant forever.
        caps = self.plan.capabilities - {PLAN}
        if self.host.config.wearer_coach(self.settings).plan.enabled:
            caps |= {PLAN}
        return WearerInfo(
            name=self.name, sensor_id=self.plan.sensor_id, model=self.plan.model,
            profile=self.plan.profile, detection=self.detection(), capabilities=caps)

    # ----- what is published ------------------------------------------------------------------
    def state_payload(self, frame: PostureFrame) -> dict[str, Any]:
        det = self.detection()
        status = self.source.status if self.source is not None else None
        doc = frame.to_dict()
        doc["time"] = wall_iso(frame.t_s)
        doc.update({
            "battery": None if status is None else status.battery_pct,
            "rssi": None if status is None else status.rssi_dbm,
            "threshold_deg": det.threshold_deg,
            "hysteresis_deg": det.hysteresis_deg,
            "dwell_s": det.dwell_s,
            "mode": det.mode,
            "alerts_enabled": det.alerts_enabled,
            "snoozed_until": (None if self.snooze_until_s is None or self.snooze_until_s <= frame.t_s
                              else wall_iso(self.snooze_until_s)),
            "snooze_min": self.snooze_left_min(frame.t_s),
        })
        doc.update(self.coach.state())
        doc.update(self.counters())
        return doc

    def snooze_left_min(self, now_s: float) -> float:
        """Minutes of snooze left at sample time ``now_s`` (0 when not snoozed)."""
        if self.snooze_until_s is None:
            return 0.0
        return round(max(0.0, self.snooze_until_s - now_s) / 60.0, 1)

    def counters(self) -> dict[str, Any]:
        """Link and pipeline counters (Home Assistant diagnostics)."""
        status = self.source.status if self.source is not None else None
        drops: dict[str, int] = dict(self.tracker.dropped)
        if status is not None:
            for reason, n in status.dropped.items():
                drops[reason] = drops.get(reason, 0) + n
        return {
            "reconnects": 0 if status is None else status.reconnects,
            "packets": 0 if status is None else status.packets,
            "dropped": sum(drops.values()),
            "dropped_by_reason": drops,
            "alerts": self.alerts,
            "task_restarts": self.restarts,
            **self.host.diagnostics(),  # mqtt_queue, gateway, gateway_drops
        }

    def announce(self) -> None:
        """Publish the current state again (settings changed; not a new frame)."""
        if self.tracker.frame.t_s > 0:
            self.host.state(self.name, self.tracker.frame, self.state_payload, show=False)

    def publish_stats(self) -> None:
        self._last_stats = self.clock.monotonic()
        self.host.stats(self.name, self.tracker.stats())

    # ----- the sample path --------------------------------------------------------------------
    def handle(self, batch: SampleBatch) -> None:
        """Feed one batch through the tracker and fan the results out (synchronous, fast)."""
        out = self.tracker.process(batch)
        self.tracker_calls += 1
        status = self.source.status if self.source is not None else None
        co = self.coach.process(out.frames, out.events, self.tracker.totals,
                                None if status is None else status.battery_pct)
        due = False
        for frame in out.frames:
            # Frames come every 0.1 s during a stretch session: states stay at one a second.
            if self._every_second.due(frame.t_s):
                due = True
                self.host.state(self.name, frame, self.state_payload)
        for event in out.events:
            self.on_event(event)
        self.coach_output(co, stretch_due=due)
        self.last_batch_wall = now = self.clock.monotonic()
        if now - self.saver.last_save >= SAVE_EVERY_S:
            self.saver.save_soon()
        if now - self._last_stats >= STATS_EVERY_S:
            self.publish_stats()
        self.pace()

    def pace(self) -> None:
        """Hand the tracker every 0.1 s tick while an alert or an answer may be due or a stretch
        session runs, else once a second (``CALM_DISPATCH_TICKS``): after every tracker call and
        every command (a calibration asked for is answered without the second's wait). The
        event loop's quantum follows (:class:`~slouchd.daemon.wakeups.WakePace`): 10 ms while
        any wearer hurries so, 50 ms while none does."""
        hurrying = self.tracker.urgent or self.coach.needs_ticks
        self.buffer.ticks = DISPATCH_TICKS if hurrying else CALM_DISPATCH_TICKS
        hurry(self, hurrying)  # the event loop may leave I/O up to 50 ms while nobody hurries

    def drain(self) -> None:
        """Process what the buffer holds (the stream ended or the wearer stops)."""
        try:
            for batch in self.buffer.take():
                self.handle(batch)
        except Exception:  # the stream is ending anyway; never mask why
            self.log.exception("processing the last buffered samples failed")

    def on_event(self, event: Event) -> None:
        self.events_seen[event.kind.value] = self.events_seen.get(event.kind.value, 0) + 1
        doc = event.to_dict()
        doc["time"] = wall_iso(event.t_s)
        doc["wearer"] = self.name
        if event.kind is EventKind.SLOUCH_ALERT:
            self.alerts += 1
            self.log.info("slouch alert level %s: %.0f deg forward for %.0f s",
                          event.data.get("level"), event.data.get("flexion_deg", float("nan")),
                          event.data.get("slouch_s", 0.0))
            if self.host.config.ble.haptic and self.source is not None:
                self._spawn(self._buzz(int(event.data.get("level", 1))))
        elif event.kind.value.startswith("stretch_") or event.kind is EventKind.BREAK_TAKEN:
            self.log.info("%s %s", event.kind.value, {k: v for k, v in event.data.items()
                                                      if k not in ("text", "safety", "instruction")})
        elif event.kind is EventKind.BREAK_REMINDER:
            self.log.info("break reminder: sitting for %s min", event.data.get("sitting_min"))
        elif event.kind in (EventKind.CALIBRATED, EventKind.CALIBRATION_FAILED):
            self.log.info("%s %s", event.kind.value, {k: v for k, v in event.data.items()})
            self.saver.save_soon()  # a calibration is never to be lost
        else:
            self.log.debug("%s %s", event.kind.value, event.data)
        if event.data.get("haptic") and self.source is not None:  # the coach asks where it can
            self._spawn(self._buzz(int(event.data["haptic"])))
        self.host.event(self.name, event, doc)
        if event.kind is not EventKind.SLOUCH_END:
            self.publish_stats()

    # ----- the coach (docs/coach.md) ----------------------------------------------------------
    def coach_output(self, co: CoachOutput, *, stretch_due: bool = True) -> None:
        """Act on what the coach decided: the sitting reset of a completed session, the plan's
        mode, its events, the retained history and stretch topics, and the frame rate (every
        0.1 s while a session runs)."""
        if co.reset_sitting:
            self.tracker.take_break()
        if co.mode is not None and co.mode != self.detection().mode:
            self.log.info("training plan: mode %s", co.mode)
            self._apply_settings({"mode": co.mode})  # like a change from Home Assistant
            self.host.settings_changed()
        for event in co.events:
            self.on_event(event)
        self.tracker.set_frame_interval(0.1 if self.coach.needs_ticks else 1.0)
        self.coach_topics.after(co, stretch_due=stretch_due)

    def coach_idle(self, frame: PostureFrame) -> None:
        """The daemon's idle frame (no samples): the "not worn all morning" check runs on it."""
        self.coach_output(self.coach.process([frame], [], None, None))

    async def _buzz(self, level: int) -> None:
        source = self.source
        if source is None:
            return
        try:
            await source.buzz(level)
        except Exception as err:  # a failed buzz must never stop the stream
            self.log.warning("haptic buzz failed: %s", err)

    # ----- persistence ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            **SettingOverrides(dict(self.overrides), dict(self.overrides_file)).to_dict(),
            "snooze_until_s": self.snooze_until_s,
            "tracker": self.tracker.export_state(),
            "coach": self.coach.snapshot(),
        }

    def save_now(self) -> None:
        self.saver.save_now()

    def save_soon(self) -> None:
        self.saver.save_soon()

    # ----- commands ---------------------------------------------------------------------------
    def apply(self, command: Command) -> CommandResult:
        """Apply a validated command; refuse (changing nothing) what the settings reject."""
        changes = dict(command.values)
        co = None
        try:
            if "stretch" in changes:  # checked first: a refused session changes nothing else
                co = self.coach.command(self._now(), str(changes["stretch"]))
            applied = self._apply_settings(changes)
        except (ValueError, TypeError) as err:
            return CommandResult(ok=False, error=str(err))
        if co is not None:
            self.coach_output(co)
            # What is in force now, like the settings: the session's status ("reaching" after a
            # start, "abandoned" after a stop). The publisher merges it into the state's "stretch".
            applied["stretch"] = self.coach.state()["stretch"]
        if "snooze_min" in changes:
            minutes = float(changes["snooze_min"])
            now = self._now()
            self.snooze_until_s = now + minutes * 60.0 if minutes > 0 else None
            self.tracker.snooze_until(self.snooze_until_s)
            applied["snooze_min"] = minutes
        if changes.get("calibrate"):
            self.tracker.request_calibration()
            applied["calibrate"] = True
        self.pace()
        self.saver.save_soon()
        self.host.settings_changed()
        self.announce()
        self.log.info("command applied: %s", applied)
        return CommandResult(ok=True, applied=applied)

    def _now(self) -> float:
        """Sample time now: the last frame's, or the wall clock before any frame (seconds)."""
        return self.tracker.frame.t_s if self.tracker.frame.t_s > 0 else self.clock.wall()

    def _apply_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The [detection] part of a command; ValueError/TypeError (nothing changed) if refused.

        "use_file_settings" drops every value set from Home Assistant; keys in the same command
        apply after it. Everything is checked before anything changes.
        """
        reset = bool(changes.get("use_file_settings"))
        set_keys = [k for k in OVERRIDE_KEYS if k in changes]
        if not (reset or set_keys):
            return {}
        new_overrides = {} if reset else dict(self.overrides)
        new_file = {} if reset else dict(self.overrides_file)
        base = self.host.config.wearer_detection(self.settings)
        for key in set_keys:
            new_overrides[key] = changes[key]
            new_file[key] = getattr(base, key)  # the file's value now: a later edit of it wins
        candidate = dataclasses.replace(base, **new_overrides)
        candidate.validate()
        applied: dict[str, Any] = {}
        if reset:
            dropped = sorted(set(self.overrides) - set(set_keys))
            self.log.info("Home Assistant settings dropped, the config file's apply: %s",
                          ", ".join(dropped) or "none were set")
            applied["use_file_settings"] = True
        self.overrides, self.overrides_file = new_overrides, new_file
        self.tracker.set_detection(candidate)
        applied.update({k: changes[k] for k in set_keys})
        return applied

    # ----- streaming --------------------------------------------------------------------------
    async def run(self) -> None:
        """Stream forever; a failure is logged with its traceback and the stream restarted after
        a backoff (:attr:`backoff`). Only a fatal error (:func:`is_fatal`) leaves."""
        while True:
            try:
                await self._stream()
                delay = self.backoff.next_s()
                self.log.info("source ended; starting it again")
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if is_fatal(err):
                    raise
                delay = self.backoff.next_s()
                self.restarts += 1
                self.log.exception("sensor task failed (%s); restarting in %.0f s", err, delay)
            await self.clock.sleep(delay)

    async def _stream(self) -> None:
        """One session of the sensor: open, stream until it ends, then flush and go offline."""
        try:
            source = self.host.open_source(self.plan, self.settings)
            async with source:
                self.source = source
                if hasattr(source, "hand_over"):  # sources that can hold samples until they are due
                    source.hand_over = self.buffer
                async for batch in source:
                    if not self.streaming:
                        self.streaming = True
                        self.backoff.reset()  # a session that streamed: the next failure waits 1 s
                        self.log.info("streaming from %s", self.settings.sensor)
                        self.host.availability(self.name, True)
                        self.coach_topics.publish_all()
                    for ready in self.buffer.add(batch):
                        self.handle(ready)
        finally:
            self.drain()
            hurry(self, False)  # no samples, no alert: until the next stream's first hand-over
            self.source = None
            if self.streaming:
                self.streaming = False
                self.host.availability(self.name, False)

    async def stop(self) -> None:
        """Stop streaming (within SHUTDOWN_WEARERS_S), process what is buffered, save."""
        if self.task is not None:
            self.task.cancel()
            # Not awaited past the deadline: a source that ignores cancellation must not hold
            # up the save and the "offline" that follow.
            await asyncio.wait({self.task}, timeout=SHUTDOWN_WEARERS_S)
        for task in list(self._background):
            task.cancel()
        self.drain()
        await self.saver.final(SHUTDOWN_SAVE_S)

    @property
    def background_tasks(self) -> int:
        """Haptic buzzes under way (``health_line``)."""
        return len(self._background)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
