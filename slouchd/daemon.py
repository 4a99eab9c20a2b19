"""The asyncio daemon: one supervised task per wearer, one MQTT publisher, signals, sd_notify.

It wires; it does not compute. Samples flow source -> PostureTracker -> publisher/console/state
store; commands flow MQTT -> validated command -> tracker/settings. ``slouchd run`` and
``slouchd demo`` both run :class:`Daemon`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from slouchd import __version__
from slouchd.broker import EmbeddedBroker
from slouchd.config import Config, ConfigError, WearerSettings, load_config
from slouchd.logs import setup_logging
from slouchd.model import Activity, Event, EventKind, Mount, Posture, PostureFrame, SampleBatch
from slouchd.overrides import SettingOverrides
from slouchd.posture.settings import DetectionSettings
from slouchd.posture.tracker import PostureTracker
from slouchd.publish.commands import Command, CommandResult
from slouchd.publish.mqtt import MqttPublisher, WearerInfo
from slouchd.publish.outbox import Outbox
from slouchd.publish.wearer import STATE_SETTINGS
from slouchd.sample_buffer import SampleBuffer
from slouchd.schema import check_partial
from slouchd.sdnotify import Notifier
from slouchd.sensors.base import SensorSource
from slouchd.sensors.ble import AdapterWedged
from slouchd.sensors.factory import SourcePlan, open_source, plan_source
from slouchd.state import StateStore, default_state_dir

log = logging.getLogger("slouchd")

EXIT_OK = 0
EXIT_CONFIG = 78  # sysexits EX_CONFIG: systemd's RestartPreventExitStatus stops a restart loop
EXIT_SOFTWARE = 70  # sysexits EX_SOFTWARE: a bug (logged with its traceback); systemd restarts us
EXIT_ADAPTER = 75  # EX_TEMPFAIL: the Bluetooth adapter is wedged; let systemd restart us

DISPATCH_TICKS = 1
"""Run a wearer's tracker once this many 0.1 s decision ticks have completed (see SampleBuffer):
1 adds no delay to alerts; 2 halves the tracker's calls but delays an alert by up to 0.1 s."""
SAVE_EVERY_S = 5.0  # kill -9 loses at most this much of today's totals
STATS_EVERY_S = 60.0
HOUSEKEEPING_S = 1.0
"""Status line and watchdog cadence; reloads and dead tasks wake the housekeeping at once."""
RESTART_BACKOFF_MAX_S = 30.0
SHUTDOWN_WEARERS_S = 1.5
SHUTDOWN_SAVE_S = 1.0
SHUTDOWN_MQTT_S = 2.0  # wearers, a pending save and MQTT together stay within systemd's 5 s
OVERRIDE_KEYS = STATE_SETTINGS
"""[detection] keys that Home Assistant / MQTT commands may change (persisted per wearer)."""


class View(Protocol):
    """Something that shows what happens (the demo's terminal view)."""

    def on_frame(self, wearer: str, frame: PostureFrame) -> None: ...

    def on_event(self, wearer: str, event: Event) -> None: ...


@functools.lru_cache(maxsize=256)
def wall_iso(t_s: float) -> str:
    """Local ISO-8601 time of a sample-clock time (Unix seconds), to the second.

    Cached: every wearer's state of one second has the same ``t_s`` (frames fall on whole
    seconds of the shared sample clock), so one conversion serves them all.
    """
    return datetime.fromtimestamp(t_s).astimezone().isoformat(timespec="seconds")


def new_tracker(config: Config, detection: DetectionSettings, mount: Mount | None) -> PostureTracker:
    """The posture engine of one live wearer (one state a second)."""
    return PostureTracker(detection, config.wellbeing, mount, calibration_settings=config.calibration,
                          activity=config.activity, frame_interval_s=1.0)


