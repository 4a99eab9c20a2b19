"""The real daemon process with simulated wearers and the test Mosquitto (issue 6)."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._broker import MosquittoBroker
from tests.daemon.harness import DaemonProcess, NotifySocket, Recorder, write_config

FAST = 60.0  # simulated seconds per wall second: the first alert comes within ~10 wall seconds


@pytest.fixture
def topic() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def recorder(mosquitto: MosquittoBroker, topic: str) -> Iterator[Recorder]:
    rec = Recorder(mosquitto.host, mosquitto.port, topics=(f"{topic}/#",)).wait_subscribed()
    yield rec
    rec.close()


def one_sim(name: str = "ana", speed: float = FAST, seed: int = 1) -> str:
    return f'[[wearers]]\nname = "{name}"\nsensor = "simulated"\nspeed = {speed}\nseed = {seed}\n'


def states(rec: Recorder, topic: str, wearer: str, since: float = 0.0) -> list[dict]:
    return [m.json() for m in rec.on(f"{topic}/{wearer}/state") if m.at >= since]


def test_ready_status_and_watchdog_arrive_on_the_notify_socket(
        tmp_path: Path, mosquitto: MosquittoBroker, topic: str, notify: NotifySocket) -> None:
    cfg = write_config(tmp_path / "c.toml", port=mosquitto.port, state_dir=tmp_path / "state",
                       wearers=one_sim(), base_topic=topic)
    d = DaemonProcess(cfg, notify=notify, watchdog_usec=1_000_000)
    try:
        notify.wait_for("READY=1", timeout_s=15)
        ready_after = notify.received[0][0] - d.started
        assert ready_after < 10.0
        notify.wait_for("STATUS=mqtt=connected wearers=1/1 streaming", timeout_s=15)
        first = notify.wait_for("WATCHDOG=1", timeout_s=5)
        assert first == "WATCHDOG=1"
        # WatchdogSec=1 s -> pings every 0.5 s while healthy: 4 pings span about 1.5 s.
        pings = notify.count("WATCHDOG=1", 4, timeout_s=5)
        assert pings[3] - pings[0] < 2.2, pings
    finally:
        d.stop()


def test_sigterm_publishes_offline_and_exits_0_within_5_s(
        tmp_path: Path, mosquitto: MosquittoBroker, topic: str, recorder: Recorder,
        notify: NotifySocket) -> None:
    cfg = write_config(tmp_path / "c.toml", port=mosquitto.port, state_dir=tmp_path / "state",
                       wearers=one_sim(), base_topic=topic)
    d = DaemonProcess(cfg, notify=notify)
    try:
        recorder.wait_for(lambda m: m.topic == f"{topic}/bridge/state" and m.payload == b"online")
        recorder.wait_for(lambda m: m.topic == f"{topic}/ana/state")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        code = d.wait(timeout_s=5.0)
        took = time.monotonic() - t0
        assert code == 0, d.log()
        assert took < 5.0
        last = recorder.wait_for(lambda m: m.topic == f"{topic}/bridge/state" and m.payload == b"offline",
                                 since=t0)
        assert last.payload == b"offline"
        avail = recorder.wait_for(lambda m: m.topic == f"{topic}/ana/availability"
                                  and m.payload == b"offline", since=t0)
        assert avail.payload == b"offline"
        assert "STOPPING=1" in notify.lines("STOPPING")
    finally:
        d.stop()


def test_sighup_with_a_new_threshold_changes_behaviour_and_published_thresholds(
        tmp_path: Path, mosquitto: MosquittoBroker, topic: str, recorder: Recorder,
        notify: NotifySocket) -> None:
    state_dir = tmp_path / "state"
    cfg = write_config(tmp_path / "c.toml", port=mosquitto.port, state_dir=state_dir,
                       wearers=one_sim(), base_topic=topic, detection="threshold_deg = 15.0")
    d = DaemonProcess(cfg, notify=notify)
    try:
        # Before: the scripted day's first deep slouch is reported as slouching.
        recorder.wait_for(lambda m: m.topic == f"{topic}/ana/state"
                          and m.json()["posture"] == "slouching", timeout_s=30)
        assert states(recorder, topic, "ana")[-1]["threshold_deg"] == 15.0
        write_config(cfg, port=mosquitto.port, state_dir=state_dir, wearers=one_sim(),
                     base_topic=topic, detection="threshold_deg = 60.0")
        t_hup = time.monotonic()
        d.signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1", since=t_hup)
        notify.wait_for("READY=1", since=t_hup)
        recorder.wait_for(lambda m: m.topic == f"{topic}/ana/state"
                          and m.json()["threshold_deg"] == 60.0, since=t_hup, timeout_s=10)
        # 12 simulated minutes more: the script holds slouches of 18-35 deg.
        t_new = states(recorder, topic, "ana", since=t_hup)[0]["t"]
        recorder.wait_for(lambda m: m.topic == f"{topic}/ana/state" and m.json()["t"] >= t_new + 720,
                          since=t_hup, timeout_s=40)
        after = states(recorder, topic, "ana", since=t_hup + 1.0)
        assert len(after) > 5
        assert all(s["threshold_deg"] == 60.0 for s in after)
        assert not [s for s in after if s["posture"] == "slouching"]
        assert d.proc.poll() is None
    finally:
        d.stop()


def test_invalid_config_on_sighup_keeps_the_old_one(
        tmp_path: Path, mosquitto: MosquittoBroker, topic: str, recorder: Recorder,
        notify: NotifySocket) -> None:
    cfg = write_config(tmp_path / "c.toml", port=mosquitto.port, state_dir=tmp_path / "state",
                       wearers=one_sim(), base_topic=topic, detection="threshold_deg = 20.0")
    d = DaemonProcess(cfg, notify=notify)
    try:
        recorder.wait_for(lambda m: m.topic == f"{topic}/ana/state")
        cfg.write_text(cfg.read_text().replace("threshold_deg = 20.0", "threshold_deg = -5"))
        t_hup = time.monotonic()
        d.signal(signal.SIGHUP)
        notify.wait_for("READY=1", since=t_hup)
        t_ready = time.monotonic()
        # States made after the refused reload (about two seconds' worth) keep the old threshold.
        after = [m.json() for m in recorder.count(lambda m: m.topic == f"{topic}/ana/state", 3,
                                                   since=t_ready)]
        assert d.proc.poll() is None
        assert after and all(s["threshold_deg"] == 20.0 for s in after)
        assert "reload refused" in d.log()
        assert "detection.threshold_deg = -5: must be 3..60" in d.log()
    finally:
        d.stop()


def test_kill_9_then_restart_restores_the_calibration(
        tmp_path: Path, mosquitto: MosquittoBroker, topic: str, recorder: Recorder) -> None:
    state_dir = tmp_path / "state"
    cfg = write_config(tmp_path / "c.toml", port=mosquitto.port, state_dir=state_dir,
                       wearers=one_sim(), base_topic=topic)
    d = DaemonProcess(cfg)
    try:
        recorder.wait_for(lambda m: m.topic == f"{topic}/ana/event"
                          and m.json()["event"] == "calibrated", timeout_s=20)
        deadline = time.monotonic() + 10
        saved = None
        while time.monotonic() < deadline:
            path = state_dir / "ana.json"
            if path.exists():
                saved = json.loads(path.read_text())["state"]["tracker"]["calibration"]
                if saved:
                    break
            time.sleep(0.1)
        assert saved, "calibration was not persisted promptly"
        d.kill9()
    finally:
        d.stop()
    t_restart = time.monotonic()
    d2 = DaemonProcess(cfg)
    try:
        first = recorder.wait_for(lambda m: m.topic == f"{topic}/ana/state", since=t_restart)
        assert first.json()["calibrated"] is True
        # Three simulated minutes later (calibrating afresh takes less), no "calibrated" event.
        recorder.wait_for(lambda m: m.topic == f"{topic}/ana/state"
                          and m.json()["t"] >= first.json()["t"] + 180, since=t_restart, timeout_s=20)
        events = [m.json()["event"] for m in recorder.on(f"{topic}/ana/event") if m.at >= t_restart]
        assert "calibrated" not in events  # restored, not re-learned
        restored = json.loads((state_dir / "ana.json").read_text())["state"]["tracker"]["calibration"]
        assert restored == saved
    finally:
        d2.stop()


def test_one_failing_sensor_leaves_the_other_wearers_alerts_flowing(
        tmp_path: Path, mosquitto: MosquittoBroker, topic: str, recorder: Recorder,
        notify: NotifySocket) -> None:
    broken = tmp_path / "broken.csv"
    # Valid at start (an unusable file is a config error then: test_replay_wearer_start.py), broken
    # while running: the wearer's sensor fails each time it re-reads the file.
    broken.write_text("t,ax,ay,az\n0,0,1,0\n0.02,0,1,0\n")
    wearers = one_sim("ana") + f'[[wearers]]\nname = "bo"\nsensor = "replay:{broken}"\n'
    cfg = write_config(tmp_path / "c.toml", port=mosquitto.port, state_dir=tmp_path / "state",
                       wearers=wearers, base_topic=topic)
    d = DaemonProcess(cfg, notify=notify)
    try:
        recorder.wait_for(lambda m: m.topic == f"{topic}/bo/availability", timeout_s=30)
        broken.write_text("t,ax,ay,az\n0,0,1,0\nnot,a,number,row\n")
        deadline = time.monotonic() + 30
        while d.log().count("sensor task failed") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        since = time.monotonic()
        alert = recorder.wait_for(lambda m: m.topic == f"{topic}/ana/event"
                                  and m.json()["event"] == "slouch_alert", since=since, timeout_s=40)
        assert alert.json()["level"] >= 1
        log = d.log()
        assert "slouchd.wearer.bo" in log and "Traceback" in log  # logged with its traceback
        assert log.count("sensor task failed") >= 2  # and restarted, again and again
        assert d.proc.poll() is None
        status = notify.lines("STATUS=")[-1]
        assert "wearers=1/2 streaming" in status or "wearers=2/2" not in status
    finally:
        d.stop()


def test_sighup_with_a_new_broker_and_base_topic_moves_the_session_without_a_restart(
        tmp_path: Path, mosquitto: MosquittoBroker, private_mosquitto: MosquittoBroker, topic: str,
        recorder: Recorder, notify: NotifySocket) -> None:
    """[mqtt] changes apply on reload: old broker told offline, new one gets everything."""
    state_dir = tmp_path / "state"
    prefix = f"ha{topic}"
    ha = f'[homeassistant]\ndiscovery_prefix = "{prefix}"\n'
    cfg = write_config(tmp_path / "c.toml", port=mosquitto.port, state_dir=state_dir,
                       wearers=one_sim(), base_topic=topic, extra=ha)
    d = DaemonProcess(cfg, notify=notify)
    new_topic = f"{topic}x"
    moved = Recorder(private_mosquitto.host, private_mosquitto.port,
                     topics=(f"{new_topic}/#", f"{prefix}/#")).wait_subscribed()
    try:
        recorder.wait_for(lambda m: m.topic == f"{topic}/ana/state")
        write_config(cfg, port=private_mosquitto.port, state_dir=state_dir, wearers=one_sim(),
                     base_topic=new_topic, extra=ha)
        t_hup = time.monotonic()
        d.signal(signal.SIGHUP)
        notify.wait_for("READY=1", since=t_hup)
        recorder.wait_for(lambda m: m.topic == f"{topic}/bridge/state" and m.payload == b"offline",
                          since=t_hup, timeout_s=10)
        recorder.wait_for(lambda m: m.topic == f"{topic}/ana/availability" and m.payload == b"offline",
                          since=t_hup, timeout_s=5)
        moved.wait_for(lambda m: m.topic == f"{new_topic}/bridge/state" and m.payload == b"online")
        disc = moved.wait_for(lambda m: m.topic.startswith(f"{prefix}/device/"))
        assert disc.json()["components"]["flexion"]["state_topic"] == f"{new_topic}/ana/state"
        first = moved.wait_for(lambda m: m.topic == f"{new_topic}/ana/state")
        assert first.json()["calibrated"] is True  # same wearer, same calibration: no reconnect
        moved.count(lambda m: m.topic == f"{new_topic}/ana/state", 3, timeout_s=10)
        late = [m for m in recorder.on(f"{topic}/ana/state") if m.at > t_hup + 1.0]
        assert not late  # nothing goes to the old broker any more
        assert len(moved.on(f"{new_topic}/ana/state")) >= 2
        assert "sensor settings changed" not in d.log()
        assert "[mqtt]/[homeassistant] changed: reconnecting" in d.log()
        assert d.proc.poll() is None
    finally:
        moved.close()
        d.stop()
