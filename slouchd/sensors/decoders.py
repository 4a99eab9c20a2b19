"""Payload decoders: notification (or advertisement) bytes -> samples in g and deg/s.

Two layers:

* a *raw decoder* turns bytes into rows of raw numbers (counts, milli-g...), one row per sample:
  :class:`StructDecoder` for anything a ``struct`` format describes (optionally re-framed from a
  byte stream on a sync word), and named decoders for what a struct cannot express:
  :class:`PolarPmdDecoder` (Polar PMD ACC frames, raw and delta-compressed, with the sensor's
  clock), :class:`WitMotionDecoder` (``55 61`` data frames in a byte stream with ``55 71``
  register replies mixed in) and :class:`RuuviRawV2Decoder` (RuuviTag RAWv2 advertisements);
* :class:`ProfileDecoder` picks the profile's acceleration/gyro columns and applies its per-axis
  scale (sign included), so every decoded sample follows the project convention: at rest, the
  axis pointing up reads +1 g.

Decoders whose rows come out of ``struct`` anyway (struct, WitMotion) also have a *row path*
(``feed_tuples``, :meth:`ProfileDecoder.feed_rows`): the same numbers as Python tuples, no numpy
call. A sensor sending one sample per notification (50-100 a second) pays ~10 numpy calls per
notification on the array path; the BLE source keeps such rows as floats until its consumer
takes them, as one array (docs/performance.md, "Session 7"). Both paths give the same floats.

Malformed input never raises: it is reported as :class:`Drop` entries (``reason`` is a short key
such as ``"short"``, ``"long"``, ``"wrong_header"``, ``"garbage"``) for the caller to count.
Decoders are pure (no I/O, no clock): host time stamping is the session's job.

(About 470 lines, over the project's ~400: one small class per sensor family plus the shared
struct/profile layers; splitting them into one module each would scatter the byte-level
conventions that they share and that the tests check together.)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter

import numpy as np

from slouchd.model import Row3
from slouchd.sensors.profiles import Profile, Stream

#: Seconds from the Unix epoch to 2000-01-01T00:00:00Z, the epoch of Polar's sensor clock.
POLAR_EPOCH_UNIX_S = 946_684_800.0


@dataclass(frozen=True, slots=True)
class Drop:
    """A piece of input that was thrown away: ``reason`` (a short key) and a readable ``detail``."""

    reason: str
    detail: str


@dataclass(slots=True)
class RawRows:
    """What a raw decoder produced from one feed.

    Attributes:
        rows: raw numbers, shape (n, columns).
        t_sensor_s: the sensor's own clock for each row in seconds since its epoch, or None.
        drops: input thrown away, by reason.
    """

    rows: np.ndarray
    t_sensor_s: np.ndarray | None = None
    drops: list[Drop] = field(default_factory=list)


@dataclass(slots=True)
class TupleRows:
    """What a raw decoder's row path produced from one feed: raw rows as tuples, drops."""

    rows: list[tuple[float, ...]]
    drops: list[Drop]


def _empty(columns: int, drops: list[Drop] | None = None) -> RawRows:
    return RawRows(np.empty((0, columns)), None, drops or [])


def _finite(rows: list[tuple[float, ...]]) -> bool:
    return all(map(math.isfinite, chain.from_iterable(rows)))


