"""The MQTT session: connect, reconnect forever, publish state/events/discovery, take commands.

One :class:`MqttPublisher` per daemon. The daemon calls its non-blocking ``publish_*`` and
``set_*`` methods from anywhere in the event loop; they only update an in-memory outbox, and one
sender task drains it while the broker is reachable:

* retained topics (bridge state, discovery, availability, stats) keep the newest payload per topic;
* events are a bounded FIFO sent one at a time at QoS 1 and removed only once the broker
  acknowledged them (PUBACK), so after a broker restart every queued event is sent, in order. An
  event whose PUBACK was lost is sent again: delivery is **at least once** (``seq`` lets a
  consumer drop the rare duplicate);
* posture state keeps only the newest value per wearer and goes out at most every
  ``state_interval_s``, or at once when ``posture`` changes.

After every (re)connect everything is redone: subscribe, retained ``online`` on the bridge topic
(whose last will is ``offline``), discovery, availability, stats and the current state; the same
again when Home Assistant announces ``online``. A fresh aiomqtt client is made for every attempt
so paho's own in-memory retry queue never re-sends behind our back.

Built on aiomqtt 2.x (paho-mqtt underneath); ../shared/research/reliability-ecosystem.md s. 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import random
import socket
import ssl
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from slouchd import __version__
from slouchd.logs import OncePerKind
from slouchd.model import EventKind
from slouchd.publish import homeassistant as ha_discovery
from slouchd.publish.commands import (
    DROP_PAYLOAD_BYTES,
    Command,
    CommandRefused,
    CommandResult,
    parse_command,
)
from slouchd.publish.outbox import Outbox, OutboxEntry
from slouchd.publish.settings import HomeAssistantSettings, MqttSettings
from slouchd.publish.topics import OFFLINE, ONLINE, Topics
from slouchd.publish.wearer import WearerInfo
from slouchd.schema import SettingsError

log = logging.getLogger(__name__)

CommandHandler = Callable[[str, Command], Awaitable[CommandResult]]

# Events a wearer must not miss; when the queue is full, other events are dropped first.
KEEP_EVENTS = frozenset({EventKind.SLOUCH_ALERT.value, EventKind.BREAK_REMINDER.value})
# Repeated log lines of one kind (a refused command, the broker still down) are written at most
# this often at WARNING; in between they go to DEBUG, with a count.
LOG_REPEAT_S = 600.0
STATE_MIN_GAP_S = 0.2
"""Closest two posture states of one wearer are ever published, seconds."""
OTHER_PAYLOAD_MAX_BYTES = 256 * 1024
"""Largest non-command message taken (Home Assistant status, retained discovery), bytes. Also
the MQTT 5 Maximum Packet Size we announce: the broker then never sends us anything bigger."""
INCOMING_MAX_MESSAGES = 500
INCOMING_MAX_BYTES = 4 * 1024 * 1024
"""Most messages, and payload bytes, waiting to be handled; beyond, new ones are dropped."""
REPLIES_IN_FLIGHT = 100
"""Command replies awaiting their PUBACK at once; the next command waits for a free slot."""
PROBE_EVERY_S = 1.0
"""While waiting to reconnect, see this often whether the broker's port accepts connections
again, and reconnect at once if it does (the backoff still spaces out full MQTT attempts to a
broker that answers but refuses), seconds."""
_DISCONNECT = b"\xe0\x00"  # an MQTT DISCONNECT packet (3.1.1, and 5 with reason 0)
# paho's "disconnect() was called" state: it has then sent its own DISCONNECT.
_PAHO_DISCONNECTING = getattr(getattr(paho, "_ConnectionState", None), "MQTT_CS_DISCONNECTING", None)


def _reset(sock: Any) -> None:
    """Close ``sock`` with a TCP reset: the peer discards whatever it has not read yet."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Client(aiomqtt.Client):
    """aiomqtt's client, hardened against a hostile or frozen broker.

    * Incoming messages over a size limit, or beyond the queue's budget, are dropped in paho's
      callback, before they are queued or parsed, and counted (``on_drop(reason)``).
    * A socket we close ourselves never leaves a CONNECT the broker could act on later: an
      attempt without CONNACK is closed with a TCP reset (a frozen broker, once resumed, would
      otherwise take the stale CONNECT, kick our live session and later fire the last will); a
      session that dies without a DISCONNECT sent (paho's keepalive gave up) sends one first, so
      the broker, when it reads on, sees a clean goodbye instead of firing the will.
    """

    def __init__(self, *args: Any, limit: Callable[[str], int], on_drop: Callable[[str], None],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limit = limit
        self._on_drop = on_drop
        self.queued_bytes = 0
        self.acked = False  # CONNACK (accepted) received on this connection
        self.pending_calls_threshold = 10 * REPLIES_IN_FLIGHT  # replies are not awaited one by one

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any = None) -> None:
        if reason_code == paho.CONNACK_ACCEPTED:
            self.acked = True
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        size = len(message.payload)
        if size > self._limit(message.topic):
            self._on_drop("oversized")
            return
        if self._queue.qsize() >= INCOMING_MAX_MESSAGES or self.queued_bytes + size > INCOMING_MAX_BYTES:
            self._on_drop("flood")
            return
        self.queued_bytes += size
        super()._on_message(client, userdata, message)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if not self.acked:
            _reset(sock)
        elif getattr(client, "_state", None) != _PAHO_DISCONNECTING:
            out = getattr(client, "_out_packet", None)
            if out and out[0].get("pos", 0) > 0:
                _reset(sock)  # half a packet written: a DISCONNECT after it would be garbage
            else:
                try:
                    sock.send(_DISCONNECT)
                except (OSError, ValueError):
                    _reset(sock)
        super()._on_socket_close(client, userdata, sock)

    def abandon(self) -> None:
        """Drop a connection attempt that failed (no CONNACK in time): reset its socket now,
        and mark the attempt's futures retrieved (no "Future exception was never retrieved")."""
        with contextlib.suppress(Exception):
            self._client._sock_close()
        for fut in (self._connected, self._disconnected):
            if fut.done() and not fut.cancelled():
                fut.exception()
            elif not fut.done():
                fut.cancel()


