"""The MQTT publisher when things go wrong: broker restarts, broker down, TLS, passwords, crashes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from slouchd.publish.mqtt import PUBLISH_IN_FLIGHT, MqttPublisher, tls_context
from slouchd.publish.outbox import Outbox
from slouchd.publish.settings import HomeAssistantSettings, MqttSettings
from slouchd.publish.wearer import WearerInfo
from slouchd.schema import SettingsError
from tests._broker import MosquittoBroker, free_port
from tests.fake_clock import FakeClock
from tests.publish._mqtt import (
    Applier,
    Recorder,
    connected,
    make_publisher,
    retained,
    settled,
    uniq,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
ALICE = WearerInfo("alice", "c4aa102b3301")
# Started as root, mosquitto switches to the "mosquitto" user and can no longer read the
# test's private temporary files (certificates, password file); this keeps it as the caller.
# Started as any other user the option does nothing.


def persistent_broker(workdir: Path) -> MosquittoBroker:
    """A broker that keeps sessions and queued QoS 1 messages across its own restart (SIGTERM)."""
    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    return MosquittoBroker(workdir, extra_conf=(
        f"persistence true\npersistence_location {store}/\n"))


def event_seqs(rec: Recorder, base: str) -> list[int]:
    return [m.json()["seq"] for m in rec.on(f"{base}/alice/event")]


async def test_broker_restart_mid_stream_delivers_every_alert_in_order(tmp_path: Path) -> None:
    broker = persistent_broker(tmp_path / "broker")
    broker.start()
    base, n = uniq("b"), 150
    pub = make_publisher(broker, [ALICE], base_topic=base)
    try:
        # A phone app: persistent session, QoS 1, so the broker keeps what it acknowledged.
        async with Recorder(broker, (f"{base}/alice/event",), persistent_id="phone") as phone, \
                connected(pub):
            max_depth = 0

            async def produce() -> None:
                nonlocal max_depth
                for i in range(n):
                    pub.publish_event("alice", {"t": float(i), "event": "slouch_alert", "level": 1})
                    max_depth = max(max_depth, pub.queue_depth)
                    await asyncio.sleep(0.01)

            producer = asyncio.create_task(produce())
            await phone.wait_for(lambda: len(phone.messages) >= 40)
            await asyncio.to_thread(broker.stop)  # mid-stream
            # The producer goes on: its events queue while the broker is away.
            await wait_until(lambda: not pub.connected and pub.queue_depth > 0, what="events queued")
            restarted = time.monotonic()
            await asyncio.to_thread(broker.start)
            await asyncio.wait_for(pub.wait_connected(), 5)
            reconnect_s = time.monotonic() - restarted
            await producer
            await phone.wait_for(lambda: set(event_seqs(phone, base)) == set(range(1, n + 1)), 10)
            seqs = event_seqs(phone, base)
            first_seen = list(dict.fromkeys(seqs))
            assert first_seen == list(range(1, n + 1))  # every alert, in order
            # At least once, not exactly once: an event whose PUBACK died with the broker is sent
            # again (pub.resent, at most those in flight), and the broker may redeliver to the
            # phone what it had in flight to it. Consumers drop repeats by "seq".
            assert pub.resent <= PUBLISH_IN_FLIGHT
            assert len(seqs) >= n
            assert pub.reconnects == 1 and pub.dropped == 0 and max_depth > 0
            assert reconnect_s < 2.0, reconnect_s  # backoff capped at reconnect_max_s = 1 s
            # The bridge reads online again: the retained birth is re-sent on reconnect.
            assert (await retained(broker, f"{base}/bridge/state"))[f"{base}/bridge/state"] == b"online"
    finally:
        broker.stop()


async def test_broker_down_at_start_queues_then_delivers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = persistent_broker(tmp_path / "broker")
    base = uniq("b")
    broker.start()
    async with Recorder(broker, (f"{base}/#",), persistent_id="phone"):
        pass  # the phone's session now exists on the broker
    broker.stop()
    pub = make_publisher(broker, [ALICE], base_topic=base)
    try:
        async with pub:
            for i in range(20):
                pub.publish_event("alice", {"t": float(i), "event": "break_reminder"})
            pub.publish_state("alice", {"posture": "upright", "flexion_deg": 2.0})
            await wait_until(lambda: pub.attempts >= 3, what="3 failed attempts")
            assert not pub.connected and pub.queue_depth == 20
            await asyncio.to_thread(broker.start)
            async with Recorder(broker, (f"{base}/#",), persistent_id="phone") as phone:
                await phone.wait_for(lambda: len(event_seqs(phone, base)) >= 20, 10)
                await phone.wait_for(lambda: phone.on(f"{base}/alice/state"))
                assert event_seqs(phone, base) == list(range(1, 21))
            assert pub.connected and pub.reconnects == 0
        unreachable = [r for r in caplog.records
                       if r.levelname == "WARNING" and "unreachable" in r.getMessage()]
        assert len(unreachable) == 1  # the broker being down is said once, not per attempt
    finally:
        broker.stop()


async def test_the_last_will_says_offline_when_slouchd_dies(mosquitto: MosquittoBroker) -> None:
    base = uniq("b")
    script = f"""
