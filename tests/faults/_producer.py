"""A child process for the kill -9 loops: an MqttPublisher with its outbox, queuing alerts.

``python -m tests.faults._producer HOST PORT BASE OUTBOX EVERY_S`` queues a slouch alert for
"alice" every EVERY_S seconds and prints ``queued <boot> <seq>`` once ``publish_event`` has
returned (the outbox has it on disk by then), ``drained`` whenever nothing is owed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from slouchd.publish.commands import Command, CommandResult
from slouchd.publish.mqtt import MqttPublisher
from slouchd.publish.outbox import Outbox
from slouchd.publish.settings import HomeAssistantSettings, MqttSettings
from slouchd.publish.wearer import WearerInfo


async def refuse(_wearer: str, _command: Command) -> CommandResult:
    return CommandResult(False, {}, "test producer")


async def main(host: str, port: int, base: str, outbox: str, every_s: float) -> None:
    pub = MqttPublisher(MqttSettings(host=host, port=port, base_topic=base, protocol="3.1.1"),
                        HomeAssistantSettings(discovery=False), [WearerInfo("alice", "c4aa102b3301")],
                        refuse, outbox=Outbox(Path(outbox)))
    print(f"restored {pub.outbox_restored}", flush=True)
    async with pub:
        while True:
            if every_s > 0:
                pub.publish_event("alice", {"t": 0.0, "event": "slouch_alert", "level": 1})
                print(f"queued {pub.boot} {pub._seq['alice']}", flush=True)
            if pub.queue_depth == 0:
                print("drained", flush=True)
            await asyncio.sleep(every_s if every_s > 0 else 0.05)


if __name__ == "__main__":
    h, p, b, o, e = sys.argv[1:6]
    asyncio.run(main(h, int(p), b, o, float(e)))
