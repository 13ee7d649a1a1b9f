"""ETT-style CSV loading, chronological splits and sliding-window batches.

A series is a (T, C) float32 array. A window starting at `s` has the input
``series[s : s + lookback]`` and the target
``series[s + lookback : s + lookback + horizon]``; samples are identified by
their start index. Consecutive (unshuffled) batches keep time order, which
Batched Spectral Attention needs; shuffled batches are for base training.

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
import os
from typing import Optional, Union

import numpy as np

PathLike = Union[str, os.PathLike]
SPLITS = ("ratio", "ett")
ETT_HOURLY_BORDERS = (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24)


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
    try:
      header = next(reader)
    except StopIteration:
      raise ValueError(f"{path}: empty CSV") from None
    if len(header) < 2:
      raise ValueError(f"{path}: need a date column and >= 1 value column")
    dates, rows = [], []
    for lineno, row in enumerate(reader, start=2):
      if not row:
        continue
      if len(row) != len(header):
        raise ValueError(f"{path}:{lineno}: expected {len(header)} fields, "
                         f"got {len(row)}")
      dates.append(row[0])
      try:
        rows.append([float(v) for v in row[1:]])
      except ValueError as e:
        raise ValueError(f"{path}:{lineno}: {e}") from None
  if not rows:
    raise ValueError(f"{path}: no data rows")
  return np.asarray(rows, np.float32), header[1:], dates


def split_borders(n_rows: int, split: str = "ratio",
                  ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)
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
      raise ValueError(f"ratios must be 3 positive fractions summing to <= 1,"
                       f" got {ratios!r}")
    n_train = int(n_rows * ratios[0])
    n_test = int(n_rows * ratios[2])
    n_val = (n_rows - n_train - n_test if abs(sum(ratios) - 1) < 1e-9
             else int(n_rows * ratios[1]))
  elif split == "ett":
    n_train, n_val, n_test = ETT_HOURLY_BORDERS
    if n_rows < sum(ETT_HOURLY_BORDERS):
      raise ValueError(f"split='ett' needs >= {sum(ETT_HOURLY_BORDERS)} rows,"
                       f" got {n_rows}")
  else:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  a, b = n_train, n_train + n_val
  return (0, a), (a, b), (b, b + n_test)


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


def make_forecast_data(values: np.ndarray, lookback: int, horizon: int, *,
                       split: str = "ratio",
                       ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
                       max_rows: Optional[int] = None) -> ForecastData:
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
    raise ValueError(f"lookback and horizon must be >= 1, got {lookback}, "
                     f"{horizon}")
  values = np.asarray(values, np.float32)
  if max_rows is not None:
    values = values[:max_rows]
  borders = split_borders(len(values), split, ratios)
  train_rows = values[borders[0][0]:borders[0][1]]
  mean = train_rows.mean(axis=0)
  std = train_rows.std(axis=0)
  std = np.where(std > 0, std, 1.0).astype(np.float32)
  series = ((values - mean) / std).astype(np.float32)
  starts = {}
  for name, (lo, hi) in zip(("train", "val", "test"), borders):
    first = max(lo - lookback, 0)
    last = hi - lookback - horizon  # the target must end by `hi`
    if last < first:
      raise ValueError(f"the {name} split ({hi - lo} rows) is too short for "
                       f"lookback {lookback} + horizon {horizon}")
    starts[name] = np.arange(first, last + 1, dtype=np.int32)
  return ForecastData(series, mean.astype(np.float32), std, lookback, horizon,
                      starts)


def windows(series: np.ndarray, starts: np.ndarray, lookback: int,
            horizon: int) -> tuple[np.ndarray, np.ndarray]:
  """Gathers inputs (N, C, L) and targets (N, C, H) for the given starts."""
  starts = np.asarray(starts)
  x_idx = starts[:, None] + np.arange(lookback)[None]
  y_idx = starts[:, None] + lookback + np.arange(horizon)[None]
  x = np.transpose(series[x_idx], (0, 2, 1))
  y = np.transpose(series[y_idx], (0, 2, 1))
  return x, y


def consecutive_batches(starts: np.ndarray, batch_size: int, *,
                        drop_last: bool = True) -> np.ndarray:
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
  return np.asarray(starts[:n * batch_size], np.int32).reshape(n, batch_size)


def shuffled_batches(starts: np.ndarray, batch_size: int,
                     rng: np.random.Generator) -> np.ndarray:
  """A random permutation of the starts, in full batches (for base training)."""
  perm = rng.permutation(np.asarray(starts, np.int32))
  return consecutive_batches(perm, batch_size)


def padded_stream(first_eval: int, last_eval: int, batch_size: int,
                  warmup_from: Optional[int] = None) -> tuple[np.ndarray,
                                                               np.ndarray]:
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

