"""Streaming: notifications (or advertisements) -> decoded, stamped :class:`SampleBatch` es.

The notification callback runs the per-packet path itself (:class:`PacketPath`: decode, count
drops, drop samples while a buzz runs, stamp) and holds the samples in the link (as Python
floats when the profile's decoder has a row path and the host clock stamps them: no numpy call
per notification; the consumer takes them as one array); it wakes the
consumer's task only when the batch's newest sample starts a new 0.1 s decision tick
(:class:`~slouchd.sensors.ble.ticks.TickGate`, the daemon's sample buffer's grid), when many
samples are held, or when the link is lost. The consumer then yields everything held as one
batch: at 50 one-sample notifications a second it runs 10 times a second, not 50, and the
sample that starts a tick reaches it as soon as it arrives, as before. A link that sends nothing
for ``silence_timeout_s`` (at least 5 samples' time) is a zombie: the stream ends and the
supervisor reconnects. See docs/sensors.md ("Staying connected for days", "Time stamps").
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

from slouchd.model import SampleBatch, SampleRows
from slouchd.sensors.ble.context import SourceContext
from slouchd.sensors.ble.errors import one_line
from slouchd.sensors.ble.health import AdapterHealth
from slouchd.sensors.ble.link import LOST, QUEUE_MAX, Link
from slouchd.sensors.ble.scanning import SCANNER_TIMEOUT_S, Scanner, Sighting
from slouchd.sensors.ble.stamping import SampleStamper
from slouchd.sensors.ble.steps import NotifyCallback
from slouchd.sensors.ble.ticks import TickGate
from slouchd.sensors.decoders import Drop, ProfileDecoder
from slouchd.sensors.profiles import Profile
from slouchd.timing import within

#: Put in a link's queue by the silence watchdog: nothing arrived for ``silence_s``.
SILENT = object()
#: Fewest samples' time without data that counts as silence (for slow sensors), samples.
SILENCE_MIN_SAMPLES = 5.0


def _joined(held: list[SampleBatch]) -> list[SampleBatch]:
    """Held batches as one (gyro kept), or as they are if only some of them have gyro."""
    if len(held) == 1:
        return held
    with_gyro = sum(b.gyro_dps is not None for b in held)
    return [SampleBatch.concat(held)] if with_gyro in (0, len(held)) else held


class PacketPath:
    """The per-packet path of one source: bytes -> :class:`SampleBatch`, or None.

    Args:
        ctx: the source's shared state (its profile picks the decoder and the nominal rate).
    """

    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx
        self.status = ctx.status
        prof = ctx.profile
        self.decoder: ProfileDecoder | None = ProfileDecoder(prof) if prof else None
        self.stamper = SampleStamper(prof.rate_hz if prof else 1.0)
        self.rows = self._rows_ok()
        # Arrival times are monotonic (they never jump); samples are stamped in Unix time.
        self.epoch_offset = ctx.clock.wall() - ctx.clock.monotonic()
        #: Samples arriving before this monotonic time are dropped (a running motor shakes the IMU).
        self.mute_until = float("-inf")

    def use_profile(self, profile: Profile) -> None:
        """Decode with ``profile`` from now on (matched by advertisement)."""
        self.decoder = ProfileDecoder(profile)
        self.stamper.rate_hz = profile.rate_hz
        self.rows = self._rows_ok()

    def _rows_ok(self) -> bool:
        """Whether :meth:`decode_held` can keep floats: a row path, and no sensor clock."""
        d = self.decoder
        return d is not None and d.has_rows and not d.has_clock

    def start_link(self) -> None:
        """A new link: forget partial frames and the sensor clock's offset."""
        assert self.decoder is not None
        self.decoder.reset()
        self.stamper.new_link()

    def mute(self, until: float) -> None:
        """Drop samples arriving before monotonic time ``until`` (extends, never shortens)."""
        self.mute_until = max(self.mute_until, until)

    def decode(self, arrival: float, data: bytes) -> SampleBatch | None:
        """The samples of one packet that arrived at monotonic time ``arrival``, or None."""
        assert self.decoder is not None
        status = self.status
        status.packets += 1
        s = self.decoder.feed(data)
        n = len(s)
        if not self._admit(arrival, n, s.drops):
            return None
        stamped = self.stamper.stamp(arrival + self.epoch_offset, n, s.t_sensor_s)
        if stamped is None:  # sensor-clocked samples at or before the last delivered one
            status.count_drop("duplicate")
            return None
        first = stamped.first
        acc = s.acc_g[first:] if first else s.acc_g
        gyro = s.gyro_dps
        if gyro is not None and first:
            gyro = gyro[first:]
        status.samples += len(stamped.t_s)
        return SampleBatch(stamped.t_s, acc, gyro)

    def decode_held(self, arrival: float, data: bytes) -> SampleBatch | SampleRows | None:
        """:meth:`decode`, in the form a link holds best: :class:`SampleRows` (Python floats,
        no numpy call) when the decoder has a row path and the host clock stamps the samples
        (micro:bit, Thingy:52, WitMotion, generic), else a :class:`SampleBatch`. Either way the
        same samples, times and counts, to the bit."""
        if not self.rows:
            return self.decode(arrival, data)
        assert self.decoder is not None
        self.status.packets += 1
        s = self.decoder.feed_rows(data)
        n = len(s.acc_g)
        if not self._admit(arrival, n, s.drops):
            return None
        t = self.stamper.stamp_host(arrival + self.epoch_offset, n)
        self.status.samples += n
        return SampleRows(t, s.acc_g, s.gyro_dps)

    def _admit(self, arrival: float, n: int, drops: list[Drop]) -> bool:
        """Count and log the packet's drops; True when its ``n`` samples go on to be stamped
        (there are some, and no buzz mutes them at monotonic time ``arrival``)."""
        status = self.status
        for d in drops:
            status.count_drop(d.reason)
            self.ctx.note(f"drop:{d.reason}", f"dropped input ({d.reason}): {d.detail}")
        if n == 0:
            return False
        if arrival < self.mute_until:
            status.count_drop("haptic")
            return False
        return True