class RawDecoder:
    """Base of raw decoders. Stateful (framing buffers, previous timestamps): one per link.

    A subclass implements :meth:`feed`, or :meth:`feed_tuples` and sets ``has_rows`` (then
    :meth:`feed` is the same rows as an array).
    """

    columns: int = 3
    #: True when the protocol carries the sensor's clock (``RawRows.t_sensor_s``).
    has_clock: bool = False
    #: True when :meth:`feed_tuples` is implemented (no numpy per feed).
    has_rows: bool = False

    def feed(self, data: bytes) -> RawRows:
        out = self.feed_tuples(data)
        if not out.rows:
            return _empty(self.columns, out.drops)
        return RawRows(np.array(out.rows, dtype=float).reshape(-1, self.columns), None, out.drops)

    def feed_tuples(self, data: bytes) -> TupleRows:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget stream state (partial frames, previous timestamps): call on every new link."""

    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return 0


class Framer:
    """Cuts a byte stream into fixed-length frames that start with a sync word.

    Bytes before a sync word are garbage (counted). A partial frame waits for the next feed;
    the buffer never holds more than one frame plus a partial sync word.
    """

    def __init__(self, sync: bytes, frame_len: int) -> None:
        self.sync = sync
        self.frame_len = frame_len
        self._buf = bytearray()

    def push(self, data: bytes) -> tuple[list[bytes], int]:
        """Add bytes; return the complete frames and how many bytes were skipped as garbage."""
        self._buf += data
        frames: list[bytes] = []
        garbage = 0
        while True:
            idx = self._buf.find(self.sync)
            if idx < 0:
                # Keep a tail that could be the start of a sync word split across notifications.
                keep = min(len(self._buf), len(self.sync) - 1)
                garbage += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
                break
            if idx:
                garbage += idx
                del self._buf[:idx]
            if len(self._buf) < self.frame_len:
                break
            frames.append(bytes(self._buf[: self.frame_len]))
            del self._buf[: self.frame_len]
        return frames, garbage

    def reset(self) -> None:
        self._buf.clear()

    def pending(self) -> int:
        return len(self._buf)


class StructDecoder(RawDecoder):
    """Packets of ``samples`` x ``format`` after an optional header, or frames of a byte stream."""

    has_rows = True

    def __init__(self, stream: Stream) -> None:
        self.fmt = struct.Struct(stream.format)
        self.header = stream.header_bytes
        self.skip = len(self.header) if stream.skip < 0 else stream.skip
        self.samples = stream.samples
        self.columns = stream.columns
        self.framer = Framer(stream.sync_bytes, stream.frame_len) if stream.sync else None
        # Only float fields can hold NaN or infinity: integer layouts skip the check.
        self.floats = any(c in "efd" for c in stream.format)

    def reset(self) -> None:
        if self.framer is not None:
            self.framer.reset()

    def pending(self) -> int:
        return self.framer.pending() if self.framer is not None else 0

    def feed_tuples(self, data: bytes) -> TupleRows:
        if self.framer is None:
            got = self._packet(bytes(data))
            return TupleRows([], [got]) if isinstance(got, Drop) else TupleRows(got, [])
        frames, garbage = self.framer.push(bytes(data))
        drops = [Drop("garbage", f"{garbage} bytes outside frames")] if garbage else []
        rows: list[tuple[float, ...]] = []
        for f in frames:
            got = self._packet(f)
            if isinstance(got, Drop):
                drops.append(got)
            else:
                rows += got
        return TupleRows(rows, drops)

    def _packet(self, pkt: bytes) -> list[tuple[float, ...]] | Drop:
        h = self.header
        if h and not pkt.startswith(h):
            if len(pkt) < len(h) and h.startswith(pkt):
                return Drop("short", f"{len(pkt)} bytes, shorter than the header")
            return Drop("wrong_header", f"starts {pkt[:len(h)].hex(' ')}, expected {h.hex(' ')}")
        body = pkt[self.skip:] if self.skip else pkt
        size = self.fmt.size
        if self.samples:
            want = self.samples * size
            if len(body) < want:
                return Drop("short", f"{len(pkt)} bytes, expected {self.skip + want}")
            if len(body) > want:
                return Drop("long", f"{len(pkt)} bytes, expected {self.skip + want}")
        else:
            if len(body) < size:
                return Drop("short", f"{len(pkt)} bytes, less than one sample")
            if len(body) % size:
                return Drop("long", f"{len(body)} payload bytes is not a multiple of the {size}-byte sample")
        rows = list(self.fmt.iter_unpack(body))
        if self.floats and not _finite(rows):
            return Drop("not_finite", "NaN or infinity in the payload")
        return rows


class WitMotionDecoder(RawDecoder):
    """WitMotion WT901BLE byte stream: 20-byte ``55 61`` data frames, ``55 71`` replies skipped.

    Columns: acc x y z, gyro x y z, angle x y z, all raw int16 (scale in the profile).
    The vendor SDK (WITMOTION/WitBluetooth_BWT901BLE5_0, device_model.py) buffers bytes and
    resyncs on ``55 61``; register read replies (``55 71``) share the stream and the frame length.
    """

    columns = 9
    has_rows = True
    FRAME = 20
    DATA, REPLY = 0x61, 0x71
    _ROW = struct.Struct("<9h")

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed_tuples(self, data: bytes) -> TupleRows:
        self._buf += data
        rows: list[tuple[float, ...]] = []
        garbage = 0
        buf = self._buf
        while True:
            idx = buf.find(0x55)
            if idx < 0:
                garbage += len(buf)
                buf.clear()
                break
            if idx:
                garbage += idx
                del buf[:idx]
            if len(buf) < 2:
                break
            if buf[1] not in (self.DATA, self.REPLY):
                garbage += 1
                del buf[:1]
                continue
            if len(buf) < self.FRAME:
                break
            frame = bytes(buf[: self.FRAME])
            del buf[: self.FRAME]
            if frame[1] == self.DATA:
                rows.append(self._ROW.unpack_from(frame, 2))
        drops = [Drop("garbage", f"{garbage} bytes outside 55 61 frames")] if garbage else []
        return TupleRows(rows, drops)

    def reset(self) -> None:
        self._buf.clear()

    def pending(self) -> int:
        return len(self._buf)


class PolarPmdDecoder(RawDecoder):
    """Polar PMD accelerometer frames (Polar H10 and others), in milli-g.

    Layout (polarofficial/polar-ble-sdk ``PmdDataFrame``/``AccData``): byte 0 measurement type
    (2 = ACC), bytes 1-8 uint64 LE timestamp of the LAST sample in ns since 2000-01-01, byte 9
    frame type (bit 7 = delta-compressed), then samples. Raw frame types 0/1/2 are x, y, z as
    signed 1/2/3-byte LE milli-g. Compressed frames hold a 16-bit reference sample then blocks
    ``[delta_bits][count][count x 3 deltas, LSB-first]``; type 0 values times ``factor`` are g
    (x1000 -> mG), type 1 values are mG (times ``factor`` when one is given). The factor is not in
    the frame (the SDK takes it from the measurement settings), so a compressed type 0 frame
    without ``[stream.options] factor`` is dropped as ``needs_factor`` rather than read as mG.

    Per-sample times spread back from the frame's timestamp over the time since the previous
    frame (as the SDK does), or at ``rate_hz`` for the first frame or after a gap.
    """

    columns = 3
    has_clock = True
    ACC = 0x02

    def __init__(self, rate_hz: float, factor: float | None = None) -> None:
        self.rate_hz = rate_hz
        self.factor = factor
        self._prev_t: float | None = None

    def reset(self) -> None:
        self._prev_t = None

    def feed(self, data: bytes) -> RawRows:
        pkt = bytes(data)
        if len(pkt) < 10:
            return _empty(3, [Drop("short", f"{len(pkt)} bytes, a PMD frame has a 10-byte header")])
        if pkt[0] != self.ACC:
            return _empty(3, [Drop("wrong_header", f"measurement type {pkt[0]}, expected 2 (ACC)")])
        t_last = int.from_bytes(pkt[1:9], "little") / 1e9
        ftype = pkt[9]
        body = pkt[10:]
        kind = ftype & 0x7F
        rows = self._compressed(kind, body) if ftype & 0x80 else self._raw(kind, len(pkt), body)
        if isinstance(rows, Drop):
            return _empty(3, [rows])
        return RawRows(rows, self._times(t_last, len(rows)))

    def _compressed(self, kind: int, body: bytes) -> np.ndarray | Drop:
        """Delta-compressed frame types 0 (times ``factor`` = g) and 1 (mG) -> rows in mG."""
        if kind not in (0, 1):
            return Drop("bad_frame", f"compressed frame type {kind} is not ACC")
        try:
            raw = _polar_deltas(body, channels=3, ref_bits=16)
        except ValueError as err:
            return Drop("bad_delta", str(err))
        if kind == 0:
            if self.factor is None:
                return Drop("needs_factor", "compressed type 0 frames need "
                            "[stream.options] factor (from the PMD settings)")
            return raw * (self.factor * 1000.0)
        return raw * self.factor if self.factor not in (None, 1.0) else raw

    @staticmethod
    def _raw(kind: int, frame_len: int, body: bytes) -> np.ndarray | Drop:
        """Raw frame types 0/1/2: x, y, z as signed 1/2/3-byte little-endian mG."""
        if kind not in (0, 1, 2):
            return Drop("bad_frame", f"frame type {kind} is not a raw ACC frame")
        width = kind + 1
        step = 3 * width
        if len(body) < step:
            return Drop("short", f"{frame_len} bytes, no complete sample")
        if len(body) % step:
            return Drop("long", f"{len(body)} sample bytes is not a multiple of {step}")
        vals = [int.from_bytes(body[i:i + width], "little", signed=True) for i in range(0, len(body), width)]
        return np.array(vals, dtype=float).reshape(-1, 3)

    def _times(self, t_last: float, n: int) -> np.ndarray:
        """Sensor times of ``n`` samples ending at ``t_last``, spread over the time since the last frame."""
        dt = 1.0 / self.rate_hz
        if self._prev_t is not None:
            span = t_last - self._prev_t
            if 0 < span <= 2.0 * n / self.rate_hz:
                dt = span / n
        self._prev_t = t_last
        return t_last - dt * np.arange(n - 1, -1, -1, dtype=float)


def _polar_deltas(body: bytes, channels: int, ref_bits: int) -> np.ndarray:
    """Decode a PMD delta frame: reference sample, then blocks of bit-packed deltas (LSB first)."""
    ref_bytes = ref_bits // 8
    need = channels * ref_bytes
    if len(body) < need:
        raise ValueError(f"{len(body)} bytes, shorter than the {need}-byte reference sample")
    prev = [int.from_bytes(body[i * ref_bytes:(i + 1) * ref_bytes], "little", signed=True)
            for i in range(channels)]
    out = [list(prev)]
    off = need
    while off < len(body):
        if off + 2 > len(body):
            raise ValueError("truncated delta block header")
        bits, count = body[off], body[off + 1]
        off += 2
        if not 1 <= bits <= 32:
            raise ValueError(f"delta width {bits} bits (1..32 allowed)")
        nbytes = (bits * channels * count + 7) // 8
        if off + nbytes > len(body):
            raise ValueError(f"delta block needs {nbytes} bytes, {len(body) - off} left")
        packed = int.from_bytes(body[off:off + nbytes], "little")
        off += nbytes
        mask, sign = (1 << bits) - 1, 1 << (bits - 1)
        pos = 0
        for _ in range(count):
            for c in range(channels):
                v = (packed >> pos) & mask
                pos += bits
                if v & sign:
                    v -= 1 << bits
                prev[c] += v
            out.append(list(prev))
    return np.array(out, dtype=float)


def _ruuvi_manufacturer_data(pkt: bytes) -> bytes:
    """The RAWv2 payload inside ``pkt``: as is, after company id 0x0499, or in an advertisement."""
    if pkt[:3] == b"\x99\x04\x05":  # company id 0x0499 little-endian, then the payload
        return pkt[2:]
    if pkt[:1] == b"\x05" and len(pkt) == RuuviRawV2Decoder.LENGTH:
        return pkt
    i = 0
    while i + 1 < len(pkt):  # AD structures: [length][type][data...]
        length = pkt[i]
        if length == 0:
            break
        ad_type, ad_data = pkt[i + 1], pkt[i + 2:i + 1 + length]
        if ad_type == 0xFF and ad_data[:2] == b"\x99\x04":
            return ad_data[2:]
        i += 1 + length
    return pkt


class RuuviRawV2Decoder(RawDecoder):
    """RuuviTag data format 5 (RAWv2) manufacturer data, acceleration in milli-g.

    Layout (ruuvi/ruuvi-sensor-protocols ``dataformat_05.md``): 24 bytes, big-endian; byte 0 = 5;
    bytes 7-12 acceleration x, y, z int16 mG (0x8000 = not available); bytes 16-17 measurement
    sequence number (repeated advertisements of one measurement share it: dropped as
    ``duplicate``); bytes 18-23 MAC. A leading company id ``99 04``, its AD structure
    ``1B FF 99 04``, or a whole advertisement (flags first, as scanner apps show it) is accepted:
    the Ruuvi manufacturer data is taken out of it.
    """

    columns = 3
    LENGTH = 24

    def __init__(self) -> None:
        self._last: tuple[bytes, int] | None = None

    def reset(self) -> None:
        self._last = None

    def feed(self, data: bytes) -> RawRows:
        pkt = _ruuvi_manufacturer_data(bytes(data))
        if not pkt:
            return _empty(3, [Drop("short", "empty advertisement payload")])
        if pkt[0] != 5:
            return _empty(3, [Drop("wrong_header", f"data format {pkt[0]}, expected 5 (RAWv2)")])
        if len(pkt) < self.LENGTH:
            return _empty(3, [Drop("short", f"{len(pkt)} bytes, RAWv2 has {self.LENGTH}")])
        if len(pkt) > self.LENGTH:
            return _empty(3, [Drop("long", f"{len(pkt)} bytes, RAWv2 has {self.LENGTH}")])
        acc = struct.unpack_from(">hhh", pkt, 7)
        if -32768 in acc:
            return _empty(3, [Drop("not_available", "acceleration marked not available (0x8000)")])
        (seq,) = struct.unpack_from(">H", pkt, 16)
        key = (pkt[18:24], seq)
        if seq != 0xFFFF and key == self._last:
            return _empty(3, [Drop("duplicate", f"measurement {seq} seen already")])
        self._last = key
        return RawRows(np.array([acc], dtype=float))


@dataclass(slots=True)
class Samples:
    """Decoded samples of one feed, in the project's units and sign convention.

    Attributes:
        acc_g: acceleration in g, shape (n, 3); at rest the axis pointing up reads +1 g.
        gyro_dps: angular rate in deg/s, shape (n, 3), or None for accelerometer-only profiles.
        t_sensor_s: the sensor's clock per sample in seconds since its epoch, or None.
        drops: input thrown away, by reason.
    """

    acc_g: np.ndarray
    gyro_dps: np.ndarray | None
    t_sensor_s: np.ndarray | None
    drops: list[Drop]

    def __len__(self) -> int:
        return int(self.acc_g.shape[0])


@dataclass(slots=True)
class RowSamples:
    """:class:`Samples` of one feed as Python floats (the row path): acceleration in g and angular
    rate in deg/s as ``(x, y, z)`` tuples, or ``gyro_dps`` None; no sensor clock."""

    acc_g: list[Row3]
    gyro_dps: list[Row3] | None
    drops: list[Drop]


def make_raw_decoder(profile: Profile) -> RawDecoder:
    """A fresh raw decoder for the profile's stream."""
    s = profile.stream
    if s.decoder == "struct":
        return StructDecoder(s)
    if s.decoder == "polar_pmd":
        factor = s.options.get("factor")
        return PolarPmdDecoder(profile.rate_hz, None if factor is None else float(factor))
    if s.decoder == "witmotion":
        return WitMotionDecoder()
    if s.decoder == "ruuvi_rawv2":
        return RuuviRawV2Decoder()
    raise ValueError(f"unknown decoder {s.decoder!r}")


