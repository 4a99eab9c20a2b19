"""``slouchd run`` (the daemon) and ``slouchd demo`` (the same daemon on a simulated wearer)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import tempfile

from slouchd.cli import CliError
from slouchd.config import ConfigError, OverrideError, WearerSettings, load_config
from slouchd.logs import setup_logging

EXIT_CONFIG = 78


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
        description="Run the real pipeline on a simulated wearer's scripted day, publish to an "
                    "embedded MQTT broker on localhost (or --mqtt-host), show it live, and end with "
                    "a summary. The first slouch alert comes within the first 10 simulated minutes.")
    demo.add_argument("--speed", type=float, default=30.0,
                      help="simulated seconds per real second (default 30)")
    demo.add_argument("--duration", type=float, default=60.0, metavar="S",
                      help="stop after this many real seconds (default 60)")
    demo.add_argument("--seed", type=int, default=1, help="which scripted day (default 1)")
    demo.add_argument("--mqtt-host", help="publish to this broker instead of the embedded one")
    demo.add_argument("--mqtt-port", type=int, help="port of --mqtt-host (default 1883)")
    demo.add_argument("--config", "-c", metavar="FILE", help="take detection settings etc. from FILE")
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
    try:
        config = load_config(args.config, overrides)
    except OverrideError as err:  # a malformed --set is a usage error (2), not a bad config file (78)
        raise CliError(str(err)) from None
    setup_logging(config.daemon.log_level, config.daemon.log_format)
    return run_daemon(config, config_path=args.config, overrides=overrides)


def cmd_demo(args: argparse.Namespace) -> int:
    from slouchd.console import ConsoleView
    from slouchd.daemon import run_daemon

    _positive(args.speed, "--speed")
    _positive(args.duration, "--duration")
    if args.mqtt_port is not None and not 1 <= args.mqtt_port <= 65535:
        raise ConfigError(f"--mqtt-port must be 1..65535, got {args.mqtt_port}")
    config = load_config(args.config)
    mqtt = config.mqtt
    if args.mqtt_host:
        mqtt = dataclasses.replace(mqtt, host=args.mqtt_host, port=args.mqtt_port or 1883)
    elif args.mqtt_port:
        mqtt = dataclasses.replace(mqtt, port=args.mqtt_port)
    wearer = WearerSettings(name="demo", sensor="simulated", speed=args.speed, seed=args.seed)
    state_dir = tempfile.mkdtemp(prefix="slouchd-demo-")  # a fresh wearer every demo
    config = dataclasses.replace(
        config, mqtt=mqtt, wearers=[wearer],
        daemon=dataclasses.replace(config.daemon, state_dir=state_dir, log_level="warning"))
    setup_logging(config.daemon.log_level, "text")
    # The scripted day starts at 09:00 local time today.
    start = dt.datetime.combine(dt.date.today(), dt.time(9, 0)).timestamp()
    view = ConsoleView()
    where = f"{mqtt.host}:{mqtt.port}" if mqtt.host else "the embedded broker on localhost"
    print(f"slouchd demo: simulated wearer at {args.speed:g}x, publishing to {where} "
          f"under '{mqtt.base_topic}/'; ending after {args.duration:g} s (Ctrl-C ends sooner)")

    def report(daemon: object) -> None:
        print(view.summary())

    return run_daemon(config, view=view, start_epoch_s=start, duration_s=args.duration,
                      on_exit=report)
