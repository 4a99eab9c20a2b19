"""The MQTT publisher against a real Mosquitto: topics, rates, ordering, commands, discovery."""

from __future__ import annotations

import asyncio
import json
import time

import aiomqtt
import pytest

from slouchd.publish.homeassistant import discovery_topic
from slouchd.publish.settings import HomeAssistantSettings
from slouchd.publish.wearer import WearerInfo
from tests._broker import MosquittoBroker
from tests.publish._mqtt import (
    Applier,
    Recorder,
    connected,
    eventually,
    make_publisher,
    publish,
    retained,
    settled,
    uniq,
)
from tests.publish.test_commands import MALFORMED

ALICE = WearerInfo("alice", "c4aa102b3301", model="micro:bit v2", manufacturer="BBC")
BOB = WearerInfo("bob", "sim-bob")


def frame(posture: str = "upright", flexion: float = 4.0, **extra: object) -> dict:
    """A state dict like the daemon's (PostureFrame.to_dict() plus link details)."""
    return {"t": 12.5, "flexion_deg": flexion, "lateral_deg": -1.0, "posture": posture,
            "activity": "still", "worn": True, "calibrated": True, "sitting_min": 12.0,
            "slouch_s": 0.0, "battery": 87, "rssi": -61, "reconnects": 0, "snooze_min": 0, **extra}


async def test_connect_announces_bridge_discovery_state_and_availability(mosquitto: MosquittoBroker) -> None:
    base, prefix = uniq("b"), uniq("ha")
    pub = make_publisher(mosquitto, [ALICE, BOB], base_topic=base,
                         ha=HomeAssistantSettings(discovery_prefix=prefix))
    async with connected(pub):
        pub.publish_state("alice", frame())
        pub.set_availability("alice", True)
        pub.publish_stats("alice", {"date": "2026-11-22", "upright_pct": 81.5, "slouched_min": 12.0,
                                    "sitting_min": 240.0, "alerts": 3})
        await settled(pub)
        snap = await retained(mosquitto, f"{base}/#")
        disc = await retained(mosquitto, f"{prefix}/#")
    assert snap[f"{base}/bridge/state"] == b"online"
    assert snap[f"{base}/alice/availability"] == b"online"
    state = json.loads(snap[f"{base}/alice/state"])
    # The daemon's fields, untouched, plus the settings in force from WearerInfo.
    assert state == {**frame(), "threshold_deg": 15.0, "hysteresis_deg": 3.0, "dwell_s": 30.0,
                     "mode": "training", "alerts_enabled": True}
    assert json.loads(snap[f"{base}/alice/stats"])["upright_pct"] == 81.5
    assert not [t for t in snap if "/set" in t]  # no command topic is ever retained
    assert set(disc) == {discovery_topic(prefix, ALICE), discovery_topic(prefix, BOB)}
    alice = json.loads(disc[discovery_topic(prefix, ALICE)])
    assert alice["device"]["identifiers"] == ["slouchd_c4aa102b3301"]
    assert alice["origin"]["name"] == "slouchd"
    assert alice["components"]["flexion"]["state_topic"] == f"{base}/alice/state"


async def test_discovery_is_byte_identical_across_restarts(mosquitto: MosquittoBroker) -> None:
    base, prefix = uniq("b"), uniq("ha")
    seen = []
    for _ in range(2):
        pub = make_publisher(mosquitto, [ALICE], base_topic=base,
                             ha=HomeAssistantSettings(discovery_prefix=prefix))
        async with connected(pub):
            await settled(pub)
            seen.append(await retained(mosquitto, f"{prefix}/#"))
    assert seen[0] == seen[1] and len(seen[0]) == 1


