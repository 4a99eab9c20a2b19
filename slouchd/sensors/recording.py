"""Recordings in the replay CSV format: reading (whole file, then chunked batches), writing, and a
sample source that plays a recording back (for ``sensor = "replay:PATH"``).

The format, as documented in docs/posture.md::

    t,ax,ay,az[,gx,gy,gz]
    0.000,0.01,0.98,-0.17
    0.020,0.01,0.98,-0.16

- one header line naming the columns; ``t`` seconds, ``ax ay az`` acceleration in g,
  ``gx gy gz`` angular rate in deg/s (all three or none); other columns are ignored, columns may
  come in any order;
- ``t`` strictly increasing; blank lines and lines starting with ``#`` are skipped; a UTF-8 BOM
  (spreadsheet exports) is ignored; gyro columns that are present but empty in every row mean
  no gyroscope;
- ``-`` as the path reads standard input;
- a malformed or non-increasing row is an error naming its line (1 = the header).
"""

from __future__ import annotations

import io
import itertools
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from slouchd.files import unreadable
from slouchd.model import SampleBatch

ACC_COLUMNS = ("ax", "ay", "az")
GYRO_COLUMNS = ("gx", "gy", "gz")


class RecordingError(ValueError):
    """A recording cannot be read. ``str(err)`` is one line naming the file and the line."""


@dataclass(frozen=True)
class Recording:
    """A whole recording in memory.

    Attributes:
        t_s: sample times, seconds, strictly increasing, (n,).
        acc_g: acceleration, g, (n, 3).
        gyro_dps: angular rate, deg/s, (n, 3) or None.
    """

    t_s: np.ndarray
    acc_g: np.ndarray
    gyro_dps: np.ndarray | None

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @property
    def duration_s(self) -> float:
        return float(self.t_s[-1] - self.t_s[0]) if len(self) > 1 else 0.0

    def batches(self, chunk_s: float = 10.0, start_s: float | None = None,
                end_s: float | None = None) -> Iterator[SampleBatch]:
        """Consecutive batches covering ``chunk_s`` seconds each (between ``start_s`` and ``end_s``)."""
        t = self.t_s
        lo = 0 if start_s is None else int(np.searchsorted(t, start_s, side="left"))
        hi = len(self) if end_s is None else int(np.searchsorted(t, end_s, side="left"))
        if hi <= lo:
            return
        edges = np.arange(t[lo], t[hi - 1] + chunk_s, chunk_s)
        cuts = np.unique(np.clip(np.searchsorted(t, edges, side="left"), lo, hi))
        cuts = np.unique(np.concatenate(([lo], cuts, [hi])))
        for a, b in itertools.pairwise(cuts):
            if b > a:
                gyro = None if self.gyro_dps is None else self.gyro_dps[a:b]
                yield SampleBatch(t[a:b], self.acc_g[a:b], gyro)


def _column_index(header: list[str], where: str) -> tuple[int, list[int], list[int] | None]:
    names = [h.strip().lower() for h in header]
    missing = [c for c in ("t", *ACC_COLUMNS) if c not in names]
    if missing:
        raise RecordingError(f"{where}: line 1: header needs columns t,ax,ay,az "
                             f"(missing {','.join(missing)}); "
                             f"got {','.join(header)}")
    gyro_present = [c in names for c in GYRO_COLUMNS]
    if any(gyro_present) and not all(gyro_present):
        raise RecordingError(f"{where}: line 1: gyro columns must be all of gx,gy,gz or none")
    dup = {n for n in names if names.count(n) > 1 and n in ("t", *ACC_COLUMNS, *GYRO_COLUMNS)}
    if dup:
        raise RecordingError(f"{where}: line 1: column {sorted(dup)[0]} appears twice")
    gyro = [names.index(c) for c in GYRO_COLUMNS] if all(gyro_present) else None
    return names.index("t"), [names.index(c) for c in ACC_COLUMNS], gyro


def parse_recording(text: str, where: str = "<recording>") -> Recording:
    """Parse replay-CSV text. Raises RecordingError naming ``where`` and the line of the problem."""
    text = text.removeprefix("\ufeff")
    return _load(io.StringIO(text), where, lambda: text)


