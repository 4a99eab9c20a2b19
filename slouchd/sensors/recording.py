"""Recordings in the replay CSV format: reading (streamed in blocks, bounded memory), writing, and
the whole-file :class:`Recording` for callers that want one array.

The format, as documented in docs/recordings.md::

    t,ax,ay,az[,gx,gy,gz]
    0.000,0.01,0.98,-0.17
    0.020,0.01,0.98,-0.16

- one header line naming the columns; ``t`` seconds, ``ax ay az`` acceleration in g,
  ``gx gy gz`` angular rate in deg/s (all three or none); other columns are ignored, columns may
  come in any order; blank lines and ``#`` comments are skipped; a UTF-8 BOM is ignored; gyro
  columns that are empty throughout the first block mean no gyroscope; ``-`` reads standard input;
- recordings as real tools write them: rows with an empty, NaN or infinite cell are dropped and
  counted; a last line cut short (a file copied while being written) is dropped; equal ``t`` (the
  samples of one radio packet) and steps back shorter than one sample period are spread evenly
  between their neighbours and counted; a larger step back is an error naming the line;
- accelerations in milli-g or m/s^2 and a gyroscope in rad/s are recognised and refused with the
  option that reads them (``acc_unit`` / ``gyro_unit``) unless that unit is given;
- any other malformed row is an error naming its line (the header's line number counts from 1).

(About 700 lines, over the ~400 the project aims for: the reader is one streaming pass whose
steps (header, blocks, dropped rows, re-timing, unit checks) share its report; the writer and the
whole-file helpers are small and sit beside it so that the format is defined in one place.)
"""

from __future__ import annotations

import io
import itertools
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from slouchd.files import unreadable
from slouchd.model import SampleBatch

ACC_COLUMNS = ("ax", "ay", "az")
GYRO_COLUMNS = ("gx", "gy", "gz")
ACC_UNITS = {"g": 1.0, "mg": 1e-3, "m/s2": 1.0 / 9.80665}
"""Accelerometer units a recording may use, and the factor to g."""
GYRO_UNITS = {"deg/s": 1.0, "rad/s": 180.0 / math.pi}
"""Gyroscope units a recording may use, and the factor to deg/s."""
BLOCK_ROWS = 65536
"""Lines parsed at a time: about 20 min at 50 Hz and 4 MB of arrays, whatever the file size."""
PERIOD_ROWS = 4096
"""The first block is at least this long: the sample period is measured on it."""
_Rows = tuple[np.ndarray, np.ndarray, np.ndarray | None]
"""Rows held back for re-timing: t (s), acceleration (g), angular rate (deg/s) or None."""
LOW_RATE_HZ = 20.0
"""Below this sample rate angles are less accurate (errors 2-4x those at 50 Hz): warn."""
GYRO_CHECK_WINDOWS = 5
"""Turns of at least ``GYRO_CHECK_MIN_DEG`` needed before judging the gyroscope's unit."""
EDGE_QUIET_G = 0.05
"""Largest deviation of a sample from its window edge's mean for the edge to count as quiet, g."""
DEG_S_RATIO_MIN = 0.5
"""One turn whose integrated gyro is at least this share of the seen turn settles it: deg/s
(rad/s data integrates to 1/57 of real turns)."""
GYRO_CHECK_MIN_DEG = 8.0
"""A window counts as a turn when gravity's direction changes this much in it, degrees."""
GYRO_CHECK_WINDOW_S = 0.5
"""Length of a window in which gravity's turn and the integrated gyro are compared, seconds."""
RAD_S_RATIO_MAX = 0.2
"""Integrated gyro / seen turn below this (deg/s data gives >= 1, rad/s 1/57.3): rad/s."""


class RecordingError(ValueError):
    """A recording cannot be read. ``str(err)`` is one line naming the file and the line."""


@dataclass(frozen=True)
class Recording:
    """A whole recording in memory.

    Attributes:
        t_s: sample times, seconds, strictly increasing, (n,).
        acc_g: acceleration, g, (n, 3).
        gyro_dps: angular rate, deg/s, (n, 3) or None.
        report: what reading it dropped, re-timed and measured.
    """

    t_s: np.ndarray
    acc_g: np.ndarray
    gyro_dps: np.ndarray | None
    report: ReadReport | None = None

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


