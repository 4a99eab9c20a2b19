"""In-process supervision: a failing source is restarted, a wedged adapter ends the process."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from slouchd.config import Config, parse_config
from slouchd.daemon import EXIT_ADAPTER, Daemon
from slouchd.model import SampleBatch
from slouchd.sensors.base import SensorStatus
from slouchd.sensors.ble import AdapterWedged
from tests._broker import MosquittoBroker
from tests.daemon.harness import started, until


class ScriptedSource:
    """A source that delivers a few batches, then raises what the script says."""

    def __init__(self, error: BaseException, batches: int = 3) -> None:
        self.status = SensorStatus()
        self.error = error
        self.batches = batches

    async def __aenter__(self) -> ScriptedSource:
        self.status.connected = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.status.connected = False

    async def __aiter__(self) -> AsyncIterator[SampleBatch]:
        for i in range(self.batches):
            t = 1_700_000_000.0 + i + np.arange(50) / 50.0
            yield SampleBatch(t, np.tile([0.0, 1.0, 0.0], (50, 1)))
            await asyncio.sleep(0.01)
        raise self.error

    async def buzz(self, level: int) -> bool:
        return False


def config(tmp_path: Path, port: int) -> Config:
    return parse_config({
        "daemon": {"state_dir": str(tmp_path / "state")},
        "mqtt": {"host": "127.0.0.1", "port": port, "base_topic": f"sup{tmp_path.name[-6:]}"},
        "wearers": [{"name": "ana", "sensor": "C4:AA:10:2B:33:01", "profile": "generic"}],
    })


async def test_wedged_adapter_makes_the_daemon_exit_75(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    d = Daemon(config(tmp_path, mosquitto.port),
               open_source=lambda *a, **k: ScriptedSource(AdapterWedged("hci0 failed 900 s")))
    code = await asyncio.wait_for(d.run(duration_s=20), 25)
    assert code == EXIT_ADAPTER
    assert (tmp_path / "state" / "ana.json").exists()  # a graceful stop: state saved first


async def test_a_crashing_source_is_restarted_and_the_daemon_keeps_running(
        tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture) -> None:
    opened = []

    def factory(*a: object, **k: object) -> ScriptedSource:
        opened.append(asyncio.get_running_loop().time())
        return ScriptedSource(RuntimeError("decoder bug"))

    d = Daemon(config(tmp_path, mosquitto.port), open_source=factory, restart_backoff_s=(0.1, 5.0))
    run = asyncio.get_running_loop().create_task(d.run())
    await until(lambda: len(opened) >= 4 or run.done(), timeout_s=10, what="four opens")
    d.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    assert d.wearers["ana"].restarts >= 3
    # Each session streamed (3 batches), so each wait starts again at the first step (0.1 s),
    # not 0.1, 0.2, 0.4 s.
    gaps = [b - a for a, b in itertools.pairwise(opened)][:3]
    assert all(0.1 <= g < 0.35 for g in gaps), gaps
    assert "sensor task failed (decoder bug)" in caplog.text
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)


async def test_reload_naming_an_unknown_profile_keeps_the_running_config(
        tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                    f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\nbase_topic = "rl"\n'
                    '[[wearers]]\nname = "ana"\nsensor = "simulated"\nspeed = 10\n')
    from slouchd.config import load_config

    d = Daemon(load_config(path), config_path=str(path))
    run = asyncio.get_running_loop().create_task(d.run())
    await started(d, run)
    path.write_text(path.read_text() + '[[wearers]]\nname = "bo"\nsensor = "C4:AA:10:2B:33:01"\n'
                    'profile = "no-such-sensor"\n')
    assert await d.reload() is False
    assert [w.name for w in d.config.wearers] == ["ana"] and list(d.wearers) == ["ana"]
    assert "reload refused" in caplog.text and "no-such-sensor" in caplog.text
    d.request_stop()
    assert await run == 0


def sim_config(tmp_path: Path, port: int, detection: str = "") -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                    f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nbase_topic = "sv{tmp_path.name[-6:]}"\n'
                    f"[detection]\n{detection}\n"
                    '[[wearers]]\nname = "ana"\nsensor = "simulated"\nspeed = 10\n')
    return path


async def run_until_started(d: Daemon) -> int:
    """Start ``d``, wait until it has started, stop it; its exit code."""
    run = asyncio.get_running_loop().create_task(d.run())
    await started(d, run)
    d.request_stop()
    return await asyncio.wait_for(run, 10)


async def test_saved_settings_out_of_bounds_are_dropped_not_obeyed(
        tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture) -> None:
    """A hand-edited state file must not make constant alerts (threshold -50) or crash start-up."""
    from slouchd.config import load_config
    from slouchd.state import StateStore

    path = sim_config(tmp_path, mosquitto.port)
    StateStore(tmp_path / "state").save("ana", {"overrides": {"threshold_deg": -50, "mode": "bogus"}})
    d = Daemon(load_config(path), config_path=str(path))
    assert await run_until_started(d) == 0
    det = d.wearers["ana"].detection()
    assert det.threshold_deg == 15.0 and det.mode == "training"
    assert "saved settings" in caplog.text and "not valid" in caplog.text


async def test_saved_tracker_state_that_cannot_be_restored_starts_fresh(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    from slouchd.config import load_config
    from slouchd.state import StateStore

    path = sim_config(tmp_path, mosquitto.port)
    StateStore(tmp_path / "state").save("ana", {"tracker": {"calibration": "upside down", "x": [1]}})
    d = Daemon(load_config(path), config_path=str(path))
    assert await run_until_started(d) == 0
    assert len(list((tmp_path / "state").glob("ana.json.corrupt-*"))) == 1


async def test_every_reload_ends_with_ready_even_a_refused_one(
        tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    from slouchd.config import load_config

    sent: list[str] = []
    path = sim_config(tmp_path, mosquitto.port)
    d = Daemon(load_config(path), config_path=str(path))
    monkeypatch.setattr(d.notifier, "reloading", lambda: sent.append("RELOADING"))
    monkeypatch.setattr(d.notifier, "ready", lambda status="": sent.append("READY"))
    run = asyncio.get_running_loop().create_task(d.run())
    await started(d, run)
    sent.clear()
    assert await d.reload() is True  # unchanged: applied
    path.write_text(path.read_text().replace("[detection]\n", "[detection]\nthreshold_deg = -5\n"))
    assert await d.reload() is False  # invalid: refused
    monkeypatch.setattr(d, "_reload", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        await d.reload()  # a bug half-way: systemd must still hear READY
    assert sent == ["RELOADING", "READY"] * 3
    d.request_stop()
    assert await run == 0


async def test_sighups_during_a_reload_make_one_more_reload(
        tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    from slouchd.config import load_config

    path = sim_config(tmp_path, mosquitto.port)
    d = Daemon(load_config(path), config_path=str(path))
    reloads: list[str] = []
    real_reload = d.reload
    gate = asyncio.Event()

    async def counted() -> bool:
        reloads.append("start")
        await gate.wait()
        return await real_reload()

    d.reloader._reload = counted
    run = asyncio.get_running_loop().create_task(d.run())
    await started(d, run)
    d._on_sighup()
    await until(lambda: len(reloads) == 1, what="the first reload")
    for _ in range(3):
        d._on_sighup()  # while the first is under way
    gate.set()
    await until(lambda: len(reloads) == 2, what="one more reload")
    d.request_stop()
    assert await run == 0
    assert len(reloads) == 2


async def test_two_quick_reloads_moving_the_embedded_broker_end_on_the_last_one(tmp_path: Path) -> None:
    """A second reload while the first one's MQTT switch is still under way."""
    import aiomqtt

    from slouchd.config import load_config
    from tests._broker import free_port

    ports = [free_port(), free_port(), free_port()]
    path = tmp_path / "c.toml"

    def write(port: int) -> None:
        path.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nhost = ""\nport = {port}\n'
                        '[[wearers]]\nname = "ana"\nsensor = "simulated"\nspeed = 10\n')

    write(ports[0])
    d = Daemon(load_config(path), config_path=str(path))
    run = asyncio.get_running_loop().create_task(d.run())
    await started(d, run)
    write(ports[1])
    first = asyncio.get_running_loop().create_task(d.reload())
    await until(lambda: d.config.mqtt.port == ports[1], what="the first reload applied")
    assert not first.done()  # its switch (old session's goodbye, new broker) is under way
    write(ports[2])
    assert await d.reload() is True  # waits for the first switch, then applies and switches
    assert await first is True
    assert d.broker is not None and d.broker.port == ports[2]
    got = None
    async with aiomqtt.Client("127.0.0.1", ports[2], protocol=aiomqtt.ProtocolVersion.V311) as c:
        await c.subscribe("slouchd/bridge/state")
        async with asyncio.timeout(5):
            async for m in c.messages:
                got = m.payload
                break
    assert got == b"online"
    d.request_stop()
    assert await run == 0
