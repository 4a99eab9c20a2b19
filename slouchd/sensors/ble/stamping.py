"""Sample stamping: packet arrival times and sensor clocks -> sample times in Unix seconds.

Pure: no clock, no I/O, no asyncio; the session passes each packet's host arrival time (Unix
seconds) and, when the protocol carries one, the sensor's clock per sample. Two ways:

* **sensor clock** (Polar PMD): the sensor's times are mapped onto Unix time by an offset taken at
  the first packet of each link, and taken again whenever the newest sample would land more than
  :data:`SENSOR_CLOCK_RESYNC_S` from its arrival (the sensor clock drifted or jumped); samples at
  or before the last delivered one are repeats and dropped;
* **host clock**: the packet's samples are spread back from the arrival at the nominal rate
  (notifications batch samples; the newest one is about "now"), never before the last delivered
  sample: a packet that arrives early (BlueZ delivers in bursts) is pushed forward instead.

Either way delivered times never go backwards. See docs/sensors.md ("Time stamps").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Re-anchor a sensor clock that drifted this far from host time, seconds.
SENSOR_CLOCK_RESYNC_S = 2.0


def spread_back(arrival_unix: float, n: int, rate_hz: float, last_t: float | None) -> np.ndarray:
    """Host times of ``n`` samples that arrived together at ``arrival_unix``, seconds.

    The newest sample is at the arrival (or at ``last_t`` when that is later), the others
    ``1 / rate_hz`` apart before it; when that would reach back to ``last_t`` or before, the
    first one is put just after ``last_t`` and the rest spread evenly up to the newest.
    """
    return np.array(spread_back_floats(arrival_unix, n, rate_hz, last_t))


def spread_back_floats(arrival_unix: float, n: int, rate_hz: float, last_t: float | None) -> list[float]:
    """:func:`spread_back` as a list of floats (no numpy: one sample per notification is common).

    Evenly spaced as ``numpy.linspace`` spaces them, to the bit: ``i * step + start``, the last
    one exactly the newest.
    """
    end = arrival_unix if last_t is None else max(arrival_unix, last_t)
    if n == 1:
        return [end]
    start = end - (n - 1) / rate_hz
    if last_t is not None and start <= last_t:
        start = min(last_t + 1.0 / rate_hz, end)
    step = (end - start) / (n - 1)
    times = [i * step + start for i in range(n - 1)]
    times.append(end)
    return times


def map_sensor_clock(t_sensor: np.ndarray, arrival_unix: float,
                     offset: float | None) -> tuple[np.ndarray, float]:
    """Unix times of samples stamped by the sensor, and the offset (Unix - sensor) used, seconds.

    ``offset`` None (a new link) or one that puts the newest sample more than
    :data:`SENSOR_CLOCK_RESYNC_S` away from ``arrival_unix`` is replaced by one that puts the
    newest sample at the arrival.
    """
    newest = float(t_sensor[-1])
    if offset is None or abs(newest + offset - arrival_unix) > SENSOR_CLOCK_RESYNC_S:
        offset = arrival_unix - newest
    return t_sensor + offset, offset


def first_newer(t: np.ndarray, last_t: float | None) -> int | None:
    """Index of the first time after ``last_t`` (0 when there is none yet), None if none is."""
    if last_t is None or t[0] > last_t:
        return 0
    newer = np.nonzero(t > last_t)[0]
    return int(newer[0]) if len(newer) else None


@dataclass
class Stamped:
    """Times of the samples of one packet that are new, and where they start in the packet."""

    t_s: np.ndarray
    first: int


class SampleStamper:
    """The stamping state of one source: the last delivered time and the sensor clock's offset.

    Args:
        rate_hz: the nominal sample rate host-stamped samples are spread back at, Hz.
    """

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        #: Unix time of the last delivered sample (kept across links: time never goes back).
        self.last_t: float | None = None
        #: Unix time minus sensor time, seconds; None until the first sensor-clocked packet of a link.
        self.sensor_offset: float | None = None

    def new_link(self) -> None:
        """A new link: the sensor's clock may have restarted, so take its offset again."""
        self.sensor_offset = None

    def stamp(self, arrival_unix: float, n: int, t_sensor: np.ndarray | None) -> Stamped | None:
        """Times for the ``n`` samples of a packet that arrived at ``arrival_unix`` (Unix seconds).

        ``t_sensor`` is the sensor's clock per sample (seconds since its epoch) or None. Returns
        None when every sample is a repeat of one delivered already (sensor clock only).
        """
        if t_sensor is None:
            t = spread_back(arrival_unix, n, self.rate_hz, self.last_t)
            first = 0
        else:
            t, self.sensor_offset = map_sensor_clock(t_sensor, arrival_unix, self.sensor_offset)
            found = first_newer(t, self.last_t)
            if found is None:
                return None
            first = found
            if first:
                t = t[first:]
        self.last_t = float(t[-1])
        return Stamped(t, first)

    def stamp_host(self, arrival_unix: float, n: int) -> list[float]:
        """:meth:`stamp` for host-clocked samples, as floats: the same times to the bit."""
        t = spread_back_floats(arrival_unix, n, self.rate_hz, self.last_t)
        self.last_t = t[-1]
        return t
