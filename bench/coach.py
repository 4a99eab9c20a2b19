"""Accuracy of the guided-stretch judge on simulated stretch sessions with ground truth.

    python bench/coach.py            # the full grid (a few minutes of CPU)
    python bench/coach.py --quick    # a smoke run in seconds (CI): the short ``quick`` session, one
                                     # seed per case: numbers not meaningful
    python bench/coach.py --main-only    # the 90 sessions of the goal grid only (about 2 min of CPU)
    python bench/coach.py --judge-only   # the judge alone, not through the coach runtime

End to end by default: each session is started with ``CoachRuntime.start_stretch`` and fed the
tracker's 0.1 s frames through ``CoachRuntime.process``, as the daemon will run it; the events
scored are the runtime's (``slouchd.model.Event``), converted back by the simulator.

Each case is a simulated person (``slouchd.sensors.simulation.stretches``) doing the built-in
``desk_break`` session (5 stretches, 12 holds) through the real posture tracker (mount declared,
0.1 s frames, sensor noise, gyro bias, breathing 0.5-1 deg at 0.2-0.3 Hz, sway, small shifts
during holds) and the stretch judge, reacting to the judge's cues with human delays. Behaviours:
``good``, ``bounce`` (60 % of the non-squeeze holds contain 3-6 s of bouncing, 5 deg peak to peak,
at 1-2 Hz unless the case says otherwise) and ``abandon`` (gives up once: lets go half-way, never
starts, or goes the wrong way).

Scored against the truth (defined on the true trunk angles: in range, turning slower than
``settle_dps``, not inside a bout of bouncing):

- **hold error**: per repetition, the judge's held seconds minus the true in-pose still seconds
  over the same interval (the judge's repetition start to its "done" or "abandoned");
- **bounce flagged**: a ``no_bouncing`` cue within 2 s of a bout's start;
- **false cues**: ``no_bouncing`` cues outside every bout (+3 s after it), per 20 clean holds
  (holds without a bout);
- **steps judged right**: each stretch's complete / not complete equals the truth.

Prints a table and a final key-figures line; writes JSON to ``bench/results/coach-latest.json``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._common import fmt_kv, parser, percentile, table, write_results  # noqa: E402
from slouchd.posture import stretch as sj  # noqa: E402
from slouchd.sensors.simulation.stretches import run_guided_session  # noqa: E402
from slouchd.stretches import load_catalog  # noqa: E402

GOALS = {"hold_within_1s": 1.0, "bounce_flagged": 0.95, "false_cues_per_20_clean": 1.0, "steps_right": 0.98}
FLAG_WITHIN_S = 2.0
HOLD_TOLERANCE_S = 1.0
AFTER_BOUNCE_S = 3.0


@dataclasses.dataclass(frozen=True)
class Case:
    group: str
    behaviour: str
    seed: int
    gyro: bool = True
    bounce_hz: tuple[float, float] = (1.0, 2.0)
    bounce_swing_deg: float = 5.0
    rate_hz: float = 50.0
    session: str = "desk_break"
    runtime: bool = True
    mute_s: float = 0.0
    buzz_on_bounce: bool = False


def run_case(case: Case) -> dict[str, Any]:
    cat = load_catalog()
    steps = cat.steps_of(cat.session(case.session))
    t0 = time.process_time()
    run = run_guided_session(steps, case.behaviour, case.seed, gyro=case.gyro, rate_hz=case.rate_hz,
                             bounce_swing_deg=case.bounce_swing_deg, bounce_hz=case.bounce_hz,
                             runtime=case.runtime, mute_s=case.mute_s,
                             buzz_on_bounce=case.buzz_on_bounce)
    cpu_s = time.process_time() - t0
    assert run.judge is not None
    settle = run.judge.settings.settle_dps
    w = run.wearer
    errors = []
    clean_holds = 0
    for win in run.rep_windows:
        truth = w.true_hold_s(steps[win["step"]], win["t0"], win["t1"], settle)
        errors.append(win["held_s"] - truth)
        bouts = [b for b in w.bounces if win["t0"] <= b.start_s < win["t1"]]
        clean_holds += not bouts
    cues = [e.t_s for e in run.events if e.kind == sj.STRETCH_CUE and e.data["cue"] == "no_bouncing"]
    latencies = []
    for b in w.bounces:
        hits = [c - b.start_s for c in cues if b.start_s <= c <= b.start_s + FLAG_WITHIN_S]
        latencies.append(min(hits) if hits else None)
    false_cues = sum(1 for c in cues
                     if not any(b.start_s <= c <= b.end_s + AFTER_BOUNCE_S for b in w.bounces))
    judged = [s["complete"] for s in run.judge.result()["steps"]]
    expected = w.expected_steps()
    return {
        **dataclasses.asdict(case),
        "session_s": run.judge.t_s - run.judge.t_start_s,
        "cpu_s": cpu_s,
        "errors": errors,
        "bounces": len(w.bounces),
        "latencies": latencies,
        "clean_holds": clean_holds,
        "false_cues": false_cues,
        "steps": len(judged),
        "steps_right": sum(a == b for a, b in zip(judged, expected, strict=True)),
        "session_right": (run.judge.status == sj.COMPLETE) == all(expected),
        "status": run.judge.status,
        "reason": run.judge.reason,
    }


def cases(quick: bool, main_only: bool = False, runtime: bool = True) -> list[Case]:
    behaviours = ("good", "bounce", "abandon")
    if quick:
        return [Case("main", b, 1000 + j, session="quick", runtime=runtime) for j, b in enumerate(behaviours)]
    n = 30
    out = [Case("main", b, 1000 * i + j, runtime=runtime) for j, b in enumerate(behaviours) for i in range(n)]
    if main_only:
        return out
    m = 8
    out += [Case("bounce 0.5-1 Hz", "bounce", 5000 + i, bounce_hz=(0.5, 1.0)) for i in range(m)]
    out += [Case("bounce 2-3 Hz", "bounce", 6000 + i, bounce_hz=(2.0, 3.0)) for i in range(m)]
    out += [Case("bounce 8 deg", "bounce", 7000 + i, bounce_swing_deg=8.0) for i in range(m)]
    out += [Case("no gyro", b, 8000 + 10 * i + j, gyro=False)
            for j, b in enumerate(behaviours) for i in range(m)]
    out += [Case("25 Hz", b, 9000 + 10 * i + j, rate_hz=25.0)
            for j, b in enumerate(behaviours) for i in range(m)]
    if runtime:  # a buzz (at each hold's end; optionally on the no-bouncing cue) mutes the sensor
        out += [Case(f"buzz{' +bounce' if on else ''} mutes {mute:g} s", b, 11000 + 10 * i + j, mute_s=mute,
                     buzz_on_bounce=on)
                for on in (False, True) for mute in (0.6, 1.3) for j, b in enumerate(("good", "bounce"))
                for i in range(m)]
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [e for r in rows for e in r["errors"]]
    lat = [x for r in rows for x in r["latencies"]]
    flagged = [x for x in lat if x is not None]
    clean = sum(r["clean_holds"] for r in rows)
    false = sum(r["false_cues"] for r in rows)
    steps = sum(r["steps"] for r in rows)
    return {
        "sessions": len(rows),
        "holds": len(errors),
        "hold_within_1s": sum(abs(e) <= HOLD_TOLERANCE_S for e in errors) / len(errors) if errors else None,
        "hold_err_p50_s": percentile([abs(e) for e in errors], 50),
        "hold_err_p95_s": percentile([abs(e) for e in errors], 95),
        "hold_err_max_s": max((abs(e) for e in errors), default=float("nan")),
        "bounces": len(lat),
        "bounce_flagged": len(flagged) / len(lat) if lat else None,
        "flag_latency_p50_s": percentile(flagged, 50),
        "flag_latency_max_s": max(flagged, default=float("nan")),
        "clean_holds": clean,
        "false_cues": false,
        "false_cues_per_20_clean": 20.0 * false / clean if clean else None,
        "steps_right": sum(r["steps_right"] for r in rows) / steps if steps else None,
        "sessions_right": sum(r["session_right"] for r in rows) / len(rows),
        "cpu_s_per_session": sum(r["cpu_s"] for r in rows) / len(rows),
    }


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1: the machine is shared)")
    p.add_argument("--main-only", action="store_true", help="only the goal grid (90 desk_break sessions)")
    p.add_argument("--judge-only", action="store_true", help="the judge alone, not through the coach runtime")
    args = p.parse_args()
    todo = cases(args.quick, args.main_only, runtime=not args.judge_only)
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(run_case, todo))
    else:
        rows = [run_case(c) for c in todo]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
        if r["group"] == "main":
            groups.setdefault(f"main/{r['behaviour']}", []).append(r)
    summary = {g: summarise(rs) for g, rs in groups.items()}
    cols = ["group", "sessions", "holds", "hold_within_1s", "hold_err_p95_s", "hold_err_max_s", "bounces",
            "bounce_flagged", "flag_latency_p50_s", "flag_latency_max_s", "clean_holds",
            "false_cues_per_20_clean", "steps_right"]
    print(table([{"group": g, **s} for g, s in summary.items()], cols))
    wrong = [r for r in rows if r["steps_right"] != r["steps"]]
    for r in wrong[:10]:
        print(f"  step misjudged: {r['group']} {r['behaviour']} seed {r['seed']}: "
              f"{r['status']} ({r['reason']})")
    main_s = summary["main"]
    def at_least(key: str) -> bool:
        return main_s[key] is not None and main_s[key] >= GOALS[key]

    met = {
        "hold_within_1s": at_least("hold_within_1s"),
        "bounce_flagged": at_least("bounce_flagged"),
        "false_cues_per_20_clean": (
            main_s["false_cues_per_20_clean"] or 0) < GOALS["false_cues_per_20_clean"],
        "steps_right": at_least("steps_right"),
    }
    key = {k: main_s[k] for k in ("hold_within_1s", "hold_err_max_s", "bounce_flagged",
                                  "false_cues_per_20_clean", "steps_right")}
    path = write_results("coach", {"goals": GOALS, "met": met, "key": key, "summary": summary, "rows": rows},
                         args.out, args.quick)
    print(f"results: {path}")
    print("coach: " + fmt_kv({**key, "goals_met": all(met.values())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
