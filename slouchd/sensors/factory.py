"""Moved to :mod:`slouchd.daemon.sources` (daemon wiring does not belong in ``sensors/``).

Kept only as a re-export while ``slouchd/config.py`` (``check_resources``), ``bench/_packet_daemon.py``
and ``tests/posture/test_replay.py`` still import it from here; delete it once they import
:mod:`slouchd.daemon.sources`.
"""

from slouchd.daemon.sources import (
    REPLAY_BLOCK_ROWS,
    SourcePlan,
    check_profiles_dir,
    check_replay,
    open_source,
    plan_source,
    replay_batches,
    replay_path,
)

__all__ = ["REPLAY_BLOCK_ROWS", "SourcePlan", "check_profiles_dir", "check_replay", "open_source",
           "plan_source", "replay_batches", "replay_path"]
