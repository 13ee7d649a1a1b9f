"""What the ``forecast`` command prints and draws.

:func:`describe_data` (the line on what was read), :func:`summary_line` (the
result in one line) and :func:`plot_forecasts` (OUT/forecast.png: a few test
windows of one channel with the look-back, the truth and both forecasts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting import steps

UNITS = ("normalized: each channel z-scored with the training rows' mean and "
         "std; averaged over windows, channels and horizon steps")
# Test windows drawn in forecast.png (their targets tile the test split's
# first rows).
PLOT_WINDOWS = 3


def describe_data(series: fdata.CsvSeries) -> str:
  """One line on what was read: rows, date column and channels."""
  if series.date_column is None:
    date = "no date column (rows taken in file order)"
  elif series.date_rule == "name":
    date = f"date column {series.date_column!r} (by its name)"
  else:
    date = (f"date column {series.date_column!r} (the first non-numeric "
            "column)")
  text = (f"data: {series.path}: {len(series.values)} rows, {date}; "
          f"{len(series.channels)} channel(s): {', '.join(series.channels)}")
  if series.ignored_columns:
    text += f"; ignored non-numeric: {', '.join(series.ignored_columns)}"
  return text


def pct_change(new: float, old: float) -> float:
  """The change from `old` to `new` in percent (NaN if `old` is 0)."""
  return 100.0 * (new - old) / old if old else float("nan")


def summary_line(model: str, file: str, channels: int, horizon: int,
                 metrics: dict[str, Any]) -> str:
  """The summary line: ``dlinear on ETTh1.csv (7 channels, H=96): ...``."""
  b, s = metrics["base"]["test"], metrics["bsa"]["test"]
  line = (f"{model} on {file} ({channels} channel{'s' * (channels != 1)}, "
          f"H={horizon}): test MSE {b['mse']:.3f} -> {s['mse']:.3f} with BSA "
          f"({pct_change(s['mse'], b['mse']):+.1f}%), MAE {b['mae']:.3f} -> "
          f"{s['mae']:.3f} ({pct_change(s['mae'], b['mae']):+.1f}%)")
  if "control" in metrics:
    c = metrics["control"]["test"]
    line += (f"; control fine-tune without BSA: MSE {c['mse']:.3f} "
             f"({pct_change(c['mse'], b['mse']):+.1f}%)")
  return line


def plot_forecasts(path: Path, fd: fdata.ForecastData, models: dict,
                   channel: int, channel_name: str, title: str,
                   dates=None) -> list[int]:
  """Draws the first test windows of one channel (original units).

  Each panel: the look-back history, the truth and the base and BSA
  forecasts. Draws on a standalone Agg Figure (no display, pyplot untouched).

  Args:
    path: the image to write.
    fd: the data.
    models: {"base": model, "bsa": model}.
    channel: the channel's index.
    channel_name: its name.
    title: the figure title.
    dates: the row dates, or None.

  Returns:
    The window starts drawn.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  test = fd.starts["test"]
  starts = [int(test[0]) + i * fd.horizon for i in range(PLOT_WINDOWS)
            if int(test[0]) + i * fd.horizon <= int(test[-1])]
  preds = {name: steps.predict(model, fd, starts) for name, model in
           models.items()}
  scale, shift = fd.std[channel], fd.mean[channel]
  fig = Figure(figsize=(4.2 * len(starts), 3.6))
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, len(starts), squeeze=False)[0]
  L, H = fd.lookback, fd.horizon
  for k, (ax, s) in enumerate(zip(axes, starts)):
    hist = np.arange(s, s + L)
    fut = np.arange(s + L, s + L + H)
    series = fd.series[:, channel] * scale + shift
    ax.plot(hist, series[hist], color="0.45", lw=1, label="look-back")
    ax.plot(fut, series[fut], color="black", lw=1.2, label="truth")
    for name, style in (("base", dict(color="tab:blue", ls="--")),
                        ("bsa", dict(color="tab:red", ls="-"))):
      ax.plot(fut, preds[name][k, channel] * scale + shift, lw=1.2,
              label="base" if name == "base" else "with BSA", **style)
    when = f" ({dates[s + L]})" if dates is not None else ""
    ax.set_title(f"test window {k + 1}: rows {s + L}-{s + L + H - 1}{when}",
                 fontsize="small")
    ax.set_xlabel("row")
    ax.grid(True, alpha=0.3)
  axes[0].set_ylabel(channel_name)
  axes[0].legend(loc="best", fontsize="small")
  fig.suptitle(title)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  return starts
