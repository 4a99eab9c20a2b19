"""The state rate limit: at most one state per ``state_interval_s``, yet a state produced once a
second goes out when produced, however late the sender runs each time (no drift)."""

from __future__ import annotations

import itertools

from slouchd.publish.records import STATE_EARLY, WearerRecord
from slouchd.publish.wearer import WearerInfo


def _sends(produced: list[float], sender_delay_s: float, interval_s: float = 1.0) -> list[float]:
    """When each produced state goes out: the sender wakes at the state's due time (or at once)
    and hands it over ``sender_delay_s`` later (a busy event loop)."""
    rec = WearerRecord(WearerInfo("ana", "sim-ana"))
    out: list[float] = []
    for t in produced:
        rec.state = {"t": t, "posture": "upright"}
        rec.want_state(now=False)
        due = max(t, rec.state_due(t, interval_s))
        rec.state_sent_at = due + sender_delay_s
        rec.state_pending = False
        out.append(rec.state_sent_at)
    return out


def test_a_late_sender_does_not_push_every_state_back() -> None:
    produced = [100.0 + s + 0.1 for s in range(600)]  # one frame a second, 0.1 s after it closes
    sends = _sends(produced, sender_delay_s=0.03)
    lags = [s - p for s, p in zip(sends, produced, strict=True)]
    assert max(lags) < 0.05  # each goes out when produced (+ the sender's own delay)


def test_states_offered_faster_are_still_limited() -> None:
    produced = [100.0 + i * 0.02 for i in range(500)]  # 50 Hz for 10 s
    rec = WearerRecord(WearerInfo("ana", "sim-ana"))
    sent: list[float] = []
    for t in produced:
        rec.state = {"t": t}
        rec.want_state(now=False)
        if rec.state_due(t, 1.0) <= t:
            rec.state_sent_at = t
            sent.append(t)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(sent) in (11, 12) and min(gaps) >= 1.0 - STATE_EARLY - 1e-9
