"""Start-up: time from `slouchd run` process start to READY=1 and to the first published state.

The real daemon process runs with one simulated wearer at real time against a private Mosquitto.
READY=1 is read from a temporary datagram socket passed as ``$NOTIFY_SOCKET`` (as systemd does);
the first retained ``<base>/<wearer>/state`` and ``<base>/bridge/state = online`` are seen by a
separate MQTT subscriber. Times are from just before ``Popen``. Also measured: the CPU time of
importing the daemon's modules (most of the time to READY) and of a bare interpreter.

Budget: READY <= 2 s after start.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    ROOT,
    Subscriber,
    children_cpu_s,
    daemon_config,
    fmt_kv,
    parser,
    percentile,
    start_mosquitto,
    table,
    wearer_tables,
    write_results,
)

BUDGET_READY_S = 2.0


def cpu_of(code: str) -> tuple[float, float]:
    """(wall s, CPU s) of ``python -c CODE``."""
    c0 = children_cpu_s()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return time.perf_counter() - t0, children_cpu_s() - c0


def one_start(work: Path, port: int, sub: Subscriber, n_wearers: int, i: int) -> dict[str, float]:
    from tests.daemon.harness import DaemonProcess, NotifySocket

    state_dir = work / f"state{i}"
    cfg = daemon_config(work / f"run{i}.toml", port=port, state_dir=state_dir,
                        wearers=wearer_tables(n_wearers, prefix=f"s{i}w"))
    notify = NotifySocket(work / f"notify{i}.sock")
    sub.clear()
    t0_wall = time.time()
    t0 = time.monotonic()
    proc = DaemonProcess(cfg, notify=notify, log_path=work / f"run{i}.log")
    try:
        notify.wait_for("READY=1", timeout_s=30)
        ready_at = next(at for at, line in notify.received if line.startswith("READY=1"))
        first_state = online = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (first_state is None or online is None):
            for m in sub.snapshot():
                if first_state is None and m.topic.startswith(f"bench/s{i}w") and m.topic.endswith("/state"):
                    first_state = m.at
                if online is None and m.topic == "bench/bridge/state" and m.payload == b"online":
                    online = m.at
            time.sleep(0.01)
        if first_state is None or online is None:
            raise RuntimeError(f"no state/online within 30 s; log:\n{proc.log()[-2000:]}")
    finally:
        proc.stop()
        notify.close()
    return {"ready_s": ready_at - t0, "mqtt_online_s": online - t0_wall,
            "first_state_s": first_state - t0_wall}


def main() -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=None, help="starts to time (default 5; --quick 1)")
    args = p.parse_args()
    runs = args.runs or (1 if args.quick else 5)

    bare = cpu_of("pass")
    imports = cpu_of("import slouchd.daemon")
    scipy_signal = cpu_of("import scipy.signal")
    rows = []
    with tempfile.TemporaryDirectory(prefix="slouchd-bench-startup-") as tmp:
        work = Path(tmp)
        broker = start_mosquitto(work / "broker")
        sub = Subscriber(broker.host, broker.port, ("bench/#",))
        try:
            for n in (1,) if args.quick else (1, 10):
                for i in range(runs):
                    r = one_start(work, broker.port, sub, n, len(rows))
                    rows.append({"wearers": n, "run": i + 1, **r})
        finally:
            sub.close()
            broker.stop()
    print(f"interpreter alone: {bare[1]:.2f} s CPU; `import slouchd.daemon`: {imports[1]:.2f} s CPU "
          f"({imports[0]:.2f} s wall), of which `import scipy.signal`: {scipy_signal[1]:.2f} s CPU")
    print(table(rows, ["wearers", "run", "ready_s", "mqtt_online_s", "first_state_s"]))
    one = [r for r in rows if r["wearers"] == 1]
    key = {
        "ready_p50_s": percentile([r["ready_s"] for r in one], 50),
        "ready_max_s": max(r["ready_s"] for r in rows),
        "first_state_p50_s": percentile([r["first_state_s"] for r in one], 50),
        "import_cpu_s": imports[1],
        "scipy_signal_import_cpu_s": scipy_signal[1],
    }
    path = write_results("startup", {
        "runs": runs, "interpreter_cpu_s": bare[1],
        "import_daemon": {"wall_s": imports[0], "cpu_s": imports[1]},
        "import_scipy_signal": {"wall_s": scipy_signal[0], "cpu_s": scipy_signal[1]},
        "rows": rows, "budget": {"ready_s": BUDGET_READY_S}, "key": key,
    }, args.out, args.quick)
    print(f"results: {path}")
    print("startup: " + fmt_kv({**key, "budget_ready": f"<={BUDGET_READY_S:g}s",
                                "met": key["ready_max_s"] <= BUDGET_READY_S}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
