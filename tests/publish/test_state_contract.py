"""Contract: every key a Home Assistant entity reads is in what the real daemon publishes.

A real ``slouchd run`` (one simulated wearer) against the test Mosquitto; its retained discovery,
a state, the day's stats and an event (the calibration a command asks for) are caught on the
broker. Every key that a ``value_template`` or ``json_attributes_template`` of the discovery
reads, and every key of the exposes table, must be in the payload of the topic it reads from.
A key renamed on either side (the table, or ``state_payload``/``counters``/``stats`` in the
daemon) fails here; HA would otherwise show that entity as unknown forever.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from slouchd.publish.exposes import EVENT, EXPOSES, HISTORY, STATE, STATS, STRETCH, read_keys
from slouchd.publish.homeassistant import discovery_payload
from slouchd.publish.topics import Topics
from slouchd.publish.wearer import WearerInfo
from tests._broker import MosquittoBroker
from tests.daemon.harness import DaemonProcess, Recorder, write_config

READS = re.compile(r"value_json\.(\w+)")


def templates_read(component: dict[str, Any]) -> set[str]:
    """The JSON keys a discovery component's templates read."""
    text = " ".join(str(component.get(k, "")) for k in ("value_template", "json_attributes_template"))
    return set(READS.findall(text))


def test_the_discovery_templates_read_exactly_the_keys_of_the_table() -> None:
    comps = discovery_payload(WearerInfo("ana", "sim-ana"), Topics("b"), 60)["components"]
    for row in EXPOSES:
        if row.topic == EVENT or row.key is None:
            continue  # an event entity reads "event_type" without a template
        assert templates_read(comps[row.component]) == set(row.reads), row


@pytest.fixture
def published(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[dict[str, Any]]:
    """What one real daemon publishes: discovery, state, stats and event payloads (parsed)."""
    base, prefix = f"c{uuid.uuid4().hex[:8]}", f"ha{uuid.uuid4().hex[:8]}"
    rec = Recorder(mosquitto.host, mosquitto.port, topics=(f"{base}/#", f"{prefix}/#"))
    cfg = write_config(tmp_path / "c.toml", port=mosquitto.port, state_dir=tmp_path / "state",
                       base_topic=base, extra=f'[homeassistant]\ndiscovery_prefix = "{prefix}"\n',
                       wearers='[[wearers]]\nname = "ana"\nsensor = "simulated"\nspeed = 60\nseed = 1\n')
    daemon = DaemonProcess(cfg)
    try:
        found: dict[str, Any] = {}
        for name, topic in (("discovery", f"{prefix}/device/slouchd_sim-ana/config"),
                            ("state", f"{base}/ana/state"), ("stats", f"{base}/ana/stats")):
            found[name] = rec.wait_for(lambda m, t=topic: m.topic == t and bool(m.payload)).json()
        # A calibration command makes an event ("calibrated" or "calibration_failed").
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"cmd-{time.time_ns()}")
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        try:
            pub.publish(f"{base}/ana/set", json.dumps({"calibrate": True}), qos=1).wait_for_publish(10)
            found["event"] = rec.wait_for(lambda m: m.topic == f"{base}/ana/event").json()
            # A stretch session: the retained stretch topic shows its step (title, held_s ...).
            pub.publish(f"{base}/ana/set/stretch", "start", qos=1).wait_for_publish(10)
            found["stretch"] = rec.wait_for(
                lambda m: m.topic == f"{base}/ana/stretch" and b'"title"' in m.payload).json()
            found["history"] = rec.wait_for(lambda m: m.topic == f"{base}/ana/history").json()
            found["state"] = rec.wait_for(  # the state now carries the coach's keys with a session
                lambda m: m.topic == f"{base}/ana/state" and b'"stretch": "idle"' not in m.payload
                and b'"stretch":"idle"' not in m.payload).json()
        finally:
            pub.loop_stop()
            pub.disconnect()
        found["topics"] = {f"{base}/ana/state": "state", f"{base}/ana/stats": "stats",
                           f"{base}/ana/event": "event", f"{base}/ana/stretch": "stretch",
                           f"{base}/ana/history": "history"}
        yield found
    finally:
        daemon.stop()
        rec.close()


def test_every_key_home_assistant_reads_is_in_what_the_daemon_publishes(published: dict[str, Any]) -> None:
    payloads = {STATE: published["state"], STATS: published["stats"], EVENT: published["event"],
                STRETCH: published["stretch"], HISTORY: published["history"]}
    # The table side: every key of every row (battery and rssi too: a sensor with them sends them).
    for topic, payload in payloads.items():
        missing = {k: rows for k, rows in read_keys(topic).items() if k not in payload}
        assert not missing, f"{topic} payload lacks {missing}; it has {sorted(payload)}"
    # The discovery side: what the daemon really announced, template by template.
    comps = published["discovery"]["components"]
    checked = 0
    for cid, comp in comps.items():
        if set(comp) == {"platform"}:
            continue  # a removal (a capability the simulated sensor lacks)
        topic = comp.get("state_topic")
        if topic is None:
            assert comp["platform"] == "button", cid
            continue
        payload = published[published["topics"][topic]]
        if comp["platform"] == "event":
            assert payload["event_type"] in comp["event_types"], payload
            checked += 1
            continue
        for key in templates_read(comp):
            assert key in payload, f"{cid} reads {key!r}, not in {sorted(payload)}"
            checked += 1
    assert checked >= 25  # the template parsing found the keys (not a test that cannot fail)
