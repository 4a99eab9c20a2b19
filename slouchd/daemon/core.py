"""The asyncio daemon: one supervised task per wearer, one MQTT session, signals, sd_notify.

It wires; it does not compute. Samples flow source -> PostureTracker -> publisher/console/state
store; commands flow MQTT -> validated command -> tracker/settings. ``slouchd run`` and
``slouchd demo`` both run :class:`Daemon`.

Supervision: every long-lived task (wearers, MQTT, housekeeping jobs, a reload's stops and
restarts) runs in one :class:`asyncio.TaskGroup`, so none outlives :meth:`Daemon.run`. The
group's own rule (the first exception cancels everything) is kept for bugs only: failures that
are expected restart inside their task (a sensor: :meth:`WearerRuntime.run` with backoff; the
MQTT task: ``MqttSession._keep_running``), and a fatal one (a wedged adapter) asks for a graceful
stop with exit code 75 instead of raising, so state is saved and ``offline`` published first.
Shutdown happens inside the group with its own deadlines (systemd's 5 s); leaving the group then
only waits for tasks that were already cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from slouchd import __version__
from slouchd.broker import EmbeddedBroker
from slouchd.config import Config, ConfigError, WearerSettings, load_config
from slouchd.daemon.coach import ThreadedHistory
from slouchd.daemon.constants import (
    EXIT_ADAPTER,
    EXIT_OK,
    EXIT_SOFTWARE,
    RESTART_BACKOFF_MAX_S,
    RESTART_BACKOFF_MIN_S,
    SHUTDOWN_SAVE_S,
    STATS_EVERY_S,
    STATUS_EVERY_S,
)
from slouchd.daemon.diagnostics import gateway_counters, health_line
from slouchd.daemon.errors import is_fatal
from slouchd.daemon.host import StatePayload, View
from slouchd.daemon.jobs import IdleStates, Reloader, StatusLine, Watchdog, every
from slouchd.daemon.mqtt_session import MqttSession
from slouchd.daemon.reload import ReloadPlan, check_new_config, plan_reload
from slouchd.daemon.sources import SourcePlan
from slouchd.daemon.wakeups import new_event_loop
from slouchd.daemon.wearer import WearerRuntime
from slouchd.history import HistoryStore
from slouchd.logs import setup_logging
from slouchd.model import Event, PostureFrame
from slouchd.posture.stretch_catalog import StretchCatalog
from slouchd.publish.commands import Command, CommandResult
from slouchd.publish.mqtt import MqttPublisher
from slouchd.publish.outbox import Outbox
from slouchd.publish.wearer import WearerInfo
from slouchd.sdnotify import Notifier
from slouchd.sensors.base import SensorSource
from slouchd.state import StateStore, default_state_dir
from slouchd.stretches import load_catalog
from slouchd.timing import SYSTEM_CLOCK, Backoff, Clock, within

log = logging.getLogger("slouchd")

SourceOpener = Callable[..., SensorSource]
"""``(plan, wearer, config, *, start_epoch_s)`` -> a source, as
:func:`slouchd.daemon.sources.open_source`."""


def _package_attr(name: str) -> Any:
    """``slouchd.daemon.<name>`` as it is now: bench/_packet_daemon.py and bench/alert_latency.py
    replace ``open_source`` and ``MqttPublisher`` on the package before building a Daemon."""
    import slouchd.daemon as package

    return getattr(package, name)


class Daemon:
    """Runs every configured wearer and the MQTT publisher until told to stop.

    Args:
        config: the validated configuration.
        config_path: the file it came from (re-read on SIGHUP); None = built-in defaults.
        overrides: ``KEY=VALUE`` overrides applied on every (re)load.
        view: optional live view (the demo's terminal).
        notifier: sd_notify sender (default: from the environment).
        start_epoch_s: sample-clock start of simulated/replay sources (default: now).
        clock: time for every schedule (housekeeping, restart backoff, save cadence).
        open_source: builds a wearer's source (default :func:`slouchd.daemon.sources.open_source`).
        restart_backoff_s: (first, longest) wait before opening a failed sensor again, seconds.
        publisher_class: the MQTT publisher to build (default :class:`MqttPublisher`).
    """

    def __init__(self, config: Config, *, config_path: str | None = None,
                 overrides: list[str] | None = None, view: View | None = None,
                 notifier: Notifier | None = None, start_epoch_s: float | None = None,
                 clock: Clock = SYSTEM_CLOCK, open_source: SourceOpener | None = None,
                 restart_backoff_s: tuple[float, float] = (RESTART_BACKOFF_MIN_S, RESTART_BACKOFF_MAX_S),
                 publisher_class: Callable[..., MqttPublisher] | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.overrides = list(overrides or [])
        self.view = view
        self.notifier = notifier or Notifier()
        self.start_epoch_s = start_epoch_s
        self.clock = clock
        self._open_source: SourceOpener = open_source or _package_attr("open_source")
        self._restart_backoff_s = restart_backoff_s
        self.store = StateStore(default_state_dir(config.daemon.state_dir))
        self.outbox = Outbox(self.store.directory / "outbox.jsonl")  # issue 12: alerts survive a crash
        self._catalog = load_catalog(config.stretch.catalog or None)
        self._history = ThreadedHistory(HistoryStore(self.store.directory, config.history.keep_days))
        self.mqtt = MqttSession(self.on_command, self.outbox,
                                publisher_class=publisher_class or _package_attr("MqttPublisher"))
        self.wearers: dict[str, WearerRuntime] = {}
        self.exit_code = EXIT_OK
        self.reloader = Reloader(self.reload)
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._stopping = False
        self._reload_lock = asyncio.Lock()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.started_at = clock.monotonic()

    @property
    def publisher(self) -> MqttPublisher | None:
        return self.mqtt.publisher

    @property
    def broker(self) -> EmbeddedBroker | None:
        return self.mqtt.broker

    # ----- what a wearer sees (slouchd.daemon.host.WearerHost) ----------------------------------
    @property
    def catalog(self) -> StretchCatalog:
        return self._catalog

    @property
    def history(self) -> ThreadedHistory:
        return self._history

    def retained(self, wearer: str, name: str, doc: dict[str, Any]) -> bool:
        pub = self.mqtt.publisher
        if pub is None:
            return False
        pub.publish_retained(wearer, name, doc)
        return True

    def open_source(self, plan: SourcePlan, settings: WearerSettings) -> SensorSource:
        return self._open_source(plan, settings, self.config, start_epoch_s=self.start_epoch_s)

    def diagnostics(self) -> dict[str, Any]:
        pub = self.mqtt.publisher
        return {"mqtt_queue": 0 if pub is None else pub.queue_depth, **self.gateway_counters()}

    def state(self, wearer: str, frame: PostureFrame, payload: StatePayload, *, show: bool = True) -> None:
        pub = self.mqtt.publisher
        if pub is not None:
            pub.publish_state(wearer, payload(frame))
        if show and self.view is not None:
            self.view.on_frame(wearer, frame)

    def event(self, wearer: str, event: Event, doc: dict[str, Any]) -> None:
        if self.mqtt.publisher is not None:
            self.mqtt.publisher.publish_event(wearer, doc)
        if self.view is not None:
            self.view.on_event(wearer, event)

    def stats(self, wearer: str, stats: dict[str, Any]) -> None:
        if self.mqtt.publisher is not None:
            self.mqtt.publisher.publish_stats(wearer, stats)

    def availability(self, wearer: str, online: bool) -> None:
        if self.mqtt.publisher is not None:
            self.mqtt.publisher.set_availability(wearer, online)

    def settings_changed(self) -> None:
        if self.mqtt.publisher is not None:
            self.mqtt.publisher.set_wearers(self.wearer_infos())

    # ----- queries --------------------------------------------------------------------------
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
        """The gateway's own counters, shared by every wearer's diagnostics (docs/mqtt.md)."""
        return gateway_counters(self.publisher, self.notifier)

    def health_line(self) -> str:
        """One line of internals for leak hunting (``kill -USR1 <pid>`` logs it)."""
        return health_line(self.publisher, self.notifier, list(self.wearers.values()),
                           self.clock.monotonic() - self.started_at)

    async def started(self) -> None:
        """Return once :meth:`run` has started every task and told systemd READY=1."""
        await self._started.wait()

    def request_stop(self, code: int = EXIT_OK) -> None:
        if code != EXIT_OK:
            self.exit_code = code
        self._stop.set()

    # ----- supervision ------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start ``coro`` in the daemon's task group."""
        assert self._group is not None, "the daemon is not running"
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _new_wearer(self, settings: WearerSettings) -> WearerRuntime:
        return WearerRuntime(self, settings, self.store, clock=self.clock,
                             backoff=Backoff(*self._restart_backoff_s, jitter_low=1.0))

    def _start_wearer(self, rt: WearerRuntime) -> None:
        if not self._stopping:
            rt.task = self._spawn(self._supervise(rt), f"wearer:{rt.name}")

    async def _supervise(self, rt: WearerRuntime) -> None:
        """Run one wearer; a fatal error stops the daemon (exit 75), anything else restarts it."""
        while True:
            try:
                await rt.run()
            except Exception as err:
                if is_fatal(err):
                    log.critical("wearer %s: Bluetooth adapter wedged (%s): exiting so systemd "
                                 "restarts us", rt.name, err)
                    self.request_stop(getattr(err, "exit_code", EXIT_ADAPTER))
                    return
                log.error("wearer %s task ended unexpectedly (%r); restarting", rt.name, err)

    async def _restart_wearer(self, rt: WearerRuntime) -> None:
        if rt.task is not None:
            rt.task.cancel()
            await asyncio.wait({rt.task})
        rt.replan()
        self._start_wearer(rt)

    # ----- lifecycle --------------------------------------------------------------------------
    async def run(self, duration_s: float | None = None) -> int:
        """Run until SIGTERM/SIGINT (or ``duration_s`` seconds); returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        # The line itself is the message (not a "%s" template): the repeat limiter keys on the
        # template and would swallow all but a few of these on-demand lines.
        loop.add_signal_handler(signal.SIGUSR1, lambda: log.info(self.health_line()))
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await self._start()
                jobs = self._start_jobs()
                if duration_s is None:
                    await self._stop.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await within(self.clock, self._stop.wait(), duration_s)
                for job in jobs:
                    job.cancel()
                await self._shutdown()
                for task in list(self._tasks):  # a reload's stops and restarts still under way
                    task.cancel()
        finally:
            self._group = None
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                loop.remove_signal_handler(sig)
            await self.mqtt.stop_broker()
            self.notifier.close()
        return self.exit_code

    async def _start(self) -> None:
        for w in self.config.wearers:
            self.wearers[w.name] = self._new_wearer(w)
        await self.mqtt.open(self.config, self.wearer_infos(), self._spawn)
        for rt in self.wearers.values():
            self._start_wearer(rt)
        # Ready = config loaded and tasks started; not gated on the broker or the sensors.
        self.notifier.ready(self.status_line())
        self._started.set()
        log.info("slouchd %s running %d wearer(s): %s", __version__, len(self.wearers),
                 ", ".join(self.wearers) or "none")

    def _start_jobs(self) -> list[asyncio.Task[Any]]:
        """The housekeeping (see :mod:`slouchd.daemon.jobs`)."""
        jobs = [
            self._spawn(every(self.clock, STATUS_EVERY_S, StatusLine(self.notifier, self.status_line)),
                        "status"),
            self._spawn(every(self.clock, STATS_EVERY_S, IdleStates(self)), "idle-states"),
            self._spawn(self.reloader.run(), "reloader"),
        ]
        watchdog = Watchdog(self.notifier, lambda: self.mqtt.running)
        if watchdog.period_s is not None:
            jobs.append(self._spawn(every(self.clock, watchdog.period_s, watchdog, at_once=True), "watchdog"))
        return jobs

    async def _shutdown(self) -> None:
        self._stopping = True
        self.notifier.stopping()
        log.info("stopping: saving state and publishing offline")
        await asyncio.gather(*(rt.stop() for rt in self.wearers.values()))
        await self._history.drain(SHUTDOWN_SAVE_S)
        await self.mqtt.close(list(self.wearers))

    # ----- reload -----------------------------------------------------------------------------
    def _on_sighup(self) -> None:
        self.reloader.request()

    async def reload(self) -> bool:
        """Re-read the config: new detection settings apply at once; wearers come and go.

        Returns True once applied (removed wearers stopped and saved, changed sensors restarted,
        a changed MQTT session switched over), False if the new file was refused. systemd hears
        RELOADING=1 then, whatever happens, READY=1 again (a unit left in "reloading" would block
        the next ``systemctl reload``). One reload at a time; it waits for an MQTT switch that
        an earlier one started.
        """
        async with self._reload_lock:
            await self.mqtt.switched()
            self.notifier.reloading()
            try:
                pending = self._reload()
            finally:
                self.notifier.ready(self.status_line())
            if pending is None:
                return False
            if pending:
                await asyncio.wait(pending)
            await self.mqtt.switched()
            return True

    def _reload(self) -> list[asyncio.Task[Any]] | None:
        """Check and plan (nothing changes if that fails), then apply; the tasks still running."""
        try:
            new = load_config(self.config_path, self.overrides)
            check_new_config(new)  # unknown profiles, bad files, settings: refuse before changing anything
            pub = self.publisher
            plan = plan_reload(self.config, new, {name: rt.settings for name, rt in self.wearers.items()},
                               password_changed=pub is not None and pub.password_changed(new.mqtt))
            session = self.mqtt.prepare(self.config, new) if plan.replace_publisher else None
        except (ConfigError, OSError, ValueError, TypeError) as err:
            log.error("reload refused, keeping the running config: %s", err, extra={"unlimited": True})
            return None
        pending = self._apply(new, plan, session)
        # Never rate-limited: "reload refused" is not either, and the last word must be visible.
        log.info("configuration reloaded from %s", self.config_path or "<defaults>",
                 extra={"unlimited": True})
        return pending

    def _apply(self, new: Config, plan: ReloadPlan,
               session: tuple[MqttPublisher, EmbeddedBroker | None] | None) -> list[asyncio.Task[Any]]:
        self.config = new
        self._catalog = load_catalog(new.stretch.catalog or None)  # checked by check_new_config
        self._apply_daemon_settings(new, plan)
        pending: list[asyncio.Task[Any]] = []
        for name in plan.remove:
            log.info("wearer %s removed", name)
            pending.append(self._spawn(self.wearers.pop(name).stop(), f"stop:{name}"))
        for w, added in plan.in_order(new):
            if added:
                log.info("wearer %s added", w.name)
                rt = self.wearers[w.name] = self._new_wearer(w)
                self._start_wearer(rt)
                continue
            rt = self.wearers[w.name]
            rt.update_settings(w)
            if w.name in plan.restart:
                log.info("wearer %s: sensor settings changed; reconnecting", w.name)
                pending.append(self._spawn(self._restart_wearer(rt), f"restart:{w.name}"))
            rt.announce()
        if self.publisher is not None:
            self.publisher.set_wearers(self.wearer_infos())
        if session is not None:
            self.mqtt.switch(*session, self.wearer_infos(), clear_discovery=plan.clear_discovery,
                             clear_topics=plan.clear_topics, spawn=self._spawn)
            log.info("[mqtt]/[homeassistant] changed: reconnecting to %s:%d",
                     new.mqtt.host or "the embedded broker", new.mqtt.port)
        return pending

    def _apply_daemon_settings(self, new: Config, plan: ReloadPlan) -> None:
        if plan.logging_changed:
            setup_logging(new.daemon.log_level, new.daemon.log_format)
            log.info("log level %s, format %s", new.daemon.log_level, new.daemon.log_format)
        if plan.state_dir_changed:
            log.warning("daemon.state_dir changed: restart slouchd to apply it (state stays in %s)",
                        self.store.directory)


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
        # Many small BLE notifications: one loop wake-up per quantum, not per notification.
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(main())
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception:  # a bug: say so with the traceback, and a defined exit code for systemd
        log.critical("slouchd stopped by an unexpected error", exc_info=True)
        return EXIT_SOFTWARE
