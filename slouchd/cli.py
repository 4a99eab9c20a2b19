"""The ``slouchd`` command line.

Each subcommand lives in ``slouchd/commands/<module>.py`` with a ``register(subparsers)``
function. Bad input (unknown option, unreadable or invalid config) prints one line on stderr and
exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from slouchd import __version__
from slouchd.schema import SettingsError

EXIT_USAGE = 2

# Order here is the order in `slouchd --help`.
COMMAND_MODULES = (
    "slouchd.commands.daemon",  # run, demo
    "slouchd.commands.replay",  # replay
    "slouchd.commands.simulate",  # simulate
    "slouchd.commands.config",  # check-config
    "slouchd.commands.ble",  # profiles, scan, decode, record
    "slouchd.commands.stretch",  # stretch (judge a guided stretch session on a recording)
    "slouchd.commands.report",  # report (a wearer's days from the history)
)

DESCRIPTION = """\
slouchd watches a small motion sensor worn on the upper back, between the shoulder blades, and
tells you (phone, Home Assistant, or a buzz on the sensor) when you have been slouching for a
while or sitting too long without a break.

Start with `slouchd demo`: a simulated wearer, an embedded MQTT broker, and a live view."""

EPILOG = """\
examples:
  slouchd demo                          simulated wearer, embedded broker, live view
  slouchd check-config config/slouchd.toml
  slouchd replay walk.csv --summary     tune thresholds on a recording
  slouchd scan                          find sensors nearby
  slouchd run --config /etc/slouchd/slouchd.toml

Run `slouchd COMMAND --help` for the options of one command."""


class CliError(Exception):
    """A user mistake on the command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (try --help)\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="slouchd", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"slouchd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _join_mount_values(argv: list[str]) -> list[str]:
    """``--mount -y,+z`` as ``--mount=-y,+z``: argparse would take ``-y,+z`` for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--mount" and i + 1 < len(argv) and argv[i + 1].startswith("-") and "," in argv[i + 1]:
            out.append(f"--mount={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slouchd`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(_join_mount_values(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except CliError as err:  # the command line is wrong: always 2, also for `run`
        sys.stderr.write(f"slouchd {args.command}: error: {err}\n")
        return EXIT_USAGE
    except SettingsError as err:  # the config is wrong: `run` exits 78 so systemd stops retrying
        for line in err.problems:  # every problem of the file, one line each
            sys.stderr.write(f"slouchd {args.command}: error: {line}\n")
        return getattr(args, "config_error_exit", EXIT_USAGE)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `slouchd replay ... | head` closes the pipe early: not an error.
        return 0


if __name__ == "__main__":
    # `python -m slouchd.cli` runs this file as __main__; the commands raise slouchd.cli.CliError,
    # a different class from __main__.CliError, so run the imported module's main().
    from slouchd.cli import main as _main

    sys.exit(_main())