class ProfileDecoder:
    """Bytes -> :class:`Samples` for one profile: raw decoder, column choice, per-axis scale."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.raw = make_raw_decoder(profile)
        s = profile.stream
        self._acc_cols = list(s.acc)
        self._acc_scale = np.array(s.acc_scale, dtype=float)
        self._gyro_cols = list(s.gyro)
        self._gyro_scale = np.array(s.gyro_scale, dtype=float) if s.gyro else None
        # The row path's column picks and scales, as Python numbers.
        self._acc_pick = itemgetter(*s.acc)
        self._acc_s = tuple(float(v) for v in s.acc_scale)
        self._gyro_pick = itemgetter(*s.gyro) if s.gyro else None
        self._gyro_s = tuple(float(v) for v in s.gyro_scale) if s.gyro else ()

    @property
    def has_clock(self) -> bool:
        return self.raw.has_clock

    @property
    def has_gyro(self) -> bool:
        return bool(self._gyro_cols)

    @property
    def has_rows(self) -> bool:
        """True when :meth:`feed_rows` works (the raw decoder has a row path)."""
        return self.raw.has_rows

    def reset(self) -> None:
        self.raw.reset()

    def pending(self) -> int:
        return self.raw.pending()

    def feed(self, data: bytes | bytearray) -> Samples:
        """Decode one notification / advertisement payload. Never raises on bad input."""
        out = self.raw.feed(bytes(data))
        rows = out.rows
        acc = rows[:, self._acc_cols] * self._acc_scale
        gyro = rows[:, self._gyro_cols] * self._gyro_scale if self._gyro_scale is not None else None
        return Samples(acc, gyro, out.t_sensor_s, out.drops)

    def feed_rows(self, data: bytes | bytearray) -> RowSamples:
        """:meth:`feed` as Python floats, for a raw decoder with a row path (``has_rows``): the
        same numbers to the bit (each value is ``float(raw) * scale`` either way)."""
        out = self.raw.feed_tuples(bytes(data))
        ax, ay, az = self._acc_s
        pick = self._acc_pick
        acc: list[Row3] = []
        for r in out.rows:
            x, y, z = pick(r)
            acc.append((float(x) * ax, float(y) * ay, float(z) * az))
        gyro: list[Row3] | None = None
        if self._gyro_pick is not None:
            gx, gy, gz = self._gyro_s
            gpick = self._gyro_pick
            gyro = []
            for r in out.rows:
                x, y, z = gpick(r)
                gyro.append((float(x) * gx, float(y) * gy, float(z) * gz))
        return RowSamples(acc, gyro, out.drops)