def read_recording(path: str | os.PathLike[str]) -> Recording:
    """Read a replay CSV file. Raises RecordingError (one line naming the file and line)."""
    if str(path) == "-":
        try:
            return parse_recording(sys.stdin.read(), "<stdin>")
        except UnicodeDecodeError:
            raise RecordingError("<stdin>: not UTF-8 text") from None
    p = Path(path)
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" export starts with a byte-order mark.
        with p.open(encoding="utf-8-sig", newline="") as fh:
            return _load(fh, str(p), lambda: p.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as err:
        raise RecordingError(unreadable(p, err)) from None


def _load(fh: TextIO, where: str, whole_text: Callable[[], str]) -> Recording:
    """Fast path: numpy's C reader on the rows; any problem is then located by the slow path."""
    header_line = ""
    while not header_line.strip() or header_line.lstrip().startswith("#"):
        header_line = fh.readline()
        if not header_line:
            raise RecordingError(f"{where}: empty file (expected a header t,ax,ay,az[,gx,gy,gz])")
    header = header_line.rstrip("\r\n").split(",")
    t_i, acc_i, gyro_i = _column_index(header, where)
    wanted = [t_i, *acc_i, *(gyro_i or [])]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            values = np.loadtxt(fh, delimiter=",", usecols=wanted, ndmin=2, comments="#", dtype=float)
    except ValueError:
        values = None
    if values is not None and values.shape[0] > 0:
        # usecols does not notice a row with more fields than the header: count the commas (in C);
        # only when they do not add up (a bad row, or commas inside comments) look row by row.
        text = whole_text()
        if text.count(",") != (len(header) - 1) * (values.shape[0] + 1):
            body = _body(text)
            if any(_data(ln).count(",") != len(header) - 1 for _, ln in body):
                values = None
    if values is None or values.shape[0] == 0:
        body = _body(whole_text())
        if not body:
            raise RecordingError(f"{where}: no data rows after the header")
        values = _parse_slowly(body, len(header), wanted, header, where, gyro_i)
    if gyro_i is not None and np.isnan(values[:, 4:7]).all():
        gyro_i, values = None, values[:, :4]  # gyro columns present but empty: no gyroscope
    bad = ~np.all(np.isfinite(values), axis=1)
    if bad.any():
        no, ln = _body(whole_text())[int(np.argmax(bad))]
        raise RecordingError(f"{where}: line {no}: not a finite number in {ln.strip()!r}")
    t = values[:, 0]
    nonincr = np.flatnonzero(np.diff(t) <= 0)
    if nonincr.size:
        j = int(nonincr[0]) + 1
        no = _body(whole_text())[j][0]
        raise RecordingError(f"{where}: line {no}: t = {t[j]:g} is not after the previous row's "
                             f"t = {t[j - 1]:g} (t must increase)")
    acc = np.ascontiguousarray(values[:, 1:4])
    gyro = np.ascontiguousarray(values[:, 4:7]) if gyro_i is not None else None
    return Recording(np.ascontiguousarray(t), acc, gyro)


def _data(line: str) -> str:
    """A row without its trailing ``# comment``."""
    return line.split("#", 1)[0]


def _body(text: str) -> list[tuple[int, str]]:
    """(line number, text) of every data line after the header (not blank, not a comment)."""
    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if _data(ln).strip()), len(lines))
    return [(no, ln) for no, ln in enumerate(lines[first + 1:], start=first + 2) if _data(ln).strip()]


def _parse_slowly(body: list[tuple[int, str]], ncol: int, wanted: list[int], header: list[str],
                  where: str, gyro_i: list[int] | None) -> np.ndarray:
    """Row by row: names the first bad line; empty gyro cells become NaN (see _load)."""
    out = np.empty((len(body), len(wanted)))
    for r, (no, ln) in enumerate(body):
        cells = _data(ln).split(",")
        if len(cells) != ncol:
            raise RecordingError(f"{where}: line {no}: {len(cells)} fields, the header has {ncol}")
        for c, idx in enumerate(wanted):
            if gyro_i is not None and idx in gyro_i and not cells[idx].strip():
                out[r, c] = np.nan
                continue
            try:
                out[r, c] = float(cells[idx])
            except ValueError:
                raise RecordingError(f"{where}: line {no}: {header[idx].strip()} = {cells[idx].strip()!r} "
                                     "is not a number") from None
    return out


class RecordingWriter:
    """Writes batches in the replay CSV format (a context manager).

    Args:
        target: a path or an open text file.
        gyro: write gx,gy,gz columns (then every batch must carry gyro data).
    """

    def __init__(self, target: str | os.PathLike[str] | TextIO, gyro: bool) -> None:
        self.gyro = gyro
        if isinstance(target, str | os.PathLike):
            self._fh: TextIO = open(target, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
            self._own = True
        else:
            self._fh = target
            self._own = False
        cols = ["t", *ACC_COLUMNS, *(GYRO_COLUMNS if gyro else ())]
        self._fh.write(",".join(cols) + "\n")
        self._last_t = -np.inf
        self.rows = 0

    def write(self, batch: SampleBatch) -> None:
        """Append a batch; samples not after the last written one are skipped (t must increase)."""
        if len(batch) == 0:
            return
        if self.gyro and batch.gyro_dps is None:
            raise ValueError("this recording has gyro columns but the batch has no gyro data")
        keep = batch.t_s > np.maximum.accumulate(np.concatenate(([self._last_t], batch.t_s[:-1])))
        t = batch.t_s[keep]
        if t.size == 0:
            return
        cols = [t[:, None], batch.acc_g[keep]]
        fmt = ["%.4f", "%.5f", "%.5f", "%.5f"]
        if self.gyro:
            cols.append(batch.gyro_dps[keep])  # type: ignore[index]
            fmt += ["%.3f"] * 3
        buf = io.StringIO()
        np.savetxt(buf, np.hstack(cols), fmt=fmt, delimiter=",")
        self._fh.write(buf.getvalue())
        self._last_t = float(t[-1])
        self.rows += int(t.size)

    def close(self) -> None:
        if self._own:
            self._fh.close()
        else:
            self._fh.flush()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
