"""Bluetooth LE sensor sessions on bleak: find, connect, stream, survive real radios.

:class:`BleSensorSource` is a :class:`~slouchd.sensors.base.SensorSource`. One supervisor loop
per sensor goes through scan -> connect -> notify + start-up steps -> stream, and starts again
whenever the link dies:

* a **fresh** ``BleakClient`` for every connection, from a ``BLEDevice`` seen in a scan just
  before (BlueZ forgets devices; reusing clients makes connecting less reliable);
* one connection attempt at a time per adapter (a module-level asyncio lock per adapter);
* each attempt is bounded by ``connect_timeout_s``; every ``disconnect()`` by 5 s (it can hang);
* after a disconnect the sensor is reconnected as soon as it advertises again, otherwise attempts
  back off exponentially with jitter up to ``backoff_max_s``; BlueZ ``InProgress`` / ``NotReady``
  / "Software caused connection abort" (and bleak-retry-connector's transient errors) are
  retried after a short pause;
* a notification-silence watchdog: no data for ``silence_timeout_s`` while "connected" means the
  link is a zombie: tear down and reconnect;
* ONE idempotent teardown per link; callbacks of a torn-down link are ignored, so handlers never
  double and samples are never duplicated across reconnects;
* if the adapter fails every attempt for ``wedged_exit_s``, :class:`AdapterWedged` is raised out
  of the iterator: the daemon exits non-zero and systemd restarts it (see docs/sensors.md);
* but no Bluetooth at all (no system D-Bus, no BlueZ on it, no adapter, adapter powered off or
  D-Bus access denied, see :func:`bluetooth_missing`) is not a wedge: restarting cannot fix it.
  The source keeps retrying with the normal capped backoff, warns once what is missing and how
  to fix it, and says when Bluetooth is back.

bleak-retry-connector: we use its ``close_stale_connections_by_address`` (BlueZ keeps phantom
connections after crashes) and its vocabulary of transient errors, but not
``establish_connection``: it sleeps on the real clock and retries up to 4 x 60 s inside one call
(holding our adapter lock, unbounded by ``connect_timeout_s``), and this loop already owns retry,
backoff and wedge detection, which must be testable on a fake clock.

Samples are stamped with the sensor's clock when the protocol has one (mapped onto Unix time at
the first frame of each link), else with host arrival time corrected for batching (samples are
spread back from the arrival at the profile's nominal rate). ``t_s`` is Unix-epoch seconds and
never goes backwards. Notification callbacks only enqueue ``(arrival, bytes)``; decoding happens
in the consumer's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from slouchd.model import Mount, SampleBatch
from slouchd.sensors.base import SensorStatus
from slouchd.sensors.decoders import ProfileDecoder
from slouchd.sensors.profiles import Profile, Step, load_profiles, match_profile
from slouchd.sensors.settings import BleSettings
from slouchd.timing import Clock, SystemClock, within

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Cap on every disconnect(), seconds (bleak-retry-connector and HA use 5 s too).
DISCONNECT_TIMEOUT_S = 5.0
#: Cap on scanner start/stop and stop_notify, seconds (habluetooth gives a scanner 15 s to start).
SCANNER_TIMEOUT_S = 15.0
STOP_NOTIFY_TIMEOUT_S = 2.0
#: First reconnection delay; doubles per failed attempt up to ``backoff_max_s``, seconds.
BACKOFF_MIN_S = 1.0
#: Pause before retrying after a transient BlueZ error, seconds (jittered 1x..2x).
TRANSIENT_RETRY_S = 0.5
#: Re-anchor a sensor clock that drifted this far from host time, seconds.
SENSOR_CLOCK_RESYNC_S = 2.0
#: Notifications buffered between the callback and the consumer before dropping ("overflow").
QUEUE_MAX = 2000

#: A MAC address (Linux, Windows) or a CoreBluetooth device UUID (macOS).
ADDRESS_RE = re.compile(
    r"(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}|[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")

_TRANSIENT_MARKERS = (
    "InProgress", "NotReady", "Software caused connection abort", "le-connection-abort-by-local",
    "br-connection-canceled",
)
try:  # bleak-retry-connector's list grows with field reports; use it when importable.
    from bleak_retry_connector import TRANSIENT_ERRORS as _BRC_TRANSIENT

    _TRANSIENT_MARKERS = (*_TRANSIENT_MARKERS, *sorted(_BRC_TRANSIENT))
except ImportError:  # pragma: no cover - it is a declared dependency
    pass


class AdapterWedged(RuntimeError):
    """The Bluetooth adapter failed every attempt for ``[ble] wedged_exit_s``: exit and restart.

    The message says what failed and for how long, not what the caller does about it (the
    daemon's log line adds that).
    """


class StepFailed(RuntimeError):
    """A start-up or haptic step failed."""


class LinkLost(RuntimeError):
    """The sensor disconnected while the link was being set up."""


_ADAPTER_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


def adapter_lock(adapter: str) -> asyncio.Lock:
    """The lock serialising scans and connection attempts on one adapter ("" = default adapter)."""
    locks = _ADAPTER_LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(adapter, asyncio.Lock())


def is_transient(err: BaseException) -> bool:
    """True for BlueZ errors that mean "try again in a moment" rather than "back off"."""
    text = f"{type(err).__name__} {err}"
    return any(m in text for m in _TRANSIENT_MARKERS)


@dataclass(frozen=True)
class Missing:
    """What is missing when there is no Bluetooth to talk to, and what to do about it."""

    kind: str  # no_dbus, no_bluez, no_adapter, powered_off, denied
    what: str
    fix: str


#: D-Bus errors meaning "nobody owns org.bluez": bluetoothd is not running (or not installed).
_NO_OWNER_ERRORS = ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner")
_ADAPTER_NOT_FOUND = re.compile(r"adapter '([^']*)' not found")
_DBUS_FIX = "start it (`sudo systemctl start dbus`), then BlueZ (`sudo systemctl start bluetooth`)"
_BLUEZ_FIX = "start it: `sudo systemctl start bluetooth` (install the bluez package if it is missing)"
_POLICY_FIX = "run slouchd as a user BlueZ's D-Bus policy admits (group bluetooth, see docs/install.md)"


def _system_bus_address() -> str:
    """Where dbus-fast looks for the system bus (its default unless the environment says otherwise)."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/var/run/dbus/system_bus_socket"


def bluetooth_missing(err: BaseException, adapter: str = "") -> Missing | None:
    """Classify a scan/connect failure as "no Bluetooth to talk to", or None for anything else.

    These failures are not a wedged adapter: restarting slouchd cannot make D-Bus, bluetoothd or
    an adapter appear. Recognised as bleak 3 on BlueZ reports them:

    * ``FileNotFoundError`` / ``ConnectionRefusedError`` from dbus-fast: no system bus socket, or
      nobody listening on it; ``PermissionError``: not allowed to open it;
    * ``BleakDBusError`` ``org.freedesktop.DBus.Error.ServiceUnknown`` ("The name org.bluez was not
      provided by any .service files") or ``NameHasNoOwner``: bluetoothd is not running;
      ``org.freedesktop.DBus.Error.AccessDenied``: BlueZ's D-Bus policy refuses this user;
    * ``BleakBluetoothNotAvailableError`` ("No Bluetooth adapters found.", no LE central role,
      "No powered Bluetooth adapters found.", D-Bus authentication denied);
    * ``BleakError`` "adapter 'hci1' not found" for a configured ``[ble] adapter`` that is absent.

    Args:
        err: the exception from ``BleakScanner.start()`` or ``BleakClient.connect()``.
        adapter: the configured ``[ble] adapter`` ("" = the default adapter), for the message.
    """
    from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError

    bus = _system_bus_address()
    if isinstance(err, FileNotFoundError):
        return Missing("no_dbus", f"the system D-Bus is not running (no socket at {bus})", _DBUS_FIX)
    if isinstance(err, ConnectionRefusedError):
        return Missing("no_dbus", f"the system D-Bus is not running (connection refused at {bus})", _DBUS_FIX)
    if isinstance(err, PermissionError):
        return Missing("denied", f"the system D-Bus socket {bus} is not accessible ({one_line(err)})",
                       _POLICY_FIX)
    if isinstance(err, BleakDBusError):
        if err.dbus_error in _NO_OWNER_ERRORS:
            return Missing("no_bluez", "BlueZ (bluetoothd) is not running (org.bluez is not on the system "
                                       "D-Bus)", _BLUEZ_FIX)
        if err.dbus_error == "org.freedesktop.DBus.Error.AccessDenied":
            return Missing("denied", f"BlueZ refused access over D-Bus ({err.dbus_error_details or err})",
                           _POLICY_FIX)
        return None
    if isinstance(err, BleakBluetoothNotAvailableError):
        reason = getattr(err.args[1], "name", "") if len(err.args) > 1 else ""
        detail = str(err.args[0]) if err.args else "Bluetooth not available"
        if reason == "POWERED_OFF":
            return Missing("powered_off", f"the Bluetooth adapter is powered off ({detail})",
                           "switch it on: `rfkill unblock bluetooth; bluetoothctl power on`")
        if reason.startswith("DENIED"):
            return Missing("denied", f"access to Bluetooth denied ({detail})", _POLICY_FIX)
        return Missing("no_adapter", f"no Bluetooth LE adapter ({detail})",
                       "plug one in; `bluetoothctl list` shows what BlueZ sees")
    if isinstance(err, BleakError):
        found = _ADAPTER_NOT_FOUND.search(str(err))
        if found:
            configured = f' ([ble] adapter = "{adapter}")' if adapter else ""
            return Missing("no_adapter", f"Bluetooth adapter {found.group(1)} not found{configured}",
                           "plug it in or fix the name; `bluetoothctl list` shows what BlueZ sees")
    return None


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


@dataclass
class Sighting:
    """A sensor seen in a scan: bleak's device and advertisement, and the profile it matched."""

    device: Any
    advertisement: Any
    profile: Profile


@dataclass(eq=False)
class _Link:
    """One connection. ``active`` goes False at teardown: its callbacks are ignored from then on."""

    number: int
    client: Any = None
    active: bool = True
    torn_down: bool = False
    lost: bool = False
    delivered: int = 0
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    subscribed: list[str] = field(default_factory=list)
    control: dict[str, asyncio.Queue[bytes]] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


_LOST = object()


def _default_stale_closer() -> Callable[[str], Awaitable[None]] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        from bleak_retry_connector import close_stale_connections_by_address
    except ImportError:  # pragma: no cover - declared dependency
        return None
    return close_stale_connections_by_address


class BleSensorSource:
    """A BLE IMU as a :class:`~slouchd.sensors.base.SensorSource` of :class:`SampleBatch`.

    Use as ``async with BleSensorSource(...) as src: async for batch in src: ...``. The iterator
    only ends when the source is closed; it raises :class:`AdapterWedged` when the adapter has
    failed every attempt for ``settings.wedged_exit_s``.

    Args:
        target: the sensor's address ("C4:AA:10:2B:33:01", or a CoreBluetooth UUID) or its
            advertised name; "" = the first sensor any profile matches.
        profile: the firmware profile, or None to pick one by advertisement.
        settings: the ``[ble]`` settings.
        profiles: profiles to match against when ``profile`` is None (default: built-in ones
            plus ``settings.profiles_dir``).
        scanner_cls: class with bleak's ``BleakScanner`` API (default: bleak's).
        client_cls: class with bleak's ``BleakClient`` API (default: bleak's).
        clock: monotonic/wall/sleep (default: the real clock).
        rng: random source for backoff jitter.
        close_stale: coroutine function closing BlueZ's stale connections to an address before
            connecting (default on Linux with bleak's classes: bleak-retry-connector's).
    """

    def __init__(
        self,
        target: str,
        profile: Profile | None,
        settings: BleSettings,
        *,
        profiles: Mapping[str, Profile] | None = None,
        scanner_cls: Any = None,
        client_cls: Any = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        close_stale: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        if scanner_cls is None or client_cls is None:
            import bleak

            real = scanner_cls is None and client_cls is None
            scanner_cls = scanner_cls or bleak.BleakScanner
            client_cls = client_cls or bleak.BleakClient
            if real and close_stale is None:
                close_stale = _default_stale_closer()
        self.target = target.strip()
        # Each sensor is its own subject for the journal's repeat limiter: one flapping sensor
        # must not use up another one's quota of lines.
        self._log = logging.LoggerAdapter(log, {"rate_key": self.target or "ble"})
        self.settings = settings
        self.status = SensorStatus()
        self._fixed_profile = profile
        self._profile = profile
        self._profiles = dict(profiles) if profiles is not None else (
            {} if profile is not None else load_profiles(settings.profiles_dir or None))
        self._scanner_cls = scanner_cls
        self._client_cls = client_cls
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._close_stale = close_stale
        self._decoder: ProfileDecoder | None = ProfileDecoder(profile) if profile else None
        self._epoch_offset = self._clock.wall() - self._clock.monotonic()
        self._sensor_offset: float | None = None
        self._last_t: float | None = None
        self._link: _Link | None = None
        self._links = 0
        self._streams = 0
        self._failing_since: float | None = None
        self._missing: Missing | None = None  # what is missing while there is no Bluetooth
        self._missing_since = 0.0
        self._missing_stage = ""
        self._mute_until = float("-inf")
        self._buzz_lock = asyncio.Lock()
        self._logged: set[str] = set()
        self._closed = False
        self._closed_event = asyncio.Event()
        self._waiting: list[asyncio.Future[Any]] = []  # scan / listen waits that close must end
        self._agen: AsyncIterator[SampleBatch] | None = None

    # -- public surface ------------------------------------------------------------------------

    @property
    def profile(self) -> Profile | None:
        """The profile in use: the one given, or the one matched at the first sighting."""
        return self._profile

    @property
    def mount(self) -> Mount | None:
        """The profile's usual mount as worn (None until a profile is known)."""
        return self._profile.usual_mount if self._profile else None

    async def __aenter__(self) -> BleSensorSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop streaming: tear the link down (bounded in time) and end the iterator."""
        self._closed = True
        self._closed_event.set()
        for fut in self._waiting:
            if not fut.done():
                fut.set_result(None)
        if self._agen is not None:
            agen, self._agen = self._agen, None
            with contextlib.suppress(RuntimeError):  # already running in another task
                await agen.aclose()  # type: ignore[attr-defined]
        if self._link is not None:
            await self._teardown(self._link)

    def __aiter__(self) -> AsyncIterator[SampleBatch]:
        return self

    async def __anext__(self) -> SampleBatch:
        if self._closed:
            raise StopAsyncIteration
        if self._agen is None:
            self._agen = self._run()
        return await self._agen.__anext__()

    async def buzz(self, level: int) -> bool:
        """Run the profile's vibrate/beep write; False when disabled, impossible or failed.

        Samples arriving from the start of the buzz until ``buzz_s + settle_s`` after it are
        dropped (``status.dropped["haptic"]``): a running motor corrupts the accelerometer.
        ``level`` (1..5) is logged; current profiles have one buzz pattern.
        """
        prof, link = self._profile, self._link
        if (not self.settings.haptic or prof is None or prof.haptic is None or link is None
                or not link.active or not self.status.connected):
            return False
        h = prof.haptic
        async with self._buzz_lock:
            start = self._clock.monotonic()
            self._mute(start + h.buzz_s + h.settle_s)
            try:
                for step in h.steps:
                    await self._run_step(link, step)
            except StepFailed as err:
                self._note("haptic", f"buzz failed: {err}", logging.WARNING)
                return False
            self._log.info("%s: buzz (level %d)", self._who(), level)
            if h.stop:
                link.tasks.append(asyncio.create_task(self._stop_buzz(link, h.buzz_s, h.settle_s)))
            return True

    # -- supervisor ---------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[SampleBatch]:
        attempt = 0
        while not self._closed:
            self._check_wedged()
            try:
                sighting = await self._scan()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._failed("scan", err)
                await self._pause(attempt, err)
                attempt += 1
                continue
            if self._closed:
                return
            self._bluetooth_back("scan")
            if sighting is None:
                # The scanner works and the sensor is simply not around: not an adapter failure.
                self._failing_since = None
                await self._nap(self._backoff_s(attempt))
                attempt += 1
                continue
            self._use_profile(sighting.profile)
            if sighting.profile.stream.passive:
                delivered = 0
                async for batch in self._listen(sighting):
                    delivered += 1
                    attempt = 0
                    yield batch
                if not delivered:
                    await self._nap(self._backoff_s(attempt))
                    attempt += 1
                continue
            try:
                link = await self._open(sighting)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._failed("connect", err)
                await self._pause(attempt, err)
                if not is_transient(err):
                    attempt += 1
                continue
            self._bluetooth_back("connect")
            try:
                async for batch in self._stream(link):
                    attempt = 0
                    yield batch
            finally:
                await self._teardown(link)
            if not link.delivered:
                # Connected but never streamed (setup races, instant drops): do not spin.
                self._failed("stream", RuntimeError(self.status.last_error or "no samples"))
                await self._pause(attempt, None)
                attempt += 1

    def _use_profile(self, profile: Profile) -> None:
        if self._profile is None or self._profile.name != profile.name:
            self._log.info("%s: using profile %s", self._who(), profile.name)
            self._profile = profile
            self._decoder = ProfileDecoder(profile)

    async def _pause(self, attempt: int, err: BaseException | None) -> None:
        if err is not None and is_transient(err):
            await self._nap(TRANSIENT_RETRY_S * (1.0 + self._rng.random()))
        else:
            await self._nap(self._backoff_s(attempt))
        if not self._closed:
            self._check_wedged()

    async def _nap(self, seconds: float) -> None:
        """Sleep on the clock, waking early when the source is closed."""
        with contextlib.suppress(TimeoutError):
            await within(self._clock, self._closed_event.wait(), seconds)

    def _backoff_s(self, attempt: int) -> float:
        """Exponential backoff with jitter: base 1, 2, 4... s capped, times 0.5..1."""
        base = min(self.settings.backoff_max_s, BACKOFF_MIN_S * 2.0 ** min(attempt, 30))
        return base * (0.5 + 0.5 * self._rng.random())

    def _failed(self, stage: str, err: BaseException) -> None:
        missing = bluetooth_missing(err, self.settings.adapter)
        if missing is not None:
            self._no_bluetooth(stage, missing)
            return
        self._bluetooth_back(stage)  # it answered, so the stack is there, even if this failed
        now = self._clock.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        self.status.last_error = f"{stage}: {one_line(err)}"
        self._log.warning("%s: %s failed (%s)", self._who(), stage, one_line(err))

    def _no_bluetooth(self, stage: str, missing: Missing) -> None:
        """No D-Bus / BlueZ / adapter: not a wedge (a restart cannot fix it), so keep retrying.

        One warning per outage; a change of what is missing is logged at info, repeats at debug.
        """
        # The wedge clock measures an adapter that exists and fails: an outage restarts it.
        self._failing_since = None
        self.status.last_error = f"{stage}: no Bluetooth: {missing.what}"
        previous, self._missing, self._missing_stage = self._missing, missing, stage
        if previous is None:
            self._missing_since = self._clock.monotonic()
            self._log.warning("%s: no Bluetooth: %s; %s; retrying at least every %g s", self._who(),
                              missing.what, missing.fix, self.settings.backoff_max_s)
        elif previous.kind != missing.kind:
            self._log.info("%s: still no Bluetooth, now: %s; %s", self._who(), missing.what, missing.fix)
        else:
            self._log.debug("%s: %s failed: no Bluetooth: %s", self._who(), stage, missing.what)

    def _bluetooth_back(self, stage: str) -> None:
        """Say once that Bluetooth answers again: ``stage`` ("scan", "connect") worked or failed otherwise.

        Only the stage that found Bluetooth missing ends the outage, so a scan that works while
        every connect still finds no BlueZ does not log "back" and "missing" on every attempt.
        """
        if self._missing is None or stage != self._missing_stage:
            return
        self._log.info("%s: Bluetooth is back (%s answers again after %.0f s without: %s)", self._who(),
                       stage, self._clock.monotonic() - self._missing_since, self._missing.what)
        self._missing = None

    def _check_wedged(self) -> None:
        since = self._failing_since
        if since is not None and self._clock.monotonic() - since >= self.settings.wedged_exit_s:
            # One statement of fact; the daemon's CRITICAL line adds "exiting so systemd restarts us".
            raise AdapterWedged(
                f"{self.settings.adapter or 'the default adapter'} failed every attempt for "
                f"{self._clock.monotonic() - since:.0f} s (last: {self.status.last_error})")

    # -- scanning -----------------------------------------------------------------------------

    def _scanner_kwargs(self, passive: bool, manufacturer_id: int = -1) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"scanning_mode": "passive" if passive else "active"}
        bluez: dict[str, Any] = {}
        if self.settings.adapter:
            bluez["adapter"] = self.settings.adapter
        if passive and manufacturer_id >= 0:
            # BlueZ passive scanning needs or_patterns (advertisement monitors).
            from bleak.args.bluez import OrPattern
            from bleak.assigned_numbers import AdvertisementDataType

            bluez["or_patterns"] = [OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA,
                                              manufacturer_id.to_bytes(2, "little"))]
        if bluez:
            kwargs["bluez"] = bluez
        return kwargs

    def _is_target(self, device: Any, adv: Any) -> bool:
        t = self.target
        if not t:
            return True
        if ADDRESS_RE.fullmatch(t):
            return str(device.address).lower() == t.lower()
        name = getattr(adv, "local_name", None) or getattr(device, "name", None) or ""
        return name == t

    def _profile_for(self, device: Any, adv: Any) -> Profile | None:
        if self._fixed_profile is not None:
            return self._fixed_profile
        name = getattr(adv, "local_name", None) or getattr(device, "name", None)
        return match_profile(self._profiles.values(), name, getattr(adv, "service_uuids", []) or [],
                             getattr(adv, "manufacturer_data", {}) or {})

    async def _scan(self) -> Sighting | None:
        """One scan window under the adapter lock: the target's first advertisement, or None."""
        found: asyncio.Future[Sighting | None] = asyncio.get_running_loop().create_future()

        def on_advertisement(device: Any, adv: Any) -> None:
            if found.done() or not self._is_target(device, adv):
                return
            prof = self._profile_for(device, adv)
            if prof is None:
                self._note("no_profile", f"{device.address} advertises but matches no profile "
                                         "(give --profile / wearer.profile)")
                return
            found.set_result(Sighting(device, adv, prof))

        scanner = self._scanner_cls(detection_callback=on_advertisement, **self._scanner_kwargs(False))
        async with adapter_lock(self.settings.adapter):
            if self._closed:
                return None
            self._waiting.append(found)  # aclose() resolves it to None
            try:
                await within(self._clock, scanner.start(), SCANNER_TIMEOUT_S)
            except BaseException:
                self._waiting.remove(found)
                raise
            try:
                with contextlib.suppress(TimeoutError):
                    await within(self._clock, asyncio.shield(found), self.settings.scan_window_s)
            finally:
                self._waiting.remove(found)
                await self._bounded(scanner.stop(), SCANNER_TIMEOUT_S, "scanner_stop", "stopping the scanner")
        sighting = found.result() if found.done() else None
        if sighting is None:
            return None
        rssi = getattr(sighting.advertisement, "rssi", None)
        if rssi is not None:
            self.status.rssi_dbm = float(rssi)
        return sighting

    async def _listen(self, sighting: Sighting) -> AsyncIterator[SampleBatch]:
        """Advertisement-only sensors: keep a scanner running and decode manufacturer data."""
        prof = sighting.profile
        mid = prof.match.manufacturer_id
        address = str(sighting.device.address).lower()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_MAX)
        listening = True
        closed = asyncio.ensure_future(self._closed_event.wait())

        def on_advertisement(device: Any, adv: Any) -> None:
            if not listening or str(device.address).lower() != address:
                return
            data = (getattr(adv, "manufacturer_data", None) or {}).get(mid)
            if data is None:
                return
            if adv.rssi is not None:
                self.status.rssi_dbm = float(adv.rssi)
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((self._clock.monotonic(), bytes(data)))

        scanner = None
        if self.settings.passive_scan:
            try:
                scanner = self._scanner_cls(detection_callback=on_advertisement,
                                            **self._scanner_kwargs(True, mid))
                await within(self._clock, scanner.start(), SCANNER_TIMEOUT_S)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as err:
                if bluetooth_missing(err, self.settings.adapter) is None:  # else active fails and says so
                    self._note("passive", f"passive scanning unavailable ({one_line(err)}); "
                               "scanning actively", logging.INFO)
                scanner = None
        if scanner is None:
            scanner = self._scanner_cls(detection_callback=on_advertisement, **self._scanner_kwargs(False))
            try:
                await within(self._clock, scanner.start(), SCANNER_TIMEOUT_S)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as err:
                self._failed("scan", err)
                return
        assert self._decoder is not None
        self._decoder.reset()
        self._sensor_offset = None
        self._links += 1
        if self._streams:
            self.status.reconnects += 1
        self._streams += 1
        self.status.connected = True
        try:
            while not self._closed:
                getter = asyncio.ensure_future(queue.get())
                try:
                    await within(self._clock, asyncio.wait({getter, closed},
                                                           return_when=asyncio.FIRST_COMPLETED),
                                 self._silence_s())
                except TimeoutError:
                    getter.cancel()
                    self.status.last_error = f"no advertisement for {self._silence_s():g} s"
                    self._log.warning("%s: %s; restarting the scanner", self._who(), self.status.last_error)
                    return
                if not getter.done():  # closed
                    getter.cancel()
                    return
                arrival, data = getter.result()
                batch = self._decode(arrival, data)
                if batch is not None:
                    self._failing_since = None
                    yield batch
        finally:
            listening = False
            closed.cancel()
            self.status.connected = False
            await self._bounded(scanner.stop(), SCANNER_TIMEOUT_S, "scanner_stop", "stopping the scanner")

    # -- connecting ---------------------------------------------------------------------------

    async def _open(self, sighting: Sighting) -> _Link:
        """Connect with a new client, start notifications, run the start-up steps."""
        prof = sighting.profile
        self._links += 1
        link = _Link(self._links)
        self._link = link

        def on_disconnect(_client: Any) -> None:
            if link.active and not link.lost:
                link.lost = True
                with contextlib.suppress(asyncio.QueueFull):
                    link.queue.put_nowait(_LOST)

        kwargs: dict[str, Any] = {"timeout": self.settings.connect_timeout_s}
        if self.settings.adapter:
            kwargs["bluez"] = {"adapter": self.settings.adapter}
        address = str(sighting.device.address)
        try:
            async with adapter_lock(self.settings.adapter):
                if self._close_stale is not None:
                    await self._bounded(self._close_stale(address), DISCONNECT_TIMEOUT_S * 2, "stale",
                                        "closing stale connections")
                link.client = self._client_cls(sighting.device, disconnected_callback=on_disconnect, **kwargs)
                await within(self._clock, link.client.connect(), self.settings.connect_timeout_s)
            await self._setup(link, prof)
        except BaseException:
            await self._teardown(link)
            raise
        return link

    async def _setup(self, link: _Link, prof: Profile) -> None:
        def on_notify(_char: Any, data: bytearray) -> None:
            if not link.active:
                return
            try:
                link.queue.put_nowait((self._clock.monotonic(), bytes(data)))
            except asyncio.QueueFull:
                self.status.count_drop("overflow")

        await self._start_notify(link, prof.stream.notify_uuid, on_notify)
        for step in prof.startup:
            await self._run_step(link, step)
            if link.lost:
                raise LinkLost("the sensor disconnected during setup")
        if link.lost:
            raise LinkLost("the sensor disconnected during setup")
        if prof.battery is not None:
            link.tasks.append(asyncio.create_task(self._poll_battery(link, prof.battery.uuid,
                                                                     prof.battery.poll_s)))

    async def _start_notify(self, link: _Link, uuid: str, callback: Callable[[Any, bytearray], None]) -> None:
        bluez = {"use_start_notify": self.settings.bluez_start_notify}
        await within(self._clock, link.client.start_notify(uuid, callback, bluez=bluez),
                     self.settings.connect_timeout_s)
        link.subscribed.append(uuid)

    async def _run_step(self, link: _Link, step: Step) -> None:
        client = link.client
        timeout = max(step.timeout_s, 1.0)
        try:
            if step.op == "write":
                await within(self._clock, client.write_gatt_char(step.uuid, step.data_bytes,
                                                                 response=step.response), timeout)
            elif step.op == "read":
                value = bytes(await within(self._clock, client.read_gatt_char(step.uuid), timeout))
                if step.expect and not any(value.startswith(e) for e in step.expect_bytes):
                    raise StepFailed(f"read {value.hex(' ')}, expected {' or '.join(step.expect)}")
                self._log.debug("%s: read %s = %s", self._who(), step.uuid, value.hex(" "))
            elif step.op == "patch":
                value = bytes(await within(self._clock, client.read_gatt_char(step.uuid), timeout))
                data, off = step.data_bytes, step.offset
                if len(value) < off + len(data):
                    raise StepFailed(
                        f"read {len(value)} bytes, cannot patch bytes {off}..{off + len(data) - 1}")
                patched = value[:off] + data + value[off + len(data):]
                if patched != value:
                    await within(self._clock, client.write_gatt_char(step.uuid, patched,
                                                                     response=step.response), timeout)
            elif step.op == "subscribe":
                queue: asyncio.Queue[bytes] = asyncio.Queue(64)
                link.control[step.uuid] = queue

                def on_control(_char: Any, data: bytearray) -> None:
                    if link.active:
                        with contextlib.suppress(asyncio.QueueFull):
                            queue.put_nowait(bytes(data))

                await self._start_notify(link, step.uuid, on_control)
            elif step.op == "wait_notify":
                await self._wait_notify(link, step)
            elif step.op == "wait":
                await self._clock.sleep(step.delay_s)
                return
            if step.delay_s:
                await self._clock.sleep(step.delay_s)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as err:
            msg = f"{step.op} {step.uuid}: {err if isinstance(err, StepFailed) else one_line(err)}"
            if step.optional and not link.lost:
                self._note(f"step:{step.op}:{step.uuid}", f"optional step failed: {msg}")
                return
            raise StepFailed(msg) from err

    async def _wait_notify(self, link: _Link, step: Step) -> None:
        queue = link.control.get(step.uuid)
        if queue is None:
            raise StepFailed("no earlier subscribe step for this characteristic")
        deadline = self._clock.monotonic() + step.timeout_s
        seen: list[str] = []
        while True:
            left = deadline - self._clock.monotonic()
            if left <= 0:
                break
            try:
                value = await within(self._clock, queue.get(), left)
            except TimeoutError:
                break
            if any(value.startswith(e) for e in step.expect_bytes):
                return
            seen.append(value.hex(" "))
        got = f"; got {', '.join(seen[-3:])}" if seen else ""
        raise StepFailed(f"no answer starting {' or '.join(step.expect)} within {step.timeout_s:g} s{got}")

    async def _poll_battery(self, link: _Link, uuid: str, every_s: float) -> None:
        while link.active:
            try:
                value = bytes(await within(self._clock, link.client.read_gatt_char(uuid), 5.0))
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._note("battery", f"battery level unreadable ({one_line(err)})")
                return
            if value and value[0] <= 100:
                self.status.battery_pct = float(value[0])
            await self._clock.sleep(every_s)

    async def _stop_buzz(self, link: _Link, buzz_s: float, settle_s: float) -> None:
        await self._clock.sleep(buzz_s)
        prof = self._profile
        if prof is None or prof.haptic is None or not link.active:
            return
        async with self._buzz_lock:
            self._mute(self._clock.monotonic() + settle_s)
            try:
                for step in prof.haptic.stop:
                    await self._run_step(link, step)
            except StepFailed as err:
                self._note("haptic_stop", f"stopping the buzz failed: {err}", logging.WARNING)

    def _mute(self, until: float) -> None:
        self._mute_until = max(self._mute_until, until)

    # -- streaming ----------------------------------------------------------------------------

    def _silence_s(self) -> float:
        rate = self._profile.rate_hz if self._profile else 1.0
        return max(self.settings.silence_timeout_s, 5.0 / rate)

    async def _stream(self, link: _Link) -> AsyncIterator[SampleBatch]:
        assert self._decoder is not None
        self._decoder.reset()
        self._sensor_offset = None
        if self._streams:
            self.status.reconnects += 1
        self._streams += 1
        self.status.connected = True
        self._log.info("%s: streaming (link %d)", self._who(), link.number)
        while link.active and not self._closed:
            try:
                item = await within(self._clock, link.queue.get(), self._silence_s())
            except TimeoutError:
                self.status.last_error = f"no notification for {self._silence_s():g} s while connected"
                self._log.warning("%s: %s; reconnecting", self._who(), self.status.last_error)
                return
            if item is _LOST:
                self.status.last_error = "disconnected"
                self._log.info("%s: disconnected", self._who())
                return
            arrival, data = item
            batch = self._decode(arrival, data)
            if batch is not None:
                link.delivered += len(batch)
                self._failing_since = None
                yield batch

    def _decode(self, arrival: float, data: bytes) -> SampleBatch | None:
        assert self._decoder is not None
        self.status.packets += 1
        s = self._decoder.feed(data)
        for d in s.drops:
            self.status.count_drop(d.reason)
            self._note(f"drop:{d.reason}", f"dropped input ({d.reason}): {d.detail}")
        n = len(s)
        if n == 0:
            return None
        if arrival < self._mute_until:
            self.status.count_drop("haptic")
            return None
        t = self._timestamps(arrival + self._epoch_offset, n, s.t_sensor_s)
        keep = slice(None)
        if self._last_t is not None and t[0] <= self._last_t and s.t_sensor_s is not None:
            # Sensor-clocked samples at or before the last delivered one are repeats.
            newer = np.nonzero(t > self._last_t)[0]
            if not len(newer):
                self.status.count_drop("duplicate")
                return None
            keep = slice(int(newer[0]), None)
        t = t[keep]
        acc = s.acc_g[keep]
        gyro = s.gyro_dps[keep] if s.gyro_dps is not None else None
        self._last_t = float(t[-1])
        self.status.samples += len(t)
        return SampleBatch(t, acc, gyro)

    def _timestamps(self, arrival_unix: float, n: int, t_sensor: np.ndarray | None) -> np.ndarray:
        """Unix-epoch seconds for n samples that arrived at ``arrival_unix``."""
        rate = self._profile.rate_hz if self._profile else 1.0
        last = self._last_t
        if t_sensor is not None:
            mapped_last = t_sensor[-1] + (self._sensor_offset or 0.0)
            if self._sensor_offset is None or abs(mapped_last - arrival_unix) > SENSOR_CLOCK_RESYNC_S:
                self._sensor_offset = arrival_unix - float(t_sensor[-1])
            return t_sensor + self._sensor_offset
        end = arrival_unix if last is None else max(arrival_unix, last)
        start = end - (n - 1) / rate
        if last is not None and start <= last:
            start = min(last + 1.0 / rate, end)
        return np.linspace(start, end, n) if n > 1 else np.array([end])

    # -- teardown -----------------------------------------------------------------------------

    async def _teardown(self, link: _Link) -> None:
        """Idempotent, time-bounded: callbacks off, notifications off, disconnect (capped)."""
        if link.torn_down:
            return
        link.torn_down = True
        link.active = False
        with contextlib.suppress(asyncio.QueueFull):
            link.queue.put_nowait(_LOST)  # wake a consumer waiting on this link
        if self._link is link:
            self.status.connected = False
        for task in link.tasks:
            task.cancel()
        client = link.client
        if client is not None:
            for uuid in reversed(link.subscribed):
                # Fails as a matter of course when the sensor has already gone.
                await self._bounded(client.stop_notify(uuid), STOP_NOTIFY_TIMEOUT_S, "stop_notify",
                                    f"stop_notify {uuid}", logging.DEBUG)
            await self._bounded(client.disconnect(), DISCONNECT_TIMEOUT_S, "disconnect", "disconnect")
        if self._link is link:
            self._link = None

    async def _bounded(self, aw: Awaitable[Any], timeout_s: float, kind: str, what: str,
                       level: int = logging.WARNING) -> None:
        """Await a clean-up call for at most ``timeout_s``; failures are logged once per kind, not raised."""
        try:
            await within(self._clock, aw, timeout_s)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as err:
            self._note(kind, f"{what} failed ({one_line(err)})", level)

    # -- logging ------------------------------------------------------------------------------

    def _who(self) -> str:
        return self.target or (self._profile.name if self._profile else "ble")

    def _note(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        """Log a message once per kind (later ones at debug level): bad input must not flood logs."""
        if kind in self._logged:
            self._log.debug("%s: %s", self._who(), message)
            return
        self._logged.add(kind)
        self._log.log(level, "%s: %s", self._who(), message)


def make_ble_source(target: str, profile_name: str, settings: BleSettings,
                    profiles: Mapping[str, Profile] | None = None) -> BleSensorSource:
    """The BLE source for a configured wearer: ``sensor`` (address or name) and ``profile``.

    Loads and validates every profile first (built-in plus ``settings.profiles_dir``), so a bad
    profile file or an unknown profile name fails at start with one line naming file and key.
    ``profile_name`` "" = pick the profile by advertisement (``source.profile`` / ``source.mount``
    are None until the sensor is first seen).

    Raises:
        SettingsError: a bad profile file, or an unknown profile name.
    """
    from slouchd.sensors.profiles import get_profile

    if profiles is None:
        profiles = load_profiles(settings.profiles_dir or None)
    profile = get_profile(profiles, profile_name) if profile_name else None
    return BleSensorSource(target, profile, settings, profiles=profiles)
