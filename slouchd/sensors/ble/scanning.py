"""Finding the sensor: scan windows under the adapter lock, target and profile matching.

One scan window at a time per adapter; the first advertisement of the target that a profile
matches ends it. Advertisement-only sensors (``stream.passive``) get a long-running scanner of
their own (:meth:`Scanner.start_listening`), passive where BlueZ allows. See docs/sensors.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slouchd.sensors.ble.context import SourceContext
from slouchd.sensors.ble.errors import bluetooth_missing, one_line
from slouchd.sensors.ble.link import adapter_lock
from slouchd.sensors.profiles import Profile, match_profile
from slouchd.timing import within

#: Cap on scanner start/stop, seconds (habluetooth gives a scanner 15 s to start).
SCANNER_TIMEOUT_S = 15.0

#: A MAC address (Linux, Windows) or a CoreBluetooth device UUID (macOS).
ADDRESS_RE = re.compile(
    r"(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}|[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")

DetectionCallback = Callable[[Any, Any], None]


@dataclass
class Sighting:
    """A sensor seen in a scan: bleak's device and advertisement, and the profile it matched."""

    device: Any
    advertisement: Any
    profile: Profile


def scanner_kwargs(adapter: str, passive: bool, manufacturer_id: int = -1) -> dict[str, Any]:
    """``BleakScanner`` keyword arguments: scanning mode, adapter, passive-scan patterns."""
    kwargs: dict[str, Any] = {"scanning_mode": "passive" if passive else "active"}
    bluez: dict[str, Any] = {}
    if adapter:
        bluez["adapter"] = adapter
    if passive and manufacturer_id >= 0:
        # BlueZ passive scanning needs or_patterns (advertisement monitors).
        from bleak.args.bluez import OrPattern
        from bleak.assigned_numbers import AdvertisementDataType

        bluez["or_patterns"] = [OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA,
                                          manufacturer_id.to_bytes(2, "little"))]
    if bluez:
        kwargs["bluez"] = bluez
    return kwargs


def advertised_name(device: Any, adv: Any) -> str | None:
    return getattr(adv, "local_name", None) or getattr(device, "name", None)


def is_target(target: str, device: Any, adv: Any) -> bool:
    """Does this advertisement come from ``target`` (address, or advertised name; "" = any)?"""
    if not target:
        return True
    if ADDRESS_RE.fullmatch(target):
        return str(device.address).lower() == target.lower()
    return (advertised_name(device, adv) or "") == target


class Scanner:
    """Scans for one source's sensor.

    Args:
        ctx: the source's shared state.
        scanner_cls: a class with bleak's ``BleakScanner`` API.
        fixed_profile: the configured profile, or None to match one by advertisement.
        profiles: what to match against when ``fixed_profile`` is None.
    """

    def __init__(self, ctx: SourceContext, scanner_cls: Any, fixed_profile: Profile | None,
                 profiles: Mapping[str, Profile]) -> None:
        self.ctx = ctx
        self.scanner_cls = scanner_cls
        self.fixed_profile = fixed_profile
        self.profiles = profiles

    def profile_for(self, device: Any, adv: Any) -> Profile | None:
        if self.fixed_profile is not None:
            return self.fixed_profile
        return match_profile(self.profiles.values(), advertised_name(device, adv),
                             getattr(adv, "service_uuids", []) or [],
                             getattr(adv, "manufacturer_data", {}) or {})

    async def scan(self) -> Sighting | None:
        """One scan window under the adapter lock: the target's first advertisement, or None."""
        ctx = self.ctx
        found: asyncio.Future[Sighting | None] = asyncio.get_running_loop().create_future()

        def on_advertisement(device: Any, adv: Any) -> None:
            if found.done() or not is_target(ctx.target, device, adv):
                return
            prof = self.profile_for(device, adv)
            if prof is None:
                ctx.note("no_profile", f"{device.address} advertises but matches no profile "
                                       "(give --profile / wearer.profile)")
                return
            found.set_result(Sighting(device, adv, prof))

        scanner = self.scanner_cls(detection_callback=on_advertisement,
                                   **scanner_kwargs(ctx.settings.adapter, False))
        async with adapter_lock(ctx.settings.adapter):
            if ctx.closed:
                return None
            ctx.waiting.append(found)  # aclose() resolves it to None
            try:
                await within(ctx.clock, scanner.start(), SCANNER_TIMEOUT_S)
            except BaseException:
                ctx.waiting.remove(found)
                raise
            try:
                with contextlib.suppress(TimeoutError):
                    await within(ctx.clock, asyncio.shield(found), ctx.settings.scan_window_s)
            finally:
                ctx.waiting.remove(found)
                await ctx.bounded(scanner.stop(), SCANNER_TIMEOUT_S, "scanner_stop", "stopping the scanner")
        sighting = found.result() if found.done() else None
        if sighting is not None:
            rssi = getattr(sighting.advertisement, "rssi", None)
            if rssi is not None:
                ctx.status.rssi_dbm = float(rssi)
        return sighting

    async def start_listening(self, manufacturer_id: int, callback: DetectionCallback) -> Any:
        """A running scanner for an advertisement-only sensor: passive if allowed, else active.

        Raises:
            Exception: whatever starting the active scanner raised.
        """
        ctx = self.ctx
        if ctx.settings.passive_scan:
            try:
                passive = self.scanner_cls(detection_callback=callback,
                                           **scanner_kwargs(ctx.settings.adapter, True, manufacturer_id))
                await within(ctx.clock, passive.start(), SCANNER_TIMEOUT_S)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as err:
                if bluetooth_missing(err, ctx.settings.adapter) is None:  # else active fails and says so
                    ctx.note("passive", f"passive scanning unavailable ({one_line(err)}); "
                             "scanning actively", logging.INFO)
            else:
                return passive
        scanner = self.scanner_cls(detection_callback=callback, **scanner_kwargs(ctx.settings.adapter, False))
        await within(ctx.clock, scanner.start(), SCANNER_TIMEOUT_S)
        return scanner
