"""ETT-style CSV loading, chronological splits and sliding-window batches.

A series is a (T, C) float32 array. A window starting at `s` has the input
``series[s : s + lookback]`` and the target
``series[s + lookback : s + lookback + horizon]``; samples are identified by
their start index. Consecutive (unshuffled) batches keep time order, which
Batched Spectral Attention needs; shuffled batches are for base training.

:func:`load_csv` reads any CSV with a date column and numeric columns (the
command line's input); :func:`load_ett_csv` the ETT files only.

Split (default, the convention of the forecasting issue): chronological
0.6 / 0.2 / 0.2 of the rows. ``split="ett"`` uses the fixed ETTh borders of
the long-term-forecasting literature instead (12 / 4 / 4 months of hourly
rows; the last 4 months of the file unused). Either way the validation and
test windows may look back into the preceding split (their inputs start up to
`lookback` rows before the border) while every target lies inside its split,
and the normalization (per channel mean and std) uses the training rows only.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
import os
import re
from typing import Optional, Union

import numpy as np

PathLike = Union[str, os.PathLike]
SPLITS = ("ratio", "ett")
ETT_HOURLY_BORDERS = (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24)
# Column names taken as the date column (case-insensitive).
DATE_NAMES = ("date", "time", "timestamp")
#: The dates a date column may hold, year first (``2016-07-01``,
#: ``1990/1/1 0:00``, ``2016.07.01T00:00:00.5+02:00``, ``2020-01``), or plain
#: numbers (a time index).
DATE_FORMS = (
  "YYYY-MM[-DD][ HH:MM[:SS[.f]]][Z|+HH:MM] (separators - / or .; "
  "T or a space before the time), or a number"
)
_DATE = re.compile(
  r"(\d{4})[-/.](\d{1,2})(?:[-/.](\d{1,2}))?"
  r"(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,6})\d*)?)?)?"
  r"\s*(Z|[+-]\d{2}:?\d{2})?"
)


def load_ett_csv(path: PathLike) -> tuple[np.ndarray, list[str], list[str]]:
  """Reads an ETT-format CSV: a header, a first "date" column, then numbers.

  Args:
    path: the CSV file (e.g. ``ETTh1.csv``).

  Returns:
    ``(values, columns, dates)``: a (T, C) float32 array, the C column names
    after the date column, and the T date strings.

  Raises:
    ValueError: an empty file, a row of the wrong width or a non-number.
  """
  with open(path, newline="") as fh:
    reader = csv.reader(fh)
    header = next(reader, None)
    if header is None:
      raise ValueError(f"{path}: empty CSV")
    if len(header) < 2:
      raise ValueError(f"{path}: need a date column and >= 1 value column")
    dates, rows = [], []
    for lineno, row in enumerate(reader, start=2):
      if not row:
        continue
      if len(row) != len(header):
        raise ValueError(
          f"{path}:{lineno}: expected {len(header)} fields, got {len(row)}"
        )
      dates.append(row[0])
      try:
        rows.append([float(v) for v in row[1:]])
      except ValueError as e:
        raise ValueError(f"{path}:{lineno}: {e}") from None
  if not rows:
    raise ValueError(f"{path}: no data rows")
  return np.asarray(rows, np.float32), header[1:], dates


def parse_date(text: str) -> Optional[float]:
  """The time of a date cell as a number (seconds since 1970 for a date),
  or None if it is none of :data:`DATE_FORMS`; a date without a time zone
  is taken as UTC, so that dates compare in the order they are written.

  Examples:
    >>> parse_date("1990/1/2 0:00") - parse_date("1990-01-01")
    86400.0
    >>> parse_date("2016-07-01T02:00:00+02:00") == parse_date("2016-07-01")
    True
    >>> parse_date("37"), parse_date("01/07/2016")
    (37.0, None)
  """
  text = text.strip()
  match = _DATE.fullmatch(text)
  if match is None:
    try:
      value = float(text)
    except ValueError:
      return None
    return value if math.isfinite(value) else None
  y, mo, d, h, mi, sec, frac, zone = match.groups()
  try:
    when = datetime.datetime(
      int(y),
      int(mo),
      int(d or 1),
      int(h or 0),
      int(mi or 0),
      int(sec or 0),
      int((frac or "0").ljust(6, "0")),
      tzinfo=datetime.timezone.utc,
    )
  except ValueError:  # e.g. month 13, 30 February
    return None
  if zone and zone != "Z":
    sign = 1 if zone[0] == "+" else -1
    hours, minutes = int(zone[1:3]), int(zone[-2:])
    when -= sign * datetime.timedelta(hours=hours, minutes=minutes)
  return when.timestamp()


def check_time_order(
  path: str, column: str, dates: list[str], lines: list[int]
) -> None:
  """Raises a ValueError naming the first row whose date does not come
  strictly after the previous row's (out of order, or repeated), or that is
  not a date of :data:`DATE_FORMS`.

  Args:
    path: the file (for the message).
    column: the date column's name.
    dates: its cells, in file order.
    lines: the file line of each cell.
  """
  last = None
  for r, (text, line) in enumerate(zip(dates, lines)):
    where = f"{path}, line {line} (data row {r + 1}), column {column!r}"
    when = parse_date(text)
    if when is None:
      raise ValueError(
        f"{where}: {text!r} is not a date ({DATE_FORMS}); "
        "rows must be dated to be checked for time order"
      )
    if last is not None and when <= last[0]:
      what = "repeats the date of" if when == last[0] else "comes before"
      raise ValueError(
        f"{where}: {text!r} {what} line {last[1]} "
        f"({last[2]!r}); the rows must be in time order, "
        "each date once"
      )
    last = (when, line, text)


@dataclasses.dataclass(frozen=True)
class CsvSeries:
  """The channels read from a CSV file by :func:`load_csv`.

  Attributes:
    path: the file.
    values: (T, C) float32, the selected channels in file row order.
    channels: the C selected column names.
    numeric_columns: every numeric column of the file.
    date_column: the date column's name, or None if the file has none.
    date_rule: how it was found: "name" (named like one of DATE_NAMES),
      "first non-numeric column", or "none".
    dates: the T date strings (None without a date column).
    ignored_columns: other non-numeric columns, left out.
  """

  path: str
  values: np.ndarray
  channels: list
  numeric_columns: list
  date_column: Optional[str]
  date_rule: str
  dates: Optional[list]
  ignored_columns: list


def _is_number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def load_csv(path: PathLike, target: str = "all") -> CsvSeries:
  """Reads a CSV with a date column and numeric columns.

  The first row is the header. The date column is the first column named
  "date", "time" or "timestamp" (any case), else the first column whose first
  data cell is not a number; the file may have none. The other columns whose
  first data cell is a number (or empty) are the numeric columns; any other
  text column is ignored. Rows are taken in file order, which must be time
  order: with a date column, each date must come strictly after the one
  before it (:func:`check_time_order`). Blank lines are skipped.

  Args:
    path: the CSV file.
    target: a numeric column's name, or "all" for every numeric column.

  Returns:
    A :class:`CsvSeries`.

  Raises:
    ValueError: a missing or empty file, a row of the wrong width, no
      numeric column, an unknown or non-numeric `target`, an empty,
      non-number, NaN or infinite cell in a selected column, or a date that
      is not one, repeats the one before or comes before it (naming the
      first such line and column).
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such file")
  if not os.path.isfile(path):
    raise ValueError(f"{path}: not a file")
  with open(path, newline="", encoding="utf-8-sig") as fh:
    reader = csv.reader(fh)
    try:
      header = [name.strip() for name in next(reader)]
    except StopIteration:
      raise ValueError(f"{path}: empty file (no header row)") from None
    except (csv.Error, UnicodeDecodeError) as e:
      raise ValueError(f"{path}: not a readable CSV file ({e})") from None
    for i, name in enumerate(header):
      if header.index(name) != i:
        raise ValueError(
          f"{path}: duplicate column name {name!r} in the header"
        )
    rows, lines = [], []
    try:
      for row in reader:
        if not any(cell.strip() for cell in row):
          continue
        if len(row) != len(header):
          raise ValueError(
            f"{path}, line {reader.line_num}: expected "
            f"{len(header)} fields (as the header), got "
            f"{len(row)}"
          )
        rows.append([cell.strip() for cell in row])
        lines.append(reader.line_num)
    except (csv.Error, UnicodeDecodeError) as e:
      raise ValueError(
        f"{path}, line {reader.line_num}: not readable as CSV ({e})"
      ) from None
  if not rows:
    raise ValueError(f"{path}: no data rows after the header")

  date_col = next(
    (i for i, name in enumerate(header) if name.lower() in DATE_NAMES), None
  )
  rule = "name"
  text = [i for i, cell in enumerate(rows[0]) if cell and not _is_number(cell)]
  if date_col is None:
    date_col = text[0] if text else None
    rule = "first non-numeric column" if text else "none"
  numeric = [
    header[i] for i in range(len(header)) if i != date_col and i not in text
  ]
  ignored = [header[i] for i in text if i != date_col]
  if not numeric:
    raise ValueError(
      f"{path}: no numeric columns (columns: {', '.join(header)})"
    )
  if target == "all":
    channels = numeric
  elif target in numeric:
    channels = [target]
  elif target in header:
    raise ValueError(
      f"{path}: target column {target!r} is not numeric; "
      f"numeric columns: {', '.join(numeric)}"
    )
  else:
    raise ValueError(
      f"{path}: unknown target column {target!r}; numeric "
      f"columns: {', '.join(numeric)} (or 'all')"
    )

  idx = [header.index(name) for name in channels]
  values = np.empty((len(rows), len(idx)), np.float32)
  for r, (row, line) in enumerate(zip(rows, lines)):
    for c, i in enumerate(idx):
      cell = row[i]
      where = f"{path}, line {line} (data row {r + 1}), column {header[i]!r}"
      if not cell:
        raise ValueError(f"{where}: empty cell")
      try:
        value = float(cell)
      except ValueError:
        raise ValueError(f"{where}: {cell!r} is not a number") from None
      if not math.isfinite(value):
        raise ValueError(f"{where}: {cell!r} is not a finite number")
      values[r, c] = value
  dates = None
  if date_col is not None:
    dates = [row[date_col] for row in rows]
    check_time_order(path, header[date_col], dates, lines)
  return CsvSeries(
    path,
    values,
    channels,
    numeric,
    None if date_col is None else header[date_col],
    rule,
    dates,
    ignored,
  )


