"""The embedded broker (amqtt) that `slouchd demo` and a broker-less `slouchd run` start."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt

from slouchd.broker import EmbeddedBroker
from tests._broker import free_port

V311 = aiomqtt.ProtocolVersion.V311


async def received(port: int, topic_filter: str, client_id: str, settle_s: float = 0.5) -> list[str]:
    """Topics a fresh subscriber to ``topic_filter`` receives within ``settle_s`` seconds."""
    topics: list[str] = []
    async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, protocol=V311) as client:
        await client.subscribe(topic_filter, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settle_s):
                async for m in client.messages:
                    topics.append(str(m.topic))
    return topics


async def test_a_subscriber_gets_only_the_retained_messages_it_subscribed_to() -> None:
    """amqtt 0.12 alone would also hand it those matching slouchd's own wildcard subscription."""
    broker = EmbeddedBroker(free_port())
    await broker.start()
    try:
        async with aiomqtt.Client(broker.host, broker.port, identifier="slouchd-test", protocol=V311) as sl:
            await sl.subscribe("homeassistant/device/+/+", qos=1)  # what the publisher watches
            await sl.publish("homeassistant/device/slouchd_x/config", b"{}", qos=1, retain=True)
            await sl.publish("slouchd/bridge/state", b"online", qos=1, retain=True)  # PUBACKed: stored
            phone = await received(broker.port, "slouchd/bridge/state", "phone")
            ha = await received(broker.port, "homeassistant/#", "ha")
    finally:
        await broker.stop()
    assert phone == ["slouchd/bridge/state"]
    assert ha == ["homeassistant/device/slouchd_x/config"]
