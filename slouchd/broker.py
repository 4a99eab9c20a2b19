"""The embedded MQTT broker used when no broker is configured (``[mqtt] host = ""``).

It is amqtt, a pure-Python MQTT 3.1.1 broker, bound to 127.0.0.1 only. It exists so that
``slouchd demo`` and a first ``slouchd run`` work with nothing else installed; for Home Assistant
and anything long-running use a real broker (Mosquitto), as the README says.
"""

from __future__ import annotations

import logging
import socket
import warnings
from typing import Any

log = logging.getLogger(__name__)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def pick_port(preferred: int) -> int:
    """``preferred`` if nothing listens there (a Mosquitto often owns 1883), else a free port."""
    if port_is_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """An in-process broker on 127.0.0.1 (async context manager).

    Args:
        port: TCP port to try first; another free one is used if it is taken.
    """

    def __init__(self, port: int = 1883) -> None:
        self.host = "127.0.0.1"
        self.port = pick_port(port)
        self._broker: Any = None  # amqtt's Broker (untyped), once started

    async def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # imported late: only the no-broker path needs amqtt (and its private method, which
            # is overridden in slouchd.publish.internals with the other libraries' internals)
            from slouchd.publish.internals import own_retained_only_broker_class

            broker_class = own_retained_only_broker_class()

            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                },
            }
            self._broker = broker_class(config)
            await self._broker.start()
        log.info("embedded MQTT broker listening on %s:%d (MQTT 3.1.1)", self.host, self.port)

    async def stop(self) -> None:
        if self._broker is not None:
            try:
                await self._broker.shutdown()
            except Exception as err:  # shutting down must not mask the daemon's own exit
                log.debug("embedded broker shutdown: %s", err)
            self._broker = None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
