"""Everything slouchd takes from the private insides of aiomqtt, paho-mqtt and amqtt, in one place.

Checked against **aiomqtt 2.5.1, paho-mqtt 2.2.0 and amqtt 0.12.1**. When one of them is upgraded,
read this module against the new version first (and keep the upper bounds in ``pyproject.toml``
until then). What is used, and why:

* aiomqtt ``Client._on_connect`` / ``_on_message`` / ``_on_socket_close`` (paho callbacks it
  installs), ``_queue`` (its incoming queue), ``_client`` (the paho client), ``_connected`` /
  ``_disconnected`` (its futures) and ``pending_calls_threshold``: incoming messages are dropped
  before they are queued, and a socket we give up on never leaves a CONNECT or a missing
  DISCONNECT behind (see :class:`HardenedClient`).
* paho ``Client._state`` / ``_ConnectionState.MQTT_CS_DISCONNECTING``, ``_out_packet`` and
  ``_sock_close``: whether paho already said goodbye, or is half-way through writing a packet.
* amqtt ``Broker._publish_retained_messages_for_subscription`` and ``_subscriptions``: the
  embedded broker sends retained messages only to the subscriptions that match them
  (:func:`own_retained_only_broker_class`).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

INCOMING_MAX_MESSAGES = 500
INCOMING_MAX_BYTES = 4 * 1024 * 1024
"""Most messages, and payload bytes, waiting to be handled; beyond, new ones are dropped."""
PENDING_CALLS_THRESHOLD = 1000
"""aiomqtt warns above this many unanswered calls; replies and publishes are pipelined, bounded
by the publisher itself (``REPLIES_IN_FLIGHT``, ``PUBLISH_IN_FLIGHT``), so only far more is odd."""

_DISCONNECT = b"\xe0\x00"  # an MQTT DISCONNECT packet (3.1.1, and 5 with reason 0)
# paho's "disconnect() was called" state: it has then sent its own DISCONNECT.
_PAHO_DISCONNECTING = getattr(getattr(paho, "_ConnectionState", None), "MQTT_CS_DISCONNECTING", None)


def reset_socket(sock: Any) -> None:
    """Close ``sock`` with a TCP reset: the peer discards whatever it has not read yet."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class HardenedClient(aiomqtt.Client):
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
        self.pending_calls_threshold = PENDING_CALLS_THRESHOLD

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
            reset_socket(sock)
        elif getattr(client, "_state", None) != _PAHO_DISCONNECTING:
            out = getattr(client, "_out_packet", None)
            if out and out[0].get("pos", 0) > 0:
                reset_socket(sock)  # half a packet written: a DISCONNECT after it would be garbage
            else:
                try:
                    sock.send(_DISCONNECT)
                except (OSError, ValueError):
                    reset_socket(sock)
        super()._on_socket_close(client, userdata, sock)

    def handled(self, size: int) -> None:
        """A message of ``size`` payload bytes left the incoming queue."""
        self.queued_bytes = max(0, self.queued_bytes - size)

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


def own_retained_only_broker_class() -> type:
    """amqtt's Broker, minus its habit of sending a client other clients' retained messages.

    amqtt 0.12 sends every connecting client the retained messages matching *any* client's
    subscription (it loops over all subscriptions at connect), so a phone app subscribed to
    ``slouchd/ana/event`` would also receive the discovery payloads slouchd itself watches.
    Here retained messages go only to sessions that really hold the subscription.
    """
    from amqtt.broker import Broker  # type: ignore[import-untyped]  # late: only the no-broker path needs amqtt

    class OwnRetainedOnlyBroker(Broker):  # type: ignore[misc]
        async def _publish_retained_messages_for_subscription(self, subscription, session):  # type: ignore[no-untyped-def]
            holders = self._subscriptions.get(subscription[0], [])
            if any(s.client_id == session.client_id for s, _ in holders):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    return OwnRetainedOnlyBroker
