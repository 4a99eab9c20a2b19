"""Settings of the Bluetooth LE layer (``[ble]``)."""

from __future__ import annotations

from dataclasses import dataclass

from slouchd.schema import setting


@dataclass(frozen=True)
class BleSettings:
    """How sensors are found, connected and kept streaming."""

    adapter: str = setting("", doc='Bluetooth adapter, e.g. "hci0"; "" = the system default')
    connect_timeout_s: float = setting(
        20.0, min=2, max=120, doc="give up one connection attempt after, seconds")
    silence_timeout_s: float = setting(
        5.0, min=1, max=120, doc="no notification for this long while connected = reconnect, seconds")
    backoff_max_s: float = setting(
        120.0, min=1, max=3600, doc="longest wait between reconnection attempts, seconds")
    wedged_exit_s: float = setting(
        900.0, min=60, max=86400,
        doc="adapter failing every attempt this long = exit non-zero so systemd restarts us (no D-Bus, "
            "BlueZ or adapter at all never counts: that is retried), seconds")
    haptic: bool = setting(True, doc="buzz the sensor on alerts where its profile can")
    profiles_dir: str = setting("", doc='extra directory of firmware profile TOML files; "" = none')
    scan_window_s: float = setting(
        10.0, min=1, max=120, doc="listen for the sensor's advertisement this long per attempt, seconds")
    passive_scan: bool = setting(
        True, doc="listen passively for advertisement-only sensors (RuuviTag) where BlueZ allows")
    bluez_start_notify: bool = setting(
        True, doc="subscribe with BlueZ StartNotify (true) or AcquireNotify (false)")
