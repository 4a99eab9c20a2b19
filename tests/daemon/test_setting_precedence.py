"""Which value wins, config file or Home Assistant: one rule on restart and on reload.

A key the file changes after the last Home Assistant change wins; otherwise the Home Assistant
value stays (docs/mqtt.md, "Which value wins").
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from slouchd.config import load_config
from slouchd.daemon import Daemon
from slouchd.publish.commands import Command
from tests._broker import MosquittoBroker
from tests.daemon.harness import started


def write(path: Path, port: int, state: Path, threshold: float) -> Path:
    path.write_text(f'[daemon]\nstate_dir = "{state}"\n'
                    f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nbase_topic = "pr{path.parent.name[-6:]}"\n'
                    f"[detection]\nthreshold_deg = {threshold}\n"
                    '[[wearers]]\nname = "ana"\nsensor = "simulated"\nspeed = 10\n')
    return path


async def run_briefly(path: Path, command: Command | None = None) -> float:
    """Start the daemon on ``path`` (a restart), optionally apply a command from Home Assistant,
    stop it; return the threshold in force."""
    d = Daemon(load_config(path), config_path=str(path))
    run = asyncio.get_running_loop().create_task(d.run())
    await started(d, run)
    if command is not None:
        assert d.wearers["ana"].apply(command).ok
    threshold = d.wearers["ana"].detection().threshold_deg
    d.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    return threshold


async def test_restart_keeps_home_assistant_until_the_file_changes_that_key(
        tmp_path: Path, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    state = tmp_path / "state"
    path = write(tmp_path / "c.toml", mosquitto.port, state, 15.0)
    assert await run_briefly(path, Command({"threshold_deg": 20.0})) == 20.0
    # Restart, file untouched: Home Assistant's 20 stays, and the log says why.
    caplog.clear()
    assert await run_briefly(path) == 20.0
    assert "threshold_deg = 20.0 from Home Assistant" in caplog.text
    # The file is edited after that change, then a restart: the file wins.
    write(path, mosquitto.port, state, 18.0)
    caplog.clear()
    assert await run_briefly(path) == 18.0
    assert "threshold_deg = 18.0 from the config file (changed from 15.0 after Home Assistant set 20.0)" \
        in caplog.text
    # ...and stays the file's on the next restart too.
    assert await run_briefly(path) == 18.0


async def test_reload_follows_the_same_rule(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    state = tmp_path / "state"
    path = write(tmp_path / "c.toml", mosquitto.port, state, 15.0)
    d = Daemon(load_config(path), config_path=str(path))
    run = asyncio.get_running_loop().create_task(d.run())
    await started(d, run)
    rt = d.wearers["ana"]
    assert rt.apply(Command({"threshold_deg": 20.0, "dwell_s": 30.0})).ok
    assert await d.reload()  # nothing changed in the file: Home Assistant's values stay
    assert (rt.detection().threshold_deg, rt.detection().dwell_s) == (20.0, 30.0)
    write(path, mosquitto.port, state, 18.0)
    assert await d.reload()  # the file changed the threshold since: it wins; the dwell stays HA's
    assert (rt.detection().threshold_deg, rt.detection().dwell_s) == (18.0, 30.0)
    assert rt.tracker.detection.threshold_deg == 18.0  # in force in the tracker too
    d.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
    # What was decided on reload is what a restart decides.
    assert await run_briefly(path) == 18.0


async def test_use_file_settings_drops_every_home_assistant_value(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    state = tmp_path / "state"
    path = write(tmp_path / "c.toml", mosquitto.port, state, 15.0)
    assert await run_briefly(path, Command({"threshold_deg": 20.0, "mode": "tracking"})) == 20.0
    assert await run_briefly(path, Command({"use_file_settings": True})) == 15.0
    d = Daemon(load_config(path), config_path=str(path))
    run = asyncio.get_running_loop().create_task(d.run())
    await started(d, run)
    assert d.wearers["ana"].overrides == {} and d.wearers["ana"].detection().mode == "training"
    # Refused whole when the rest of the command is invalid: nothing dropped.
    assert d.wearers["ana"].apply(Command({"threshold_deg": 20.0})).ok
    # A threshold of 2 is below the hysteresis (3): the whole command is refused.
    result = d.wearers["ana"].apply(Command({"use_file_settings": True, "threshold_deg": 2.0}))
    assert not result.ok and d.wearers["ana"].overrides == {"threshold_deg": 20.0}
    d.request_stop()
    assert await asyncio.wait_for(run, 10) == 0
