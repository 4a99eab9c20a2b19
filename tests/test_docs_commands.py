"""Every `slouchd ...` command the set-up docs show is accepted by the real command line.

A command copied from the README that fails with a usage error (`record --samples 100 x.csv`
without the required `--sensor`) is the first thing a newcomer meets; this parses each one
with slouchd's own argument parser.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from slouchd.cli import _join_mount_values, build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/install.md", "docs/sensors.md")
# `slouchd` as a command: at the start, after a path (.venv/bin/slouchd) or after `sudo -u x`.
COMMAND = re.compile(r"(?:^|[\s`/])slouchd\s+([a-z][a-z-]+(?:\s+[^`\n]*)?)")


def commands(path: Path) -> list[str]:
    """The slouchd command lines in code blocks and inline code of one Markdown file."""
    text = path.read_text()
    found: list[str] = []
    in_block = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        pieces = [line] if in_block else re.findall(r"`([^`]+)`", line)
        for piece in pieces:
            m = COMMAND.search(piece)
            if m is None or m.group(1).split()[0] not in SUBCOMMANDS:
                continue
            cmd = re.split(r"\s(?:#|\||>|&&|;)\s?", m.group(1))[0].strip()  # comments, pipes, redirects
            if not in_block and " " not in cmd:
                continue  # "`slouchd replay` prints ..." names a command, it is not one to run
            found.append(cmd)
    return found


SUBCOMMANDS = {"run", "demo", "replay", "check-config", "profiles", "scan", "decode", "record", "simulate"}


def doc_commands() -> list[tuple[str, str]]:
    return [(doc, cmd) for doc in DOCS for cmd in commands(REPO / doc)]


def test_the_docs_show_the_commands_a_newcomer_needs() -> None:
    shown = {cmd.split()[0] for _, cmd in doc_commands()}
    assert {"demo", "run", "check-config", "scan", "record", "replay", "profiles", "decode"} <= shown


@pytest.mark.parametrize(("doc", "cmd"), doc_commands(), ids=lambda v: v[:60])
def test_each_documented_command_parses(doc: str, cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    if cmd.split()[0] == "simulate" and "simulate" not in build_parser().format_help():
        pytest.fail(f"{doc}: documents `slouchd simulate`, which this build does not have")
    parser = build_parser()
    try:
        args = parser.parse_args(_join_mount_values(shlex.split(cmd)))
    except SystemExit as stop:
        if "--help" in cmd.split() and stop.code == 0:
            return
        why = capsys.readouterr().err.strip()
        raise AssertionError(f"{doc}: `slouchd {cmd}` is refused: {why}") from None
    assert args.command == cmd.split()[0]