class WearerRuntime:
    """One wearer: its tracker, its source, its persisted state, supervised in its own task."""

    def __init__(self, daemon: Daemon, settings: WearerSettings) -> None:
        self.daemon = daemon
        self.settings = settings
        self._detection: tuple[Config, WearerSettings, dict[str, Any], DetectionSettings] | None = None
        self.name = settings.name
        self.log = logging.getLogger(f"slouchd.wearer.{self.name}")
        self.plan: SourcePlan = plan_source(settings, daemon.config)
        saved = daemon.store.load(self.name)
        self.overrides: dict[str, Any] = {}
        self.overrides_file: dict[str, Any] = {}
        self._reconcile_overrides(SettingOverrides.from_saved(saved), "at start")
        self.snooze_until_s: float | None = saved.get("snooze_until_s")
        cfg = daemon.config
        self.tracker = new_tracker(cfg, self.detection(), self.plan.mount)
        if saved.get("tracker"):
            try:
                self.tracker.restore_state(saved["tracker"])
            except Exception as err:  # a foreign or hand-edited file must not stop the daemon
                self.log.warning("saved calibration/totals unusable (%r); starting afresh", err)
                daemon.store.set_aside(self.name, f"tracker state unusable: {err!r}")
                self.tracker = new_tracker(cfg, self.detection(), self.plan.mount)
        if self.snooze_until_s is not None:
            self.tracker.snooze_until(self.snooze_until_s)
        self.source: SensorSource | None = None
        self.buffer = SampleBuffer(DISPATCH_TICKS)
        self.task: asyncio.Task[None] | None = None
        self.streaming = False
        self.last_batch_wall = 0.0
        self.alerts = 0
        self.events_seen: dict[str, int] = {}
        self.restarts = 0
        self.tracker_calls = 0
        self._last_save = time.monotonic()
        self._last_stats = 0.0
        self._saving: asyncio.Task[None] | None = None
        self._save_again = False
        self._snapshots = 0
        self._background: set[asyncio.Task[Any]] = set()

    # ----- settings -------------------------------------------------------------------------
    def _file_values(self) -> dict[str, Any]:
        """The config file's values (with per-wearer sections) of the keys HA may change."""
        base = self.daemon.config.wearer_detection(self.settings)
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
        base = self.daemon.config.wearer_detection(self.settings)
        kept = {k: v for k, v in saved.items() if k in OVERRIDE_KEYS}
        try:
            # The same bounds and types as the config file; then the cross-field rules.
            kept = check_partial(DetectionSettings, kept, str(self.daemon.store.path(self.name)), "")
            candidate = dataclasses.replace(base, **kept)
            candidate.validate()
        except (ValueError, TypeError) as err:
            self.log.warning("saved settings %s are not valid (%s); using the config's", kept, err)
            return {}
        if len(kept) != len(saved):
            self.log.warning("saved settings: ignoring unknown keys %s", sorted(set(saved) - set(kept)))
        return kept

    def detection(self) -> DetectionSettings:
        """[detection] in force: config file, per-wearer overrides, then changes from MQTT.

        Built once per (config, wearer settings, overrides) and kept: every state (1 Hz per
        wearer) reads it; a reload or a command replaces one of the three objects.
        """
        cfg, settings, overrides = self.daemon.config, self.settings, self.overrides
        cached = self._detection
        if cached is not None and cached[0] is cfg and cached[1] is settings and cached[2] is overrides:
            return cached[3]
        base = cfg.wearer_detection(settings)
        det = dataclasses.replace(base, **overrides) if overrides else base
        self._detection = (cfg, settings, overrides, det)
        return det

    def info(self) -> WearerInfo:
        return WearerInfo(
            name=self.name, sensor_id=self.plan.sensor_id, model=self.plan.model,
            profile=self.plan.profile, detection=self.detection())

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
        pub = self.daemon.publisher
        return {
            "reconnects": 0 if status is None else status.reconnects,
            "packets": 0 if status is None else status.packets,
            "dropped": sum(drops.values()),
            "dropped_by_reason": drops,
            "alerts": self.alerts,
            "task_restarts": self.restarts,
            "mqtt_queue": 0 if pub is None else pub.queue_depth,
            **self.daemon.gateway_counters(),
        }

    # ----- the sample path --------------------------------------------------------------------
    def handle(self, batch: SampleBatch) -> None:
        """Feed one batch through the tracker and fan the results out (synchronous, fast)."""
        out = self.tracker.process(batch)
        self.tracker_calls += 1
        pub = self.daemon.publisher
        view = self.daemon.view
        for frame in out.frames:
            if pub is not None:
                pub.publish_state(self.name, self.state_payload(frame))
            if view is not None:
                view.on_frame(self.name, frame)
        for event in out.events:
            self.on_event(event)
        self.last_batch_wall = time.monotonic()
        if self.last_batch_wall - self._last_save >= SAVE_EVERY_S:
            self.save_soon()
        if self.last_batch_wall - self._last_stats >= STATS_EVERY_S:
            self.publish_stats()

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
            if self.daemon.config.ble.haptic and self.source is not None:
                self._spawn(self._buzz(int(event.data.get("level", 1))))
        elif event.kind is EventKind.BREAK_REMINDER:
            self.log.info("break reminder: sitting for %s min", event.data.get("sitting_min"))
        elif event.kind in (EventKind.CALIBRATED, EventKind.CALIBRATION_FAILED):
            self.log.info("%s %s", event.kind.value, {k: v for k, v in event.data.items()})
            self.save_soon()  # a calibration is never to be lost
        else:
            self.log.debug("%s %s", event.kind.value, event.data)
        if self.daemon.publisher is not None:
            self.daemon.publisher.publish_event(self.name, doc)
        if self.daemon.view is not None:
            self.daemon.view.on_event(self.name, event)
        if event.kind is not EventKind.SLOUCH_END:
            self.publish_stats()

    async def _buzz(self, level: int) -> None:
        source = self.source
        if source is None:
            return
        try:
            await source.buzz(level)
        except Exception as err:  # a failed buzz must never stop the stream
            self.log.warning("haptic buzz failed: %s", err)

    def publish_stats(self) -> None:
        self._last_stats = time.monotonic()
        if self.daemon.publisher is not None:
            self.daemon.publisher.publish_stats(self.name, self.tracker.stats())

    # ----- persistence ------------------------------------------------------------------------
    def _generation(self) -> int:
        self._snapshots += 1
        return self._snapshots

    def snapshot(self) -> dict[str, Any]:
        return {
            **SettingOverrides(dict(self.overrides), dict(self.overrides_file)).to_dict(),
            "snooze_until_s": self.snooze_until_s,
            "tracker": self.tracker.export_state(),
        }

    def save_now(self) -> None:
        try:
            self.daemon.store.save(self.name, self.snapshot(), self._generation())
        except OSError as err:
            self.log.error("cannot save state: %s", err)
        self._last_save = time.monotonic()

    def save_soon(self) -> None:
        """Save in a worker thread (fsync on an SD card can take 100 ms), one save at a time."""
        self._last_save = time.monotonic()
        if self._saving is not None and not self._saving.done():
            self._save_again = True  # e.g. a calibration during a periodic save: save it right after
            return
        self._save_again = False
        snap = self.snapshot()  # taken on the loop thread: consistent
        generation = self._generation()

        async def write() -> None:
            try:
                await asyncio.to_thread(self.daemon.store.save, self.name, snap, generation)
            except OSError as err:
                self.log.error("cannot save state: %s", err)
            if self._save_again:
                self._saving = None
                self.save_soon()

        self._saving = asyncio.get_running_loop().create_task(write())

    # ----- commands ---------------------------------------------------------------------------
    def apply(self, command: Command) -> CommandResult:
        """Apply a validated command; refuse (changing nothing) what the settings reject."""
        changes = dict(command.values)
        applied: dict[str, Any] = {}
        reset = bool(changes.get("use_file_settings"))
        # "use_file_settings" drops every value set from Home Assistant; keys in the same command
        # apply after it. Everything is checked before anything changes.
        new_overrides = {} if reset else dict(self.overrides)
        new_file = {} if reset else dict(self.overrides_file)
        set_keys = [k for k in OVERRIDE_KEYS if k in changes]
        if reset or set_keys:
            base = self.daemon.config.wearer_detection(self.settings)
            for key in set_keys:
                new_overrides[key] = changes[key]
                new_file[key] = getattr(base, key)  # the file's value now: a later edit of it wins
            try:
                candidate = dataclasses.replace(base, **new_overrides)
                candidate.validate()
            except (ValueError, TypeError) as err:
                return CommandResult(ok=False, error=str(err))
            if reset:
                dropped = sorted(set(self.overrides) - set(set_keys))
                self.log.info("Home Assistant settings dropped, the config file's apply: %s",
                              ", ".join(dropped) or "none were set")
                applied["use_file_settings"] = True
            self.overrides, self.overrides_file = new_overrides, new_file
            self.tracker.set_detection(candidate)
            applied.update({k: changes[k] for k in set_keys})
        if "snooze_min" in changes:
            minutes = float(changes["snooze_min"])
            now = self.tracker.frame.t_s if self.tracker.frame.t_s > 0 else time.time()
            self.snooze_until_s = now + minutes * 60.0 if minutes > 0 else None
            self.tracker.snooze_until(self.snooze_until_s)
            applied["snooze_min"] = minutes
        if changes.get("calibrate"):
            self.tracker.request_calibration()
            applied["calibrate"] = True
        self.save_soon()
        if self.daemon.publisher is not None:
            self.daemon.publisher.set_wearers(self.daemon.wearer_infos())
            if self.tracker.frame.t_s > 0:
                self.daemon.publisher.publish_state(self.name, self.state_payload(self.tracker.frame))
        self.log.info("command applied: %s", applied)
        return CommandResult(ok=True, applied=applied)

    # ----- supervision ------------------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"wearer:{self.name}")
        self.task.add_done_callback(self.daemon.wake_housekeeping)

    async def run(self) -> None:
        """Stream forever; a failure is logged with its traceback and the stream restarted."""
        backoff = 1.0
        while True:
            try:
                source = open_source(self.plan, self.settings, self.daemon.config,
                                     start_epoch_s=self.daemon.start_epoch_s)
                async with source:
                    self.source = source
                    async for batch in source:
                        if not self.streaming:
                            self.streaming = True
                            self.log.info("streaming from %s", self.settings.sensor)
                            if self.daemon.publisher is not None:
                                self.daemon.publisher.set_availability(self.name, True)
                        for ready in self.buffer.add(batch):
                            self.handle(ready)
                        backoff = 1.0
                self.log.info("source ended; starting it again")
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if isinstance(err, AdapterWedged):
                    raise
                self.restarts += 1
                self.log.exception("sensor task failed (%s); restarting in %.0f s", err, backoff)
            finally:
                self.drain()
                self.source = None
                if self.streaming:
                    self.streaming = False
                    if self.daemon.publisher is not None:
                        self.daemon.publisher.set_availability(self.name, False)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2.0, RESTART_BACKOFF_MAX_S)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self.task), SHUTDOWN_WEARERS_S)
        for task in list(self._background):
            task.cancel()
        self.drain()
        self._save_again = False  # the final save below covers it
        if self._saving is not None and not self._saving.done():
            with contextlib.suppress(Exception):
                # shield: a slow save keeps going in its thread; its older snapshot cannot
                # overwrite the final one (generations), so there is no need to wait it out.
                await asyncio.wait_for(asyncio.shield(self._saving), SHUTDOWN_SAVE_S)
        self.save_now()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class Daemon:
    """Runs every configured wearer and the MQTT publisher until told to stop.

    Args:
        config: the validated configuration.
        config_path: the file it came from (re-read on SIGHUP); None = built-in defaults.
        overrides: ``KEY=VALUE`` overrides applied on every (re)load.
        view: optional live view (the demo's terminal).
        notifier: sd_notify sender (default: from the environment).
        start_epoch_s: sample-clock start of simulated/replay sources (default: now).
    """

    def __init__(self, config: Config, *, config_path: str | None = None,
                 overrides: list[str] | None = None, view: View | None = None,
                 notifier: Notifier | None = None, start_epoch_s: float | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.overrides = list(overrides or [])
        self.view = view
        self.notifier = notifier or Notifier()
        self.start_epoch_s = start_epoch_s
        self.store = StateStore(default_state_dir(config.daemon.state_dir))
        self.outbox = Outbox(self.store.directory / "outbox.jsonl")  # issue 12: alerts survive a crash
        self.publisher: MqttPublisher | None = None
        self.broker: EmbeddedBroker | None = None
        self.wearers: dict[str, WearerRuntime] = {}
        self.exit_code = EXIT_OK
        self._stop = asyncio.Event()
        self._reload_requested = False
        self._attention = asyncio.Event()  # something for the housekeeping to see to now
        self._publisher_task: asyncio.Task[None] | None = None
        self._swapping = False  # an MQTT session switch (reload) is under way
        self.started_at = time.monotonic()

    def wearer_infos(self) -> list[WearerInfo]:
        return [rt.info() for rt in self.wearers.values()]

    async def on_command(self, wearer: str, command: Command) -> CommandResult:
        rt = self.wearers.get(wearer)
        if rt is None:
            return CommandResult(ok=False, error=f"no wearer named {wearer!r}")
        return rt.apply(command)

    def status_line(self) -> str:
        streaming = sum(1 for rt in self.wearers.values() if rt.streaming)
        mqtt = "connected" if self.publisher is not None and self.publisher.connected else "disconnected"
        return f"mqtt={mqtt} wearers={streaming}/{len(self.wearers)} streaming"

    def gateway_counters(self) -> dict[str, Any]:
        """The gateway's own counters, shared by every wearer's diagnostics: ``gateway`` (MQTT
        reconnects, alerts and reminders sent, commands refused, payloads dropped unread, outbox,
        sd_notify messages dropped) and ``gateway_drops``, the total refused or dropped."""
        pub = self.publisher
        counts = {} if pub is None else pub.counters()
        gateway = {
            "mqtt_reconnects": counts.get("mqtt_reconnects", 0),
            "alerts_sent": counts.get("mqtt_alerts", 0),
            "reminders_sent": counts.get("mqtt_reminders", 0),
            "commands_refused": counts.get("mqtt_commands_refused", 0),
            "payloads_dropped": counts.get("mqtt_payloads_dropped", 0),
            "outbox": counts.get("mqtt_outbox", 0),
            "notify_dropped": getattr(self.notifier, "dropped", 0),
        }
        drops = gateway["commands_refused"] + gateway["payloads_dropped"] + gateway["notify_dropped"]
        return {"gateway": gateway, "gateway_drops": drops}

    def health_line(self) -> str:
        """One line of internals for leak hunting (``kill -USR1 <pid>`` logs it): asyncio tasks,
        queues, counters. ``bench/soak.py`` reads it to check that nothing grows."""
        pub = self.publisher
        background = sum(len(rt._background) for rt in self.wearers.values())
        return (f"health: uptime_s={time.monotonic() - self.started_at:.0f} "
                f"tasks={len(asyncio.all_tasks())} wearers={len(self.wearers)} "
                f"streaming={sum(1 for rt in self.wearers.values() if rt.streaming)} "
                f"background_tasks={background} "
                f"mqtt_queue={0 if pub is None else pub.queue_depth} "
                f"mqtt_published={0 if pub is None else pub.published} "
                f"mqtt_dropped={0 if pub is None else pub.dropped} "
                f"states_published={0 if pub is None else pub.state_published} "
                f"alerts={sum(rt.alerts for rt in self.wearers.values())} "
                f"restarts={sum(rt.restarts for rt in self.wearers.values())} "
                f"notify_dropped={getattr(self.notifier, 'dropped', 0)} "
                + ("" if pub is None else " ".join(f"{k}={v}" for k, v in pub.counters().items()
                                                   if k not in ("mqtt_published", "mqtt_dropped"))))

    def wake_housekeeping(self, *_: object) -> None:
        """Have the housekeeping look now (a reload, a task that ended) instead of at its next round."""
        self._attention.set()

    def _start_publisher_task(self, coro: Any) -> None:
        self._publisher_task = asyncio.get_running_loop().create_task(coro, name="mqtt")
        self._publisher_task.add_done_callback(self.wake_housekeeping)

    def request_stop(self, code: int = EXIT_OK) -> None:
        if code != EXIT_OK:
            self.exit_code = code
        self._stop.set()

    # ----- lifecycle --------------------------------------------------------------------------
    async def run(self, duration_s: float | None = None) -> int:
        """Run until SIGTERM/SIGINT (or ``duration_s`` wall seconds); returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        # The line itself is the message (not a "%s" template): the repeat limiter keys on the
        # template and would swallow all but a few of these on-demand lines.
        loop.add_signal_handler(signal.SIGUSR1, lambda: log.info(self.health_line()))
        try:
            if not self.config.mqtt.host:
                self.broker = EmbeddedBroker(self.config.mqtt.port)
                await self.broker.start()
            for w in self.config.wearers:
                self.wearers[w.name] = WearerRuntime(self, w)
            self.publisher = self._make_publisher(self.config, self.broker)
            for name in self.wearers:
                # Not streaming yet: replaces an "online" a killed earlier run left retained.
                self.publisher.set_availability(name, False)
            self._start_publisher_task(self.publisher.run())
            for rt in self.wearers.values():
                rt.start()
            # Ready = config loaded and tasks started; not gated on the broker or the sensors.
            self.notifier.ready(self.status_line())
            log.info("slouchd %s running %d wearer(s): %s", __version__, len(self.wearers),
                     ", ".join(self.wearers) or "none")
            house = loop.create_task(self._housekeeping(), name="housekeeping")
            stop_wait = loop.create_task(self._stop.wait())
            await asyncio.wait([stop_wait], timeout=duration_s)
            stop_wait.cancel()
            house.cancel()
            await self._shutdown()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                loop.remove_signal_handler(sig)
            if self.broker is not None:
                await self.broker.stop()
            self.notifier.close()
        return self.exit_code

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping: saving state and publishing offline")
        await asyncio.gather(*(rt.stop() for rt in self.wearers.values()))
        if self.publisher is not None:
            for name in self.wearers:
                self.publisher.set_availability(name, False)
            with contextlib.suppress(Exception):
                await self.publisher.close(timeout_s=SHUTDOWN_MQTT_S)
            if self.publisher.queue_depth:
                log.warning("%d queued event(s) not delivered: the MQTT broker was not reachable "
                            "before the shutdown deadline", self.publisher.queue_depth)
        task = self._publisher_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _housekeeping(self) -> None:
        """Status lines, watchdog pings while healthy, dead-task detection, reloads.

        One round a second (it was four: with nothing else to do, the idle daemon's cost), and at
        once when woken by SIGHUP or a task that ended.
        """
        wd = self.notifier.watchdog_s
        ping_every = wd / 2.0 if wd else None
        period = HOUSEKEEPING_S if ping_every is None else min(HOUSEKEEPING_S, ping_every / 2.0)
        last_ping = 0.0
        last_status = ""
        last_idle_state = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._attention.wait(), period)
            self._attention.clear()
            if self._reload_requested and not self._swapping:
                self._reload_requested = False
                try:
                    self.reload()
                except Exception:  # a reload must never take the watchdog down with it
                    log.exception("reload failed half-way; restart slouchd to be sure of its state")
            for rt in list(self.wearers.values()):
                task = rt.task
                if task is not None and task.done() and not task.cancelled():
                    err = task.exception()
                    if isinstance(err, AdapterWedged):
                        log.critical("Bluetooth adapter wedged (%s): exiting so systemd restarts us", err)
                        self.request_stop(EXIT_ADAPTER)
                        return
                    log.error("wearer %s task ended unexpectedly (%r); restarting", rt.name, err)
                    rt.start()
            publisher_task = self._publisher_task
            healthy = publisher_task is not None and not publisher_task.done()
            if (publisher_task is not None and publisher_task.done() and not publisher_task.cancelled()
                    and self.publisher is not None):
                err = publisher_task.exception()
                log.error("MQTT task ended unexpectedly; restarting it", exc_info=err)
                self._start_publisher_task(self.publisher.run())
            now = time.monotonic()
            if now - last_idle_state >= STATS_EVERY_S:
                last_idle_state = now
                self._publish_idle_states()
            status = self.status_line()
            if status != last_status:
                self.notifier.status(status)
                last_status = status
            now = time.monotonic()
            if ping_every and healthy and now - last_ping >= ping_every:
                self.notifier.watchdog()
                last_ping = now

    def _publish_idle_states(self) -> None:
        """A wearer whose sensor is not streaming still shows its counters (reconnects, packets,
        task restarts) in Home Assistant, with the posture unknown."""
        if self.publisher is None:
            return
        for rt in self.wearers.values():
            if rt.streaming:
                continue
            frame = dataclasses.replace(
                rt.tracker.frame, t_s=time.time(), flexion_deg=None, lateral_deg=None,
                posture=Posture.UNKNOWN, activity=Activity.UNKNOWN, worn=False)
            self.publisher.publish_state(rt.name, rt.state_payload(frame))

    def _on_sighup(self) -> None:
        self._reload_requested = True
        self.wake_housekeeping()

    def reload(self) -> None:
        """Re-read the config: new detection settings apply at once; wearers come and go.

        systemd hears RELOADING=1 then, whatever happens, READY=1 again (a unit left in
        "reloading" would block the next ``systemctl reload``).
        """
        self.notifier.reloading()
        try:
            self._reload()
        finally:
            self.notifier.ready(self.status_line())

    def _reload(self) -> None:
        try:
            new = load_config(self.config_path, self.overrides)
            for w in new.wearers:  # unknown profiles, bad profile files: refuse before changing anything
                plan_source(w, new)
                # Every wearer's new settings must make a working tracker before anything changes.
                new_tracker(new, new.wearer_detection(w), None)
            mqtt_changed = (new.mqtt != self.config.mqtt or new.homeassistant != self.config.homeassistant
                            # a rotated password_file applies on SIGHUP too
                            or (self.publisher is not None and self.publisher.password_changed(new.mqtt)))
            swap = self._prepare_publisher(new) if mqtt_changed else None  # bad password file, TLS
        except (ConfigError, OSError, ValueError, TypeError) as err:
            log.error("reload refused, keeping the running config: %s", err, extra={"unlimited": True})
            return
        old = self.config
        self.config = new
        self._reload_daemon_settings(old, new)
        new_names = {w.name for w in new.wearers}
        for name in list(self.wearers):
            if name not in new_names:
                log.info("wearer %s removed", name)
                rt = self.wearers.pop(name)
                asyncio.get_running_loop().create_task(rt.stop())
        for w in new.wearers:
            rt = self.wearers.get(w.name)
            if rt is None:
                log.info("wearer %s added", w.name)
                rt = WearerRuntime(self, w)
                self.wearers[w.name] = rt
                rt.start()
                continue
            sensor_changed = (w.sensor, w.profile, w.mount, w.speed, w.seed) != (
                rt.settings.sensor, rt.settings.profile, rt.settings.mount, rt.settings.speed,
                rt.settings.seed)
            rt.settings = w
            # A key the file changed since the last Home Assistant change wins (the same rule
            # as at start); what is left must still fit the new file (hysteresis < threshold).
            rt._reconcile_overrides(SettingOverrides(dict(rt.overrides), dict(rt.overrides_file)),
                                    "after reload")
            if sensor_changed:
                log.info("wearer %s: sensor settings changed; reconnecting", w.name)
                asyncio.get_running_loop().create_task(self._restart_wearer(rt))
            rt.tracker.set_detection(rt.detection())
            if rt.tracker.frame.t_s > 0 and self.publisher is not None:
                self.publisher.publish_state(rt.name, rt.state_payload(rt.tracker.frame))
        if self.publisher is not None:
            self.publisher.set_wearers(self.wearer_infos())
        if swap is not None:
            self._swap_publisher(old, new, *swap)
        # Never rate-limited: "reload refused" is not either, and the last word must be visible.
        log.info("configuration reloaded from %s", self.config_path or "<defaults>",
                 extra={"unlimited": True})

    def _reload_daemon_settings(self, old: Config, new: Config) -> None:
        if (new.daemon.log_level, new.daemon.log_format) != (old.daemon.log_level, old.daemon.log_format):
            setup_logging(new.daemon.log_level, new.daemon.log_format)
            log.info("log level %s, format %s", new.daemon.log_level, new.daemon.log_format)
        if new.daemon.state_dir != old.daemon.state_dir:
            log.warning("daemon.state_dir changed: restart slouchd to apply it (state stays in %s)",
                        self.store.directory)

    def _make_publisher(self, config: Config, broker: EmbeddedBroker | None,
                        wearers: list[WearerInfo] | None = None) -> MqttPublisher:
        """A publisher for ``config``'s [mqtt]/[homeassistant] (and ``wearers``, default: the
        running ones); raises on unreadable secrets."""
        mqtt_settings = config.mqtt
        if broker is not None:
            # amqtt speaks MQTT 3.1.1 only (a v5 CONNECT with a will stalls it).
            mqtt_settings = dataclasses.replace(mqtt_settings, host=broker.host, port=broker.port,
                                                protocol="3.1.1")
        try:
            return MqttPublisher(mqtt_settings, config.homeassistant,
                                 self.wearer_infos() if wearers is None else wearers,
                                 on_command=self.on_command, outbox=self.outbox)
        except ConfigError as err:  # an unreadable password file, CA or key: name the config file
            raise ConfigError(f"{config.source}: {err}") from None

    def _prepare_publisher(self, new: Config) -> tuple[MqttPublisher, EmbeddedBroker | None]:
        """The publisher (and embedded broker) a reload to ``new`` would switch to.

        Built before anything changes, so an unreadable password file or TLS key refuses the
        whole reload. An embedded broker on an unchanged port is kept; a new one is only
        started by :meth:`_swap_publisher`.
        """
        broker: EmbeddedBroker | None = None
        if not new.mqtt.host:
            keep = self.broker is not None and not self.config.mqtt.host and (
                new.mqtt.port == self.config.mqtt.port)
            broker = self.broker if keep else EmbeddedBroker(new.mqtt.port)
        # No wearers yet: _swap_publisher gives it the reloaded list (a wearer removed by this
        # reload must not get clears queued on a broker it was never announced on).
        return self._make_publisher(new, broker, wearers=[]), broker

    def _swap_publisher(self, old: Config, new: Config, publisher: MqttPublisher,
                        broker: EmbeddedBroker | None) -> None:
        """Switch MQTT sessions after a reload changed [mqtt] or [homeassistant].

        Queued alerts, sequence numbers and the newest values move to the new publisher at
        once (nothing published from now on is lost); the old session then sends its
        clean-up and ``offline`` and disconnects before the new one connects, so the same
        client id on the same broker never fights itself and ``online`` is the last word.
        """
        previous, previous_task = self.publisher, self._publisher_task
        assert previous is not None
        publisher.set_wearers(self.wearer_infos())
        publisher.take_over(previous)
        same_broker = (old.mqtt.host, old.mqtt.port) == (new.mqtt.host, new.mqtt.port)
        previous.retire(
            clear_discovery=same_broker and old.homeassistant.discovery and (
                not new.homeassistant.discovery
                or new.homeassistant.discovery_prefix != old.homeassistant.discovery_prefix),
            clear_topics=same_broker and new.mqtt.base_topic != old.mqtt.base_topic)
        self.publisher = publisher
        log.info("[mqtt]/[homeassistant] changed: reconnecting to %s:%d",
                 new.mqtt.host or "the embedded broker", new.mqtt.port)

        async def switch() -> None:
            try:
                with contextlib.suppress(Exception):
                    await previous.close(timeout_s=3.0)
            finally:  # even when cancelled (shutdown): the old session must not live on
                if previous_task is not None:
                    previous_task.cancel()
            if previous_task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await previous_task
            try:
                if broker is not self.broker:
                    if self.broker is not None:
                        await self.broker.stop()
                    self.broker = broker
                    if broker is not None:
                        try:
                            await broker.start()
                        except Exception as err:  # the publisher keeps retrying; say why
                            log.error("embedded MQTT broker failed to start on port %d: %s", broker.port, err)
            finally:
                self._swapping = False
                self.wake_housekeeping()  # a reload that waited for this switch goes ahead now
            await publisher.run()

        self._swapping = True  # a reload waits until this switch is done (see _housekeeping)

        self._start_publisher_task(switch())

    async def _restart_wearer(self, rt: WearerRuntime) -> None:
        if rt.task is not None:
            rt.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await rt.task
        try:
            rt.plan = plan_source(rt.settings, self.config)
        except Exception as err:  # e.g. the replay file went away since the reload checked it
            log.error("wearer %s: cannot use the new sensor settings (%s); keeping the old ones",
                      rt.name, err)
        rt.start()


def run_daemon(config: Config, **kwargs: Any) -> int:
    """Run a :class:`Daemon` in a fresh event loop; returns the exit code."""
    duration_s = kwargs.pop("duration_s", None)
    on_exit: Callable[[Daemon], None] | None = kwargs.pop("on_exit", None)

    async def main() -> int:
        daemon = Daemon(config, **kwargs)
        code = await daemon.run(duration_s=duration_s)
        if on_exit is not None:
            on_exit(daemon)
        return code

    try:
        return asyncio.run(main())
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception:  # a bug: say so with the traceback, and a defined exit code for systemd
        log.critical("slouchd stopped by an unexpected error", exc_info=True)
        return EXIT_SOFTWARE