def split_borders(
  n_rows: int,
  split: str = "ratio",
  ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
  """Row ranges [start, end) of the train, val and test targets.

  Args:
    n_rows: number of rows T.
    split: "ratio" (chronological `ratios`) or "ett" (12/4/4 months hourly).
    ratios: train/val/test fractions for "ratio", positive, summing to <= 1.

  Returns:
    ``((0, n_train), (n_train, n_train + n_val), (.., ..))``.

  Raises:
    ValueError: unknown `split`, bad `ratios` or too few rows.
  """
  if split == "ratio":
    if len(ratios) != 3 or min(ratios) <= 0 or sum(ratios) > 1 + 1e-9:
      raise ValueError(
        f"ratios must be 3 positive fractions summing to <= 1, got {ratios!r}"
      )
    n_train = int(n_rows * ratios[0])
    n_test = int(n_rows * ratios[2])
    n_val = (
      n_rows - n_train - n_test
      if abs(sum(ratios) - 1) < 1e-9
      else int(n_rows * ratios[1])
    )
  elif split == "ett":
    n_train, n_val, n_test = ETT_HOURLY_BORDERS
    if n_rows < sum(ETT_HOURLY_BORDERS):
      raise ValueError(
        f"split='ett' needs >= {sum(ETT_HOURLY_BORDERS)} rows, got {n_rows}"
      )
  else:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  a, b = n_train, n_train + n_val
  return (0, a), (a, b), (b, b + n_test)


def _fits(
  n_rows: int,
  lookback: int,
  horizon: int,
  split: str,
  ratios: tuple[float, float, float],
  min_train_windows: int,
) -> bool:
  """Whether each split has a window (as make_forecast_data), and the
  training split `min_train_windows`."""
  counts = [
    hi - lookback - horizon - max(lo - lookback, 0) + 1
    for lo, hi in split_borders(n_rows, split, ratios)
  ]
  return min(counts) >= 1 and counts[0] >= min_train_windows


def min_rows(
  lookback: int,
  horizon: int,
  split: str = "ratio",
  ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
  min_train_windows: int = 1,
) -> Optional[int]:
  """The fewest rows giving every split a window (and the training split
  `min_train_windows`, a full batch), or None if no number of rows does
  (``split="ett"`` has fixed borders); `split` and `ratios` as
  :func:`split_borders`."""
  start = sum(ETT_HOURLY_BORDERS) if split == "ett" else 1
  stop = (
    start + 1
    if split == "ett"
    else int(4 * (lookback + horizon + min_train_windows) / min(ratios)) + 100
  )
  return next(
    (
      n
      for n in range(start, stop)
      if _fits(n, lookback, horizon, split, ratios, min_train_windows)
    ),
    None,
  )


def check_rows(
  n_rows: int,
  lookback: int,
  horizon: int,
  *,
  split: str = "ratio",
  ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
  min_train_windows: int = 1,
  source: str = "the series",
) -> None:
  """Raises a ValueError saying how many rows are needed, if `n_rows` is short.

  Args:
    n_rows: rows of the series.
    lookback, horizon, split, ratios: as :func:`make_forecast_data`.
    min_train_windows: training windows needed (a full batch).
    source: what to name in the message (e.g. the file).
  """
  need = min_rows(lookback, horizon, split, ratios, min_train_windows)
  if (
    need is not None
    and n_rows >= need
    and _fits(n_rows, lookback, horizon, split, ratios, min_train_windows)
  ):
    return
  what = (
    f"lookback {lookback} + horizon {horizon} in each of the train, "
    f"val and test splits ({split} split) and {min_train_windows} "
    f"training window(s) (one full batch)"
  )
  if need is None:
    raise ValueError(
      f"{source}: the {split} split cannot fit {what}, "
      f"whatever the number of rows"
    )
  raise ValueError(
    f"{source} has {n_rows} rows, too few for {what}: needs "
    f"at least {need} rows"
  )


@dataclasses.dataclass(frozen=True)
class ForecastData:
  """A normalized series with its sliding-window sample starts per split.

  Attributes:
    series: (T, C) float32, normalized with the training rows' statistics.
    mean, std: (C,) statistics used for the normalization.
    lookback: input length L.
    horizon: forecast length H.
    starts: {"train", "val", "test"} -> int32 start indices in time order.
  """

  series: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  lookback: int
  horizon: int
  starts: dict

  @property
  def channels(self) -> int:
    return int(self.series.shape[1])


def make_forecast_data(
  values: np.ndarray,
  lookback: int,
  horizon: int,
  *,
  split: str = "ratio",
  ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
  max_rows: Optional[int] = None,
) -> ForecastData:
  """Normalizes a (T, C) series and lists each split's window starts.

  Args:
    values: (T, C) raw series.
    lookback: input length L (>= 1).
    horizon: forecast length H (>= 1).
    split: "ratio" or "ett" (see :func:`split_borders`).
    ratios: fractions for ``split="ratio"``.
    max_rows: keep only the first `max_rows` rows (quick runs and tests).

  Returns:
    A :class:`ForecastData`.

  Raises:
    ValueError: bad lengths, or a split too short for one window.
  """
  if lookback < 1 or horizon < 1:
    raise ValueError(
      f"lookback and horizon must be >= 1, got {lookback}, {horizon}"
    )
  values = np.asarray(values, np.float32)
  if max_rows is not None:
    values = values[:max_rows]
  borders = split_borders(len(values), split, ratios)
  train_rows = values[borders[0][0] : borders[0][1]]
  mean = train_rows.mean(axis=0)
  std = train_rows.std(axis=0)
  std = np.where(std > 0, std, 1.0).astype(np.float32)
  series = ((values - mean) / std).astype(np.float32)
  starts = {}
  for name, (lo, hi) in zip(("train", "val", "test"), borders):
    first = max(lo - lookback, 0)
    last = hi - lookback - horizon  # the target must end by `hi`
    if last < first:
      need = min_rows(lookback, horizon, split, ratios)
      raise ValueError(
        f"the {name} split ({hi - lo} rows) is too short for "
        f"lookback {lookback} + horizon {horizon}"
        + (f"; the series needs at least {need} rows" if need else "")
      )
    starts[name] = np.arange(first, last + 1, dtype=np.int32)
  return ForecastData(
    series, mean.astype(np.float32), std, lookback, horizon, starts
  )


def windows(
  series: np.ndarray, starts: np.ndarray, lookback: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
  """Gathers inputs (N, C, L) and targets (N, C, H) for the given starts."""
  starts = np.asarray(starts)[:, None]
  x = series[starts + np.arange(lookback)[None]]
  y = series[starts + lookback + np.arange(horizon)[None]]
  return np.transpose(x, (0, 2, 1)), np.transpose(y, (0, 2, 1))


def consecutive_batches(
  starts: np.ndarray, batch_size: int, *, drop_last: bool = True
) -> np.ndarray:
  """Splits starts into unshuffled batches of consecutive samples.

  Args:
    starts: window starts in time order.
    batch_size: samples per batch.
    drop_last: drop the incomplete last batch (else raise if there is one).

  Returns:
    (n_batches, batch_size) int32 starts; row-major order is time order.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  n = len(starts) // batch_size
  if not drop_last and n * batch_size != len(starts):
    raise ValueError("len(starts) is not a multiple of batch_size")
  return np.asarray(starts[: n * batch_size], np.int32).reshape(n, batch_size)


def shuffled_batches(
  starts: np.ndarray, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
  """A random permutation of the starts, in full batches (for base training)."""
  perm = rng.permutation(np.asarray(starts, np.int32))
  return consecutive_batches(perm, batch_size)


def padded_stream(
  first_eval: int,
  last_eval: int,
  batch_size: int,
  warmup_from: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Consecutive starts covering a warm-up history and an evaluation range.

  The stream runs from `warmup_from` (default: no warm-up) through
  `last_eval` in time order, front-padded with repeats of its first start so
  that its length is a multiple of `batch_size`. Repeating the first sample
  leaves an EMA that starts from it unchanged, so the padding does not alter
  the Spectral Attention state.

  Args:
    first_eval, last_eval: the evaluated starts, inclusive.
    batch_size: the batch size.
    warmup_from: first start of the warm-up history (<= first_eval).

  Returns:
    ``(batches, evaluated)``: (n, batch_size) starts and a same-shape bool
    mask of the samples inside [first_eval, last_eval] (padding excluded).
  """
  begin = first_eval if warmup_from is None else min(warmup_from, first_eval)
  stream = np.arange(begin, last_eval + 1, dtype=np.int32)
  mask = stream >= first_eval
  pad = (-len(stream)) % batch_size
  stream = np.concatenate([np.full(pad, begin, np.int32), stream])
  mask = np.concatenate([np.zeros(pad, bool), mask])
  return stream.reshape(-1, batch_size), mask.reshape(-1, batch_size)
