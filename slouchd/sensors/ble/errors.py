"""Sorting BLE failures: retry soon (transient), no Bluetooth at all (retry, never a wedge), other.

* :func:`is_transient`: BlueZ ``InProgress`` / ``NotReady`` / "Software caused connection abort"
  (and bleak-retry-connector's list of transient errors) mean "try again in a moment";
* :func:`bluetooth_missing`: no system D-Bus, no bluetoothd, no adapter, adapter powered off or
  access denied: restarting slouchd cannot fix these, so they never count towards a wedge;
* anything else is an adapter (or sensor) failure: backed off, and a wedge when it lasts.

See docs/sensors.md ("No Bluetooth at all: wait for it, do not restart").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slouchd.sensors.base import SourceFatal

if TYPE_CHECKING:
    from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError


class AdapterWedged(SourceFatal):
    """The Bluetooth adapter failed every attempt for ``[ble] wedged_exit_s``: exit and restart.

    The message says what failed and for how long, not what the caller does about it (the
    daemon's log line adds that). Exit code 75 (EX_TEMPFAIL), see :class:`SourceFatal`.
    """

    exit_code = 75


class StepFailed(RuntimeError):
    """A start-up or haptic step failed."""


class LinkLost(RuntimeError):
    """The sensor disconnected while the link was being set up."""


_TRANSIENT_MARKERS: tuple[str, ...] = (
    "InProgress", "NotReady", "Software caused connection abort", "le-connection-abort-by-local",
    "br-connection-canceled",
)
try:  # bleak-retry-connector's list grows with field reports; use it when importable.
    from bleak_retry_connector import TRANSIENT_ERRORS as _BRC_TRANSIENT

    _TRANSIENT_MARKERS = (*_TRANSIENT_MARKERS, *sorted(_BRC_TRANSIENT))
except ImportError:  # pragma: no cover - it is a declared dependency
    pass


def is_transient(err: BaseException) -> bool:
    """True for BlueZ errors that mean "try again in a moment" rather than "back off"."""
    text = f"{type(err).__name__} {err}"
    return any(m in text for m in _TRANSIENT_MARKERS)


def one_line(err: BaseException) -> str:
    """``"TypeName: first line of the message"`` for logs and ``status.last_error``."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


@dataclass(frozen=True)
class Missing:
    """What is missing when there is no Bluetooth to talk to, and what to do about it."""

    kind: str  # no_dbus, no_bluez, no_adapter, powered_off, denied
    what: str
    fix: str


#: D-Bus errors meaning "nobody owns org.bluez": bluetoothd is not running (or not installed).
_NO_OWNER_ERRORS = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner")
_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
_ADAPTER_NOT_FOUND = re.compile(r"adapter '([^']*)' not found")
_DBUS_FIX = "start it (`sudo systemctl start dbus`), then BlueZ (`sudo systemctl start bluetooth`)"
_BLUEZ_FIX = "start it: `sudo systemctl start bluetooth` (install the bluez package if it is missing)"
_POLICY_FIX = "run slouchd as a user BlueZ's D-Bus policy admits (group bluetooth, see docs/install.md)"
_POWER_FIX = "switch it on: `rfkill unblock bluetooth; bluetoothctl power on`"
_ADAPTER_FIX = "plug one in; `bluetoothctl list` shows what BlueZ sees"


def _system_bus_address() -> str:
    """Where dbus-fast looks for the system bus (its default unless the environment says otherwise)."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/var/run/dbus/system_bus_socket"


def bluetooth_missing(err: BaseException, adapter: str = "") -> Missing | None:
    """Classify a scan/connect failure as "no Bluetooth to talk to", or None for anything else.

    These failures are not a wedged adapter: restarting slouchd cannot make D-Bus, bluetoothd or
    an adapter appear. Recognised as bleak (>= 2) on BlueZ reports them:

    * ``FileNotFoundError`` / ``ConnectionRefusedError`` from dbus-fast: no system bus socket, or
      nobody listening on it; ``PermissionError``: not allowed to open it;
    * ``BleakDBusError`` ``org.freedesktop.DBus.Error.ServiceUnknown`` ("The name org.bluez was not
      provided by any .service files") or ``NameHasNoOwner``: bluetoothd is not running;
      ``org.freedesktop.DBus.Error.AccessDenied``: BlueZ's D-Bus policy refuses this user;
    * ``BleakBluetoothNotAvailableError`` by its ``reason`` (no adapter, no LE central role,
      powered off, denied);
    * ``BleakError`` "adapter 'hci1' not found" for a configured ``[ble] adapter`` that is absent.

    Args:
        err: the exception from ``BleakScanner.start()`` or ``BleakClient.connect()``.
        adapter: the configured ``[ble] adapter`` ("" = the default adapter), for the message.
    """
    from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError

    if isinstance(err, OSError):
        return _bus_missing(err)
    if isinstance(err, BleakDBusError):
        return _bluez_missing(err)
    if isinstance(err, BleakBluetoothNotAvailableError):
        return _not_available(err)
    if isinstance(err, BleakError):
        return _adapter_not_found(err, adapter)
    return None


def _bus_missing(err: OSError) -> Missing | None:
    """dbus-fast's errors opening the system bus socket."""
    bus = _system_bus_address()
    if isinstance(err, FileNotFoundError):
        return Missing("no_dbus", f"the system D-Bus is not running (no socket at {bus})", _DBUS_FIX)
    if isinstance(err, ConnectionRefusedError):
        return Missing("no_dbus", f"the system D-Bus is not running (connection refused at {bus})", _DBUS_FIX)
    if isinstance(err, PermissionError):
        return Missing("denied", f"the system D-Bus socket {bus} is not accessible ({one_line(err)})",
                       _POLICY_FIX)
    return None


def _bluez_missing(err: BleakDBusError) -> Missing | None:
    """A D-Bus error saying nobody owns org.bluez, or that its policy refuses us."""
    if err.dbus_error in _NO_OWNER_ERRORS:
        return Missing("no_bluez", "BlueZ (bluetoothd) is not running (org.bluez is not on the system "
                                   "D-Bus)", _BLUEZ_FIX)
    if err.dbus_error == _ACCESS_DENIED:
        return Missing("denied", f"BlueZ refused access over D-Bus ({err.dbus_error_details or err})",
                       _POLICY_FIX)
    return None


def _not_available(err: BleakBluetoothNotAvailableError) -> Missing:
    """bleak's own "Bluetooth not available", sorted by its public ``reason`` (bleak >= 2)."""
    from bleak.exc import BleakBluetoothNotAvailableReason as Reason

    # The readable message is the first constructor argument; bleak offers no attribute for it
    # and str() of a two-argument exception is the tuple's repr, so args[0] is the way to read it.
    detail = str(err.args[0]) if err.args else "Bluetooth not available"
    reason = err.reason
    if reason is Reason.POWERED_OFF:
        return Missing("powered_off", f"the Bluetooth adapter is powered off ({detail})", _POWER_FIX)
    if reason in (Reason.DENIED_BY_USER, Reason.DENIED_BY_SYSTEM, Reason.DENIED_BY_UNKNOWN):
        return Missing("denied", f"access to Bluetooth denied ({detail})", _POLICY_FIX)
    # NO_BLUETOOTH, NO_BLE_CENTRAL_ROLE, UNKNOWN: nothing usable to talk to.
    return Missing("no_adapter", f"no Bluetooth LE adapter ({detail})", _ADAPTER_FIX)


def _adapter_not_found(err: BaseException, adapter: str) -> Missing | None:
    """bleak's "adapter 'hci1' not found" for a configured adapter that is absent."""
    found = _ADAPTER_NOT_FOUND.search(str(err))
    if found is None:
        return None
    configured = f' ([ble] adapter = "{adapter}")' if adapter else ""
    return Missing("no_adapter", f"Bluetooth adapter {found.group(1)} not found{configured}",
                   "plug it in or fix the name; `bluetoothctl list` shows what BlueZ sees")