def read_password(settings: MqttSettings) -> str | None:
    """The broker password from ``password`` or the first line of ``password_file``.

    Raises:
        SettingsError: naming the file (never the password) when it cannot be read.
    """
    if settings.password_file:
        path = Path(settings.password_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise SettingsError(
                f'mqtt.password_file = "{path}": cannot read it ({err.strerror or type(err).__name__})'
            ) from None
        except UnicodeDecodeError:
            raise SettingsError(f'mqtt.password_file = "{path}": not UTF-8 text') from None
        return text.splitlines()[0] if text else ""
    return settings.password or None


def _no_key_passphrase() -> bytes:
    # Without this, OpenSSL would prompt on the terminal for an encrypted key's passphrase.
    raise ssl.SSLError("the private key is encrypted; key_file must be an unencrypted PEM key")


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """An SSL context for ``[mqtt] tls = true`` (None otherwise); hostnames are verified.

    Raises:
        SettingsError: naming the key and file that could not be loaded.
    """
    if not settings.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=settings.ca_file or None)
    except (OSError, ssl.SSLError) as err:
        raise SettingsError(f'mqtt.ca_file = "{settings.ca_file}": cannot load it as PEM '
                            f"certificates ({_ssl_reason(err)})") from None
    if settings.cert_file:
        try:
            ctx.load_cert_chain(settings.cert_file, settings.key_file, password=_no_key_passphrase)
        except (OSError, ssl.SSLError) as err:
            raise SettingsError(f'mqtt.cert_file = "{settings.cert_file}" / key_file = '
                                f'"{settings.key_file}": cannot load ({_ssl_reason(err)})') from None
    return ctx


def _ssl_reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err) or type(err).__name__


