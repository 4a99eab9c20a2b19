"""Bluetooth LE sensor sessions on bleak: find, connect, stream, survive real radios.

:class:`BleSensorSource` is a :class:`~slouchd.sensors.base.SensorSource`. One supervisor loop
per sensor goes through scan -> connect -> notify + start-up steps -> stream, and starts again
whenever the link dies. The parts, each small and named for its job:

* :mod:`.session` - the source the daemon iterates: supervision, backoff, the haptic buzz;
* :mod:`.scanning` - scan windows under the per-adapter lock, target and profile matching;
* :mod:`.connect` - a fresh ``BleakClient`` per link, notifications, start-up steps, teardown;
* :mod:`.steps` - profile steps as a table of handlers keyed by ``op``;
* :mod:`.link` - one connection, its :class:`LinkState` and the samples it holds for the consumer;
* :mod:`.streaming` - the notification callback (the per-packet path), the consumer and the
  silence watchdog;
* :mod:`.ticks` - :class:`~slouchd.sensors.ble.ticks.TickGate`: wake the consumer once per 0.1 s tick,
  or only at the tick its next hand-over waits for (``hand_over``: once a second while calm);
* :mod:`.stamping` - pure sample stamping (arrival times and sensor clocks -> Unix seconds);
* :mod:`.health` - the wedge clock and Bluetooth outages;
* :mod:`.errors` - transient errors, missing Bluetooth, :class:`AdapterWedged`.

bleak-retry-connector: we use its ``close_stale_connections_by_address`` (BlueZ keeps phantom
connections after crashes) and its vocabulary of transient errors, but not
``establish_connection``: it sleeps on the real clock and retries up to 4 x 60 s inside one call
(holding our adapter lock, unbounded by ``connect_timeout_s``), and this loop already owns retry,
backoff and wedge detection, which must be testable on a fake clock.

Everything other modules use is importable from here (``from slouchd.sensors.ble import ...``).
See docs/sensors.md.
"""

from slouchd.sensors.ble.connect import DISCONNECT_TIMEOUT_S, STOP_NOTIFY_TIMEOUT_S
from slouchd.sensors.ble.errors import (
    AdapterWedged,
    LinkLost,
    Missing,
    StepFailed,
    bluetooth_missing,
    is_transient,
    one_line,
)
from slouchd.sensors.ble.link import QUEUE_MAX, Link, LinkState, adapter_lock
from slouchd.sensors.ble.scanning import ADDRESS_RE, SCANNER_TIMEOUT_S, Sighting
from slouchd.sensors.ble.session import BACKOFF_MIN_S, TRANSIENT_RETRY_S, BleSensorSource, make_ble_source
from slouchd.sensors.ble.stamping import SENSOR_CLOCK_RESYNC_S

__all__ = [
    "ADDRESS_RE",
    "BACKOFF_MIN_S",
    "DISCONNECT_TIMEOUT_S",
    "QUEUE_MAX",
    "SCANNER_TIMEOUT_S",
    "SENSOR_CLOCK_RESYNC_S",
    "STOP_NOTIFY_TIMEOUT_S",
    "TRANSIENT_RETRY_S",
    "AdapterWedged",
    "BleSensorSource",
    "Link",
    "LinkLost",
    "LinkState",
    "Missing",
    "Sighting",
    "StepFailed",
    "adapter_lock",
    "bluetooth_missing",
    "is_transient",
    "make_ble_source",
    "one_line",
]
