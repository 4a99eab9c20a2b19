"""Test helpers: THE recording MQTT subscriber of the test tree, a daemon-like command applier,
a publisher factory, and waits on the publisher's seams (``flushed()``, ``wait_connected()``).

Tests wait on events, never on a fixed sleep standing for an internal condition: ``settled(pub,
rec)`` returns once the publisher handed everything queued to the broker and the recorder has
received whatever the broker forwarded before (a round trip of its own, :meth:`Recorder.sync`).
Fixtures (``recorder``) are in ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiomqtt

from slouchd.posture.settings import DetectionSettings
from slouchd.publish.commands import Command, CommandResult
from slouchd.publish.mqtt import MqttPublisher
from slouchd.publish.settings import HomeAssistantSettings, MqttSettings
from slouchd.publish.wearer import WearerInfo
from slouchd.schema import SettingsError
from tests._broker import MosquittoBroker

T = TypeVar("T")


def uniq(prefix: str = "t") -> str:
    """A fresh topic word, so tests sharing the session broker never see each other's retained data."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Rec:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    t: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.payload)


class Recorder:
    """A subscriber that records every message and reconnects by itself.

    With ``persistent_id`` it uses a persistent MQTT 3.1.1 session (clean_session off) and QoS 1,
    like a phone app that must not miss an alert: the broker queues messages while it is away.
    """

    def __init__(self, broker: MosquittoBroker, topics: tuple[str, ...] = ("#",), *,
                 persistent_id: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.broker = broker
        self.topics = topics
        self.persistent_id = persistent_id
        self.tls = tls
        self.messages: list[Rec] = []
        self.connects = 0
        self._subscribed = asyncio.Event()
        self._sync_topic = f"_sync/{uniq('rec')}"
        self._synced: set[str] = set()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Recorder:
        self._task = asyncio.create_task(self._loop())
        await asyncio.wait_for(self._subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _loop(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host, self.broker.port, identifier=self.persistent_id,
                    clean_session=self.persistent_id is None, tls_context=self.tls,
                    protocol=aiomqtt.ProtocolVersion.V311,
                ) as client:
                    for t in (*self.topics, self._sync_topic):
                        await client.subscribe(t, qos=1)
                    self.connects += 1
                    self._client = client
                    self._subscribed.set()
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        if str(m.topic) == self._sync_topic:
                            self._synced.add(payload.decode())
                            continue
                        self.messages.append(Rec(str(m.topic), payload, bool(m.retain), m.qos))
            except aiomqtt.MqttError:
                self._client = None
                await asyncio.sleep(0.05)  # reconnect pace of this test client, not a wait on slouchd

    async def sync(self, timeout: float = 5.0) -> None:
        """Return once every message the broker forwarded to us before this call has arrived:
        a marker of our own on our connection comes back after them (the broker keeps order)."""
        marker = uniq("m")
        assert self._client is not None, "recorder not connected"
        await self._client.publish(self._sync_topic, marker.encode(), qos=1)
        await self.wait_for(lambda: marker in self._synced, timeout)

    def on(self, topic: str) -> list[Rec]:
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(self, pred: Callable[[], Any], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s; recorded "
                                     f"{[(m.topic, m.payload[:60]) for m in self.messages[-20:]]}")
            await asyncio.sleep(0.01)


async def retained(broker: MosquittoBroker, topic_filter: str, timeout: float = 5.0,
                   tls: ssl.SSLContext | None = None) -> dict[str, bytes]:
    """What a brand-new subscriber gets as retained messages under ``topic_filter``.

    The broker sends them right after the SUBACK; a marker we publish afterwards comes back
    after all of them, so no settle time is guessed."""
    out: dict[str, bytes] = {}
    marker = f"_sync/{uniq('ret')}"
    async with aiomqtt.Client(broker.host, broker.port, tls_context=tls) as client:
        await client.subscribe(topic_filter, qos=1)
        await client.subscribe(marker, qos=1)
        await client.publish(marker, b"end", qos=1)
        async with asyncio.timeout(timeout):
            async for m in client.messages:
                if str(m.topic) == marker:
                    break
                if m.retain:
                    out[str(m.topic)] = bytes(m.payload)  # type: ignore[arg-type]
    return out


async def wait_until(pred: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``pred`` (a condition outside the publisher, e.g. a broker's state) until true."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.01)


async def eventually(get: Callable[[], Awaitable[T]], pred: Callable[[T], Any], timeout: float = 5.0) -> T:
    """Fetch ``get()`` until ``pred`` holds for it (e.g. the broker's retained topics)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await get()
        if pred(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout} s: {value!r:.300}")
        await asyncio.sleep(0.02)


async def settled(pub: MqttPublisher, rec: Recorder | None = None, timeout: float = 5.0) -> None:
    """Everything ``pub`` queued is at the broker (acknowledged), and, with ``rec``, at ``rec``."""
    await asyncio.wait_for(pub.flushed(), timeout)
    if rec is not None:
        await rec.sync(timeout)


async def publish(broker: MosquittoBroker, topic: str, payload: bytes, retain: bool = False,
                  protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V311) -> None:
    async with aiomqtt.Client(broker.host, broker.port, protocol=protocol) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


class Applier:
    """Applies commands the way the daemon does: settings validated by DetectionSettings."""

    def __init__(self) -> None:
        self.detection: dict[str, DetectionSettings] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, wearer: str, command: Command) -> CommandResult:
        self.calls.append((wearer, dict(command.values)))
        current = self.detection.setdefault(wearer, DetectionSettings())
        try:
            new = dataclasses.replace(current, **command.settings)
            new.validate()
        except SettingsError as err:
            return CommandResult(False, {}, str(err), command.request_id)
        self.detection[wearer] = new
        return CommandResult(True, dict(command.values), "", command.request_id)


def make_publisher(broker: MosquittoBroker, wearers: list[WearerInfo], on_command: Any = None,
                   ha: HomeAssistantSettings | None = None, **settings: Any) -> MqttPublisher:
    settings.setdefault("host", broker.host)
    settings.setdefault("port", broker.port)
    settings.setdefault("reconnect_max_s", 1.0)
    return MqttPublisher(
        MqttSettings(**settings),
        ha or HomeAssistantSettings(birth_delay_max_s=0.2),
        wearers, on_command or Applier(), backoff_min_s=0.05, rng=random.Random(7))


@contextlib.asynccontextmanager
async def connected(publisher: MqttPublisher, timeout: float = 10.0) -> AsyncIterator[MqttPublisher]:
    async with publisher:
        try:
            await asyncio.wait_for(publisher.wait_connected(), timeout)
        except TimeoutError:
            raise AssertionError("publisher did not connect") from None
        yield publisher


class SlowLink:
    """A TCP proxy to ``broker`` that delivers what the broker sends ``delay_s`` late (a slow
    network: every PUBACK takes a round trip of at least ``delay_s``). Connect to ``port``."""

    def __init__(self, broker: MosquittoBroker, delay_s: float) -> None:
        self.broker = broker
        self.delay_s = delay_s
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SlowLink:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_r, up_w = await asyncio.open_connection(self.broker.host, self.broker.port)
        pipes = {asyncio.create_task(self._pipe(reader, up_w, 0.0)),
                 asyncio.create_task(self._pipe(up_r, writer, self.delay_s))}
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pipes:
                p.cancel()
            for w in (writer, up_w):
                w.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))  # the link's latency, by design
                if not data:
                    return
                writer.write(data)
                await writer.drain()

        out = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + delay_s, data))
            queue.put_nowait((loop.time() + delay_s, b""))
            await out
        finally:
            out.cancel()


@dataclass(frozen=True)
class Endpoint:
    """A broker address (what :class:`Recorder` needs of a :class:`MosquittoBroker`)."""

    host: str
    port: int


class BackgroundRecorder:
    """The same :class:`Recorder` for synchronous tests (e.g. a daemon in a subprocess): it runs
    on an event loop of its own in a thread. ``messages``/``on`` as the Recorder's;
    :meth:`first` waits for a message itself."""

    def __init__(self, host: str, port: int, topics: tuple[str, ...] = ("#",), *,
                 persistent_id: str | None = None, timeout_s: float = 10.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mqtt-recorder", daemon=True)
        self._thread.start()
        self.recorder = Recorder(Endpoint(host, port), topics, persistent_id=persistent_id)  # type: ignore[arg-type]
        asyncio.run_coroutine_threadsafe(self.recorder.__aenter__(), self._loop).result(timeout_s)

    @property
    def messages(self) -> list[Rec]:
        return list(self.recorder.messages)

    def on(self, topic: str) -> list[Rec]:
        return [m for m in self.messages if m.topic == topic]

    def first(self, pred: Callable[[Rec], bool], timeout_s: float = 30.0, since: float = 0.0) -> Rec:
        """The first message received at or after ``since`` (monotonic s) matching ``pred``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for m in self.messages:
                if m.t >= since and pred(m):
                    return m
            time.sleep(0.02)
        raise AssertionError(f"no matching MQTT message within {timeout_s} s; "
                             f"topics seen: {sorted({m.topic for m in self.messages})[:40]}")

    def sync(self, timeout_s: float = 5.0) -> None:
        """See :meth:`Recorder.sync`."""
        asyncio.run_coroutine_threadsafe(self.recorder.sync(timeout_s), self._loop).result(timeout_s + 1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.recorder.__aexit__(None, None, None), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
