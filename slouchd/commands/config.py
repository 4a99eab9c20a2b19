"""``slouchd check-config``: validate a configuration file and say what is in force."""

from __future__ import annotations

import argparse

from slouchd.config import check_resources, load_config
from slouchd.schema import errors_to_raise


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-config", help="validate a config file",
        description="Validate a slouchd TOML config file and what it names (profiles, replay "
                    "recordings, MQTT password and TLS files) as `slouchd run` would use it. "
                    "Prints one line per problem, every problem of the file at once, and exits 2 "
                    "when it is invalid; 0 and a one-line summary when it is fine.")
    p.add_argument("file", nargs="?", default="config/slouchd.toml",
                   help="config file (default: config/slouchd.toml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    errors: list[str] = []
    cfg = load_config(args.file, errors=errors)  # every bad key, not only the first
    # What `slouchd run` would refuse or fail on: files, profiles, recordings (checked on the
    # config of the good values, so a bad threshold does not hide a missing password file).
    check_resources(cfg, errors=errors)
    if errors:
        raise errors_to_raise(errors)  # cli.main prints one line each, exit 2
    names = ", ".join(f"{w.name} ({w.sensor})" for w in cfg.wearers) or "none"
    broker = f"{cfg.mqtt.host}:{cfg.mqtt.port}" if cfg.mqtt.host else "embedded broker"
    print(f"{args.file}: ok: {len(cfg.wearers)} wearer(s): {names}; mqtt: {broker}; "
          f"threshold {cfg.detection.threshold_deg:g} deg, dwell {cfg.detection.dwell_s:g} s")
    return 0
