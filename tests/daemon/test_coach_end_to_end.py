"""The coach through a real ``slouchd run`` and the test Mosquitto (docs/coach.md, docs/mqtt.md).

A replay wearer plays a simulated person doing the ``quick`` stretch session well (the
simulator's recording, its calm start lengthened so the MQTT command has time to arrive before
the first pose). The session is started by an MQTT command; the retained ``stretch`` topic and
the ``stretch_*`` events show it; a completed session is a break that counts. The counts survive
a clean restart and a ``kill -9``; an unknown session name is refused with one clear reply and
the daemon keeps running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.publish as paho_publish
import pytest

from slouchd.publish.exposes import STRETCH_STATUSES
from tests._broker import MosquittoBroker
from tests.daemon.harness import DaemonProcess, Message, Recorder, write_config

CALM_S = 8.0  # the simulator's calm start before its session (slouchd.sensors.simulation.stretches)
LOOPS = 6  # the calm start played this many times: about 50 s before the first pose


def stretch_recording(path: Path) -> Path:
    """A good ``quick`` session, recorded by the simulator, with its calm start repeated."""
    raw = path.with_suffix(".raw.csv")
    subprocess.run([sys.executable, "-m", "slouchd.sensors.simulation.stretches", "--behaviour", "good",
                    "--seed", "1", "--session", "quick", str(raw)], check=True, capture_output=True)
    header, *rows = raw.read_text().splitlines()
    calm = [r for r in rows if float(r.split(",", 1)[0]) < CALM_S]
    out = [header]
    for k in range(LOOPS):
        out += [f"{float(t) + k * CALM_S:.4f},{rest}" for t, rest in (r.split(",", 1) for r in calm)]
    shift = (LOOPS - 1) * CALM_S
    out += [f"{float(t) + shift:.4f},{rest}"
            for t, rest in (r.split(",", 1) for r in rows if float(r.split(",", 1)[0]) >= CALM_S)]
    path.write_text("\n".join(out) + "\n")
    return path


def is_json(topic: str, pred: Callable[[dict[str, Any]], bool]) -> Callable[[Message], bool]:
    return lambda m: m.topic == topic and bool(m.payload) and pred(m.json())


def wait_file(path: Path, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0) -> dict[str, Any]:
    """The JSON file at ``path`` once ``pred`` holds for it (saves are atomic: never torn)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            doc = None
        if doc is not None and pred(doc):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach the condition within {timeout_s} s")


@pytest.fixture
def setup(tmp_path: Path, mosquitto: MosquittoBroker) -> dict[str, Any]:
    base = f"k{uuid.uuid4().hex[:8]}"
    csv = stretch_recording(tmp_path / "quick.csv")
    cfg = write_config(
        tmp_path / "c.toml", port=mosquitto.port, state_dir=tmp_path / "state", base_topic=base,
        # The recording's first pose comes ~50 s in: the session must wait for it that long.
        extra="[homeassistant]\ndiscovery = false\n[stretch]\nreach_timeout_s = 120\n",
        wearers=f'[[wearers]]\nname = "ana"\nsensor = "replay:{csv}"\nmount = "+y,-z"\nspeed = 6\n')
    return {"base": base, "cfg": cfg, "state_dir": tmp_path / "state", "broker": mosquitto}


def command(broker: MosquittoBroker, topic: str, payload: str) -> None:
    paho_publish.single(topic, payload, qos=1, hostname=broker.host, port=broker.port)


