"""The connection loop: connect, reconnect forever, and run one broker session at a time.

A fresh aiomqtt client is made for every attempt so paho's own in-memory retry queue never
re-sends behind our back. After every (re)connect everything is redone: subscribe, retained
``online`` on the bridge topic (whose last will is ``offline``), discovery, availability, stats
and the current state. Reconnects back off (:class:`slouchd.timing.Backoff`) but return at once
when the broker's port opens again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from slouchd.publish import homeassistant as ha_discovery
from slouchd.publish.core import PublishCore, log
from slouchd.publish.internals import HardenedClient, reset_socket
from slouchd.publish.listener import OTHER_PAYLOAD_MAX_BYTES, Listener
from slouchd.publish.sender import Sender
from slouchd.publish.topics import OFFLINE, ONLINE
from slouchd.timing import Backoff, within

PROBE_EVERY_S = 1.0
"""While waiting to reconnect, see this often whether the broker's port accepts connections
again, and reconnect at once if it does (the backoff still spaces out full MQTT attempts to a
broker that answers but refuses), seconds."""
SESSION_TIMEOUT_S = 10.0
"""How long a PUBACK or SUBACK may take once connected before the session is given up, seconds."""

_PROTOCOLS = {
    "auto": [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311],
    "5": [aiomqtt.ProtocolVersion.V5],
    "3.1.1": [aiomqtt.ProtocolVersion.V311],
}


def maybe_wrong_protocol(err: aiomqtt.MqttError) -> bool:
    """True when a failed connect may mean the broker does not speak the version we offered.

    Either its CONNACK says so (3.1.1 brokers answer code 1, MQTT 5 ones 132), or it never
    answered at all: some 3.1.1-only brokers (amqtt 0.12) misread an MQTT 5 CONNECT that carries
    a will and wait for bytes that never come, and aiomqtt reports that as a timeout.
    """
    if isinstance(err, MqttConnectError):
        return getattr(err.rc, "value", err.rc) in (1, 132)
    return str(err) == "Operation timed out"


def protocol_name(protocol: aiomqtt.ProtocolVersion) -> str:
    return "5" if protocol == aiomqtt.ProtocolVersion.V5 else "3.1.1"


class Connection:
    """Keeps one broker session up for the publisher sharing ``core`` (see the module doc).

    Args:
        core: the publisher's shared state.
        listener: handles incoming messages.
        password, tls: credentials (see :mod:`slouchd.publish.credentials`).
        connect_timeout_s: how long to wait for CONNACK, seconds.
        backoff: waits between failed attempts.
    """

    def __init__(self, core: PublishCore, listener: Listener, *, password: str | None,
                 tls: ssl.SSLContext | None, connect_timeout_s: float, backoff: Backoff) -> None:
        self._core = core
        self._listener = listener
        self._password = password
        self._tls = tls
        self._connect_timeout_s = connect_timeout_s
        self._backoff = backoff
        settings = core.settings
        self.host = settings.host or "127.0.0.1"  # the embedded broker listens on IPv4 loopback
        self.client_id = settings.client_id or f"slouchd-{socket.gethostname()}"
        self._protocols = _PROTOCOLS[settings.protocol]
        if settings.protocol == "auto" and not settings.host:
            # host "" is the embedded broker (amqtt), which only speaks 3.1.1: skip the probe.
            self._protocols = [aiomqtt.ProtocolVersion.V311]
        self.stop = asyncio.Event()
        self.attempts = 0  # connection attempts made, failed or not
        self._connects = 0

    async def run(self) -> None:
        """Connect and stay connected until :attr:`stop` is set; never raises for broker trouble."""
        proto_index = 0
        settled = len(self._protocols) == 1  # with "auto", settled once a version worked
        while not self.stop.is_set():
            protocol = self._protocols[proto_index]
            err, in_session = await self._attempt(protocol)
            if self.stop.is_set():
                break
            if err is not None and not in_session and not settled and maybe_wrong_protocol(err):
                proto_index = (proto_index + 1) % len(self._protocols)
                log.info("MQTT broker %s:%d did not accept MQTT %s (%s); trying %s", self.host,
                         self._core.settings.port, protocol_name(protocol), err,
                         protocol_name(self._protocols[proto_index]))
                if proto_index != 0:
                    continue  # the other version, at once
            settled = settled or in_session
            probe = True if err is None else self._report(err, in_session)
            await self._pause(self._backoff.next_s(), probe)

    async def _attempt(self, protocol: aiomqtt.ProtocolVersion) -> tuple[aiomqtt.MqttError | None, bool]:
        """One connection and, if it comes up, its session, until either ends. Returns the
        MQTT error that ended it (None otherwise) and whether the session was up."""
        core = self._core
        in_session = False
        client: HardenedClient | None = None
        self.attempts += 1
        try:
            client = self._make_client(protocol)
            async with client:
                in_session = True
                self._backoff.reset()
                core.problems.forget("connect")
                client.timeout = SESSION_TIMEOUT_S  # for PUBACK/SUBACK waits from now on
                await self._session(client, protocol)
        except aiomqtt.MqttError as err:
            return err, in_session
        except Exception:  # a bug must not end publishing: log it, reconnect
            log.exception("MQTT session failed unexpectedly; reconnecting")
        finally:
            core.client = None
            core.set_connected(False)
            if client is not None:
                client.abandon()
        return None, in_session

    def _report(self, err: aiomqtt.MqttError, in_session: bool) -> bool:
        """Log why the broker is not there; returns whether to watch its port for its return
        (not when it answered and refused us)."""
        settings = self._core.settings
        if isinstance(err, MqttConnectError):
            self._core.problems.warn("connect", "MQTT broker %s:%d refused the connection: %s",
                                     self.host, settings.port, err)
            return False
        what = "lost" if in_session else "unreachable"
        self._core.problems.warn("connect", "MQTT broker %s:%d %s: %s", self.host, settings.port,
                                 what, err or type(err).__name__)
        return True

    def _make_client(self, protocol: aiomqtt.ProtocolVersion) -> HardenedClient:
        core = self._core
        settings = core.settings
        will = aiomqtt.Will(core.topics.bridge_state, OFFLINE.encode(), qos=1, retain=True)
        properties = None
        if protocol == aiomqtt.ProtocolVersion.V5:
            # The broker must not even send us a packet bigger than this (a 1 MiB "command").
            properties = Properties(PacketTypes.CONNECT)
            properties.MaximumPacketSize = OTHER_PAYLOAD_MAX_BYTES + 1024
        return HardenedClient(
            self.host,
            settings.port,
            username=settings.username or None,
            password=self._password if settings.username else None,
            identifier=self.client_id,
            protocol=protocol,
            will=will,
            # A clean session: a stale command queued by the broker while we were away must not
            # be executed later, and our own outbox already holds what we still owe.
            **({"clean_start": True} if protocol == aiomqtt.ProtocolVersion.V5
               else {"clean_session": True}),
            keepalive=settings.keepalive_s,
            tls_context=self._tls,
            timeout=self._connect_timeout_s,
            properties=properties,
            limit=self._listener.payload_limit,
            on_drop=self._listener.count_drop,
        )

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        core = self._core
        for topic in core.topics.command_filters:
            if core.v5:
                # noLocal: not our own replies; retainHandling 2: a retained command on the broker
                # is never delivered at subscribe time; retainAsPublished: a command published with
                # retain set is seen as retained and refused.
                opts = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True, retainHandling=2)
                await client.subscribe(topic, options=opts)
            else:
                await client.subscribe(topic, qos=1)
        if core.ha.discovery:
            await client.subscribe(self._listener.status_topic, qos=1)
            # The retained discovery on the broker: leftovers of wearers removed while we were
            # not running are cleared (Listener._clear_leftover).
            await client.subscribe(ha_discovery.discovery_filter(core.ha.discovery_prefix), qos=1)

    async def _session(self, client: aiomqtt.Client, protocol: aiomqtt.ProtocolVersion) -> None:
        core = self._core
        core.client = client
        core.v5 = protocol == aiomqtt.ProtocolVersion.V5
        self._connects += 1
        if self._connects > 1:
            core.counts.reconnects += 1
        await self._subscribe(client)
        await client.publish(core.topics.bridge_state, ONLINE.encode(), qos=1, retain=True)
        core.set_connected(True)
        if core.closing:
            # close() began while we were connecting: take back the "online" and leave.
            for name in core.records:
                await client.publish(core.topics.availability(name), OFFLINE.encode(), qos=1, retain=True)
            await client.publish(core.topics.bridge_state, OFFLINE.encode(), qos=1, retain=True)
            return
        log.info("MQTT connected to %s:%d (MQTT %s) as %s", self.host, core.settings.port,
                 protocol_name(protocol), self.client_id)
        core.announce_all()
        await self._run_parts(client)

    async def _run_parts(self, client: aiomqtt.Client) -> None:
        """The sender and the listener, until either ends or :attr:`stop` is set."""
        tasks = {
            asyncio.create_task(Sender(self._core, client).run(), name="mqtt-sender"),
            asyncio.create_task(self._listener.run(client), name="mqtt-receiver"),
            asyncio.create_task(self.stop.wait(), name="mqtt-stop"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Cancelled without close() (a task group torn down): a clean DISCONNECT follows,
            # which suppresses the last will, so say offline ourselves, briefly.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(client.publish(
                    self._core.topics.bridge_state, OFFLINE.encode(), qos=1, retain=True), 1.0)
            raise
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    async def _pause(self, delay_s: float, probe: bool) -> None:
        """Wait ``delay_s`` before the next attempt, or less: until :attr:`stop`, or (with
        ``probe``) until the broker's port accepts a TCP connection again (checked every
        PROBE_EVERY_S), so a broker back after a long outage is reached within about a second
        instead of after a full backoff step."""
        clock = self._core.clock
        deadline = clock.monotonic() + delay_s
        while not self.stop.is_set():
            left = deadline - clock.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await within(clock, self.stop.wait(), min(left, PROBE_EVERY_S) if probe else left)
            if probe and not self.stop.is_set() and await self._port_open():
                return

    async def _port_open(self) -> bool:
        """Whether the broker's TCP port accepts a connection (closed again at once, with a reset,
        before any MQTT byte is sent)."""
        try:
            _, writer = await within(self._core.clock,
                                     asyncio.open_connection(self.host, self._core.settings.port),
                                     PROBE_EVERY_S)
        except (OSError, TimeoutError):
            return False
        reset_socket(writer.get_extra_info("socket"))
        writer.transport.abort()
        return True