@dataclass
class ReadReport:
    """What reading a recording found, for ``--summary`` and warnings.

    Attributes:
        where: the file's name in messages.
        samples: samples delivered.
        dropped: rows dropped for an empty, NaN or infinite cell.
        first_dropped_line: line number of the first of them.
        truncated_line: line number of a last line cut short (dropped), else None.
        retimed: rows whose ``t`` was equal to or slightly before an earlier row's, spread evenly.
        first_retimed_line: line number of the first of them.
        period_s: the sample period, seconds (median over the first block), None if unknown.
        t_first_s, t_last_s: first and last sample time, seconds.
        gyro: whether the samples carry a gyroscope.
        acc_unit, gyro_unit: the units the file was read in.
        gyro_rad_s_ratio: set when the gyroscope looks like rad/s: integrated gyro / seen turn.
    """

    where: str
    samples: int = 0
    dropped: int = 0
    first_dropped_line: int | None = None
    truncated_line: int | None = None
    retimed: int = 0
    first_retimed_line: int | None = None
    period_s: float | None = None
    t_first_s: float | None = None
    t_last_s: float | None = None
    gyro: bool = False
    acc_unit: str = "g"
    gyro_unit: str = "deg/s"
    gyro_rad_s_ratio: float | None = None
    _gyro_turns: list[float] = field(default_factory=list, repr=False)

    @property
    def rate_hz(self) -> float | None:
        return None if not self.period_s else 1.0 / self.period_s

    @property
    def duration_s(self) -> float:
        if self.t_first_s is None or self.t_last_s is None:
            return 0.0
        return self.t_last_s - self.t_first_s

    def warnings(self) -> list[str]:
        """One line per thing worth a warning (without the program name)."""
        out = []
        if self.dropped:
            out.append(f"{self.where}: {self.dropped} row(s) with an empty or non-finite cell dropped "
                       f"(first on line {self.first_dropped_line})")
        if self.truncated_line is not None:
            out.append(f"{self.where}: line {self.truncated_line}: the last line is cut short; dropped")
        if self.retimed:
            out.append(f"{self.where}: {self.retimed} row(s) with t equal to or slightly before the "
                       f"previous row's were spread evenly between their neighbours (first on line "
                       f"{self.first_retimed_line})")
        if self.gyro_rad_s_ratio is not None:
            out.append(f"{self.where}: the gyroscope looks like rad/s (turns the accelerometer sees are "
                       f"{1.0 / max(self.gyro_rad_s_ratio, 1e-9):.0f}x what gx,gy,gz add up to in deg/s): "
                       "if so, read it with --gyro-unit rad/s (slouchd replay), or multiply gx,gy,gz by "
                       "57.2958")
        rate = self.rate_hz
        if rate is not None and rate < LOW_RATE_HZ:
            out.append(f"{self.where}: sampled at {rate:.3g} Hz: below {LOW_RATE_HZ:g} Hz the angles are "
                       "less accurate (errors 2-4x those at 50 Hz); record at 25-100 Hz if you can")
        return out


def _column_index(header: list[str], where: str, line_no: int) -> tuple[int, list[int], list[int] | None]:
    names = [h.strip().lower() for h in header]
    missing = [c for c in ("t", *ACC_COLUMNS) if c not in names]
    if missing:
        raise RecordingError(f"{where}: line {line_no}: header needs columns t,ax,ay,az "
                             f"(missing {','.join(missing)}); "
                             f"got {','.join(header)}")
    gyro_present = [c in names for c in GYRO_COLUMNS]
    if any(gyro_present) and not all(gyro_present):
        raise RecordingError(f"{where}: line {line_no}: gyro columns must be all of gx,gy,gz or none")
    dup = {n for n in names if names.count(n) > 1 and n in ("t", *ACC_COLUMNS, *GYRO_COLUMNS)}
    if dup:
        raise RecordingError(f"{where}: line {line_no}: column {sorted(dup)[0]} appears twice")
    gyro = [names.index(c) for c in GYRO_COLUMNS] if all(gyro_present) else None
    return names.index("t"), [names.index(c) for c in ACC_COLUMNS], gyro