import asyncio, os, sys
from slouchd.publish.mqtt import MqttPublisher
from slouchd.publish.settings import HomeAssistantSettings, MqttSettings
from slouchd.publish.wearer import WearerInfo
async def cmd(w, c): ...
async def main():
    pub = MqttPublisher(MqttSettings(host={mosquitto.host!r}, port={mosquitto.port}, base_topic={base!r}),
                        HomeAssistantSettings(discovery=False), [WearerInfo("alice", "x")], cmd)
    async with pub:
        await asyncio.wait_for(pub.wait_connected(), 10)
        await asyncio.wait_for(pub.flushed(), 10)
        os._exit(9)  # no close(), no DISCONNECT: like a kill -9 or a power cut
asyncio.run(main())
"""
    async with Recorder(mosquitto, (f"{base}/bridge/state",)) as rec:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=REPO)
        assert await asyncio.wait_for(proc.wait(), 30) == 9
        await rec.wait_for(lambda: [m.payload for m in rec.messages][-1:] == [b"offline"])
        assert [m.payload for m in rec.messages] == [b"online", b"offline"]


def make_tls_files(d: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=slouchd test CA")
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, cn in (("server", "localhost"), ("client", "slouchd-test-client")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        ext = ["-extfile", "server.ext"] if name == "server" else []
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext)
    return {n: d / n for n in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


async def test_mutual_tls_with_a_throwaway_ca(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = make_tls_files(tmp_path / "pki")
    broker = MosquittoBroker(tmp_path / "broker", extra_conf=(
        f"cafile {files['ca.crt']}\ncertfile {files['server.crt']}\nkeyfile {files['server.key']}\n"
        f"require_certificate true\n"))
    broker.start()
    base = uniq("b")
    try:
        tls = dict(tls=True, ca_file=str(files["ca.crt"]), cert_file=str(files["client.crt"]),
                   key_file=str(files["client.key"]))
        pub = make_publisher(broker, [ALICE], base_topic=base, **tls)
        client_ctx = tls_context(MqttSettings(**tls))  # the test's own subscriber, same files
        async with connected(pub):
            pub.publish_state("alice", {"posture": "upright"})
            await settled(pub)
            snap = await retained(broker, f"{base}/#", tls=client_ctx)
        assert snap[f"{base}/bridge/state"] == b"online"
        assert json.loads(snap[f"{base}/alice/state"])["posture"] == "upright"
        snap = await retained(broker, f"{base}/bridge/state", tls=client_ctx)
        assert snap[f"{base}/bridge/state"] == b"offline"  # close() said goodbye over TLS too

        # Not trusting the throwaway CA (system store only): refused, logged, no crash.
        untrusting = make_publisher(broker, [ALICE], base_topic=base, tls=True,
                                    cert_file=str(files["client.crt"]), key_file=str(files["client.key"]))
        async with untrusting:
            await wait_until(lambda: untrusting.attempts >= 2, what="a failed attempt")
            assert not untrusting.connected
        assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)
    finally:
        broker.stop()


def test_unreadable_tls_and_password_files_name_the_key(tmp_path: Path) -> None:
    async def cmd(w: str, c: object) -> object: ...

    missing = str(tmp_path / "nope.pem")
    cases = [
        (MqttSettings(tls=True, ca_file=missing), "mqtt.ca_file"),
        (MqttSettings(tls=True, cert_file=missing, key_file=missing), "mqtt.cert_file"),
        (MqttSettings(password_file=missing), "mqtt.password_file"),
    ]
    for settings, key in cases:
        with pytest.raises(SettingsError, match=key) as err:
            MqttPublisher(settings, HomeAssistantSettings(), [], cmd)  # type: ignore[arg-type]
        assert "nope.pem" in str(err.value)


async def test_password_login_and_the_password_never_appears_in_logs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything, paho's own packet log included
    secret = "s3cret-Pa55word-7f1c"
    wrong = "wrong-Pa55word-b2d9"
    pwfile = tmp_path / "broker.passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "slouchd", secret], check=True)
    os.chmod(pwfile, 0o600)
    broker = MosquittoBroker(tmp_path / "broker", anonymous=False,
                             extra_conf=f"password_file {pwfile}\n")
    broker.start()
    ours = tmp_path / "slouchd.password"
    ours.write_text(secret + "\n")
    base = uniq("b")
    try:
        bad = make_publisher(broker, [ALICE], base_topic=base, username="slouchd", password=wrong)
        async with bad:
            await wait_until(lambda: bad.attempts >= 2, what="a refused attempt")
            assert not bad.connected
        assert any("refused" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")

        good = make_publisher(broker, [ALICE], Applier(), base_topic=base, username="slouchd",
                              password_file=str(ours))
        async with connected(good):
            good.publish_event("alice", {"t": 1.0, "event": "slouch_alert"})
            await settled(good)
            assert good.published == 1
            settings_text = repr(good.settings)
    finally:
        broker.stop()
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert secret not in logged and wrong not in logged
    assert wrong not in repr(MqttSettings(password=wrong)) and secret not in settings_text


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # amqtt's own config warnings
async def test_protocol_auto_falls_back_to_3_1_1_on_a_broker_without_mqtt5(
        mosquitto: MosquittoBroker) -> None:
    from amqtt.broker import Broker

    port = free_port()
    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                     "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
                     "topic-check": {"enabled": False}})
    await broker.start()
    try:
        # amqtt 0.12 never answers an MQTT 5 CONNECT that has a will: the CONNACK wait times out.
        pub = MqttPublisher(MqttSettings(host="127.0.0.1", port=port, reconnect_max_s=1),
                            HomeAssistantSettings(), [ALICE], Applier(), backoff_min_s=0.05,
                            connect_timeout_s=0.5)
        async with connected(pub):
            assert pub.protocol == "3.1.1"
        # host "" means the embedded broker: 3.1.1 at once, no MQTT 5 probe to time out.
        embedded = MqttPublisher(MqttSettings(host="", port=port), HomeAssistantSettings(), [ALICE],
                                 Applier())
        started = time.monotonic()
        async with connected(embedded, timeout=3.0):
            assert embedded.protocol == "3.1.1" and time.monotonic() - started < 2.0
    finally:
        await broker.shutdown()
    pub5 = make_publisher(mosquitto, [ALICE], base_topic=uniq("b"))
    async with connected(pub5):
        assert pub5.protocol == "5"


async def test_a_full_queue_drops_other_events_before_alerts() -> None:
    async def cmd(w: str, c: object) -> object: ...

    pub = MqttPublisher(MqttSettings(port=free_port(), queue_max=10), HomeAssistantSettings(),
                        [ALICE], cmd)  # type: ignore[arg-type]
    for i in range(30):
        kind = "slouch_alert" if i % 6 == 0 else "slouch_end"  # 5 alerts among 30
        pub.publish_event("alice", {"t": float(i), "event": kind})
    assert pub.queue_depth == 10 and pub.dropped == 20
    kept = [json.loads(item.payload) for item in pub._events]
    assert [e["t"] for e in kept if e["event"] == "slouch_alert"] == [0.0, 6.0, 12.0, 18.0, 24.0]
    assert [e["seq"] for e in kept] == sorted(e["seq"] for e in kept)  # still in order
    for i in range(20):  # only alerts now: the oldest alerts go
        pub.publish_event("alice", {"t": 100.0 + i, "event": "slouch_alert"})
    assert pub.queue_depth == 10
    assert [json.loads(item.payload)["t"] for item in pub._events] == [110.0 + i for i in range(10)]


async def test_broker_killed_hard_publisher_recovers_and_re_announces(
        private_mosquitto: MosquittoBroker) -> None:
    base, prefix = uniq("b"), uniq("ha")
    pub = make_publisher(private_mosquitto, [ALICE], base_topic=base,
                         ha=HomeAssistantSettings(discovery_prefix=prefix))
    async with connected(pub):
        pub.publish_state("alice", {"posture": "upright", "flexion_deg": 3.0})
        pub.set_availability("alice", True)
        pub.publish_event("alice", {"t": 0.0, "event": "slouch_alert"})
        await settled(pub)
        assert pub.published == 1
        assert private_mosquitto.proc is not None
        private_mosquitto.proc.kill()  # SIGKILL: no goodbye, every retained message gone
        await asyncio.to_thread(private_mosquitto.proc.wait)
        await asyncio.to_thread(private_mosquitto.stop)
        for i in range(1, 6):  # the posture engine carries on meanwhile
            pub.publish_event("alice", {"t": float(i), "event": "slouch_alert"})
        pub.publish_state("alice", {"posture": "slouching", "flexion_deg": 25.0})
        await wait_until(lambda: not pub.connected, what="session lost")
        assert pub.queue_depth == 5
        await asyncio.to_thread(private_mosquitto.start)
        await asyncio.wait_for(pub.wait_connected(), 10)
        await settled(pub)
        assert pub.published == 6 and pub.reconnects == 1
        snap = await retained(private_mosquitto, f"{base}/#")
        disc = await retained(private_mosquitto, f"{prefix}/#")
    # The new broker knew nothing; slouchd re-sent all of it, with the newest state.
    assert snap[f"{base}/bridge/state"] == b"online"
    assert snap[f"{base}/alice/availability"] == b"online"
    assert json.loads(snap[f"{base}/alice/state"])["posture"] == "slouching"
    assert len(disc) == 1


async def test_close_while_the_broker_is_down_leaves_nothing_online(
        private_mosquitto: MosquittoBroker) -> None:
    base = uniq("b")
    pub = make_publisher(private_mosquitto, [ALICE], base_topic=base)
    async with connected(pub):
        pub.set_availability("alice", True)
        await settled(pub)
        await asyncio.to_thread(private_mosquitto.stop)
        await wait_until(lambda: not pub.connected, what="session lost")
        pub.publish_event("alice", {"t": 1.0, "event": "slouch_alert"})
        started = time.monotonic()
    # close() ran with no broker: it returned within its timeout and did not raise.
    assert time.monotonic() - started < 3.5
    assert pub.queue_depth == 1  # the undeliverable alert is reported, not hidden
    await asyncio.to_thread(private_mosquitto.start)
    # No persistence: the restarted broker holds nothing, and slouchd, stopped, says nothing
    # (a window for a publisher that wrongly kept reconnecting; nothing in slouchd to wait on).
    await asyncio.sleep(0.5)
    assert await retained(private_mosquitto, f"{base}/#") == {}


# ----- issue 12: outbox, hostile input, quick reconnects -----------------------------------------

def _publisher(broker: MosquittoBroker, base: str, outbox: Outbox | None = None, **kw: Any) -> MqttPublisher:
    kw.setdefault("reconnect_max_s", 60.0)
    return MqttPublisher(MqttSettings(host=broker.host, port=broker.port, base_topic=base, **kw),
                         HomeAssistantSettings(discovery=False), [ALICE], Applier(),
                         rng=random.Random(3), outbox=outbox)


async def test_unacknowledged_alerts_survive_a_crash_with_their_boot_and_seq(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker")
    base = uniq("o")
    path = tmp_path / "state" / "outbox.jsonl"
    first = _publisher(broker, base, Outbox(path))  # the broker is down: nothing is acknowledged
    for i in range(5):
        first.publish_event("alice", {"t": float(i), "event": "slouch_alert", "level": 1})
    first.publish_event("alice", {"t": 9.0, "event": "slouch_end"})  # not kept on disk
    boot = first.boot
    del first  # kill -9: no close(), nothing flushed after publish_event returned

    broker.start()
    try:
        box = Outbox(path)
        second = _publisher(broker, base, box)
        assert second.outbox_restored == 5 and second.boot != boot
        async with Recorder(broker, (f"{base}/alice/event",)) as rec, connected(second):
            second.publish_event("alice", {"t": 20.0, "event": "slouch_alert", "level": 2})
            await rec.wait_for(lambda: len(rec.messages) >= 6)
            got = [(m.json()["boot"], m.json()["seq"]) for m in rec.messages]
            assert got == [(boot, s) for s in range(1, 6)] + [(second.boot, 1)]
            await settled(second)
            assert len(box) == 0 and Outbox(path).load() == []
            counters = second.counters()
            assert counters["mqtt_outbox_restored"] == 5 and counters["mqtt_alerts"] == 1
            assert counters["mqtt_outbox"] == 0 and counters["mqtt_outbox_errors"] == 0
    finally:
        broker.stop()


async def test_big_command_payloads_are_dropped_unread_and_counted(mosquitto: MosquittoBroker) -> None:
    base = uniq("d")
    for protocol in ("3.1.1", "5"):
        pub = _publisher(mosquitto, base, protocol=protocol)
        async with Recorder(mosquitto, (f"{base}/alice/set/result",)) as rec, connected(pub):
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                await client.publish(f"{base}/alice/set", b'{"mode":"' + b"x" * 8000 + b'"}', qos=1)
                await client.publish(f"{base}/alice/set", b"y" * (1 << 20), qos=1)
                await client.publish(f"{base}/alice/set", b'{"mode":"' + b"x" * 2000 + b'"}', qos=1)
            await rec.wait_for(lambda: len(rec.messages) >= 1)
            await settled(pub, rec)
            # Only the 2 KB one is looked at (refused with a reason); the others cost nothing.
            assert [m.json()["error"] for m in rec.messages] == ["payload is 2011 bytes (max 1024)"]
            # MQTT 5: the broker does not even send the 1 MiB one (our Maximum Packet Size).
            assert pub.payloads_dropped == (2 if protocol == "3.1.1" else 1), protocol
            assert pub.counters()["mqtt_payloads_dropped"] == pub.payloads_dropped
            assert pub.commands == 1 and pub.refused == 1 and pub.reconnects == 0


async def test_a_command_flood_is_answered_quickly_and_the_session_lives(mosquitto: MosquittoBroker) -> None:
    base = uniq("f")
    pub = _publisher(mosquitto, base)
    n = 1500
    async with Recorder(mosquitto, (f"{base}/alice/set/result",)) as rec, connected(pub):
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            t0 = time.monotonic()
            for i in range(n):
                hostile = b'{"ts": ' + b"9" * 400 + b"}"
                payload = b'{"threshold_deg": 18, "id": "%d"}' % i if i % 2 else hostile
                await client.publish(f"{base}/alice/set", payload, qos=0)
                if i % 100 == 99:
                    await asyncio.sleep(0.1)  # at most about 500 commands per second
            sent_s = time.monotonic() - t0
            await rec.wait_for(lambda: len(rec.messages) + pub.payloads_dropped >= n, timeout=20)
            lag_s = time.monotonic() - t0 - sent_s
        print(f"\n{n} commands at {n / sent_s:.0f}/s: answered {len(rec.messages)}, dropped "
              f"{pub.payloads_dropped}, last answer {lag_s:.2f} s after the last command")
        assert lag_s < 2.0
        assert pub.connected and pub.reconnects == 0
        assert pub.commands == len(rec.messages) and pub.refused >= len(rec.messages) // 2 - 1


async def test_reconnects_within_seconds_of_the_broker_returning_after_a_long_outage(
        tmp_path: Path) -> None:
    """On virtual time: the backoff grows to 4-8 s, yet the port probe reconnects within ~1 s."""
    broker = MosquittoBroker(tmp_path / "broker")
    broker.start()
    clock = FakeClock()
    ticking = asyncio.create_task(clock.run())
    pub = MqttPublisher(MqttSettings(host=broker.host, port=broker.port, base_topic=uniq("r"),
                                     reconnect_max_s=60.0),  # real backoff: 1 s doubling to 60 s
                        HomeAssistantSettings(discovery=False), [ALICE], Applier(),
                        rng=random.Random(3), clock=clock)
    try:
        async with connected(pub):
            await asyncio.to_thread(broker.stop)
            await wait_until(lambda: pub.attempts >= 5, 20, "4 failed attempts")  # next wait 4-8 s
            outage_s = clock.monotonic()
            await asyncio.to_thread(broker.start)
            back = clock.monotonic()
            await asyncio.wait_for(pub.wait_connected(), 20)
            reconnect_s = clock.monotonic() - back
            print(f"\nreconnected {reconnect_s:.2f} s (virtual) after the broker returned "
                  f"({back - outage_s:.1f} s into the wait)")
            assert reconnect_s <= 1.5  # one probe period, not the 4-16 s backoff step
            assert pub.counters()["mqtt_reconnects"] == 1
    finally:
        ticking.cancel()
        broker.stop()