class Streamer:
    """Streams batches from a connected link, or from a passive sensor's advertisements."""

    def __init__(self, ctx: SourceContext, packets: PacketPath, health: AdapterHealth) -> None:
        self.ctx = ctx
        self.packets = packets
        self.health = health
        self.links = 0  # links and passive listens so far (numbers links in log lines)
        self.streams = 0

    def next_link_number(self) -> int:
        self.links += 1
        return self.links

    def silence_s(self) -> float:
        """No data for this long while streaming ends the stream, seconds."""
        prof = self.ctx.profile
        rate = prof.rate_hz if prof else 1.0
        return max(self.ctx.settings.silence_timeout_s, SILENCE_MIN_SAMPLES / rate)

    def _begin(self) -> None:
        if self.streams:
            self.ctx.status.reconnects += 1
        self.streams += 1
        self.ctx.status.connected = True

    def on_notify(self, link: Link) -> NotifyCallback:
        """The notification callback of the new ``link`` (its decoder starts afresh now).

        Per notification: note the time (silence watchdog), decode and stamp (:class:`PacketPath`),
        hold the batch in the link and wake the consumer when it starts a new tick. Nothing
        raises into bleak: a decoder failure is counted (``dropped["error"]``) and logged once.
        At :data:`~slouchd.sensors.ble.link.QUEUE_MAX` held notifications more are dropped
        undecoded (``dropped["overflow"]``): the consumer is not keeping up.
        """
        ctx, packets, status, clock = self.ctx, self.packets, self.ctx.status, self.ctx.clock
        packets.start_link()  # notifications start flowing during the set-up steps already
        gate = TickGate()

        def on_notify(_char: Any, data: bytearray) -> None:
            if not link.active:
                return
            link.seen = arrival = clock.monotonic()
            if link.held_packets >= QUEUE_MAX:
                status.count_drop("overflow")
                return
            try:
                got = packets.decode_held(arrival, bytes(data))
                if got is not None:
                    ho = ctx.hand_over
                    t_last = got.t_last_s if type(got) is SampleRows else float(got.t_s[-1])
                    link.hold(got, gate.starts_tick(t_last, -math.inf if ho is None else ho.due_k))
            except Exception as err:  # never into bleak's D-Bus reader
                status.count_drop("error")
                ctx.note("drop:error", f"dropped a notification: decoding it failed ({one_line(err)})")

        return on_notify

    async def stream(self, link: Link) -> AsyncIterator[SampleBatch]:
        """Batches from a set-up link until it is lost, goes silent, or the source closes.

        Wakes once per held tick (see :meth:`on_notify`) and yields everything the link holds
        as one batch, in order; what is held when the link is lost or goes silent is yielded
        before the stream ends. The silence watchdog is one task per link that wakes about twice
        per ``silence_s``, not a timeout around every wait.
        """
        ctx = self.ctx
        self._begin()
        ctx.log.info("%s: streaming (link %d)", ctx.who(), link.number)
        link.seen = max(link.seen, ctx.clock.monotonic())
        watchdog = asyncio.ensure_future(self._watch_silence(link))
        try:
            while link.active and not ctx.closed:
                item = await link.queue.get()
                for batch in _joined(link.take()) if link.held else ():
                    link.delivered += len(batch)
                    self.health.working()
                    yield batch
                if item is SILENT:
                    ctx.status.last_error = f"no notification for {self.silence_s():g} s while connected"
                    ctx.log.warning("%s: %s; reconnecting", ctx.who(), ctx.status.last_error)
                    return
                if item is LOST:
                    ctx.status.last_error = "disconnected"
                    ctx.log.info("%s: disconnected", ctx.who())
                    return
        finally:
            watchdog.cancel()

    async def _watch_silence(self, link: Link) -> None:
        """Queue :data:`SILENT` once no notification arrived for ``silence_s`` (``link.seen``)."""
        clock, queue = self.ctx.clock, link.queue
        while True:
            silence_s = self.silence_s()
            idle_s = clock.monotonic() - link.seen
            if idle_s >= silence_s and queue.empty():
                queue.put_nowait(SILENT)
                return
            await clock.sleep(max(silence_s - idle_s, 0.0) + 1e-3)

    async def listen(self, sighting: Sighting, scanner: Scanner) -> AsyncIterator[SampleBatch]:
        """Advertisement-only sensors: keep a scanner running and decode manufacturer data."""
        ctx = self.ctx
        mid = sighting.profile.match.manufacturer_id
        address = str(sighting.device.address).lower()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_MAX)
        listening = True

        def on_advertisement(device: Any, adv: Any) -> None:
            if not listening or str(device.address).lower() != address:
                return
            data = (getattr(adv, "manufacturer_data", None) or {}).get(mid)
            if data is None:
                return
            if adv.rssi is not None:
                ctx.status.rssi_dbm = float(adv.rssi)
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((ctx.clock.monotonic(), bytes(data)))

        try:
            running = await scanner.start_listening(mid, on_advertisement)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as err:
            self.health.failed("scan", err)
            return
        self.next_link_number()
        self.packets.start_link()
        self._begin()
        closed = asyncio.ensure_future(ctx.closed_event.wait())
        try:
            while not ctx.closed:
                item = await self._next_advertisement(queue, closed)
                if item is None:
                    return
                batch = self.packets.decode(*item)
                if batch is not None:
                    self.health.working()
                    yield batch
        finally:
            listening = False
            closed.cancel()
            ctx.status.connected = False
            await ctx.bounded(running.stop(), SCANNER_TIMEOUT_S, "scanner_stop", "stopping the scanner")

    async def _next_advertisement(self, queue: asyncio.Queue[tuple[float, bytes]],
                                  closed: asyncio.Future[Any]) -> tuple[float, bytes] | None:
        """The next queued advertisement, or None when the sensor went silent or the source closed."""
        ctx = self.ctx
        getter = asyncio.ensure_future(queue.get())
        try:
            await within(ctx.clock, asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED),
                         self.silence_s())
        except TimeoutError:
            getter.cancel()
            ctx.status.last_error = f"no advertisement for {self.silence_s():g} s"
            ctx.log.warning("%s: %s; restarting the scanner", ctx.who(), ctx.status.last_error)
            return None
        if not getter.done():  # closed
            getter.cancel()
            return None
        return getter.result()

