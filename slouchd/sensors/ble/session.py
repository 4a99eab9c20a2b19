"""The BLE source the daemon iterates: one supervisor loop per sensor, and the haptic buzz.

:class:`BleSensorSource` goes scan -> connect -> notify + start-up steps -> stream, and starts
again whenever the link dies; failed attempts back off 1, 2, 4 ... s (jittered x0.5..1) up to
``backoff_max_s``, transient BlueZ errors are retried after a short pause. The parts it wires
together live beside it: :mod:`.scanning`, :mod:`.connect`, :mod:`.steps`, :mod:`.streaming`,
:mod:`.stamping`, :mod:`.health`, :mod:`.errors`. See docs/sensors.md ("Staying connected for days").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from slouchd.model import Mount, SampleBatch
from slouchd.sensors.base import HandOver, SensorStatus
from slouchd.sensors.ble.connect import Connector, StaleCloser, default_stale_closer
from slouchd.sensors.ble.context import SourceContext
from slouchd.sensors.ble.errors import StepFailed, is_transient
from slouchd.sensors.ble.health import AdapterHealth
from slouchd.sensors.ble.link import Link, LinkState
from slouchd.sensors.ble.scanning import Scanner, Sighting
from slouchd.sensors.ble.steps import StepRunner
from slouchd.sensors.ble.streaming import PacketPath, Streamer
from slouchd.sensors.profiles import Profile, load_profiles
from slouchd.sensors.settings import BleSettings
from slouchd.timing import SYSTEM_CLOCK, Backoff, Clock

# One logger for the whole package: log lines keep the name they had before it was split up.
log = logging.getLogger("slouchd.sensors.ble")

#: First reconnection delay; doubles per failed attempt up to ``backoff_max_s``, seconds.
BACKOFF_MIN_S = 1.0
#: Pause before retrying after a transient BlueZ error, seconds (jittered 1x..2x).
TRANSIENT_RETRY_S = 0.5


class BleSensorSource:
    """A BLE IMU as a :class:`~slouchd.sensors.base.SensorSource` of :class:`SampleBatch`.

    Use as ``async with BleSensorSource(...) as src: async for batch in src: ...``. The iterator
    only ends when the source is closed; it raises
    :class:`~slouchd.sensors.ble.errors.AdapterWedged` when the adapter has failed every attempt
    for ``settings.wedged_exit_s``.

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
        close_stale: StaleCloser | None = None,
    ) -> None:
        if scanner_cls is None or client_cls is None:
            import bleak

            real = scanner_cls is None and client_cls is None
            scanner_cls = scanner_cls or bleak.BleakScanner
            client_cls = client_cls or bleak.BleakClient
            if real and close_stale is None:
                close_stale = default_stale_closer()
        self.target = target.strip()
        # Each sensor is its own subject for the journal's repeat limiter: one flapping sensor
        # must not use up another one's quota of lines.
        self._log = logging.LoggerAdapter(log, {"rate_key": self.target or "ble"})
        self.settings = settings
        self.status = SensorStatus()
        self._clock: Clock = clock or SYSTEM_CLOCK
        self._rng = rng or random.Random()
        self._ctx = ctx = SourceContext(self.target, settings, self._clock, self.status, self._log, profile)
        if profiles is None:
            profiles = {} if profile is not None else load_profiles(settings.profiles_dir or None)
        self._scanner = Scanner(ctx, scanner_cls, profile, dict(profiles))
        self._steps = StepRunner(ctx)
        self._connector = Connector(ctx, client_cls, close_stale, self._steps)
        self._health = AdapterHealth(ctx)
        self._packets = PacketPath(ctx)
        self._streamer = Streamer(ctx, self._packets, self._health)
        self._backoff = Backoff(BACKOFF_MIN_S, settings.backoff_max_s, jitter_low=0.5, rng=self._rng)
        self._link: Link | None = None
        self._buzz_lock = asyncio.Lock()
        self._agen: AsyncGenerator[SampleBatch, None] | None = None

    # -- public surface ------------------------------------------------------------------------

    @property
    def profile(self) -> Profile | None:
        """The profile in use: the one given, or the one matched at the first sighting."""
        return self._ctx.profile

    @property
    def hand_over(self) -> HandOver | None:
        """The consumer's next hand-over: notifications before it are held, not woken for."""
        return self._ctx.hand_over

    @hand_over.setter
    def hand_over(self, value: HandOver | None) -> None:
        self._ctx.hand_over = value

    @property
    def mount(self) -> Mount | None:
        """The profile's usual mount as worn (None until a profile is known)."""
        prof = self._ctx.profile
        return prof.usual_mount if prof else None

    async def __aenter__(self) -> BleSensorSource:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop streaming: tear the link down (bounded in time) and end the iterator."""
        self._ctx.close()
        if self._agen is not None:
            agen, self._agen = self._agen, None
            with contextlib.suppress(RuntimeError):  # already running in another task
                await agen.aclose()
        if self._link is not None:
            await self._teardown(self._link)

    def __aiter__(self) -> AsyncIterator[SampleBatch]:
        return self

    async def __anext__(self) -> SampleBatch:
        if self._ctx.closed:
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
        prof, link = self._ctx.profile, self._link
        if (not self.settings.haptic or prof is None or prof.haptic is None or link is None
                or link.state is not LinkState.STREAMING or not self.status.connected):
            return False
        h = prof.haptic
        async with self._buzz_lock:
            self._packets.mute(self._clock.monotonic() + h.buzz_s + h.settle_s)
            try:
                for step in h.steps:
                    await self._steps.run(link, step)
            except StepFailed as err:
                self._ctx.note("haptic", f"buzz failed: {err}", logging.WARNING)
                return False
            self._log.info("%s: buzz (level %d)", self._ctx.who(), level)
            if h.stop:
                link.tasks.append(asyncio.create_task(self._stop_buzz(link, h.buzz_s, h.settle_s)))
            return True

    async def _stop_buzz(self, link: Link, buzz_s: float, settle_s: float) -> None:
        await self._clock.sleep(buzz_s)
        prof = self._ctx.profile
        if prof is None or prof.haptic is None or not link.active:
            return
        async with self._buzz_lock:
            self._packets.mute(self._clock.monotonic() + settle_s)
            try:
                for step in prof.haptic.stop:
                    await self._steps.run(link, step)
            except StepFailed as err:
                self._ctx.note("haptic_stop", f"stopping the buzz failed: {err}", logging.WARNING)

    # -- supervisor ---------------------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[SampleBatch, None]:
        while not self._ctx.closed:
            self._health.check_wedged()
            sighting = await self._sighting()
            if sighting is None:
                continue
            self._use_profile(sighting.profile)
            if sighting.profile.stream.passive:
                batches = self._listen(sighting)
            else:
                batches = self._connect_and_stream(sighting)
            async for batch in batches:
                yield batch

    async def _sighting(self) -> Sighting | None:
        """One scan; None (after the right pause) when it failed or did not see the sensor."""
        try:
            sighting = await self._scanner.scan()
        except Exception as err:
            self._health.failed("scan", err)
            await self._retry_later(err, count_transient=True)
            return None
        if self._ctx.closed:
            return None
        self._health.back("scan")
        if sighting is None:
            # The scanner works and the sensor is simply not around: not an adapter failure.
            self._health.working()
            await self._ctx.nap(self._backoff.next_s())
        return sighting

    async def _listen(self, sighting: Sighting) -> AsyncIterator[SampleBatch]:
        delivered = False
        async for batch in self._streamer.listen(sighting, self._scanner):
            delivered = True
            self._backoff.reset()
            yield batch
        if not delivered:
            await self._ctx.nap(self._backoff.next_s())

    async def _connect_and_stream(self, sighting: Sighting) -> AsyncIterator[SampleBatch]:
        link = await self._connect(sighting)
        if link is None:
            return
        self._health.back("connect")
        try:
            async for batch in self._streamer.stream(link):
                self._backoff.reset()
                yield batch
        finally:
            await self._teardown(link)
        if not link.delivered:
            # Connected but never streamed (setup races, instant drops): do not spin.
            self._health.failed("stream", RuntimeError(self.status.last_error or "no samples"))
            await self._retry_later(None)

    async def _connect(self, sighting: Sighting) -> Link | None:
        """A set-up link, or None (after the right pause) when connecting failed."""
        self._link = link = Link(self._streamer.next_link_number())
        try:
            await self._connector.open(link, sighting, self._streamer.on_notify(link))
        except BaseException as err:
            await self._teardown(link)
            if not isinstance(err, Exception):
                raise
            self._health.failed("connect", err)
            await self._retry_later(err)
            return None
        return link

    def _use_profile(self, profile: Profile) -> None:
        current = self._ctx.profile
        if current is None or current.name != profile.name:
            self._log.info("%s: using profile %s", self._ctx.who(), profile.name)
            self._ctx.profile = profile
            self._packets.use_profile(profile)

    async def _retry_later(self, err: BaseException | None, *, count_transient: bool = False) -> None:
        """Pause before the next attempt: briefly after a transient error, else the backoff.

        A transient error does not grow the backoff, except at scanning (``count_transient``),
        where a scanner that keeps failing transiently must not keep the shortest backoff.
        """
        if err is not None and is_transient(err):
            await self._ctx.nap(TRANSIENT_RETRY_S * (1.0 + self._rng.random()))
            if count_transient:
                self._backoff.attempt += 1
        else:
            await self._ctx.nap(self._backoff.next_s())
        if not self._ctx.closed:
            self._health.check_wedged()

    async def _teardown(self, link: Link) -> None:
        """Idempotent, time-bounded: callbacks off, notifications off, disconnect (capped)."""
        if not link.close():
            return
        if self._link is link:
            self.status.connected = False
        await self._connector.release(link)
        if self._link is link:
            self._link = None


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
