"""Shared helpers of the benchmarks: results as JSON, small tables, /proc sampling, a subscriber.

Every script in ``bench/`` runs as ``python bench/<name>.py [--quick]`` from the repository root
(with the project's virtualenv's python). Results go to ``bench/results/`` (git-ignored):
``<name>-<UTC time>.json`` and ``<name>-latest.json``.

Figures are taken from the measured process's own CPU time (``/proc/PID/stat`` utime + stime),
not from wall time, because the benchmark machine is shared: wall time includes waiting for a core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ first; we also want tests._broker
    sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ----------------------------------------------------------------------------- arguments / output

def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="a seconds-long smoke run (CI): checks that it runs, numbers not meaningful")
    p.add_argument("--out", metavar="DIR", default=str(RESULTS),
                   help=f"where to write the JSON results (default {RESULTS.relative_to(ROOT)})")
    return p


def machine() -> dict[str, Any]:
    """What the figures were measured on (the load average says how shared the machine was)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
    }


def write_results(name: str, data: dict[str, Any], out_dir: str | Path = RESULTS,
                  quick: bool = False) -> Path:
    """Write ``<name>-<time>.json`` and ``<name>-latest.json``; returns the timestamped path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    doc = {"bench": name, "time": now.isoformat(timespec="seconds"), "quick": quick,
           "machine": machine(), **data}
    text = json.dumps(doc, indent=2, default=_jsonable) + "\n"
    path = out / f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}{'-quick' if quick else ''}.json"
    path.write_text(text)
    (out / f"{name}-latest{'-quick' if quick else ''}.json").write_text(text)
    return path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table of ``rows`` (floats shown with 3 significant-ish digits)."""
    if not rows:
        return "(no rows)"
    cols = list(columns or rows[0].keys())
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "nan"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 0.1:
            return f"{v:.2f}"
        return f"{v:.3f}"
    return str(v)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds of a list of seconds."""
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90), "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
    }


# ----------------------------------------------------------------------------- /proc sampling

@dataclass(frozen=True)
class ProcSample:
    """One look at a process: CPU seconds (user + system), RSS, open fds, threads, at wall time."""

    at: float  # time.monotonic()
    cpu_s: float
    rss_mb: float
    fds: int
    threads: int


def proc_sample(pid: int) -> ProcSample:
    """Read ``/proc/PID``: CPU time from ``stat`` (utime + stime, clock ticks), RSS from ``statm``."""
    at = time.monotonic()
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces
    cpu_s = (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)
    threads = int(fields[17])
    with open(f"/proc/{pid}/statm") as f:
        rss_pages = int(f.read().split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return ProcSample(at, cpu_s, rss_pages * PAGE / 1e6, fds, threads)


def cpu_pct(a: ProcSample, b: ProcSample) -> float:
    """CPU used between two samples, in % of one core."""
    return 100.0 * (b.cpu_s - a.cpu_s) / max(b.at - a.at, 1e-9)


def children_cpu_s() -> float:
    """User + system CPU seconds of every waited-for child process so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ----------------------------------------------------------------------------- broker, subscriber

def start_mosquitto(workdir: Path) -> Any:
    """A private Mosquitto on a free loopback port (never 1883), started."""
    from tests._broker import MosquittoBroker

    broker = MosquittoBroker(workdir)
    broker.start()
    return broker


@dataclass
class Received:
    topic: str
    at: float  # time.time() when the subscriber got it (Unix seconds; same clock as the daemon's)
    payload: bytes


class Subscriber:
    """A separate MQTT client (paho, its own network thread) recording every message it gets.

    It runs in the benchmark process, never in the daemon's, so its CPU is not counted as the
    daemon's. Arrival times are ``time.time()`` so that they compare with sample-clock times.
    """

    def __init__(self, host: str, port: int, topics: Iterable[str] = ("#",),
                 keep_payload: bool = True) -> None:
        import paho.mqtt.client as paho

        self.topics = tuple(topics)
        self.keep_payload = keep_payload
        self.messages: list[Received] = []
        self.count = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-{time.time_ns()}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=60)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError(f"could not subscribe to {host}:{port}")

    def _on_connect(self, client: Any, *args: Any) -> None:
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        at = time.time()
        with self._lock:
            self.count += 1
            self.messages.append(Received(msg.topic, at, bytes(msg.payload) if self.keep_payload else b""))

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ----------------------------------------------------------------------------- the daemon process

def wearer_tables(n: int, *, sensor: str = "simulated", speed: float = 1.0, prefix: str = "w",
                  detection: str = "") -> str:
    """``[[wearers]]`` tables for ``n`` wearers named ``w001``... (seed = index)."""
    out = []
    for i in range(1, n + 1):
        out.append(f'[[wearers]]\nname = "{prefix}{i:03d}"\nsensor = "{sensor}"\n'
                   f"speed = {speed}\nseed = {i}\n{detection}")
    return "\n".join(out)


def daemon_config(path: Path, *, port: int, state_dir: Path, wearers: str, extra: str = "",
                  log_level: str = "warning") -> Path:
    """A config for ``slouchd run`` against the bench broker (Home Assistant discovery on)."""
    path.write_text(
        f'[daemon]\nstate_dir = "{state_dir}"\nlog_level = "{log_level}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nbase_topic = "bench"\n'
        f'client_id = "bench-daemon-{os.getpid()}"\n'
        f"{extra}\n{wearers}\n")
    return path


def fmt_kv(pairs: dict[str, Any]) -> str:
    """The final ``key=value`` line of a benchmark."""
    return "  ".join(f"{k}={_fmt(v)}" for k, v in pairs.items())
