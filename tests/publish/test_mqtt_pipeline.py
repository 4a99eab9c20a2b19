"""The sender pipelines (issue 11) and the publisher's seams: flushed(), records per wearer."""

from __future__ import annotations

import asyncio
import time

from slouchd.publish.mqtt import PUBLISH_IN_FLIGHT, MqttPublisher
from slouchd.publish.settings import HomeAssistantSettings, MqttSettings
from slouchd.publish.wearer import WearerInfo
from tests._broker import MosquittoBroker
from tests.publish._mqtt import (
    Applier,
    BackgroundRecorder,
    Recorder,
    SlowLink,
    connected,
    make_publisher,
    publish,
    settled,
    uniq,
)

ALICE = WearerInfo("alice", "c4aa102b3301")
BOB = WearerInfo("bob", "sim-bob")
LINK_DELAY_S = 0.05


async def test_events_on_a_slow_link_are_not_sent_one_round_trip_at_a_time(
        mosquitto: MosquittoBroker, recorder: Recorder) -> None:
    """60 alerts over a link where every PUBACK takes 50 ms: one at a time would need 3 s."""
    base, n, rec = uniq("b"), 60, recorder
    async with SlowLink(mosquitto, LINK_DELAY_S) as link:
        pub = make_publisher(mosquitto, [ALICE, BOB], base_topic=base, port=link.port)
        async with connected(pub):
            await settled(pub)  # the announcements are out of the way
            t0 = time.monotonic()
            for i in range(n):
                pub.publish_event("alice" if i % 3 else "bob", {"t": float(i), "event": "slouch_alert"})
            await asyncio.wait_for(pub.flushed(), 10)
            took_s = time.monotonic() - t0
            assert pub.queue_depth == 0 and pub.published == n and pub.resent == 0
            await rec.wait_for(lambda: len(rec.on(f"{base}/alice/event") + rec.on(f"{base}/bob/event")) >= n)
    print(f"\n{n} alerts acknowledged in {took_s:.2f} s over a {LINK_DELAY_S * 1000:.0f} ms link")
    assert took_s < n * LINK_DELAY_S / 2, took_s
    for wearer in ("alice", "bob"):  # each topic in order
        seqs = [m.json()["seq"] for m in rec.on(f"{base}/{wearer}/event")]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


async def test_flushed_waits_for_the_broker_and_for_every_acknowledgement(mosquitto: MosquittoBroker) -> None:
    base = uniq("b")
    async with SlowLink(mosquitto, LINK_DELAY_S) as link:
        pub = make_publisher(mosquitto, [ALICE], base_topic=base, port=link.port)
        for i in range(5):  # queued before any broker is there
            pub.publish_event("alice", {"t": float(i), "event": "slouch_alert"})
        pub.set_availability("alice", True)
        waiting = asyncio.create_task(pub.flushed())
        await asyncio.sleep(0)
        assert not waiting.done()  # nothing can be flushed without a broker
        async with pub:
            await asyncio.wait_for(waiting, 10)
            assert pub.connected and pub.queue_depth == 0 and pub.published == 5
            assert pub.counts.published == 5


def test_a_reload_adds_removes_and_carries_whole_wearer_records() -> None:
    """No broker: the per-wearer bookkeeping alone (one record per wearer, moved whole)."""
    settings = MqttSettings(base_topic="rl")
    old = MqttPublisher(settings, HomeAssistantSettings(discovery=False), [ALICE, BOB], Applier())
    old.publish_state("alice", {"posture": "slouching"})
    old.publish_stats("bob", {"alerts": 2})
    old.set_availability("bob", True)
    old.publish_event("bob", {"t": 1.0, "event": "slouch_alert"})
    old.set_wearers([BOB, WearerInfo("carol", "sim-carol")])
    assert set(old._core.records) == {"bob", "carol"}
    # alice's retained topics are emptied, so Home Assistant forgets her
    assert all(old._core.retained[t] == b"" for t in old._core.topics.wearer_topics("alice"))

    new = MqttPublisher(settings, HomeAssistantSettings(discovery=False), [BOB], Applier())
    new.take_over(old)
    bob = new._core.records["bob"]
    assert bob.stats == old._core.records["bob"].stats and bob.availability is True
    assert new.queue_depth == 1 and old.queue_depth == 0 and new.boot == old.boot
    assert new._seq == {"bob": 1} and new.counters()["mqtt_alerts"] == 1
    new.publish_event("bob", {"t": 2.0, "event": "slouch_alert"})
    assert new._seq["bob"] == 2  # numbering goes on: (boot, seq) stays unique
    assert PUBLISH_IN_FLIGHT >= 20  # above paho's own QoS 1 window, so it is never the limit


def test_the_background_recorder_serves_synchronous_tests(mosquitto: MosquittoBroker) -> None:
    """The one recorder, also for tests that drive a daemon process without an event loop."""
    base = uniq("b")
    rec = BackgroundRecorder(mosquitto.host, mosquitto.port, (f"{base}/#",))
    try:
        asyncio.run(publish(mosquitto, f"{base}/x", b"1", retain=True))
        assert rec.first(lambda m: m.topic == f"{base}/x", 10).payload == b"1"
        rec.sync()
        assert [m.payload for m in rec.on(f"{base}/x")] == [b"1"]
    finally:
        rec.close()
        asyncio.run(publish(mosquitto, f"{base}/x", b"", retain=True))
