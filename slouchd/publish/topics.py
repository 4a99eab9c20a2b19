"""The MQTT topic layout of slouchd, zigbee2mqtt-like, in one place.

::

    <base>/bridge/state               online | offline   retained, the last will
    <base>/<wearer>/state             JSON posture state  retained, about 1 Hz and on change
    <base>/<wearer>/event             JSON alert/reminder not retained, QoS 1
    <base>/<wearer>/stats             JSON daily totals   retained
    <base>/<wearer>/availability      online | offline   retained (sensor link)
    <base>/<wearer>/set               JSON command        never retained
    <base>/<wearer>/set/<key>         one command value   (Home Assistant's command topics)
    <base>/<wearer>/set/result        JSON reply to every command

``docs/mqtt.md`` shows each with an example payload.
"""

from __future__ import annotations

from dataclasses import dataclass

BRIDGE = "bridge"
RESULT = "result"
ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True)
class Topics:
    """Topic names under one base topic (``[mqtt] base_topic``)."""

    base: str = "slouchd"

    @property
    def bridge_state(self) -> str:
        return f"{self.base}/{BRIDGE}/state"

    def state(self, wearer: str) -> str:
        return f"{self.base}/{wearer}/state"

    def event(self, wearer: str) -> str:
        return f"{self.base}/{wearer}/event"

    def stats(self, wearer: str) -> str:
        return f"{self.base}/{wearer}/stats"

    def availability(self, wearer: str) -> str:
        return f"{self.base}/{wearer}/availability"

    def stretch(self, wearer: str) -> str:
        """The coach's guided stretch session (retained JSON, docs/coach.md)."""
        return f"{self.base}/{wearer}/stretch"

    def history(self, wearer: str) -> str:
        """The coach's per-day history (retained JSON, docs/coach.md)."""
        return f"{self.base}/{wearer}/history"

    def command(self, wearer: str, key: str | None = None) -> str:
        """``<base>/<wearer>/set`` (a JSON object) or ``<base>/<wearer>/set/<key>`` (one value)."""
        return f"{self.base}/{wearer}/set" if key is None else f"{self.base}/{wearer}/set/{key}"

    def command_result(self, wearer: str) -> str:
        return f"{self.base}/{wearer}/set/{RESULT}"

    @property
    def command_filters(self) -> tuple[str, str]:
        """Subscriptions that catch every command topic of every wearer."""
        return (f"{self.base}/+/set", f"{self.base}/+/set/+")

    def parse_command(self, topic: str) -> tuple[str, str | None] | None:
        """``(wearer, key)`` for a command topic (key None for ``…/set``), else None.

        ``…/set/result`` is ours (the reply), so it is not a command: None.
        """
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            return None
        rest = topic[len(prefix):].split("/")
        if len(rest) == 2 and rest[1] == "set" and rest[0] != BRIDGE:
            return rest[0], None
        if len(rest) == 3 and rest[1] == "set" and rest[0] != BRIDGE and rest[2] != RESULT:
            return rest[0], rest[2]
        return None

    def wearer_topics(self, wearer: str) -> tuple[str, ...]:
        """Every retained topic a wearer owns (cleared when the wearer is removed)."""
        return (self.state(wearer), self.stats(wearer), self.availability(wearer),
                self.stretch(wearer), self.history(wearer))
