"""``slouchd run`` (the daemon) and ``slouchd demo`` (the same daemon on a simulated wearer)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from slouchd.cli import CliError
from slouchd.config import ConfigError, OverrideError, WearerSettings, check_resources, load_config
from slouchd.logs import setup_logging
from slouchd.publish.settings import MqttSettings
from slouchd.schema import errors_to_raise

if TYPE_CHECKING:
    from slouchd.console import RunLog
    from slouchd.posture.settings import DetectionSettings

EXIT_CONFIG = 78

DEMO_SPEED = 90.0
"""Simulated seconds per real second: the default minute shows 90 simulated minutes, enough for
the first slouch alerts (within 5 simulated minutes) and a break reminder
(``[wellbeing] break_after_min`` = 50 minutes of unbroken sitting)."""
DEMO_DURATION_S = 60.0
DEMO_SEED = 4
"""The scripted day of the demo: its first sitting stretch is 65 minutes long, so the break
reminder at 50 minutes comes inside the default run."""


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="run the daemon (all configured wearers)",
        description="Run every wearer in the config, publish to MQTT and Home Assistant. "
                    "SIGHUP reloads the config; SIGTERM/SIGINT stop cleanly. Exit codes: 0 stopped, "
                    "78 invalid config, 75 Bluetooth adapter wedged (systemd restarts us).")
    run.add_argument("--config", "-c", metavar="FILE",
                     help="config file (default: built-in defaults: one simulated wearer, embedded broker)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set detection.dwell_s=45 (repeatable)")
    run.add_argument("--log-format", choices=("text", "json"), help="override daemon.log_format")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                     help="override daemon.log_level")
    run.set_defaults(func=cmd_run, config_error_exit=EXIT_CONFIG)

    demo = sub.add_parser(
        "demo", help="try it: simulated wearer, embedded broker, live view",
        description="Run the real pipeline on a simulated wearer's scripted working day, publish to "
                    "an embedded MQTT broker on localhost (or --mqtt-host), show it live, and end with "
                    "a summary. It prints the broker's address and a ready `mosquitto_sub` command "
                    "to watch the MQTT side. With the defaults (90 simulated minutes in one real "
                    "minute) you see slouch alerts within seconds and a break reminder after 50 "
                    "simulated minutes of sitting.")
    demo.add_argument("--speed", type=float, default=DEMO_SPEED,
                      help=f"simulated seconds per real second (default {DEMO_SPEED:g})")
    demo.add_argument("--duration", type=float, default=DEMO_DURATION_S, metavar="S",
                      help=f"stop after this many real seconds (default {DEMO_DURATION_S:g})")
    demo.add_argument("--seed", type=int, default=DEMO_SEED,
                      help=f"which scripted day (default {DEMO_SEED})")
    demo.add_argument("--mqtt-host", help="publish to this broker instead of the embedded one")
    demo.add_argument("--mqtt-port", type=int,
                      help="port of --mqtt-host (default 1883), or of the embedded broker: then it "
                           "must be free (default: 1883, or a free port when 1883 is taken)")
    demo.add_argument("--config", "-c", metavar="FILE", help="take detection settings etc. from FILE")
    demo.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning",
                      help="daemon log level on stderr (default warning, to keep the view tidy)")
    demo.add_argument("--plot", metavar="OUT.svg",
                      help="where to draw the picture of the run at its end (default: demo.svg in "
                           "the demo's temporary directory; the path is printed)")
    demo.set_defaults(func=cmd_demo)


def _positive(value: float, name: str) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value:g}")


def cmd_run(args: argparse.Namespace) -> int:
    from slouchd.daemon import run_daemon

    overrides = list(args.set)
    if args.log_format:
        overrides.append(f'daemon.log_format="{args.log_format}"')
    if args.log_level:
        overrides.append(f'daemon.log_level="{args.log_level}"')
    errors: list[str] = []
    try:
        config = load_config(args.config, overrides, errors=errors)
    except OverrideError as err:  # a malformed --set is a usage error (2), not a bad config file (78)
        raise CliError(str(err)) from None
    # What the file names (profiles, password and TLS files, recordings: opened, not parsed),
    # so that one run lists every problem, as check-config does; exit 78 (cli.main).
    check_resources(config, parse_recordings=False, errors=errors)
    if errors:
        raise errors_to_raise(errors)
    setup_logging(config.daemon.log_level, config.daemon.log_format)
    return run_daemon(config, config_path=args.config, overrides=overrides)


def demo_broker(mqtt: MqttSettings, host: str | None, port: int | None,
                config_name: str = "the config") -> tuple[MqttSettings, str]:
    """The demo's broker settings and one line saying where it is (and why, if it moved).

    ``--mqtt-host``: that broker (``--mqtt-port`` or 1883). Otherwise the embedded broker on
    127.0.0.1: an explicit ``--mqtt-port`` must be free (else :class:`CliError`); the default
    port moves to a free one when taken (a Mosquitto usually owns 1883), and the line says so.
    """
    from slouchd.broker import pick_port, port_is_free

    if host:
        return dataclasses.replace(mqtt, host=host, port=port or 1883), f"the broker at {host}:{port or 1883}"
    if mqtt.host:  # --config names a broker
        return mqtt, f"the broker at {mqtt.host}:{mqtt.port} (from {config_name})"
    if port is not None:
        if not port_is_free(port):
            raise CliError(f"--mqtt-port {port}: port {port} on 127.0.0.1 is in use (a Mosquitto?); "
                           f"choose another port, leave --mqtt-port out to use a free one, or publish "
                           f"to that broker with --mqtt-host 127.0.0.1 --mqtt-port {port}")
        return dataclasses.replace(mqtt, port=port), f"the embedded broker at 127.0.0.1:{port}"
    chosen = pick_port(mqtt.port)
    where = f"the embedded broker at 127.0.0.1:{chosen}"
    if chosen != mqtt.port:
        where += f" ({mqtt.port} is in use)"
    return dataclasses.replace(mqtt, port=chosen), where


def demo_picture(log: RunLog, path: Path, detection: DetectionSettings,
                 width: int = 60) -> tuple[Path, str] | None:
    """Draw the demo run (flexion, threshold band, slouches, alerts, breaks) as an SVG at ``path``.

    Returns the file written and a one-line sparkline of flexion ``width`` characters wide, or
    None when the run showed no posture frame (nothing to draw).
    """
    from slouchd.plot import Collector

    if not log.frames:
        return None
    collector = Collector.for_settings(detection, title="slouchd demo: a simulated working day")
    collector.add_frames(frame for _, frame in log.frames)
    collector.add_events(event for _, event in log.events)
    collector.write_svg(path)
    return path, collector.sparkline(width)


def cmd_demo(args: argparse.Namespace) -> int:
    from slouchd.console import ConsoleView
    from slouchd.daemon import run_daemon

    _positive(args.speed, "--speed")
    _positive(args.duration, "--duration")
    if args.mqtt_port is not None and not 1 <= args.mqtt_port <= 65535:
        raise ConfigError(f"--mqtt-port must be 1..65535, got {args.mqtt_port}")
    config = load_config(args.config)
    mqtt, where = demo_broker(config.mqtt, args.mqtt_host, args.mqtt_port, config.source)
    wearer = WearerSettings(name="demo", sensor="simulated", speed=args.speed, seed=args.seed)
    state_dir = tempfile.mkdtemp(prefix="slouchd-demo-")  # a fresh wearer every demo
    plot_path = Path(args.plot) if args.plot else Path(state_dir) / "demo.svg"
    config = dataclasses.replace(
        config, mqtt=mqtt, wearers=[wearer],
        daemon=dataclasses.replace(config.daemon, state_dir=state_dir, log_level=args.log_level))
    setup_logging(config.daemon.log_level, "text")
    # The scripted day starts at 09:00 local time today.
    start = dt.datetime.combine(dt.date.today(), dt.time(9, 0)).timestamp()
    view = ConsoleView()
    host = mqtt.host or "127.0.0.1"
    watch = f"mosquitto_sub -h {host} -p {mqtt.port} -t '{mqtt.base_topic}/#' -v"
    print(view.wrap(f"slouchd demo: a simulated working day at {args.speed:g}x for {args.duration:g} s "
                    f"(Ctrl-C ends it sooner)\nMQTT: {where}; watch it with:"), flush=True)
    print(f"  {watch}", flush=True)  # never wrapped: it is for copying

    def report(daemon: object) -> None:
        print(view.summary())
        print(view.wrap(f"MQTT was on {where}; it stopped with the demo."))
        picture = demo_picture(view.log, plot_path, config.detection,
                               width=max(10, min(60, shutil.get_terminal_size().columns - 12)))
        if picture is not None:
            path, line = picture
            print(f"flexion:   {line}")
            print(f"picture of the run: {path}")  # never wrapped: it is for copying

    return run_daemon(config, view=view, start_epoch_s=start, duration_s=args.duration,
                      on_exit=report)
