"""Handing one MQTT session over to another when a reload changes [mqtt] (no alert lost)."""

from __future__ import annotations

import asyncio
import json

from slouchd.publish.settings import HomeAssistantSettings
from slouchd.publish.wearer import WearerInfo
from tests._broker import MosquittoBroker, free_port
from tests.publish._mqtt import Recorder, connected, make_publisher, retained, settled, uniq, wait_until

ALICE = WearerInfo("alice", "c4aa102b3301")


async def test_alerts_queued_for_an_unreachable_broker_reach_the_new_one_in_order(
        mosquitto: MosquittoBroker) -> None:
    """The user fixes a wrong broker address and reloads: what waited is delivered there."""
    base = uniq("b")
    dead = make_publisher(mosquitto, [ALICE], base_topic=base, port=free_port())  # nobody listens
    async with dead:
        for i in range(3):
            dead.publish_event("alice", {"t": float(i), "event": "slouch_alert", "level": 1})
        dead.publish_state("alice", {"posture": "slouching", "flexion_deg": 21.0})
        await wait_until(lambda: dead.attempts >= 2, what="failed attempts")
        assert not dead.connected and dead.queue_depth == 3
        fixed = make_publisher(mosquitto, [ALICE], base_topic=base)
        fixed.take_over(dead)
        assert dead.queue_depth == 0 and fixed.queue_depth == 3
    async with Recorder(mosquitto, (f"{base}/alice/#",)) as rec, connected(fixed):
        fixed.publish_event("alice", {"t": 3.0, "event": "slouch_end"})
        await rec.wait_for(lambda: len(rec.on(f"{base}/alice/event")) >= 4)
        await rec.wait_for(lambda: rec.on(f"{base}/alice/state"))
    events = [m.json() for m in rec.on(f"{base}/alice/event")]
    assert {e["boot"] for e in events} == {dead.boot}  # the same run: (boot, seq) stays unique
    assert [(e["seq"], e["event"]) for e in events] == [
        (1, "slouch_alert"), (2, "slouch_alert"), (3, "slouch_alert"), (4, "slouch_end")]
    assert rec.on(f"{base}/alice/state")[-1].json()["flexion_deg"] == 21.0


async def test_a_moved_base_topic_and_disabled_discovery_leave_no_ghosts(mosquitto: MosquittoBroker) -> None:
    old_base, new_base, prefix = uniq("b"), uniq("b"), uniq("ha")
    ha = HomeAssistantSettings(discovery_prefix=prefix, birth_delay_max_s=0.2)
    first = make_publisher(mosquitto, [ALICE], base_topic=old_base, ha=ha)
    async with connected(first):
        first.publish_state("alice", {"posture": "upright", "flexion_deg": 3.0})
        first.set_availability("alice", True)
        first.publish_stats("alice", {"upright_pct": 90.0})
        await settled(first)
        assert len(await retained(mosquitto, f"{old_base}/alice/#")) == 3
        assert len(await retained(mosquitto, f"{prefix}/#")) == 1
        second = make_publisher(mosquitto, [ALICE], base_topic=new_base,
                                ha=HomeAssistantSettings(discovery=False, discovery_prefix=prefix))
        second.take_over(first)
        first.retire(clear_discovery=True, clear_topics=True)
    async with connected(second):
        await settled(second)
        moved = await retained(mosquitto, f"{new_base}/#")
    assert await retained(mosquitto, f"{old_base}/alice/#") == {}
    assert await retained(mosquitto, f"{prefix}/#") == {}
    assert (await retained(mosquitto, f"{old_base}/bridge/state")) == {
        f"{old_base}/bridge/state": b"offline"}
    assert moved[f"{new_base}/bridge/state"] == b"online"
    assert moved[f"{new_base}/alice/availability"] == b"online"
    assert json.loads(moved[f"{new_base}/alice/stats"]) == {"upright_pct": 90.0}
    assert json.loads(moved[f"{new_base}/alice/state"])["flexion_deg"] == 3.0


async def test_mqtt5_events_expire_for_a_phone_that_stays_away(mosquitto: MosquittoBroker) -> None:
    """A phone offline for longer than event_expiry_s does not get the stale alert when it returns."""
    base = uniq("b")
    phone_id = uniq("phone")
    async with Recorder(mosquitto, (f"{base}/alice/event",), persistent_id=phone_id):
        pass  # the phone's persistent session now holds the subscription
    for expiry_s, expected in ((1, 0), (0, 1)):
        pub = make_publisher(mosquitto, [ALICE], base_topic=base, protocol="5", event_expiry_s=expiry_s)
        async with connected(pub):
            pub.publish_event("alice", {"t": 1.0, "event": "slouch_alert", "level": 1})
            await settled(pub)
        await asyncio.sleep(2.2)  # the broker's expiry clock runs (1 s expiry, whole seconds)
        async with Recorder(mosquitto, (f"{base}/alice/event",), persistent_id=phone_id) as phone:
            await phone.sync()  # what the broker kept for the phone came before this
        assert len(phone.on(f"{base}/alice/event")) == expected, expiry_s