async def test_state_is_rate_limited_and_sent_at_once_on_posture_change(mosquitto: MosquittoBroker) -> None:
    base = uniq("b")
    pub = make_publisher(mosquitto, [ALICE], base_topic=base, state_interval_s=0.5)
    async with Recorder(mosquitto, (f"{base}/alice/state",)) as rec, connected(pub):
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < 2.4:  # 50 Hz from the posture engine, same posture
            pub.publish_state("alice", frame(flexion=n * 0.01))
            n += 1
            await asyncio.sleep(0.02)  # the posture engine's pace
        # The newest value is what goes out last (coalescing keeps the latest, not the first).
        await rec.wait_for(lambda: rec.messages[-1].json()["flexion_deg"] == pytest.approx((n - 1) * 0.01),
                           1.0)
        steady = len(rec.messages)
        # 2.4 s at one per 0.5 s (the first at once): 5 or 6 messages, never the 100+ offered.
        assert n > 100 and 4 <= steady <= 7, (n, steady)
        changed_at = time.monotonic()
        pub.publish_state("alice", frame("slouching", 25.0))
        await rec.wait_for(lambda: rec.messages[-1].json()["posture"] == "slouching", 1.0)
        latency = rec.messages[-1].t - changed_at
        assert latency < 0.4, latency  # not held back by the 0.5 s interval


async def test_events_arrive_at_qos1_in_order_not_retained(mosquitto: MosquittoBroker) -> None:
    base = uniq("b")
    pub = make_publisher(mosquitto, [ALICE], base_topic=base)
    async with Recorder(mosquitto, (f"{base}/alice/event",)) as rec, connected(pub):
        for i in range(200):
            kind = "slouch_alert" if i % 2 else "slouch_end"
            pub.publish_event("alice", {"t": float(i), "event": kind, "level": 1})
        await rec.wait_for(lambda: len(rec.messages) >= 200)
        await asyncio.wait_for(pub.flushed(), 5)  # our PUBACKs may trail the subscriber's copies
        assert pub.queue_depth == 0 and pub.published == 200
    events = [m.json() for m in rec.messages]
    assert [e["seq"] for e in events] == list(range(1, 201))
    assert [e["t"] for e in events] == [float(i) for i in range(200)]
    assert all(e["event_type"] == e["event"] for e in events)  # what HA's event entity reads
    assert all(m.qos == 1 and not m.retain for m in rec.messages)
    assert await retained(mosquitto, f"{base}/alice/event") == {}


async def test_malformed_commands_change_nothing_and_get_a_reason(
        mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture) -> None:
    base = uniq("b")
    applier = Applier()
    pub = make_publisher(mosquitto, [ALICE], applier, base_topic=base)
    bad = [(f"{base}/alice/set" if key is None else f"{base}/alice/set/{key}", payload)
           for _id, payload, key, _kind in MALFORMED if _id not in ("stale_ts", "future_ts")]
    bad.append((f"{base}/alice/set/result", b'{"calibrate": true}'))  # our reply topic: ignored
    async with Recorder(mosquitto, (f"{base}/alice/#",)) as rec, connected(pub):
        pub.publish_state("alice", frame())
        await rec.wait_for(lambda: rec.on(f"{base}/alice/state"))
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for topic, payload in bad:
                await client.publish(topic, payload, qos=1)
            # A command for nobody: logged, no reply (we do not create topics for strangers).
            await client.publish(f"{base}/mallory/set", b'{"calibrate": true}', qos=1)
        def replies() -> list:  # what slouchd replied (not the fake command we put on …/set/result)
            return [m for m in rec.on(f"{base}/alice/set/result") if m.payload != bad[-1][1]]

        await rec.wait_for(lambda: len(replies()) >= len(bad) - 1)
        await settled(pub, rec)  # any extra reply would be here now
        assert pub.connected and pub.reconnects == 0  # nothing dropped the session (400-digit "ts"...)
        results = [m.json() for m in replies()]
        assert len(results) == len(bad) - 1  # every bad command but the one on …/set/result
        assert all(r["ok"] is False and r["applied"] == {} and r["error"] for r in results)
        assert applier.calls == []  # nothing reached the daemon
        assert pub.refused == len(bad)  # len(bad) - 1 refusals + the unknown wearer
        assert rec.on(f"{base}/alice/state")[-1].json()["threshold_deg"] == 15.0
        # Each kind of refusal is logged once at WARNING, with its reason; repeats go to DEBUG.
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        kinds = {kind for _id, _p, _k, kind in MALFORMED if kind != "stale"}
        assert len(warned) == len(kinds) + 1, warned
        assert any("payload is 1036 bytes (max 1024)" in w for w in warned)
        assert any("mallory" in w for w in warned)

        # A good command still works afterwards, and the state shows it at once.
        await publish(mosquitto, f"{base}/alice/set", b'{"threshold_deg": 18, "id": "r1"}')
        await rec.wait_for(lambda: replies()[-1].json().get("id") == "r1")
        assert replies()[-1].json() == {"ok": True, "applied": {"threshold_deg": 18.0}, "error": "",
                                        "id": "r1"}
        await rec.wait_for(lambda: rec.on(f"{base}/alice/state")[-1].json()["threshold_deg"] == 18.0)
        assert applier.calls == [("alice", {"threshold_deg": 18.0})]


