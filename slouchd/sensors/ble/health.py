"""Is the adapter wedged, or is Bluetooth missing altogether? The supervisor's two clocks.

* the **wedge clock** runs from the first failure of a Bluetooth stack that answers; any batch
  (or a scan that works but does not see the sensor) stops it; when it reaches
  ``[ble] wedged_exit_s``, :class:`~slouchd.sensors.ble.errors.AdapterWedged` is raised;
* an **outage** (no D-Bus, no BlueZ, no adapter, see
  :func:`~slouchd.sensors.ble.errors.bluetooth_missing`) is not a wedge: it stops the wedge
  clock, is warned about once, changes of what is missing are said at info, and the stage that
  found it missing says when Bluetooth is back.

See docs/sensors.md ("A wedged adapter", "No Bluetooth at all").
"""

from __future__ import annotations

from slouchd.sensors.ble.context import SourceContext
from slouchd.sensors.ble.errors import AdapterWedged, Missing, bluetooth_missing, one_line


class AdapterHealth:
    """The wedge clock and the outage state of one source."""

    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx
        #: Monotonic time of the first failure in a row of a stack that answers, or None.
        self.failing_since: float | None = None
        self.missing: Missing | None = None  # what is missing while there is no Bluetooth
        self._missing_since = 0.0
        self._missing_stage = ""

    def working(self) -> None:
        """Samples arrived, or the scanner works and the sensor is simply away: not a failure."""
        self.failing_since = None

    def failed(self, stage: str, err: BaseException) -> None:
        """``stage`` ("scan", "connect", "stream") failed with ``err``: an outage or a failure."""
        ctx = self.ctx
        missing = bluetooth_missing(err, ctx.settings.adapter)
        if missing is not None:
            self._no_bluetooth(stage, missing)
            return
        self.back(stage)  # it answered, so the stack is there, even if this failed
        if self.failing_since is None:
            self.failing_since = ctx.clock.monotonic()
        ctx.status.last_error = f"{stage}: {one_line(err)}"
        ctx.log.warning("%s: %s failed (%s)", ctx.who(), stage, one_line(err))

    def _no_bluetooth(self, stage: str, missing: Missing) -> None:
        """No D-Bus / BlueZ / adapter: not a wedge (a restart cannot fix it), so keep retrying.

        One warning per outage; a change of what is missing is logged at info, repeats at debug.
        """
        ctx = self.ctx
        # The wedge clock measures an adapter that exists and fails: an outage restarts it.
        self.failing_since = None
        ctx.status.last_error = f"{stage}: no Bluetooth: {missing.what}"
        previous, self.missing, self._missing_stage = self.missing, missing, stage
        if previous is None:
            self._missing_since = ctx.clock.monotonic()
            ctx.log.warning("%s: no Bluetooth: %s; %s; retrying at least every %g s", ctx.who(),
                            missing.what, missing.fix, ctx.settings.backoff_max_s)
        elif previous.kind != missing.kind:
            ctx.log.info("%s: still no Bluetooth, now: %s; %s", ctx.who(), missing.what, missing.fix)
        else:
            ctx.log.debug("%s: %s failed: no Bluetooth: %s", ctx.who(), stage, missing.what)

    def back(self, stage: str) -> None:
        """Say once that Bluetooth answers again: ``stage`` ("scan", "connect") worked or failed otherwise.

        Only the stage that found Bluetooth missing ends the outage, so a scan that works while
        every connect still finds no BlueZ does not log "back" and "missing" on every attempt.
        """
        if self.missing is None or stage != self._missing_stage:
            return
        ctx = self.ctx
        ctx.log.info("%s: Bluetooth is back (%s answers again after %.0f s without: %s)", ctx.who(),
                     stage, ctx.clock.monotonic() - self._missing_since, self.missing.what)
        self.missing = None

    def check_wedged(self) -> None:
        """Raise :class:`AdapterWedged` when the adapter has failed every attempt for ``wedged_exit_s``."""
        ctx = self.ctx
        since = self.failing_since
        if since is not None and ctx.clock.monotonic() - since >= ctx.settings.wedged_exit_s:
            # One statement of fact; the daemon's CRITICAL line adds "exiting so systemd restarts us".
            raise AdapterWedged(
                f"{ctx.settings.adapter or 'the default adapter'} failed every attempt for "
                f"{ctx.clock.monotonic() - since:.0f} s (last: {ctx.status.last_error})")
