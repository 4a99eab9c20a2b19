"""Processes killed -9: the publisher with its outbox (every queued alert still delivered), and
the real daemon (state files never torn, calibration kept, totals never going back)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests._broker import MosquittoBroker
from tests.daemon.harness import DaemonProcess, write_config
from tests.faults._faults import PhoneRecorder, figures, persistent_broker, scale, wait_until
from tests.publish._mqtt import uniq

REPO = Path(__file__).resolve().parents[2]


class Producer:
    """tests/faults/_producer.py in a child process; collects what it says it queued."""

    def __init__(self, broker: MosquittoBroker, base: str, outbox: Path, every_s: float) -> None:
        self.queued: list[tuple[int, int]] = []
        self.restored = -1
        self.drained = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults._producer", broker.host, str(broker.port), base,
             str(outbox), str(every_s)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            words = raw.decode().split()
            if words[:1] == ["queued"]:
                self.queued.append((int(words[1]), int(words[2])))
            elif words[:1] == ["restored"]:
                self.restored = int(words[1])
            elif words[:1] == ["drained"]:
                self.drained.set()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._reader.join(5)


def test_publisher_killed_9_in_a_loop_loses_no_queued_alert(tmp_path: Path) -> None:
    rng = random.Random(50)
    kills = scale(4, 50)
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    base = uniq("c")
    outbox = tmp_path / "state" / "outbox.jsonl"
    rec = PhoneRecorder(broker.host, broker.port, (f"{base}/alice/event",))
    queued: list[tuple[int, int]] = []
    at_kill: list[int] = []
    try:
        for i in range(kills):
            # Every other run the broker is away: the alerts queued then exist only in the outbox.
            if i % 2 and broker.running:
                broker.stop()
            elif not i % 2 and not broker.running:
                broker.start()
            p = Producer(broker, base, outbox, every_s=0.01)
            wait_until(lambda: p.restored >= 0, 20)  # noqa: B023
            time.sleep(rng.uniform(0.3, 1.5))
            p.kill9()
            queued += p.queued
            at_kill.append(sum(1 for line in outbox.read_bytes().splitlines() if b'"add"' in line)
                           if outbox.exists() else 0)
        if not broker.running:
            broker.start()
        final = Producer(broker, base, outbox, every_s=0)  # sends what is owed, queues nothing
        try:
            final.drained.wait(30)
            wait_until(lambda: {(m["boot"], m["seq"]) for m in rec.on(f"{base}/alice/event")}
                       >= set(queued), 30)
        finally:
            final.stop()
            got = [(m["boot"], m["seq"]) for m in rec.on(f"{base}/alice/event")]
            print(f"queued {len(queued)}, got {len(set(got))}, missing {sorted(set(queued) - set(got))[:10]}")
    finally:
        rec.close()
        broker.stop()
    lost = len(set(queued) - set(got))
    dups = len(got) - len(set(got))
    figures("publisher kill -9 loop (outbox)", "holds" if lost == 0 else "fails", kills=kills,
            alerts=f"{len(set(queued) & set(got))}/{len(queued)}", duplicates=dups,
            owed_at_kills=f"{min(at_kill)}-{max(at_kill)}", restored_last=final.restored)
    assert lost == 0
    assert max(at_kill) > 0  # the kills did catch alerts not yet acknowledged
    assert len(set(got)) == len(got) or dups <= kills  # at least once: a repeat per kill at most


def test_daemon_killed_9_in_a_loop_keeps_its_state(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    rng = random.Random(64)
    kills = scale(3, 50)
    state_dir = tmp_path / "state"
    base = uniq("s")
    cfg = write_config(tmp_path / "c.toml", port=mosquitto.port, state_dir=state_dir, base_topic=base,
                       wearers='[[wearers]]\nname = "ana"\nsensor = "simulated"\nspeed = 60\nseed = 3\n')
    corrupt = 0
    cal_kept = 0
    went_back = 0
    last_totals: dict[str, float] = {}
    calibration = None
    try:
        for i in range(kills):
            d = DaemonProcess(cfg)
            try:
                if i == 0:  # let it calibrate once, then the calibration must survive every kill
                    wait_until(lambda: (state_dir / "ana.json").exists() and json.loads(
                        (state_dir / "ana.json").read_text())["state"]["tracker"]["calibration"], 30, 0.1)
                time.sleep(rng.uniform(1.0, 4.0))
                d.kill9()
            finally:
                d.stop()
            path = state_dir / "ana.json"
            if not path.exists():
                continue
            try:
                doc = json.loads(path.read_text())["state"]["tracker"]
            except (ValueError, KeyError):
                corrupt += 1
                continue
            if calibration is not None and doc.get("calibration") is not None:
                cal_kept += 1
            calibration = calibration or doc.get("calibration")
            totals = doc.get("totals") or {}
            if last_totals.get("date") == totals.get("date") and (
                    totals.get("sitting_s", 0) < last_totals.get("sitting_s", 0)
                    or totals.get("alerts", 0) < last_totals.get("alerts", 0)):
                went_back += 1
            last_totals = totals
    finally:
        leftovers = sorted(p.name for p in state_dir.glob(".*.tmp"))
    ok = corrupt == 0 and went_back == 0 and calibration is not None
    figures("daemon kill -9 loop", "holds" if ok else "fails", kills=kills, corrupt_files=corrupt,
            calibration_kept=f"{cal_kept}/{kills - 1}", totals_went_back=went_back,
            tmp_leftovers=len(leftovers))
    assert corrupt == 0 and went_back == 0
    assert calibration is not None