async def test_per_entity_command_topics_drive_the_daemon(mosquitto: MosquittoBroker) -> None:
    base = uniq("b")
    applier = Applier()
    pub = make_publisher(mosquitto, [ALICE], applier, base_topic=base)
    async with Recorder(mosquitto, (f"{base}/alice/#",)) as rec, connected(pub):
        pub.publish_state("alice", frame())
        for key, payload in (("threshold_deg", b"20.5"), ("mode", b"tracking"),
                             ("alerts_enabled", b"false"), ("calibrate", b"true"),
                             ("snooze_min", b"30")):
            await publish(mosquitto, f"{base}/alice/set/{key}", payload)
        await rec.wait_for(lambda: len(rec.on(f"{base}/alice/set/result")) == 5)
        assert all(m.json()["ok"] for m in rec.on(f"{base}/alice/set/result"))
        await rec.wait_for(lambda: rec.on(f"{base}/alice/state")[-1].json()["mode"] == "tracking")
        last = rec.on(f"{base}/alice/state")[-1].json()
        assert (last["threshold_deg"], last["alerts_enabled"]) == (20.5, False)
    assert [c[1] for c in applier.calls] == [{"threshold_deg": 20.5}, {"mode": "tracking"},
                                             {"alerts_enabled": False}, {"calibrate": True},
                                             {"snooze_min": 30.0}]


async def test_replies_carry_the_command_id_whether_applied_or_refused(mosquitto: MosquittoBroker) -> None:
    base = uniq("b")
    pub = make_publisher(mosquitto, [ALICE], base_topic=base)
    async with Recorder(mosquitto, (f"{base}/alice/set/result",)) as rec, connected(pub):
        await publish(mosquitto, f"{base}/alice/set", b'{"threshold_deg": 25, "id": "ok-1"}')
        await publish(mosquitto, f"{base}/alice/set", b'{"threshold_deg": 90, "id": "bad-1"}')
        await publish(mosquitto, f"{base}/alice/set", b'{"threshold_deg": 20, "ts": 1000, "id": "old-1"}')
        await rec.wait_for(lambda: len(rec.messages) == 3)
    replies = [m.json() for m in rec.messages]
    assert [(r["id"], r["ok"]) for r in replies] == [("ok-1", True), ("bad-1", False), ("old-1", False)]


async def test_a_daemon_error_while_applying_is_replied_not_raised(mosquitto: MosquittoBroker) -> None:
    base = uniq("b")

    async def broken(wearer: str, command: object) -> object:
        raise RuntimeError("sensor went away")

    pub = make_publisher(mosquitto, [ALICE], broken, base_topic=base)
    async with Recorder(mosquitto, (f"{base}/alice/set/result",)) as rec, connected(pub):
        await publish(mosquitto, f"{base}/alice/set", b'{"calibrate": true}')
        await rec.wait_for(lambda: rec.messages)
        assert rec.messages[0].json()["ok"] is False
        assert pub.connected


async def test_retained_commands_are_never_applied(mosquitto: MosquittoBroker) -> None:
    base = uniq("b")
    applier = Applier()
    # Left on the broker before slouchd starts: must not run at (re)connect.
    await publish(mosquitto, f"{base}/alice/set", b'{"calibrate": true}', retain=True)
    pub = make_publisher(mosquitto, [ALICE], applier, base_topic=base)
    async with Recorder(mosquitto, (f"{base}/alice/set/result",)) as rec, connected(pub):
        # Published retained while slouchd runs: seen as retained (MQTT 5) and refused.
        await publish(mosquitto, f"{base}/alice/set", b'{"dwell_s": 45}', retain=True,
                      protocol=aiomqtt.ProtocolVersion.V5)
        await rec.wait_for(lambda: rec.messages)
        await settled(pub, rec)
        assert [m.json()["ok"] for m in rec.messages] == [False]
        assert "retained" in rec.messages[0].json()["error"]
    assert applier.calls == []
    await publish(mosquitto, f"{base}/alice/set", b"", retain=True)  # tidy the session broker


