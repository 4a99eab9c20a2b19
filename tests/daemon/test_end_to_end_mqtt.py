"""`slouchd run` with a simulated wearer, seen by an MQTT subscriber as Home Assistant would."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import paho.mqtt.publish as paho_publish

from tests._broker import MosquittoBroker
from tests.daemon.harness import DaemonProcess, Recorder


def test_home_assistant_sees_discovery_state_alerts_and_offline_after_sigterm(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    base = f"t{uuid.uuid4().hex[:8]}"
    prefix = f"ha{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\nbase_topic = "{base}"\n'
        f'[homeassistant]\ndiscovery_prefix = "{prefix}"\n'
        '[[wearers]]\nname = "ana"\nsensor = "simulated"\nspeed = 60\n')
    rec = Recorder(mosquitto.host, mosquitto.port, topics=(f"{base}/#", f"{prefix}/#")).wait_subscribed()
    d = DaemonProcess(cfg)
    try:
        disc = rec.wait_for(lambda m: m.topic.startswith(f"{prefix}/device/") and m.payload != b"")
        assert disc.retain or disc.topic.endswith("/config")
        doc = disc.json()
        assert doc["device"]["identifiers"] and doc["origin"]["name"] == "slouchd"
        comps = doc["components"]
        # A simulated wearer has no battery and no radio: those components are sent as
        # {"platform": ...} alone, which removes them from Home Assistant.
        removed = {k for k, c in comps.items() if set(c) == {"platform"}}
        assert {"battery", "rssi"} <= removed, removed
        uids = [c["unique_id"] for k, c in comps.items() if k not in removed]
        assert len(uids) == len(set(uids)) and all(u.startswith("slouchd_sim-ana") for u in uids)
        flexion = next(c for c in comps.values() if c.get("unit_of_measurement") == "°")
        assert flexion["state_class"] == "measurement" and flexion["expire_after"] > 0
        assert flexion["availability_mode"] == "all" and len(flexion["availability"]) == 2
        platforms = {c["platform"] for c in comps.values()}
        assert {"sensor", "binary_sensor", "event", "button", "number", "switch", "select"} <= platforms

        alert = rec.wait_for(lambda m: m.topic == f"{base}/ana/event"
                             and m.json()["event"] == "slouch_alert", timeout_s=40)
        assert not alert.retain and alert.json()["level"] == 1

        # State at about 1 Hz (rate-limited from 60 frames a second), plus changes of posture.
        window = rec.count(lambda m: m.topic == f"{base}/ana/state", 5, since=time.monotonic(),
                           timeout_s=10)[:5]
        span = window[-1].at - window[0].at
        assert 4 / 3.0 <= span <= 4 / 0.6, span  # 4 intervals at 0.6-3 states a second
        state = window[-1].json()
        for key in ("flexion_deg", "lateral_deg", "posture", "activity", "worn", "sitting_min",
                    "calibrated", "battery", "rssi", "threshold_deg", "dwell_s"):
            assert key in state

        # A bad command changes nothing and says why; a good one applies and shows in the state.
        t_cmd = time.monotonic()
        paho_publish.single(f"{base}/ana/set", '{"threshold_deg": 500}', hostname=mosquitto.host,
                            port=mosquitto.port)
        bad = rec.wait_for(lambda m: m.topic == f"{base}/ana/set/result", since=t_cmd)
        assert bad.json()["ok"] is False and "threshold_deg" in bad.json()["error"]
        after_bad = rec.count(lambda m: m.topic == f"{base}/ana/state", 2, since=bad.at, timeout_s=10)
        assert all(m.json()["threshold_deg"] == 15.0 for m in after_bad)
        t_good = time.monotonic()
        paho_publish.single(f"{base}/ana/set", json.dumps({"threshold_deg": 18}),
                            hostname=mosquitto.host, port=mosquitto.port)
        good = rec.wait_for(lambda m: m.topic == f"{base}/ana/set/result", since=t_good)
        assert good.json()["ok"] is True
        rec.wait_for(lambda m: m.topic == f"{base}/ana/state" and m.json()["threshold_deg"] == 18.0,
                     since=t_good, timeout_s=5)

        t_term = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait(timeout_s=5.0) == 0
        rec.wait_for(lambda m: m.topic == f"{base}/bridge/state" and m.payload == b"offline",
                     since=t_term)
    finally:
        d.stop()
        rec.close()
    # The accepted threshold survives a restart (persisted per wearer).
    saved = json.loads((tmp_path / "state" / "ana.json").read_text())["state"]
    assert saved["overrides"]["threshold_deg"] == 18.0