def test_stretch_session_by_mqtt_survives_restart_and_kill_9(setup: dict[str, Any]) -> None:
    base, broker, state_dir = setup["base"], setup["broker"], setup["state_dir"]
    rec = Recorder(broker.host, broker.port, topics=(f"{base}/#",)).wait_subscribed()
    d = DaemonProcess(setup["cfg"])
    try:
        # Idle at start: the retained stretch topic and an empty history are there for HA.
        assert rec.wait_for(is_json(f"{base}/ana/stretch", lambda j: True)).json() == {"status": "idle"}
        first = rec.wait_for(is_json(f"{base}/ana/state", lambda j: j["calibrated"]), timeout_s=40).json()
        assert first["stretch"] == "idle" and first["breaks_today"] == 0
        command(broker, f"{base}/ana/set", json.dumps({"stretch": "quick", "id": "s1"}))
        reply = rec.wait_for(is_json(f"{base}/ana/set/result", lambda j: j.get("id") == "s1")).json()
        assert reply == {"ok": True, "applied": {"stretch": "reaching"}, "error": "", "id": "s1"}
        start = rec.wait_for(is_json(f"{base}/ana/event", lambda j: j["event"] == "stretch_start")).json()
        assert start["session"] == "quick" and "clinician" in start["text"]
        rec.wait_for(is_json(f"{base}/ana/stretch", lambda j: j["status"] == "reaching"))
        holding = rec.wait_for(is_json(f"{base}/ana/stretch", lambda j: j["status"] == "holding"),
                               timeout_s=60).json()
        assert holding["session"] == "quick" and holding["step"] == "thoracic_extension"
        done = rec.wait_for(is_json(f"{base}/ana/event", lambda j: j["event"] in (
            "stretch_complete", "stretch_abandoned")), timeout_s=90).json()
        assert done["event"] == "stretch_complete", done
        brk = rec.wait_for(is_json(f"{base}/ana/event", lambda j: j["event"] == "break_taken")).json()
        assert brk["how"] == "stretch" and brk["breaks_today"] == 1
        kinds = {m.json()["event"] for m in rec.on(f"{base}/ana/event")}
        assert {"stretch_step_start", "stretch_pose_reached", "stretch_rep_complete",
                "stretch_step_complete"} <= kinds
        after = rec.wait_for(is_json(f"{base}/ana/state", lambda j: j["stretch_sessions_today"] == 1)).json()
        assert after["stretch"] == "complete" and after["breaks_today"] == 1
        # Home Assistant's enum sensor takes only these (the command's reply is merged into the state).
        shown = {m.json()["stretch"] for m in rec.on(f"{base}/ana/state") if m.payload}
        assert shown <= set(STRETCH_STATUSES) and {"idle", "reaching", "holding", "complete"} <= shown, shown
        hist = rec.wait_for(is_json(f"{base}/ana/history", lambda j: j["days"] and
                                    j["days"][-1]["stretch_sessions"] == 1)).json()
        assert hist["days"][-1]["breaks"] == 1
        # Retained: a subscriber that comes later (Home Assistant restarting) gets the session's end.
        late = Recorder(broker.host, broker.port, topics=(f"{base}/ana/stretch",))
        try:
            last = late.wait_for(lambda m: m.retain).json()
            assert last["status"] == "complete" and last["session"] == "quick"
        finally:
            late.close()
        # The counts reach the state file (saved every 5 s) and the history file (at the end).
        wait_file(state_dir / "ana.json", lambda j: j["state"]["coach"]["stretch_today"]["sessions"] == 1)
        wait_file(state_dir / "history" / "ana.json",
                  lambda j: any(day.get("stretch_sessions") == 1 for day in j["state"]["days"]))
        d.stop()
        assert d.proc.returncode == 0

        # A clean restart: the state and history topics show the same counts.
        since = time.monotonic()
        d = DaemonProcess(setup["cfg"])
        back = rec.wait_for(is_json(f"{base}/ana/state", lambda j: True), timeout_s=40, since=since).json()
        assert back["stretch_sessions_today"] == 1 and back["breaks_today"] == 1
        hist = rec.wait_for(is_json(f"{base}/ana/history", lambda j: True), since=since).json()
        assert hist["days"][-1]["stretch_sessions"] == 1

        # An unknown session: one clear refusal, nothing started, and the daemon keeps going.
        command(broker, f"{base}/ana/set/stretch", "yoga")
        no = rec.wait_for(is_json(f"{base}/ana/set/result", lambda j: not j["ok"])).json()
        assert no["error"] == "no stretch session 'yoga' (known: desk_break, quick)", no
        since = time.monotonic()
        later = rec.wait_for(is_json(f"{base}/ana/state", lambda j: True), since=since).json()
        assert later["stretch"] == "idle" and d.proc.poll() is None

        # kill -9 once the restarted daemon has saved its own state: no count is lost.
        restarted = time.time()
        wait_file(state_dir / "ana.json", lambda j: j["saved_at"] > restarted
                  and j["state"]["coach"]["stretch_today"]["sessions"] == 1)
        d.kill9()
        since = time.monotonic()
        d = DaemonProcess(setup["cfg"])
        back = rec.wait_for(is_json(f"{base}/ana/state", lambda j: True), timeout_s=40, since=since).json()
        assert back["stretch_sessions_today"] == 1 and back["breaks_today"] == 1
        hist = rec.wait_for(is_json(f"{base}/ana/history", lambda j: True), since=since).json()
        assert hist["days"][-1]["stretch_sessions"] == 1 and hist["days"][-1]["breaks"] == 1
    finally:
        d.stop()
        rec.close()


def test_slouchd_stretch_starts_and_stops_a_session_on_a_live_wearer(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    """`slouchd stretch --wearer NAME`: the MQTT command, its refusal, the session followed."""
    base = f"l{uuid.uuid4().hex[:8]}"
    cfg = write_config(tmp_path / "c.toml", port=mosquitto.port, state_dir=tmp_path / "state",
                       base_topic=base, extra="[homeassistant]\ndiscovery = false\n",
                       wearers='[[wearers]]\nname = "ana"\nsensor = "simulated"\nspeed = 1\n')
    rec = Recorder(mosquitto.host, mosquitto.port, topics=(f"{base}/#",)).wait_subscribed()
    d = DaemonProcess(cfg)
    cli = [sys.executable, "-m", "slouchd.cli", "stretch", "--config", str(cfg), "--wearer", "ana"]
    try:
        rec.wait_for(is_json(f"{base}/ana/state", lambda j: True), timeout_s=40)
        bad = subprocess.run([*cli, "--session", "yoga", "--timeout", "30"], capture_output=True, text=True,
                             timeout=60)
        assert bad.returncode == 2, bad
        assert bad.stderr.strip() == ("slouchd stretch: error: wearer ana: no stretch session 'yoga' "
                                      "(known: desk_break, quick)"), bad.stderr
        follow = subprocess.Popen([*cli, "--session", "quick", "--timeout", "60"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            rec.wait_for(is_json(f"{base}/ana/event", lambda j: j["event"] == "stretch_start"))
            stop = subprocess.run([*cli, "--stop", "--timeout", "30"], capture_output=True, text=True,
                                  timeout=60)
            assert stop.returncode == 0, stop
            assert json.loads(stop.stdout.splitlines()[-1])["reply"]["applied"] == {"stretch": "abandoned"}
            out, err = follow.communicate(timeout=60)
        finally:
            follow.kill()
        lines = [json.loads(line) for line in out.splitlines()]
        assert follow.returncode == 1, (out, err)  # abandoned: stopped by the other command
        assert [j["reply"]["ok"] for j in lines if "reply" in j] == [True]
        assert {"stretch_start", "stretch_step_start"} <= {j.get("event") for j in lines}
        assert lines[-1]["event"] == "stretch_abandoned" and lines[-1]["reason"] == "stopped"
        assert d.proc.poll() is None
    finally:
        d.stop()
        rec.close()