async def test_home_assistant_online_re_announces_discovery_and_state(mosquitto: MosquittoBroker) -> None:
    base, prefix = uniq("b"), uniq("ha")
    pub = make_publisher(mosquitto, [ALICE], base_topic=base,
                         ha=HomeAssistantSettings(discovery_prefix=prefix, birth_delay_max_s=0.2))
    disc = discovery_topic(prefix, ALICE)
    async with Recorder(mosquitto, (f"{prefix}/#", f"{base}/#")) as rec, connected(pub):
        pub.publish_state("alice", frame())
        pub.set_availability("alice", True)
        await rec.wait_for(lambda: rec.on(disc) and rec.on(f"{base}/alice/state"))
        before_disc, before_state = len(rec.on(disc)), len(rec.on(f"{base}/alice/state"))
        await publish(mosquitto, f"{prefix}/status", b"offline")
        # Not a wait on slouchd's insides: a re-announce would come within birth_delay_max_s.
        await asyncio.sleep(0.4)
        assert len(rec.on(disc)) == before_disc  # HA going away needs nothing from us
        sent = time.monotonic()
        await publish(mosquitto, f"{prefix}/status", b"online")
        await rec.wait_for(lambda: len(rec.on(disc)) > before_disc
                           and len(rec.on(f"{base}/alice/state")) > before_state, 2.0)
        assert rec.on(disc)[-1].t - sent < 1.0  # birth_delay_max_s = 0.2 plus slack, not the 5 s default
        assert rec.on(f"{base}/alice/availability")[-1].payload == b"online"


async def test_removed_wearer_gets_discovery_and_topics_cleared(mosquitto: MosquittoBroker) -> None:
    base, prefix = uniq("b"), uniq("ha")
    pub = make_publisher(mosquitto, [ALICE, BOB], base_topic=base,
                         ha=HomeAssistantSettings(discovery_prefix=prefix))
    async with connected(pub):
        for name in ("alice", "bob"):
            pub.publish_state(name, frame())
            pub.set_availability(name, True)
            pub.publish_stats(name, {"alerts": 1})
        await settled(pub)
        assert discovery_topic(prefix, BOB) in await retained(mosquitto, f"{prefix}/#")
        renamed_alice = WearerInfo("alicia", ALICE.sensor_id)  # same sensor, new name
        pub.set_wearers([renamed_alice])
        await settled(pub)
        disc = await retained(mosquitto, f"{prefix}/#")
        topics = await retained(mosquitto, f"{base}/#")
    assert set(disc) == {discovery_topic(prefix, ALICE)}  # bob gone; alice's device kept
    assert json.loads(disc[discovery_topic(prefix, ALICE)])["components"]["flexion"]["state_topic"] == (
        f"{base}/alicia/state")
    assert not [t for t in topics if t.startswith((f"{base}/bob/", f"{base}/alice/"))]


async def test_close_flushes_events_then_publishes_offline(mosquitto: MosquittoBroker) -> None:
    base = uniq("b")
    pub = make_publisher(mosquitto, [ALICE], base_topic=base)
    async with Recorder(mosquitto, (f"{base}/#",)) as rec:
        async with connected(pub):
            pub.set_availability("alice", True)
            for i in range(50):
                pub.publish_event("alice", {"t": float(i), "event": "slouch_alert"})
        # Left the context: close() ran, as on SIGTERM.
        await rec.wait_for(lambda: rec.on(f"{base}/bridge/state")
                           and rec.on(f"{base}/bridge/state")[-1].payload == b"offline")
        order = [m.topic.rsplit("/", 1)[-1] for m in rec.messages]
        assert order.count("event") == 50
        # Every event before the sensors go offline, the bridge last.
        assert max(i for i, t in enumerate(order) if t == "event") < order.index("availability", 2)
        assert rec.messages[-1].topic == f"{base}/bridge/state"
    snap = await retained(mosquitto, f"{base}/#")
    assert snap[f"{base}/bridge/state"] == b"offline"
    assert snap[f"{base}/alice/availability"] == b"offline"
    assert pub.queue_depth == 0 and not pub.connected


