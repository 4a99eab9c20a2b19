"""Shared fixtures. Tests talk to a real Mosquitto broker on a free port, never to port 1883.

The test tree's one MQTT recorder is :class:`tests.publish._mqtt.Recorder` (``recorder`` and
``make_recorder`` below); wait on what it received (``wait_for``, ``sync``), not on a sleep.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests._broker import MosquittoBroker, find_mosquitto
from tests.publish._mqtt import Recorder

# No per-example deadline: CI machines are small and shared; correctness is what is tested.
settings.register_profile("slouchd", deadline=None, print_blob=True)
settings.load_profile("slouchd")

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def _need_mosquitto() -> None:
    if find_mosquitto() is None:
        # A missing broker is a failure, never a skip: these tests are the point.
        pytest.fail("mosquitto is not installed: run `sudo apt-get install -y mosquitto` "
                    f"(CI={os.environ.get('CI', '')})")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """One broker for the whole session (do not stop it in a test: use `private_mosquitto`)."""
    _need_mosquitto()
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A broker of this test's own, free to be stopped and restarted."""
    _need_mosquitto()
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def recorder(mosquitto: MosquittoBroker) -> AsyncIterator[Recorder]:
    """The MQTT recorder on the session broker, subscribed to everything ("#")."""
    async with Recorder(mosquitto) as rec:
        yield rec


@pytest.fixture
def make_recorder() -> Callable[..., Recorder]:
    """``make_recorder(broker, topics, persistent_id=...)``: a recorder for ``async with``."""
    return Recorder
