"""The ``grokfast-jax forecast`` command: a CSV series with and without BSA.

Reads a CSV file (ETT-style or any file with a date column and numeric
columns), trains a base forecaster on shuffled windows, fine-tunes it with
Batched Spectral Attention on consecutive windows (the protocol of
:func:`.train.run`) and scores both on the validation and test splits.
Writes OUT/results.json and OUT/forecast.png (a few test windows of one
channel: look-back, truth and both forecasts) and prints one summary line::

  grokfast-jax forecast --data ETTh1.csv --model dlinear --out runs/etth1
  grokfast-jax forecast --data sales.csv --target units --model rlinear \\
      --lookback 48 --horizon 24 --epochs 5 --out runs/sales

Everything is checked (settings, file, columns, cells, rows) before OUT is
created, so a bad input writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from grokfast_jax.experiments import common
from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting import train
from grokfast_jax.experiments.forecasting.config import ForecastConfig
from grokfast_jax.experiments.forecasting.models import MODELS

UNITS = ("normalized: each channel z-scored with the training rows' mean and "
         "std; averaged over windows, channels and horizon steps")
# Test windows drawn in forecast.png (their targets tile the test split's
# first rows).
PLOT_WINDOWS = 3


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
  """Adds the ``forecast`` subcommand.

  Args:
    subparsers: the object returned by ``parser.add_subparsers()``.
  """
  defaults = ForecastConfig()
  p = subparsers.add_parser(
      "forecast",
      help="forecast a CSV time series with and without Batched Spectral "
      "Attention",
      description="Train a base forecaster on shuffled windows of a CSV "
      "series (a date column and numeric columns; the date column is the one "
      "named date/time/timestamp, else the first non-numeric column), "
      "fine-tune it with Batched Spectral Attention on consecutive windows, "
      "and score both on the validation and test splits (chronological). "
      "Writes OUT/results.json and OUT/forecast.png.")
  p.add_argument("--data", required=True, metavar="PATH",
                 help="CSV file with a header row")
  p.add_argument("--target", default="all", metavar="COLUMN",
                 help="the column to forecast, or 'all' (default) for every "
                 "numeric column")
  p.add_argument("--model", choices=MODELS, default=defaults.model,
                 help=f"base forecaster (default {defaults.model})")
  p.add_argument("--lookback", type=int, default=defaults.lookback,
                 help=f"input length L (default {defaults.lookback})")
  p.add_argument("--horizon", type=int, default=defaults.horizon,
                 help=f"forecast length H (default {defaults.horizon})")
  p.add_argument("--split", choices=fdata.SPLITS, default=defaults.split,
                 help="'ratio': chronological 0.6/0.2/0.2 of the rows "
                 "(default); 'ett': the ETTh 12/4/4-month borders")
  p.add_argument("--seed", type=int, default=defaults.seed,
                 help=f"init and shuffling seed (default {defaults.seed})")
  p.add_argument("--epochs", type=int, default=defaults.max_epochs,
                 help="base-training epochs at most (early stopping on the "
                 f"validation MSE, patience {defaults.patience}; default "
                 f"{defaults.max_epochs})")
  p.add_argument("--ft-epochs", type=int, default=defaults.ft_epochs,
                 help="BSA fine-tuning epochs (default "
                 f"{defaults.ft_epochs})")
  p.add_argument("--control", action="store_true",
                 help="also fine-tune the base model WITHOUT BSA by the same "
                 "protocol (separates BSA from the extra training)")
  p.add_argument("--out", default="runs/forecast", metavar="DIR",
                 help="output directory (default runs/forecast)")
  p.add_argument("--no-progress", action="store_true",
                 help="no progress bar")
  p.set_defaults(func=run_forecast)


def _usage_error(args: argparse.Namespace, error: Exception) -> int:
  command = getattr(args, "command", None) or "forecast"
  print(f"grokfast-jax {command}: error: {error}", file=sys.stderr)
  return 2


def _prepare(args: argparse.Namespace
             ) -> tuple[ForecastConfig, fdata.CsvSeries, Path]:
  """Validates settings, file, columns and rows; creates nothing."""
  if args.epochs < 1:
    raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
  if args.ft_epochs < 0:
    raise ValueError(f"--ft-epochs must be >= 0, got {args.ft_epochs}")
  cfg = ForecastConfig(model=args.model, lookback=args.lookback,
                       horizon=args.horizon, split=args.split, seed=args.seed,
                       max_epochs=args.epochs, ft_epochs=args.ft_epochs)
  series = fdata.load_csv(args.data, args.target)
  need = max(cfg.batch_size, cfg.ft_batch_size if cfg.ft_epochs else 1)
  fdata.check_rows(len(series.values), cfg.lookback, cfg.horizon,
                   split=cfg.split, ratios=cfg.ratios,
                   min_train_windows=need, source=series.path)
  out = Path(args.out)
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out {out}: exists and is not a folder")
  if importlib.util.find_spec("matplotlib") is None:
    raise ValueError("forecast.png needs matplotlib (pip install "
                     "'grokfast_jax[experiments]')")
  return cfg, series, out


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


def _pct(new: float, old: float) -> float:
  return 100.0 * (new - old) / old if old else float("nan")


def summary_line(model: str, file: str, channels: int, horizon: int,
                 metrics: dict[str, Any]) -> str:
  """The summary line: ``dlinear on ETTh1.csv (7 channels, H=96): ...``."""
  b, s = metrics["base"]["test"], metrics["bsa"]["test"]
  line = (f"{model} on {file} ({channels} channel{'s' * (channels != 1)}, "
          f"H={horizon}): test MSE {b['mse']:.3f} -> {s['mse']:.3f} with BSA "
          f"({_pct(s['mse'], b['mse']):+.1f}%), MAE {b['mae']:.3f} -> "
          f"{s['mae']:.3f} ({_pct(s['mae'], b['mae']):+.1f}%)")
  if "control" in metrics:
    c = metrics["control"]["test"]
    line += (f"; control fine-tune without BSA: MSE {c['mse']:.3f} "
             f"({_pct(c['mse'], b['mse']):+.1f}%)")
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
  preds = {name: train.predict(model, fd, starts) for name, model in
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


def run_forecast(args: argparse.Namespace) -> int:
  """``grokfast-jax forecast``: writes OUT/results.json and OUT/forecast.png."""
  try:
    cfg, series, out = _prepare(args)
  except ValueError as e:
    return _usage_error(args, e)
  import jax

  print(describe_data(series))
  file = os.path.basename(series.path)
  n_ft = cfg.ft_epochs * (2 if args.control else 1)
  offsets = {"base": 0, "finetune": cfg.max_epochs,
             "control": cfg.max_epochs + cfg.ft_epochs}
  with common.progress_bar(cfg.max_epochs + n_ft, f"{cfg.model} epochs",
                           disable=args.no_progress) as bar:
    shown = {}

    def on_epoch(entry: dict) -> None:
      shown.update(step=offsets[entry["stage"]] + entry["epoch"] + 1,
                   train_loss=entry["train_mse"], val_loss=entry["val_mse"])
      bar.update_to(shown)

    result = train.run(series.values, cfg, control=args.control,
                       on_epoch=on_epoch, keep_models=True)
    bar.update_to({**shown, "step": cfg.max_epochs + n_ft})  # early stop
  fd, metrics = result["data"], result["metrics"]
  channel = len(series.channels) - 1
  plot_path = out / "forecast.png"
  plotted = plot_forecasts(
      plot_path, fd, {k: result["models"][k] for k in ("base", "bsa")},
      channel, series.channels[channel],
      f"{cfg.model} on {file}: {series.channels[channel]} "
      f"(L={cfg.lookback}, H={cfg.horizon})", series.dates)
  borders = fdata.split_borders(len(series.values), cfg.split, cfg.ratios)
  change = {f"{split}_{m}": _pct(metrics["bsa"][split][m],
                                 metrics["base"][split][m])
            for split in ("val", "test") for m in ("mse", "mae")}
  results = {
      "command": "forecast",
      "model": cfg.model,
      "data": {
          "path": os.path.abspath(series.path), "file": file,
          "rows": len(series.values), "target": args.target,
          "channels": series.channels,
          "numeric_columns": series.numeric_columns,
          "ignored_columns": series.ignored_columns,
          "date_column": series.date_column,
          "date_column_found_by": series.date_rule,
          "first_date": series.dates[0] if series.dates else None,
          "last_date": series.dates[-1] if series.dates else None,
          "split_rows": dict(zip(("train", "val", "test"), borders)),
          "windows": {k: len(v) for k, v in fd.starts.items()},
      },
      "settings": {**dataclasses.asdict(cfg), "control": args.control},
      "units": UNITS,
      "metrics": metrics,
      "bsa_change_percent": change,
      "plot": {"file": plot_path.name, "channel": series.channels[channel],
               "window_starts": plotted},
      "log": result["log"],
      "seconds": result["seconds"],
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "versions": common.versions(),
  }
  common.save_results(out, results)
  print(summary_line(cfg.model, file, len(series.channels), cfg.horizon,
                     metrics))
  print(f"wrote {out / 'results.json'} and {plot_path}")
  return 0