async def test_run_in_a_task_group_then_close(mosquitto: MosquittoBroker) -> None:
    """The daemon's other way to drive it: ``run()`` in its own task, ``close()`` on SIGTERM."""
    base = uniq("b")
    pub = make_publisher(mosquitto, [ALICE], base_topic=base)
    async with Recorder(mosquitto, (f"{base}/bridge/state",)) as rec, asyncio.TaskGroup() as tg:
        tg.create_task(pub.run())
        await rec.wait_for(lambda: rec.messages and rec.messages[-1].payload == b"online")
        await pub.close()
        await rec.wait_for(lambda: rec.messages[-1].payload == b"offline")
    # run() returned by itself: the task group exited without cancelling anything.


async def test_cancelled_without_close_still_says_offline(mosquitto: MosquittoBroker) -> None:
    base = uniq("b")
    pub = make_publisher(mosquitto, [ALICE], base_topic=base)
    async with Recorder(mosquitto, (f"{base}/bridge/state",)) as rec:
        task = asyncio.create_task(pub.run())
        await rec.wait_for(lambda: rec.messages and rec.messages[-1].payload == b"online")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await rec.wait_for(lambda: rec.messages[-1].payload == b"offline")


async def test_wearer_removed_while_slouchd_was_stopped_is_cleared_at_start(
        mosquitto: MosquittoBroker) -> None:
    base, prefix = uniq("b"), uniq("ha")
    ha = HomeAssistantSettings(discovery_prefix=prefix)
    first = make_publisher(mosquitto, [ALICE, BOB], base_topic=base, ha=ha)
    async with connected(first):
        first.publish_state("bob", frame())
        first.set_availability("bob", True)
        await settled(first)
    # Someone else's retained discovery under the same prefix must survive.
    foreign = f"{prefix}/device/zb_0x1234/config"
    await publish(mosquitto, foreign, b'{"origin": {"name": "zigbee2mqtt"}, "components": {}}', retain=True)
    second = make_publisher(mosquitto, [ALICE], base_topic=base, ha=ha)  # bob left the config
    async with connected(second):
        # The leftover arrives (retained) after the subscription and is then cleared.
        await eventually(lambda: retained(mosquitto, f"{prefix}/#"),
                         lambda d: discovery_topic(prefix, BOB) not in d)
        await settled(second)
        disc = await retained(mosquitto, f"{prefix}/#")
        topics = await retained(mosquitto, f"{base}/#")
    assert set(disc) == {discovery_topic(prefix, ALICE), foreign}
    assert not [t for t in topics if t.startswith(f"{base}/bob/")]
    await publish(mosquitto, foreign, b"", retain=True)


async def test_a_settings_change_does_not_resend_an_unchanged_discovery(mosquitto: MosquittoBroker) -> None:
    base, prefix = uniq("b"), uniq("ha")
    pub = make_publisher(mosquitto, [ALICE], base_topic=base,
                         ha=HomeAssistantSettings(discovery_prefix=prefix, birth_delay_max_s=0.1))
    topic = discovery_topic(prefix, ALICE)
    async with Recorder(mosquitto, (f"{prefix}/#",)) as rec, connected(pub):
        await rec.wait_for(lambda: len(rec.on(topic)) == 1)
        pub.set_wearers([ALICE.with_settings({"threshold_deg": 20.0})])  # what a command does
        await settled(pub, rec)
        assert len(rec.on(topic)) == 1
        pub.set_wearers([WearerInfo("alice", "c4aa102b3301", model="micro:bit v1", manufacturer="BBC")])
        await rec.wait_for(lambda: len(rec.on(topic)) == 2)  # a real change is sent
        await publish(mosquitto, f"{prefix}/status", b"online")  # HA restarted: everything again
        await rec.wait_for(lambda: len(rec.on(topic)) == 3)