class RecordingReader:
    """Reads a replay CSV block by block: memory stays bounded whatever the file's length.

    Args:
        source: a path, ``"-"`` for standard input, or an open text file.
        where: the name used in messages (default: the path).
        acc_unit: unit of ax,ay,az (one of :data:`ACC_UNITS`); None = g, refusing data that
            looks like milli-g or m/s^2.
        gyro_unit: unit of gx,gy,gz (one of :data:`GYRO_UNITS`); None = deg/s, refusing data
            that looks like rad/s.
        block_rows: lines parsed at a time.

    Raises:
        RecordingError: (on opening and while reading) one line naming the file and the line.
    """

    def __init__(self, source: str | os.PathLike[str] | TextIO, where: str | None = None, *,
                 acc_unit: str | None = None, gyro_unit: str | None = None,
                 block_rows: int = BLOCK_ROWS) -> None:
        if acc_unit is not None and acc_unit not in ACC_UNITS:
            raise ValueError(f"acc_unit must be one of {', '.join(ACC_UNITS)}, got {acc_unit!r}")
        if gyro_unit is not None and gyro_unit not in GYRO_UNITS:
            raise ValueError(f"gyro_unit must be one of {', '.join(GYRO_UNITS)}, got {gyro_unit!r}")
        self._own = False
        if isinstance(source, str | os.PathLike):
            if str(source) == "-":
                self.where = where or "<stdin>"
                self._fh: TextIO = sys.stdin
            else:
                self.where = where or str(source)
                try:
                    # utf-8-sig: a spreadsheet's "CSV UTF-8" export starts with a byte-order mark.
                    self._fh = open(source, encoding="utf-8-sig", newline="")  # noqa: SIM115
                except OSError as err:
                    raise RecordingError(unreadable(Path(source), err)) from None
                self._own = True
        else:
            self.where = where or str(getattr(source, "name", "<recording>"))
            self._fh = source
        self.block_rows = int(block_rows)
        self._acc_unit = acc_unit
        self._gyro_unit = gyro_unit
        self.report = ReadReport(self.where, acc_unit=acc_unit or "g", gyro_unit=gyro_unit or "deg/s")
        self._line_no = 0  # lines consumed so far
        try:
            self._read_header()
        except BaseException:
            self.close()
            raise

    @property
    def ncol(self) -> int:
        """Fields per row (the header's)."""
        return self._ncol

    @property
    def t_column(self) -> int:
        """Index of the ``t`` field in a row."""
        return self._wanted[0]

    def fileno(self) -> int:
        """The file descriptor being read (for progress: its position against its size)."""
        return self._fh.fileno()

    def close(self) -> None:
        if self._own:
            self._fh.close()
            self._own = False

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _readline(self) -> str:
        try:
            line = self._fh.readline()
        except UnicodeDecodeError:
            raise RecordingError(f"{self.where}: not UTF-8 text") from None
        except OSError as err:
            raise RecordingError(unreadable(Path(self.where), err)) from None
        if line:
            self._line_no += 1
        return line.removeprefix("\ufeff") if self._line_no == 1 else line

    def _read_header(self) -> None:
        line = ""
        while not _data(line).strip():
            line = self._readline()
            if not line:
                raise RecordingError(f"{self.where}: empty file (expected a header t,ax,ay,az[,gx,gy,gz])")
        header = line.rstrip("\r\n").split(",")
        self._ncol = len(header)
        self._header = header
        t_i, acc_i, gyro_i = _column_index(header, self.where, self._line_no)
        self._gyro_cols = gyro_i is not None
        self._wanted = [t_i, *acc_i, *(gyro_i or [])]

    # ------------------------------------------------------------------------------ samples

    def samples(self) -> Iterator[SampleBatch]:
        """The samples in blocks of up to ``block_rows``, strictly increasing in ``t``, in g and
        deg/s. Raises RecordingError at the first row that cannot be read."""
        rep = self.report
        carry: _Rows | None = None
        prev_max = -math.inf
        first = True
        while True:
            start_line = self._line_no + 1
            lines = self._read_lines(max(self.block_rows, PERIOD_ROWS) if first else self.block_rows)
            if not lines:
                break
            values, line_of = self._finite_rows(lines, start_line, first)
            if values.shape[0] == 0:
                continue
            t = values[:, 0]
            acc = values[:, 1:4]
            gyro = values[:, 4:7] if self._gyro_cols else None
            if first:
                first = False
                rep.period_s = _period(t)
                self._check_acc_unit(acc)
                rep.t_first_s = float(t[0])
            acc, gyro = self._convert(acc, gyro)
            self._check_gyro_unit(acc, gyro, rep.period_s)
            prev_max = self._check_steps(t, prev_max, line_of)
            if carry is not None:
                t = np.concatenate((carry[0], t))
                acc = np.concatenate((carry[1], acc))
                gyro = None if gyro is None or carry[2] is None else np.concatenate((carry[2], gyro))
            done, carry = _retime(t, acc, gyro, rep.period_s)
            if done is not None:
                yield self._deliver(done)
        yield from self._last_rows(carry)

    def _finite_rows(self, lines: list[str], start_line: int,
                     first: bool) -> tuple[np.ndarray, Callable[[int], int]]:
        """The block's rows (columns t, acc, gyro if any) without those with an empty or
        non-finite cell (counted), and the line number of each row kept."""
        rep = self.report
        values, line_of_block = self._parse_block(lines, start_line)
        line_of: Callable[[int], int] = line_of_block
        if first:
            if self._gyro_cols and values.shape[0] and np.isnan(values[:, 4:7]).all():
                self._gyro_cols = False  # gyro columns present but empty: no gyroscope
            rep.gyro = self._gyro_cols
        if not self._gyro_cols:
            values = values[:, :4]
        bad = ~np.all(np.isfinite(values), axis=1)
        if bad.any():
            if rep.first_dropped_line is None:
                rep.first_dropped_line = line_of(int(np.argmax(bad)))
            rep.dropped += int(np.count_nonzero(bad))
            keep = np.flatnonzero(~bad)
            values = values[keep]
            line_of = _remap(line_of, keep)
        return values, line_of

    def _last_rows(self, carry: _Rows | None) -> Iterator[SampleBatch]:
        """The rows held back for re-timing, at the end of the file; an error if there were none."""
        rep = self.report
        if carry is not None:
            if rep.period_s is None and carry[0].size > 1:
                raise RecordingError(f"{self.where}: t never moves forward: the samples cannot be placed "
                                     "in time")
            done, _ = _retime(*carry, rep.period_s, final=True)
            if done is not None:
                yield self._deliver(done)
        if rep.samples == 0:
            if rep.dropped:
                raise RecordingError(f"{self.where}: no usable rows: every row has an empty or "
                                     f"non-finite cell (first on line {rep.first_dropped_line})")
            raise RecordingError(f"{self.where}: no data rows after the header")

    def _deliver(self, batch: SampleBatch) -> SampleBatch:
        rep = self.report
        rep.samples += len(batch)
        rep.t_last_s = float(batch.t_s[-1])
        return batch

    def _read_lines(self, n: int) -> list[str]:
        try:
            lines = list(itertools.islice(self._fh, n))
        except UnicodeDecodeError:
            raise RecordingError(f"{self.where}: not UTF-8 text") from None
        except OSError as err:
            raise RecordingError(unreadable(Path(self.where), err)) from None
        self._line_no += len(lines)
        return lines

    def _parse_block(self, lines: list[str], start_line: int) -> tuple[np.ndarray, _LineOf]:
        """Rows of ``wanted`` columns (empty cells NaN) and a row -> line number function."""
        values = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
                values = np.loadtxt(lines, delimiter=",", usecols=self._wanted, ndmin=2, comments="#",
                                    dtype=float)
        except ValueError:
            values = None
        if values is not None:
            # usecols does not notice a row with more fields than the header: count the commas
            # (in C); only when they do not add up (a bad row, or commas in comments) look closer.
            commas = "".join(lines).count(",")
            if commas != (self._ncol - 1) * values.shape[0]:
                values = None
        body = None
        if values is None:
            body = [(no, ln) for no, ln in enumerate(lines, start=start_line) if _data(ln).strip()]
            values = self._parse_slowly(body)
        return values, _LineOf(lines, start_line, body)

    def _parse_slowly(self, body: list[tuple[int, str]]) -> np.ndarray:
        """Row by row: names the first bad line; empty cells become NaN (dropped later); a cut
        last line is dropped."""
        out = np.empty((len(body), len(self._wanted)))
        keep = np.ones(len(body), dtype=bool)
        for r, (no, ln) in enumerate(body):
            try:
                out[r] = self._parse_row(no, ln)
            except RecordingError:
                # Only the file's last line can lack its line end: cut short while being written.
                if r == len(body) - 1 and not ln.endswith(("\n", "\r")):
                    self.report.truncated_line = no
                    keep[r] = False
                    continue
                raise
        if not keep.all():
            body[:] = [b for b, k in zip(body, keep, strict=True) if k]
            out = out[keep]
        return out

    def _parse_row(self, no: int, ln: str) -> list[float]:
        cells = _data(ln).split(",")
        if len(cells) != self._ncol:
            raise RecordingError(f"{self.where}: line {no}: {len(cells)} fields, the header has {self._ncol}")
        row = []
        for idx in self._wanted:
            cell = cells[idx].strip()
            if not cell:
                row.append(math.nan)
                continue
            try:
                row.append(float(cell))
            except ValueError:
                raise RecordingError(f"{self.where}: line {no}: {self._header[idx].strip()} = "
                                     f"{cell!r} is not a number") from None
        return row

    # ------------------------------------------------------------------------------ checks

    def _check_steps(self, t: np.ndarray, prev_max: float, line_of: Callable[[int], int]) -> float:
        """Count rows not after an earlier one; refuse a step back longer than one sample period."""
        rep = self.report
        before = np.maximum.accumulate(np.concatenate(([prev_max], t)))[:-1]
        back = before - t
        late = back >= 0
        if late.any():
            period = rep.period_s
            limit = period * (1.0 + 1e-6) if period else 0.0
            jump = back > limit
            if jump.any():
                i = int(np.argmax(jump))
                what = (f"more than one sample period ({period:g} s)" if period
                        else "and the sample period is unknown")
                raise RecordingError(
                    f"{self.where}: line {line_of(i)}: t = {t[i]:g} is {back[i]:g} s before an earlier row's "
                    f"t = {before[i]:g}, {what}: a jump back in time (equal times and steps back "
                    "shorter than one sample period are accepted)")
            if rep.first_retimed_line is None:
                rep.first_retimed_line = line_of(int(np.argmax(late)))
            rep.retimed += int(np.count_nonzero(late))
        return max(prev_max, float(t.max()))

    def _check_acc_unit(self, acc: np.ndarray) -> None:
        if self._acc_unit is not None:
            return
        mag = float(np.median(np.linalg.norm(acc, axis=1)))
        for unit, lo, hi in (("mg", 500.0, 2000.0), ("m/s2", 5.0, 20.0)):
            if lo <= mag <= hi:
                words = "milli-g" if unit == "mg" else "m/s^2"
                factor = "1000" if unit == "mg" else "9.80665"
                raise RecordingError(
                    f"{self.where}: accelerations look like {words} (median |a| = {mag:.4g}; expected "
                    f"about 1 g): read them with --acc-unit {unit} (slouchd replay), or divide ax,ay,az "
                    f"by {factor}")

    def _check_gyro_unit(self, acc: np.ndarray, gyro: np.ndarray | None, period: float | None) -> None:
        """Compare how far gravity turns with what the gyroscope integrates to, over short
        windows with clear turns. deg/s data agrees (ratio >= 1: the gyro also sees turns about
        gravity); rad/s data integrates to 1/57 of it."""
        rep = self.report
        if gyro is None or self._gyro_unit is not None or not period or \
                len(rep._gyro_turns) >= GYRO_CHECK_WINDOWS:
            return
        n = max(4, round(GYRO_CHECK_WINDOW_S / period))
        k = acc.shape[0] // n
        if k < 2:
            return
        a = acc[: k * n].reshape(k, n, 3)
        g = gyro[: k * n].reshape(k, n, 3)
        # Gravity at each window edge: mean over a fifth of a window on either side.
        m = max(1, n // 5)
        start = a[:, :m].mean(axis=1)
        end = a[:, -m:].mean(axis=1)
        ns, ne = np.linalg.norm(start, axis=1), np.linalg.norm(end, axis=1)
        # Both edges quiet: no sample further than EDGE_QUIET_G from its edge's mean. A window
        # whose gravity is tipped by linear acceleration (walking, desk vibration) is not a turn.
        quiet = ((np.abs(a[:, :m] - start[:, None, :]).max(axis=(1, 2)) < EDGE_QUIET_G)
                 & (np.abs(a[:, -m:] - end[:, None, :]).max(axis=(1, 2)) < EDGE_QUIET_G))
        steady = (np.abs(ns - 1.0) < 0.15) & (np.abs(ne - 1.0) < 0.15) & quiet
        cos = np.einsum("ij,ij->i", start, end) / np.maximum(ns * ne, 1e-9)
        seen = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        # Integrated between the centres of the two edge means.
        integrated = np.linalg.norm(g[:, m // 2: n - m // 2].sum(axis=1), axis=1) * period
        turns = steady & (seen >= GYRO_CHECK_MIN_DEG)
        rep._gyro_turns.extend((integrated[turns] / seen[turns]).tolist())
        ratios = np.asarray(rep._gyro_turns)
        if np.any(ratios >= DEG_S_RATIO_MIN):
            # A real turn the gyro integrates to in deg/s: settled (more turns cannot undo it).
            rep._gyro_turns.extend([math.inf] * GYRO_CHECK_WINDOWS)
            return
        if len(rep._gyro_turns) >= GYRO_CHECK_WINDOWS:
            # Only apparent turns the gyro barely saw. Linear acceleration (walking, a bump, desk
            # vibration) also tips the measured gravity with no rotation, so one such window
            # proves nothing; none of GYRO_CHECK_WINDOWS turns agreeing with deg/s does.
            ratio = float(np.median(ratios))
            if ratio < RAD_S_RATIO_MAX:
                # A warning, not a refusal: linear acceleration that outlasts the quiet-edge test
                # (slow desk sway) can look the same, and refusing good data is worse.
                rep.gyro_rad_s_ratio = ratio
            rep._gyro_turns.extend([math.inf] * GYRO_CHECK_WINDOWS)  # judged once

    def _convert(self, acc: np.ndarray, gyro: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        fa = ACC_UNITS[self.report.acc_unit]
        fg = GYRO_UNITS[self.report.gyro_unit]
        acc = np.ascontiguousarray(acc if fa == 1.0 else acc * fa)
        if gyro is not None:
            gyro = np.ascontiguousarray(gyro if fg == 1.0 else gyro * fg)
        return acc, gyro


class _LineOf:
    """Line number of a data row of a block (rows counted after blank lines and comments)."""

    def __init__(self, lines: list[str], start_line: int, body: list[tuple[int, str]] | None) -> None:
        self._lines = lines
        self._start = start_line
        self._numbers: list[int] | None = None if body is None else [no for no, _ in body]

    def __call__(self, row: int) -> int:
        if self._numbers is None:
            self._numbers = [no for no, ln in enumerate(self._lines, start=self._start) if _data(ln).strip()]
        return self._numbers[row]


def _remap(line_of: Callable[[int], int], keep: np.ndarray) -> Callable[[int], int]:
    """``line_of`` for the rows ``keep`` of the block."""
    return lambda row: line_of(int(keep[row]))


def _period(t: np.ndarray) -> float | None:
    """Sample period, seconds: the median over steps between rows that move time forward, each
    divided by the rows it covers (so samples sharing a timestamp count)."""
    ahead = np.flatnonzero(t > np.maximum.accumulate(np.concatenate(([-np.inf], t)))[:-1])
    if ahead.size < 2:
        return None
    steps = np.diff(t[ahead]) / np.diff(ahead)
    return float(np.median(steps))


def _retime(t: np.ndarray, acc: np.ndarray, gyro: np.ndarray | None, period: float | None, *,
            final: bool = False
            ) -> tuple[SampleBatch | None, _Rows | None]:
    """Spread rows whose ``t`` does not move forward evenly after the last row that did.

    A run of such rows after row ``a`` (and before the next row ``b`` that moves forward) gets
    times ``t[a] + k * step``, ``step = min(period, (t[b] - t[a]) / (rows + 1))``. The rows from the
    last forward row on wait for the next block (their ``b``), unless ``final``.

    Returns:
        (the finished samples or None, the rows held back or None).
    """
    ahead = t > np.maximum.accumulate(np.concatenate(([-np.inf], t)))[:-1]
    anchors = np.flatnonzero(ahead)
    if not final and anchors.size:
        cut = int(anchors[-1])
        held = (t[cut:], acc[cut:], None if gyro is None else gyro[cut:])
        t, acc, gyro = t[:cut], acc[:cut], None if gyro is None else gyro[:cut]
        ahead = ahead[:cut]
        anchors = anchors[:-1]
    else:
        held = None
    if t.size == 0:
        return None, held
    if not ahead.all():
        idx = np.arange(t.size)
        a = np.maximum.accumulate(np.where(ahead, idx, 0))  # the forward row each row follows
        nxt = np.minimum.accumulate(np.where(ahead, idx, t.size)[::-1])[::-1]
        # The next forward row after each row's anchor (the held-back row, if in another block).
        b_idx = np.append(nxt, t.size)[np.minimum(a + 1, t.size)]
        ta = t[a]
        if held is not None:
            tb = np.where(b_idx < t.size, t[np.minimum(b_idx, t.size - 1)], held[0][0])
        else:
            tb = np.where(b_idx < t.size, t[np.minimum(b_idx, t.size - 1)], np.inf)
        rows = (b_idx - a).astype(float)  # rows from the anchor to the next forward row
        step = np.minimum(period if period else np.inf, (tb - ta) / rows)
        t = np.where(ahead, t, ta + (idx - a) * step)
    return SampleBatch(np.ascontiguousarray(t), acc, gyro), held


# --------------------------------------------------------------------------------- whole files

def parse_recording(text: str, where: str = "<recording>", *, acc_unit: str | None = None,
                    gyro_unit: str | None = None) -> Recording:
    """Parse replay-CSV text. Raises RecordingError naming ``where`` and the line of the problem."""
    reader = RecordingReader(io.StringIO(text.removeprefix("\ufeff")), where, acc_unit=acc_unit,
                             gyro_unit=gyro_unit)
    return _whole(reader)


def read_recording(path: str | os.PathLike[str], *, acc_unit: str | None = None,
                   gyro_unit: str | None = None) -> Recording:
    """Read a whole replay CSV file (``-`` = standard input) into memory. Raises RecordingError.

    ``acc_unit`` and ``gyro_unit`` as for :class:`RecordingReader`. For long files prefer
    :class:`RecordingReader`, which streams.
    """
    with RecordingReader(path, acc_unit=acc_unit, gyro_unit=gyro_unit) as reader:
        return _whole(reader)


def _whole(reader: RecordingReader) -> Recording:
    with reader:
        parts = list(reader.samples())
    joined = SampleBatch.concat(parts)
    return Recording(joined.t_s, joined.acc_g, joined.gyro_dps, reader.report)


def _data(line: str) -> str:
    """A row without its trailing ``# comment``."""
    return line.split("#", 1)[0]


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
        if self.gyro and batch.gyro_dps is not None:  # (gyro without data was refused above)
            cols.append(batch.gyro_dps[keep])
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