def _jsonable(obj: Any) -> Any:
    """Make the daemon's dicts safe for JSON: numpy scalars to Python, NaN/inf to null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    item = getattr(obj, "item", None)  # numpy scalar
    if callable(item):
        return _jsonable(item())
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def to_json(obj: Any) -> bytes:
    return json.dumps(_jsonable(obj), separators=(",", ":"), allow_nan=False).encode()


def _maybe_wrong_protocol(err: aiomqtt.MqttError) -> bool:
    """True when a failed connect may mean the broker does not speak the version we offered.

    Either its CONNACK says so (3.1.1 brokers answer code 1, MQTT 5 ones 132), or it never
    answered at all: some 3.1.1-only brokers (amqtt 0.12) misread an MQTT 5 CONNECT that carries
    a will and wait for bytes that never come, and aiomqtt reports that as a timeout.
    """
    if isinstance(err, MqttConnectError):
        return getattr(err.rc, "value", err.rc) in (1, 132)
    return str(err) == "Operation timed out"


def _name(protocol: aiomqtt.ProtocolVersion) -> str:
    return "5" if protocol == aiomqtt.ProtocolVersion.V5 else "3.1.1"


class MqttPublisher:
    """The daemon's MQTT session (an async context manager; or call :meth:`run` yourself).

    Args:
        mqtt: the ``[mqtt]`` settings.
        ha: the ``[homeassistant]`` settings.
        wearers: the wearers to publish (see :meth:`set_wearers` to change them).
        on_command: ``await on_command(wearer_name, command) -> CommandResult``; applies a
            validated command. Its result is published on ``…/set/result``; an exception it
            raises is logged and replied as a refusal, never propagated.
        version: the slouchd version announced in the discovery ``origin`` block.
        connect_timeout_s: how long to wait for the broker's CONNACK, seconds. With protocol
            "auto", no answer in time also makes the next attempt use the other MQTT version.
        backoff_min_s: first wait after a failed connection, seconds (doubles up to
            ``mqtt.reconnect_max_s``, each wait jittered to 50-100 %).
        rng: random source for jitter and the HA birth delay (tests pass a seeded one).
        outbox: the on-disk journal of unacknowledged alerts and reminders (see
            :mod:`slouchd.publish.outbox`); events it holds from an earlier run are sent first,
            with their original ``(boot, seq)``. None keeps the queue in memory only.

    Raises:
        SettingsError: an unreadable password file, CA bundle or client certificate.

    Attributes:
        connected: whether a broker session is up right now.
        published: events acknowledged by the broker.
        dropped: events dropped because the queue was full.
        resent: events sent again after a connection died before their PUBACK (each one a
            possible duplicate at subscribers).
        reconnects: successful connections after the first one.
        refused: commands refused.
        commands: command messages handled (applied or refused).
        payloads_dropped: incoming messages dropped unread (too big, or a flood beyond the
            incoming queue's budget).
        alerts, reminders: slouch alerts and break reminders queued for publishing.
        outbox_restored: events from an earlier run's outbox queued at start.
        outbox_errors: failed writes of the outbox journal (the event stays queued in memory).
    """

    def __init__(
        self,
        mqtt: MqttSettings,
        ha: HomeAssistantSettings,
        wearers: list[WearerInfo],
        on_command: CommandHandler,
        *,
        version: str = __version__,
        connect_timeout_s: float = 5.0,
        backoff_min_s: float = 1.0,
        rng: random.Random | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self._settings = mqtt
        self._ha = ha
        self._on_command = on_command
        self._version = version
        self._backoff_min_s = backoff_min_s
        self._connect_timeout_s = connect_timeout_s
        self._rng = rng or random.Random()
        self._password = read_password(mqtt)
        self._tls = tls_context(mqtt)
        self._topics = Topics(mqtt.base_topic)
        self._host = mqtt.host or "127.0.0.1"  # the embedded broker listens on IPv4 loopback
        self._client_id = mqtt.client_id or f"slouchd-{socket.gethostname()}"
        self._protocols = {
            "auto": [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311],
            "5": [aiomqtt.ProtocolVersion.V5],
            "3.1.1": [aiomqtt.ProtocolVersion.V311],
        }[mqtt.protocol]
        if mqtt.protocol == "auto" and not mqtt.host:
            # host "" is the embedded broker (amqtt), which only speaks 3.1.1: skip the probe.
            self._protocols = [aiomqtt.ProtocolVersion.V311]
        self._status_topic = ha_discovery.status_topic(ha.discovery_prefix, ha.status_topic)

        self._wearers: dict[str, WearerInfo] = {w.name: w for w in wearers}
        # The outbox. Retained topics keep their newest payload (b"" clears the topic).
        self._retained: dict[str, bytes] = {}
        # (wearer, event kind, payload, outbox key or "")
        self._events: deque[tuple[str, str, bytes, str]] = deque()
        self._inflight: tuple[str, str, bytes, str] | None = None
        self._seq: dict[str, int] = {}
        self._state: dict[str, dict[str, Any]] = {}  # newest state per wearer (merged)
        self._state_pending: set[str] = set()
        self._state_now: set[str] = set()  # bypass the rate limit (posture changed, reconnect)
        self._state_sent_at: dict[str, float] = {}
        self._state_sent_posture: dict[str, Any] = {}
        self._stats: dict[str, bytes] = {}
        self._availability: dict[str, bool] = {}
        self._discovery_sent: dict[str, bytes] = {}  # discovery topic -> last payload queued

        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._done.set()  # not running: close() before run() returns at once
        self._closing = False
        self._topics_cleared = False  # retire(clear_topics=True): no "offline" for the wearers
        self._client: aiomqtt.Client | None = None
        self._v5 = False
        self._task: asyncio.Task[None] | None = None
        self._birth_task: asyncio.Task[None] | None = None
        self._problems = OncePerKind(log, LOG_REPEAT_S)

        # Identifies this run of slouchd in every event: ``seq`` restarts at 1 with a new boot, so
        # consumers drop repeats by (boot, seq). Unix time of start, milliseconds.
        self.boot = int(time.time() * 1000)
        self.connected = False
        self.published = 0
        self.dropped = 0
        self.reconnects = 0
        self.refused = 0
        self.resent = 0
        self.state_published = 0
        self.commands = 0
        self.payloads_dropped = 0
        self.payloads_dropped_by_reason: dict[str, int] = {}
        self.alerts = 0
        self.reminders = 0
        self.outbox_restored = 0
        self.outbox_errors = 0
        self._connects = 0
        self._replies: set[asyncio.Task[None]] = set()
        self._outbox = outbox
        if outbox is not None and not outbox.loaded:
            try:
                restored = outbox.load()
            except OSError as err:
                self.outbox_errors += 1
                log.error("cannot read the MQTT outbox %s: %s; events from before are lost",
                          outbox.path, err)
                restored = []
            if outbox.rewrite_error is not None:
                self.outbox_errors += 1
                log.error("cannot rewrite the MQTT outbox %s: %s", outbox.path, outbox.rewrite_error)
            for e in restored:
                self._events.append((e.wearer, e.kind, e.payload, e.key))
            self.outbox_restored = len(restored)
            if restored:
                log.info("%d unacknowledged event(s) from the last run queued again (outbox %s)",
                         len(restored), outbox.path)

    def counters(self) -> dict[str, int]:
        """Delivery and input counters for the health line and the diagnostics entities."""
        return {
            "mqtt_alerts": self.alerts,
            "mqtt_reminders": self.reminders,
            "mqtt_published": self.published,
            "mqtt_dropped": self.dropped,
            "mqtt_resent": self.resent,
            "mqtt_reconnects": self.reconnects,
            "mqtt_commands": self.commands,
            "mqtt_commands_refused": self.refused,
            "mqtt_payloads_dropped": self.payloads_dropped,
            "mqtt_outbox": 0 if self._outbox is None else len(self._outbox),
            "mqtt_outbox_restored": self.outbox_restored,
            "mqtt_outbox_errors": self.outbox_errors,
        }

    # ----------------------------------------------------------------- daemon-facing API

    @property
    def queue_depth(self) -> int:
        """Events waiting for the broker's acknowledgement."""
        return len(self._events)

    @property
    def protocol(self) -> str:
        """The MQTT version of the current session: "5", "3.1.1" or "" when disconnected."""
        if not self.connected:
            return ""
        return "5" if self._v5 else "3.1.1"

    def publish_state(self, wearer: str, state: dict[str, Any]) -> None:
        """Queue the wearer's posture state (JSON on ``<base>/<wearer>/state``, retained).

        Only the newest state is kept; it goes out at most every ``state_interval_s``, at once
        when ``state["posture"]`` differs from the last one sent. The settings in force
        (threshold_deg, hysteresis_deg, dwell_s, mode, alerts_enabled) are filled in from the
        wearer's :class:`WearerInfo` unless ``state`` has them. Never blocks.
        """
        info = self._wearers.get(wearer)
        if info is None or self._closing:
            return
        merged = {**info.settings_state(), **state}
        self._state[wearer] = merged
        self._state_pending.add(wearer)
        if merged.get("posture") != self._state_sent_posture.get(wearer, object()):
            self._state_now.add(wearer)
        self._wake.set()

    def publish_event(self, wearer: str, event: dict[str, Any]) -> None:
        """Queue an event (``<base>/<wearer>/event``, QoS 1, not retained, in order).

        ``event`` is :meth:`slouchd.model.Event.to_dict` output (``{"t", "event", ...}``). The
        payload adds ``event_type`` (= ``event``, what HA's event entity reads), ``seq`` (1, 2,
        ... per wearer since start) and ``boot`` (this run's start, Unix ms): (boot, seq) spots a
        duplicate. Never blocks; when ``queue_max`` events
        wait, the oldest event that is neither a slouch alert nor a break reminder is dropped
        (or the oldest of all when only those wait).
        """
        if wearer not in self._wearers or self._closing:
            return
        kind = str(event.get("event", event.get("event_type", "")))
        self._seq[wearer] = seq = self._seq.get(wearer, 0) + 1
        payload = to_json({**event, "event_type": event.get("event_type", kind), "seq": seq,
                           "boot": self.boot})
        key = ""
        if kind == EventKind.SLOUCH_ALERT.value:
            self.alerts += 1
        elif kind == EventKind.BREAK_REMINDER.value:
            self.reminders += 1
        if kind in KEEP_EVENTS and self._outbox is not None:
            key = f"{wearer}/{self.boot}/{seq}"
            try:
                for gone in self._outbox.add(OutboxEntry(key, wearer, kind, payload)):
                    self._forget(gone.key)
            except OSError as err:
                self.outbox_errors += 1
                self._problems.warn("outbox", "cannot write the MQTT outbox %s: %s (events are kept "
                                    "in memory only)", self._outbox.path, err)
        self._events.append((wearer, kind, payload, key))
        if len(self._events) > self._settings.queue_max:
            self._drop_one_event()
        self._wake.set()

    def publish_stats(self, wearer: str, stats: dict[str, Any]) -> None:
        """Publish daily totals (``<base>/<wearer>/stats``, retained; newest value wins).

        Keys read by Home Assistant: ``upright_pct``, ``slouched_min``, ``sitting_min``, ``alerts``.
        """
        if wearer not in self._wearers or self._closing:
            return
        self._stats[wearer] = payload = to_json(stats)
        self._put_retained(self._topics.stats(wearer), payload)

    def set_availability(self, wearer: str, online: bool) -> None:
        """Publish the sensor link (``<base>/<wearer>/availability``: online/offline, retained)."""
        if wearer not in self._wearers or self._closing:
            return
        self._availability[wearer] = online
        self._put_retained(self._topics.availability(wearer), (ONLINE if online else OFFLINE).encode())

    def set_wearers(self, wearers: list[WearerInfo]) -> None:
        """Replace the wearer list (config reload).

        New or changed wearers get their discovery (re)published; removed ones get an empty
        retained payload on their discovery, state, stats and availability topics, so Home
        Assistant deletes their entities and no ghost comes back.
        """
        new = {w.name: w for w in wearers}
        for name, old in self._wearers.items():
            if name in new:
                continue
            if self._ha.discovery:
                topic = ha_discovery.discovery_topic(self._ha.discovery_prefix, old)
                self._discovery_sent.pop(topic, None)
                self._put_retained(topic, b"")
            for topic in self._topics.wearer_topics(name):
                self._put_retained(topic, b"")
            for table in (self._state, self._stats, self._availability, self._state_sent_at,
                          self._state_sent_posture):
                table.pop(name, None)
            self._state_pending.discard(name)
            self._state_now.discard(name)
        changed = [w for name, w in new.items() if self._wearers.get(name) != w]
        self._wearers = new
        for info in changed:
            # Written after the clears: a renamed wearer on the same sensor keeps its device.
            self._announce_wearer(info)

    def password_changed(self, settings: MqttSettings) -> bool:
        """Whether ``settings`` (its ``password_file`` read again) give another password.

        Raises:
            SettingsError: the password file cannot be read.
        """
        return read_password(settings) != self._password

    def take_over(self, old: MqttPublisher) -> None:
        """Carry ``old``'s queue and newest values into this publisher (a config reload).

        Queued events move here in order, keeping their sequence numbers, and the numbering
        goes on from ``old``'s; the newest state, stats and sensor link of the wearers this
        publisher has are sent on its first connection; counters keep counting. Call it
        before this publisher runs and before ``old.close()``. An event ``old`` was sending at
        that moment may reach subscribers twice (at-least-once, as after any reconnect).
        """
        self._events.extend(old._events)
        old._events.clear()
        if self._outbox is None:
            self._outbox = old._outbox  # the same journal goes on
        old._outbox = None
        self._seq.update(old._seq)
        self.boot = old.boot  # the same run of slouchd: numbering goes on
        for name in self._wearers:
            if name in old._state:
                self._state[name] = {**old._state[name], **self._wearers[name].settings_state()}
                self._state_pending.add(name)
                self._state_now.add(name)
            if name in old._stats:
                self._stats[name] = old._stats[name]
            if name in old._availability:
                self._availability[name] = old._availability[name]
        for counter in ("published", "dropped", "reconnects", "refused", "resent", "state_published",
                        "commands", "payloads_dropped", "alerts", "reminders", "outbox_restored",
                        "outbox_errors"):
            setattr(self, counter, getattr(self, counter) + getattr(old, counter))

    def retire(self, *, clear_discovery: bool, clear_topics: bool) -> None:
        """Queue the clean-up of what this publisher leaves behind on its broker (a reload).

        ``clear_discovery`` empties the retained Home Assistant discovery of every wearer (so
        its entities go away); ``clear_topics`` empties their retained state, stats and
        availability (the base topic moved). :meth:`close` sends them before ``offline``.
        """
        for info in self._wearers.values():
            if clear_discovery and self._ha.discovery:
                self._put_retained(ha_discovery.discovery_topic(self._ha.discovery_prefix, info), b"")
            if clear_topics:
                for topic in self._topics.wearer_topics(info.name):
                    self._put_retained(topic, b"")
        if clear_topics:
            self._topics_cleared = True
            self._state_pending.clear()
            self._state.clear()
            self._stats.clear()
            self._availability.clear()

    async def run(self) -> None:
        """Connect and stay connected until :meth:`close`; never raises for broker trouble."""
        self._done.clear()
        attempt = 0
        proto_index = 0
        settled = len(self._protocols) == 1  # with "auto", settled once a version worked
        try:
            while not self._stop.is_set():
                protocol = self._protocols[proto_index]
                in_session = False
                probe = True  # the broker was away (not refusing us): watch for its return
                client: _Client | None = None
                try:
                    client = self._make_client(protocol)
                    async with client:
                        in_session = settled = True
                        attempt = 0
                        self._problems.forget("connect")
                        client.timeout = 10.0  # for PUBACK/SUBACK waits from now on
                        await self._session(client, protocol)
                except aiomqtt.MqttError as err:
                    if self._stop.is_set():
                        break
                    if not in_session and not settled and _maybe_wrong_protocol(err):
                        proto_index = (proto_index + 1) % len(self._protocols)
                        log.info("MQTT broker %s:%d did not accept MQTT %s (%s); trying %s",
                                 self._host, self._settings.port, _name(protocol), err,
                                 _name(self._protocols[proto_index]))
                        if proto_index != 0:
                            continue  # the other version, at once
                    if isinstance(err, MqttConnectError):
                        probe = False
                        self._problems.warn("connect", "MQTT broker %s:%d refused the connection: %s",
                                            self._host, self._settings.port, err)
                    else:
                        what = "lost" if in_session else "unreachable"
                        self._problems.warn("connect", "MQTT broker %s:%d %s: %s", self._host,
                                            self._settings.port, what, err or type(err).__name__)
                except Exception:  # a bug must not end publishing: log it, reconnect
                    log.exception("MQTT session failed unexpectedly; reconnecting")
                finally:
                    self._client = None
                    self.connected = False
                    if client is not None:
                        client.abandon()
                if self._stop.is_set():
                    break
                attempt += 1
                delay = min(self._settings.reconnect_max_s, self._backoff_min_s * 2 ** (attempt - 1))
                delay *= self._rng.uniform(0.5, 1.0)
                await self._pause(delay, probe)
        finally:
            if self._birth_task is not None:
                self._birth_task.cancel()
            self._done.set()

    async def _pause(self, delay_s: float, probe: bool) -> None:
        """Wait ``delay_s`` before the next attempt, or less: until :meth:`close`, or (with
        ``probe``) until the broker's port accepts a TCP connection again (checked every
        PROBE_EVERY_S), so a broker back after a long outage is reached within about a second
        instead of after a full backoff step."""
        deadline = time.monotonic() + delay_s
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), min(left, PROBE_EVERY_S) if probe else left)
            if probe and not self._stop.is_set() and await self._port_open():
                return

    async def _port_open(self) -> bool:
        """Whether the broker's TCP port accepts a connection (closed again at once, with a reset,
        before any MQTT byte is sent)."""
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._settings.port), PROBE_EVERY_S)
        except (OSError, TimeoutError):
            return False
        _reset(writer.get_extra_info("socket"))
        writer.transport.abort()
        return True

    async def close(self, timeout_s: float = 3.0) -> None:
        """Flush queued events, publish ``offline`` (sensors and bridge), disconnect.

        Waits at most ``timeout_s`` in all. Events still queued after that are lost (counted in
        ``queue_depth`` when this returns); with no broker the bridge's last will says offline.
        """
        deadline = time.monotonic() + timeout_s
        self._closing = True
        self._state_pending.clear()
        if self.connected:
            await self._wait_flushed(deadline - timeout_s * 0.3)
            for name in ([] if self._topics_cleared else self._wearers):
                if self._availability.get(name) is False:
                    continue  # already said (or queued): once is enough
                self._put_retained(self._topics.availability(name), OFFLINE.encode())
            self._retained.pop(self._topics.bridge_state, None)
            self._put_retained(self._topics.bridge_state, OFFLINE.encode())  # last, after the sensors
            await self._wait_flushed(deadline)
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), max(0.05, deadline - time.monotonic()))
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), max(0.05, deadline - time.monotonic()))

    async def __aenter__(self) -> MqttPublisher:
        self._task = asyncio.create_task(self.run(), name="slouchd-mqtt")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- internals

    def _put_retained(self, topic: str, payload: bytes) -> None:
        self._retained[topic] = payload
        self._wake.set()

    def _drop_one_event(self) -> None:
        victim = None
        for item in self._events:
            if item is not self._inflight and item[1] not in KEEP_EVENTS:
                victim = item
                break
        if victim is None:
            victim = next((i for i in self._events if i is not self._inflight), None)
        if victim is None:
            return
        self._events.remove(victim)
        self._ack_outbox(victim[3])  # lost for good: not to be sent after a restart either
        self.dropped += 1
        self._problems.warn("queue_full", "MQTT event queue full (%d): dropped a %s event of %s",
                            self._settings.queue_max, victim[1] or "?", victim[0])

    def _forget(self, key: str) -> None:
        """Drop the queued event the outbox forgot (beyond its bound)."""
        for item in self._events:
            if item[3] == key and item is not self._inflight:
                self._events.remove(item)
                self.dropped += 1
                return

    def _ack_outbox(self, key: str) -> None:
        if not key or self._outbox is None:
            return
        try:
            self._outbox.ack(key)
        except OSError as err:
            self.outbox_errors += 1
            self._problems.warn("outbox", "cannot write the MQTT outbox %s: %s (an acknowledged "
                                "event may be sent again after a restart)", self._outbox.path, err)

    def _count_drop(self, reason: str) -> None:
        """An incoming message dropped unread (called from paho's callback, on the loop)."""
        self.payloads_dropped += 1
        self.payloads_dropped_by_reason[reason] = self.payloads_dropped_by_reason.get(reason, 0) + 1
        self._problems.warn(f"drop:{reason}", "MQTT: dropped an incoming message unread (%s; "
                            "%d so far)", "too big" if reason == "oversized" else "too many at once",
                            self.payloads_dropped)

    def _payload_limit(self, topic: str) -> int:
        if self._topics.parse_command(topic) is not None:
            return DROP_PAYLOAD_BYTES
        return OTHER_PAYLOAD_MAX_BYTES

    def _announce_wearer(self, info: WearerInfo, force: bool = False) -> None:
        if self._ha.discovery:
            payload = to_json(ha_discovery.discovery_payload(info, self._topics, self._ha.expire_after_s,
                                                             self._version))
            topic = ha_discovery.discovery_topic(self._ha.discovery_prefix, info)
            # A settings command changes the wearer but not its 12 KB discovery: send it again
            # only when it changed, or when a (re)connect or HA's birth asks for everything.
            if force or self._discovery_sent.get(topic) != payload:
                self._discovery_sent[topic] = payload
                self._put_retained(topic, payload)
        if info.name in self._state:
            # Settings in force may have changed: refresh the merged state at once.
            self._state[info.name] = {**self._state[info.name], **info.settings_state()}
            self._state_pending.add(info.name)
            self._state_now.add(info.name)

    def _announce_all(self) -> None:
        """Everything a fresh subscriber (or a restarted HA) needs, queued in a sensible order."""
        for info in self._wearers.values():
            self._announce_wearer(info, force=True)
        for name, online in self._availability.items():
            self._put_retained(self._topics.availability(name), (ONLINE if online else OFFLINE).encode())
        for name, payload in self._stats.items():
            self._put_retained(self._topics.stats(name), payload)
        for name in self._state:
            self._state_pending.add(name)
            self._state_now.add(name)
        self._wake.set()

    def _make_client(self, protocol: aiomqtt.ProtocolVersion) -> _Client:
        will = aiomqtt.Will(self._topics.bridge_state, OFFLINE.encode(), qos=1, retain=True)
        properties = None
        if protocol == aiomqtt.ProtocolVersion.V5:
            # The broker must not even send us a packet bigger than this (a 1 MiB "command").
            properties = Properties(PacketTypes.CONNECT)
            properties.MaximumPacketSize = OTHER_PAYLOAD_MAX_BYTES + 1024
        return _Client(
            self._host,
            self._settings.port,
            username=self._settings.username or None,
            password=self._password if self._settings.username else None,
            identifier=self._client_id,
            protocol=protocol,
            will=will,
            # A clean session: a stale command queued by the broker while we were away must not
            # be executed later, and our own outbox already holds what we still owe.
            **({"clean_start": True} if protocol == aiomqtt.ProtocolVersion.V5
               else {"clean_session": True}),
            keepalive=self._settings.keepalive_s,
            tls_context=self._tls,
            timeout=self._connect_timeout_s,
            properties=properties,
            limit=self._payload_limit,
            on_drop=self._count_drop,
        )

    async def _session(self, client: aiomqtt.Client, protocol: aiomqtt.ProtocolVersion) -> None:
        self._client = client
        self._v5 = protocol == aiomqtt.ProtocolVersion.V5
        self._connects += 1
        if self._connects > 1:
            self.reconnects += 1
        for topic in self._topics.command_filters:
            if self._v5:
                # noLocal: not our own replies; retainHandling 2: a retained command on the broker
                # is never delivered at subscribe time; retainAsPublished: a command published with
                # retain set is seen as retained and refused.
                opts = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True, retainHandling=2)
                await client.subscribe(topic, options=opts)
            else:
                await client.subscribe(topic, qos=1)
        if self._ha.discovery:
            await client.subscribe(self._status_topic, qos=1)
            # The retained discovery on the broker: leftovers of wearers removed while we were
            # not running are cleared (see _clear_leftover).
            await client.subscribe(ha_discovery.discovery_filter(self._ha.discovery_prefix), qos=1)
        await client.publish(self._topics.bridge_state, ONLINE.encode(), qos=1, retain=True)
        self.connected = True
        if self._closing:
            # close() began while we were connecting: take back the "online" and leave.
            for name in self._wearers:
                await client.publish(self._topics.availability(name), OFFLINE.encode(), qos=1,
                                     retain=True)
            await client.publish(self._topics.bridge_state, OFFLINE.encode(), qos=1, retain=True)
            return
        log.info("MQTT connected to %s:%d (MQTT %s) as %s", self._host, self._settings.port,
                 _name(protocol), self._client_id)
        self._announce_all()

        tasks = {
            asyncio.create_task(self._sender(client), name="mqtt-sender"),
            asyncio.create_task(self._receiver(client), name="mqtt-receiver"),
            asyncio.create_task(self._stop.wait(), name="mqtt-stop"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Cancelled without close() (a task group torn down): a clean DISCONNECT follows,
            # which suppresses the last will, so say offline ourselves, briefly.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(client.publish(
                    self._topics.bridge_state, OFFLINE.encode(), qos=1, retain=True), 1.0)
            raise
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    async def _sender(self, client: aiomqtt.Client) -> None:
        interval = self._settings.state_interval_s
        while True:
            self._wake.clear()
            while self._retained:
                topic, payload = next(iter(self._retained.items()))
                await client.publish(topic, payload, qos=1, retain=True)
                if self._retained.get(topic) is payload:  # not replaced while we waited
                    del self._retained[topic]
            while self._events:
                item = self._events[0]
                if item is self._inflight:
                    # Sent before a connection died, with no PUBACK: the broker may already have
                    # it, so this is a possible duplicate (at-least-once).
                    self.resent += 1
                self._inflight = item
                wearer, _kind, payload, key = item
                await client.publish(self._topics.event(wearer), payload, qos=1, retain=False,
                                     properties=self._event_properties())
                if self._events and self._events[0] is item:
                    self._events.popleft()
                self._inflight = None
                self._ack_outbox(key)
                self.published += 1
                if self._retained:
                    break  # e.g. availability changed meanwhile: send it before more events
            if self._retained:
                continue
            next_due = math.inf
            now = time.monotonic()
            for wearer in sorted(self._state_pending):
                if self._closing:
                    break
                sent_at = self._state_sent_at.get(wearer, -math.inf)
                # A posture change goes out at once, but never closer than STATE_MIN_GAP_S to the
                # previous state (a flickering posture must not flood the broker).
                due = (max(now, sent_at + STATE_MIN_GAP_S) if wearer in self._state_now
                       else sent_at + interval)
                if due > now:
                    next_due = min(next_due, due)
                    continue
                state = self._state.get(wearer)
                if state is None:  # the wearer was removed meanwhile
                    self._state_pending.discard(wearer)
                    continue
                await client.publish(self._topics.state(wearer), to_json(state), qos=0, retain=True)
                self.state_published += 1
                self._state_sent_at[wearer] = time.monotonic()
                self._state_sent_posture[wearer] = state.get("posture")
                if self._state.get(wearer) is state:  # no newer state arrived meanwhile
                    self._state_pending.discard(wearer)
                    self._state_now.discard(wearer)
            if self._retained or self._events or self._wake.is_set():
                continue
            timeout = None if math.isinf(next_due) else max(0.0, next_due - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _event_properties(self) -> Properties | None:
        """MQTT 5 message expiry for an event (None on 3.1.1 or with ``event_expiry_s = 0``)."""
        if not self._v5 or not self._settings.event_expiry_s:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = self._settings.event_expiry_s
        return props

    async def _receiver(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                payload = message.payload
                if not isinstance(payload, bytes | bytearray):
                    payload = b"" if payload is None else str(payload).encode()
                if isinstance(client, _Client):
                    client.queued_bytes = max(0, client.queued_bytes - len(payload))
                try:
                    await self._on_message(client, message, bytes(payload))
                except (aiomqtt.MqttError, asyncio.CancelledError):
                    raise  # the session itself: reconnect
                except Exception:  # one odd message must never cost the session
                    log.exception("MQTT: handling a message on %s failed", str(message.topic)[:120])
        finally:
            for task in list(self._replies):
                task.cancel()

    async def _on_message(self, client: aiomqtt.Client, message: aiomqtt.Message, payload: bytes) -> None:
        topic = str(message.topic)
        if topic == self._status_topic:
            if payload.strip() == ONLINE.encode():
                self._schedule_reannounce()
            return
        if message.retain and topic.startswith(self._ha.discovery_prefix + "/device/"):
            self._clear_leftover(topic, payload)
            return
        parsed = self._topics.parse_command(topic)
        if parsed is not None:
            await self._handle_command(client, parsed[0], parsed[1], payload, message)

    def _clear_leftover(self, topic: str, payload: bytes) -> None:
        """Clear a retained slouchd discovery (and its topics) that no configured wearer owns."""
        current = {ha_discovery.device_id(w) for w in self._wearers.values()}
        name = ha_discovery.leftover_wearer(topic, payload, self._ha.discovery_prefix,
                                            self._topics, current)
        if name is None:
            return
        log.info("clearing Home Assistant discovery left by a removed wearer: %s", topic)
        self._put_retained(topic, b"")
        if name and name not in self._wearers:
            for t in self._topics.wearer_topics(name):
                self._put_retained(t, b"")

    def _schedule_reannounce(self) -> None:
        if self._birth_task is not None and not self._birth_task.done():
            return  # one re-announce is already on its way
        delay = self._rng.uniform(0, self._ha.birth_delay_max_s)

        async def later() -> None:
            await asyncio.sleep(delay)
            log.info("Home Assistant came online: re-sending discovery and state")
            self._announce_all()

        self._birth_task = asyncio.create_task(later(), name="mqtt-ha-birth")

    async def _handle_command(self, client: aiomqtt.Client, wearer: str, key: str | None,
                              payload: bytes, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        self.commands += 1
        if wearer not in self._wearers:
            self.refused += 1
            self._problems.warn("cmd:unknown_wearer", "refused MQTT command on %s: no wearer named %r",
                                topic, wearer[:40])
            return
        try:
            command = parse_command(payload, key=key, retained=bool(message.retain),
                                    now_s=time.time(), max_age_s=self._settings.command_max_age_s)
        except CommandRefused as err:
            self.refused += 1
            self._problems.warn(f"cmd:{err.kind}", "refused MQTT command on %s: %s", topic, err.reason)
            result = CommandResult(False, {}, err.reason, err.request_id)
        else:
            try:
                result = await self._on_command(wearer, command)
                if not isinstance(result, CommandResult):
                    raise TypeError(f"on_command returned {type(result).__name__}, not CommandResult")
                if result.request_id is None and command.request_id is not None:
                    result = dataclasses.replace(result, request_id=command.request_id)
            except Exception:
                log.exception("applying the MQTT command %s for %s failed", dict(command.values), wearer)
                result = CommandResult(False, {}, "internal error while applying the command",
                                       command.request_id)
            if not result.ok:
                self.refused += 1
                self._problems.warn("cmd:not_applied", "MQTT command on %s not applied: %s",
                                    topic, result.error)
            elif result.applied:
                info = self._wearers[wearer].with_settings(result.applied)
                self._wearers[wearer] = info
                if wearer in self._state:
                    applied_state = {k: v for k, v in result.applied.items() if k != "calibrate"}
                    self._state[wearer] = {**self._state[wearer], **applied_state}
                    self._state_pending.add(wearer)
                    self._state_now.add(wearer)
                    self._wake.set()
        properties = None
        correlation = getattr(message.properties, "CorrelationData", None) if self._v5 else None
        if correlation:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
        # Not awaited one by one: at 500 commands/s a PUBACK round trip each made the last
        # command wait 13 s. At most REPLIES_IN_FLIGHT are outstanding.
        while len(self._replies) >= REPLIES_IN_FLIGHT:
            await asyncio.wait(set(self._replies), return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(client.publish(self._topics.command_result(wearer), result.to_json(),
                                                  qos=1, retain=False, properties=properties))
        self._replies.add(task)
        task.add_done_callback(self._reply_done)

    def _reply_done(self, task: asyncio.Task[None]) -> None:
        self._replies.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The session is going down (the receiver notices too); the reply is lost with it.
            log.debug("MQTT: a command reply was not delivered: %s", task.exception())

    async def _wait_flushed(self, deadline: float) -> None:
        while (self._events or self._retained) and self.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # ----- the coach's retained topics (docs/coach.md) --------------------------------------
    def publish_retained(self, wearer: str, name: str, doc: dict[str, Any]) -> None:
        """Publish a retained JSON document on ``<base>/<wearer>/<name>`` (newest value wins):
        the coach's ``stretch`` (the session's current step) and ``history`` (per-day totals)."""
        if wearer not in self._wearers or self._closing:
            return
        self._put_retained(f"{self._topics.base}/{wearer}/{name}", to_json(doc))
