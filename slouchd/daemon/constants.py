"""The daemon's exit codes, cadences and deadlines (seconds)."""

from __future__ import annotations

from slouchd.posture.filters import TICK_S
from slouchd.posture.tracker import URGENT_HORIZON_S
from slouchd.publish.wearer import STATE_SETTINGS

EXIT_OK = 0
EXIT_CONFIG = 78  # sysexits EX_CONFIG: systemd's RestartPreventExitStatus stops a restart loop
EXIT_SOFTWARE = 70  # sysexits EX_SOFTWARE: a bug (logged with its traceback); systemd restarts us
EXIT_ADAPTER = 75  # EX_TEMPFAIL: the Bluetooth adapter is wedged; let systemd restart us

DISPATCH_TICKS = 1
"""Run a wearer's tracker once this many 0.1 s decision ticks have completed (see SampleBuffer)
while an alert may be due (``PostureTracker.urgent``) or a stretch session runs: no delay."""
CALM_DISPATCH_TICKS = round(URGENT_HORIZON_S / TICK_S)  # 10
"""... and otherwise: once a second, on whole seconds (``URGENT_HORIZON_S``). No alert can be due
then (the next is at least ``dwell_s`` >= 1 s of slouch away, ``PostureTracker.urgent``), so
holding the ticks never delays an alert; the hand-over at the first sample of a whole second
decides the tick that closes it, so the 1 Hz state goes out exactly when it would per tick, and
the tracker runs a tenth as often (each call has a fixed cost, docs/performance.md)."""
SAVE_EVERY_S = 5.0  # kill -9 loses at most this much of today's totals
STATS_EVERY_S = 60.0
"""Stats of a streaming wearer, and the state of one that is not, at most this often."""
STATUS_EVERY_S = 1.0
"""The systemd status line is looked at this often (the idle daemon's main cost: keep it rare)."""
RESTART_BACKOFF_MIN_S = 1.0
RESTART_BACKOFF_MAX_S = 30.0
"""A failed sensor is opened again after 1, 2, 4 ... 30 s (no jitter: one adapter, few wearers)."""
SHUTDOWN_WEARERS_S = 1.5
SHUTDOWN_SAVE_S = 1.0
SHUTDOWN_MQTT_S = 2.0  # wearers, a pending save and MQTT together stay within systemd's 5 s
SWITCH_CLOSE_S = 3.0  # a reload's old MQTT session: its clean-up and "offline" get this long
OVERRIDE_KEYS = STATE_SETTINGS
"""[detection] keys that Home Assistant / MQTT commands may change (persisted per wearer)."""
