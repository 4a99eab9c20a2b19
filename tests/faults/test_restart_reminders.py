"""Restarts with a state file: break reminders never burst, whatever was saved and however long
the daemon was down (the tracker restored the way the daemon does it, on one wall-clock line)."""

from __future__ import annotations

import itertools
import json
import random
from datetime import datetime
from zoneinfo import ZoneInfo

from slouchd.model import EventKind
from tests.faults._faults import figures, scale
from tests.posture.helpers import tracker
from tests.posture.synth import Step, wear

FAST = {"break_after_min": 5, "break_repeat_min": 2, "break_min_s": 60}
PARIS = ZoneInfo("Europe/Paris")


def test_chained_restarts_never_burst_reminders() -> None:
    rng = random.Random(64)
    restarts = scale(12, 64)
    wall = datetime(2026, 3, 2, 9, 0, tzinfo=PARIS).timestamp()
    state: dict | None = None
    reminders: list[float] = []  # wall times
    for _ in range(restarts):
        run = tracker(well=FAST, tz=PARIS, epoch_offset_s=wall)
        if state is not None:
            if rng.random() < 0.3:  # a hand-edited or old file: a long stretch, no save time
                state = {**state, "sitting_s": rng.uniform(0, 8 * 3600)}
                state.pop("stretch_at", None)
            run.tracker.restore_state(json.loads(json.dumps(state)))
        minutes = rng.uniform(0.5, 4.0)
        run.feed(wear([Step(minutes * 60, 2)], rate_hz=25))
        reminders += [wall + e.t_s for e in run.of(EventKind.BREAK_REMINDER)]
        state = run.tracker.export_state()
        wall += minutes * 60 + rng.choice([0.5, 2.0, 20.0, 90.0])  # downtime (a break is 60 s)
    gaps = [b - a for a, b in itertools.pairwise(reminders)]
    min_gap = min(gaps) if gaps else float("inf")
    ok = min_gap >= 2 * 60 - 1
    figures("restart with a state file", "holds" if ok else "fails", restarts=restarts,
            reminders=len(reminders), min_gap_s=f"{min_gap:.0f}", repeat_s=120)
    assert reminders, "the scenario must remind at all"
    assert min_gap >= 2 * 60 - 1
