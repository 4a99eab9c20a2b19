"""``slouchd stretch --wearer NAME``: start (or stop) a guided session on a live wearer of a
running daemon, through its MQTT command, and follow it.

The command is the one Home Assistant's button sends (``{"stretch": ...}`` on
``<base>/<wearer>/set``, docs/mqtt.md), so the daemon judges the session on the live sensor. The
daemon's reply and then the session's events (``stretch_*``, ``break_taken``) are printed as
JSON Lines until the session completes or is abandoned. Exit codes: 0 complete (or stopped on
``--stop``), 1 abandoned or no answer in time, 2 refused (the daemon's message on stderr).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any, TextIO

import aiomqtt

from slouchd.cli import CliError
from slouchd.config import Config
from slouchd.publish.mqtt import read_password, tls_context
from slouchd.publish.topics import Topics

FOLLOWED = ("stretch_", "break_taken")
"""Events printed while following a session (their ``event`` starts with one of these)."""


async def follow(config: Config, wearer: str, value: str, timeout_s: float, out: TextIO = sys.stdout) -> int:
    """Send ``{"stretch": value}`` to ``wearer`` and print the reply and the session's events.

    Args:
        config: for the broker and the base topic (``[mqtt]``).
        wearer: the wearer's name.
        value: ``start``, ``stop`` or a session name.
        timeout_s: give up after this long, seconds.

    Raises:
        CliError: the daemon refused the command (its message), or the broker is unreachable.
    """
    m = config.mqtt
    topics = Topics(m.base_topic)
    rid = f"cli-{os.getpid()}-{time.time_ns()}"
    try:
        async with aiomqtt.Client(m.host or "127.0.0.1", m.port, username=m.username or None,
                                  password=read_password(m), tls_context=tls_context(m),
                                  identifier=f"slouchd-stretch-{os.getpid()}") as client:
            await client.subscribe(topics.command_result(wearer), qos=1)
            await client.subscribe(topics.event(wearer), qos=1)
            await client.publish(topics.command(wearer), json.dumps({"stretch": value, "id": rid}), qos=1)
            async with asyncio.timeout(timeout_s):
                async for msg in client.messages:
                    code = _on_message(str(msg.topic), msg.payload, topics, wearer, rid, value, out)
                    if code is not None:
                        return code
    except aiomqtt.MqttError as err:
        raise CliError(f"cannot reach the MQTT broker {m.host or '127.0.0.1'}:{m.port}: {err}") from None
    except TimeoutError:
        sys.stderr.write(f"slouchd stretch: no answer from wearer {wearer!r} within {timeout_s:g} s "
                         "(is slouchd running with this config?)\n")
    return 1


def _on_message(topic: str, payload: Any, topics: Topics, wearer: str, rid: str, value: str,
                out: TextIO) -> int | None:
    """One message while following; the exit code once done, else None."""
    try:
        doc = json.loads(payload)
    except (TypeError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    if topic == topics.command_result(wearer):
        if doc.get("id") != rid:
            return None  # someone else's command
        if not doc.get("ok"):
            raise CliError(f"wearer {wearer}: {doc.get('error')}")
        _print(out, {"reply": doc})
        return 0 if value == "stop" else None
    kind = str(doc.get("event", ""))
    # A stop only waits for its reply: the "stretch_abandoned" it causes may arrive first.
    if value != "stop" and topic == topics.event(wearer) and kind.startswith(FOLLOWED):
        _print(out, doc)
        if kind == "stretch_complete":
            return 0
        if kind == "stretch_abandoned":
            return 1
    return None


def _print(out: TextIO, doc: dict[str, Any]) -> None:
    out.write(json.dumps(doc, separators=(", ", ": ")) + "\n")
    out.flush()
