"""Settings of the MQTT session and Home Assistant discovery (``[mqtt]``, ``[homeassistant]``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from slouchd.schema import SettingsError, setting

TOPIC_WORD = r"[A-Za-z0-9_\-/]+"


@dataclass(frozen=True)
class MqttSettings:
    """Where and how to reach the MQTT broker. An empty ``host`` starts the embedded broker."""

    host: str = setting("", doc='broker host name or address; "" = start the embedded broker on localhost')
    port: int = setting(1883, min=1, max=65535, doc="broker TCP port (8883 is usual with TLS)")
    username: str = setting("", doc="user name; empty for anonymous")
    password: str = setting("", secret=True, doc="password (prefer password_file)")
    password_file: str = setting("", doc="file whose first line is the password")
    tls: bool = setting(False, doc="connect with TLS")
    ca_file: str = setting("", doc="CA certificate bundle (PEM) to trust; empty = system store")
    cert_file: str = setting("", doc="client certificate (PEM) for mutual TLS")
    key_file: str = setting("", doc="client private key (PEM) for mutual TLS")
    client_id: str = setting("", doc='MQTT client id; "" = slouchd-<hostname>')
    base_topic: str = setting("slouchd", pattern=TOPIC_WORD, doc="first level of every topic")
    keepalive_s: int = setting(60, min=5, max=3600, doc="MQTT keepalive, seconds")
    protocol: str = setting("auto", choices=("auto", "5", "3.1.1"), doc="MQTT protocol version")
    state_interval_s: float = setting(
        1.0, min=0.2, max=60, doc="publish posture state at most this often (and on change), seconds")
    queue_max: int = setting(
        1000, min=10, max=100000, doc="events kept in memory while the broker is away")
    reconnect_max_s: float = setting(
        60.0, min=1, max=600, doc="longest wait between reconnection attempts (backoff with jitter), seconds")
    event_expiry_s: int = setting(
        3600, min=0, max=604800,
        doc="MQTT 5: a broker drops an alert still queued for an offline subscriber after this long "
            "(an hour-old 'sit up' is noise), seconds; 0 = never")
    command_max_age_s: float = setting(
        60.0, min=1, max=86400,
        doc='refuse a command whose "ts" field (Unix time) is older than this, seconds')

    def __repr__(self) -> str:
        # A frozen dataclass repr would print the password into any log line that shows settings.
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = "'***'" if f.metadata.get("secret") and value else repr(value)
            parts.append(f"{f.name}={shown}")
        return f"MqttSettings({', '.join(parts)})"

    def validate(self) -> None:
        if self.password and self.password_file:
            raise SettingsError("password_file: set either password or password_file, not both")
        if (self.cert_file == "") != (self.key_file == ""):
            raise SettingsError("cert_file: cert_file and key_file go together")


@dataclass(frozen=True)
class HomeAssistantSettings:
    """Home Assistant MQTT discovery."""

    discovery: bool = setting(True, doc="publish Home Assistant discovery so entities appear")
    discovery_prefix: str = setting("homeassistant", pattern=TOPIC_WORD, doc="HA discovery prefix")
    expire_after_s: int = setting(
        120, min=10, max=86400, doc="HA marks the angle unavailable after this long without data, seconds")
    status_topic: str = setting(
        "", pattern=r"([A-Za-z0-9_\-/]+)?",
        doc='where Home Assistant announces itself (online/offline); "" = <discovery_prefix>/status')
    birth_delay_max_s: float = setting(
        5.0, min=0, max=60,
        doc="after HA announces online, wait a random 0..this before re-announcing (spreads load), seconds")
