"""The ``grokfast-jax forecast`` command: a CSV series with and without BSA.

Reads a CSV file (ETT-style or any file with a date column and numeric
columns), trains a base forecaster on shuffled windows, fine-tunes it with
Batched Spectral Attention on consecutive windows and scores both on the
validation and test splits (:func:`run`, whose stages the experiment harness
trains: ``--checkpoint-dir DIR`` keeps one sub-folder per stage and
``--resume`` ends with exactly the results of an uninterrupted command).
Writes OUT/results.json and OUT/forecast.png (a few test windows of one
channel: look-back, truth and both forecasts) and prints one summary line::

  grokfast-jax forecast --data ETTh1.csv --model dlinear --out runs/etth1
  grokfast-jax forecast --data sales.csv --target units --model rlinear \\
      --lookback 48 --horizon 24 --epochs 5 --out runs/sales

Everything is checked (settings, file, columns, cells, rows) before OUT is
created, so a bad input writes nothing. The task has no comparison and no
Grokfast filter, and its batches are consecutive windows whose order
matters to BSA, so they are not split over devices (``mesh_ok=False``: no
``--mesh`` flags).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from grokfast_jax.experiments import common, harness
from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting import training
from grokfast_jax.experiments.forecasting.config import (
  FLAGS,
  ForecastConfig,
  make_config,
)

UNITS = (
  "normalized: each channel z-scored with the training rows' mean and "
  "std; averaged over windows, channels and horizon steps"
)
# Test windows drawn in forecast.png (their targets tile the test split's
# first rows).
PLOT_WINDOWS = 3
# Stage -> its model's name in the results.
_MODELS = {"base": "base", "finetune": "bsa", "control": "control"}
#: The learning-rate search (``--search``): each fine-tuning rate in turn,
#: times these factors, as the BSA reference searches them.
SEARCH_FACTORS = (0.7, 1.0, 1.4)
# The harness keys kept per stage in the command's results.json.
_STAGE_KEYS = (
  "steps_per_epoch",
  "epochs",
  "stopped_early",
  "n_params",
  "seconds_total",
  "seconds_first_eval",
  "steps_per_second",
  "history",
)


def search_rates(cfg: ForecastConfig, stage: str) -> dict[str, float]:
  """The fine-tuning learning rates ``--search`` tunes for a stage, in the
  order it tunes them, at their starting values: the base weights', then
  (with BSA) the mixing logits' and, if the smoothing factors are learned,
  theirs (`ft_lr_alpha`, or `ft_lr_spectral` where it is None).

  Examples:
    >>> search_rates(ForecastConfig(), "control")
    {'ft_lr_base': 1e-05}
    >>> search_rates(ForecastConfig(learnable_alpha=True), "finetune")
    {'ft_lr_base': 1e-05, 'ft_lr_spectral': 0.01, 'ft_lr_alpha': 0.01}
  """
  rates = {"ft_lr_base": cfg.ft_lr_base}
  if stage == "finetune":
    rates["ft_lr_spectral"] = cfg.ft_lr_spectral
    if cfg.learnable_alpha:
      rates["ft_lr_alpha"] = (
        cfg.ft_lr_spectral if cfg.ft_lr_alpha is None else cfg.ft_lr_alpha
      )
  return rates


def run(
  values: np.ndarray,
  cfg: ForecastConfig,
  *,
  control: bool = False,
  search: bool = False,
  keep_models: bool = False,
  progress: bool = False,
  checkpoint_dir: Optional[str | os.PathLike] = None,
  checkpoint_every: int = 10,
  resume: bool = False,
) -> dict[str, Any]:
  """Base training, BSA fine-tuning and test metrics of both.

  Args:
    values: the raw (T, C) series (e.g. from :func:`data.load_ett_csv`).
    cfg: the settings.
    control: also fine-tune a copy of the base model WITHOUT BSA by the same
      protocol (consecutive batches, same optimizer, epochs and selection),
      to separate the effect of BSA from that of the extra training.
    search: the reference's learning-rate search: each rate of
      :func:`search_rates` in turn is tried at x 0.7, 1 and 1.4 of its
      current value (the others held), and the fine-tuning of lowest
      validation MSE is kept, for BSA and for the control alike (5 or 7
      fine-tunings with BSA, 3 for the control, instead of 1 each).
    keep_models: also return the data and the trained models.
    progress: show a progress bar per stage.
    checkpoint_dir: checkpoint each stage in a sub-folder ("base",
      "finetune", "control") of this folder, with `search` each candidate in
      a sub-folder of its stage's, named by its rates; None: no checkpoints.
    checkpoint_every: evaluations (epochs) between checkpoints.
    resume: continue from the checkpoints in `checkpoint_dir` (stages
      already finished are restored, not trained again).

  Returns:
    A dict with "base" and "bsa" (and "control") test metrics
    ({"mse", "mae"}), their validation MSEs ("base_val", "bsa_val"),
    "metrics" (model -> {"val", "test"} -> {"mse", "mae"}), the per-epoch
    "log", "seconds" and "runs" (stage -> harness ``Run``); with `search`,
    "search" (model -> {"rates": the chosen rates, "tried": [{"rates",
    "val_mse"}, ...] in the order tried}); with `keep_models`, "data" (the
    :class:`data.ForecastData`) and "models" (model -> nnx.Module).
  """
  t0 = time.perf_counter()
  fd = fdata.make_forecast_data(
    values,
    cfg.lookback,
    cfg.horizon,
    split=cfg.split,
    ratios=cfg.ratios,
    max_rows=cfg.max_rows,
  )

  def train(name: str, stage_cfg: ForecastConfig, folder: str) -> tuple:
    stage = training.Stage(stage_cfg, name)
    start = None if name == "base" else runs["base"].state["best_params"]
    done = harness.train(
      TASK,
      stage,
      training.StageData(fd, start),
      label=f"{cfg.model} {folder}",
      progress=progress,
      resume=resume,
      checkpoint_every=checkpoint_every,
      checkpoint_dir=(
        None if checkpoint_dir is None else Path(checkpoint_dir) / folder
      ),
    )
    model = training.stage_model(
      stage, fd, done.state["best_params"], done.state["rest"]
    )
    val = training.evaluate(model, fd, "val", batch_size=cfg.eval_batch_size)
    return done, model, {"val": val}

  def searched(name: str) -> tuple:
    rates = search_rates(cfg, name)
    found: dict[tuple[float, ...], tuple] = {}
    tried: list[dict[str, Any]] = []

    def val(key: tuple[float, ...]) -> float:
      return found[key][2]["val"]["mse"]

    best = tuple(rates.values())  # not trained yet: the first try replaces it
    for group in list(rates):
      for factor in SEARCH_FACTORS:
        cand = {**rates, group: rates[group] * factor}
        key = tuple(cand.values())
        if key not in found:  # x 1 of a later rate: the current best
          tag = "-".join(
            f"{k.removeprefix('ft_lr_')}{v:.4g}" for k, v in cand.items()
          )
          found[key] = train(
            name, dataclasses.replace(cfg, **cand), f"{name}/{tag}"
          )
          tried.append({"rates": cand, "val_mse": val(key)})
        if best not in found or val(key) < val(best):
          best = key
      rates = dict(zip(rates, best))
    return found[best], {"rates": rates, "tried": tried}

  runs, models, metrics, searches = {}, {}, {}, {}
  for name in ("base", "finetune") + ("control",) * control:
    if search and name != "base":
      chosen, searches[_MODELS[name]] = searched(name)
    else:
      chosen = train(name, cfg, name)
    runs[name], models[_MODELS[name]], metrics[_MODELS[name]] = chosen
    # The test split is scored for the kept model only, not every candidate.
    metrics[_MODELS[name]]["test"] = training.evaluate(
      models[_MODELS[name]], fd, "test", batch_size=cfg.eval_batch_size
    )
  out: dict[str, Any] = {name: m["test"] for name, m in metrics.items()}
  out.update(
    base_val=metrics["base"]["val"]["mse"],
    bsa_val=metrics["bsa"]["val"]["mse"],
    metrics=metrics,
    log=[e for r in runs.values() for e in r.results["log"]],
    runs=runs,
  )
  if search:
    out["search"] = searches
  if keep_models:
    out.update(data=fd, models=models)
  out["seconds"] = time.perf_counter() - t0
  return out


def describe_data(series: fdata.CsvSeries) -> str:
  """One line on what was read: rows, date column and channels."""
  if series.date_column is None:
    date = "no date column (rows taken in file order)"
  elif series.date_rule == "name":
    date = f"date column {series.date_column!r} (by its name)"
  else:
    date = f"date column {series.date_column!r} (the first non-numeric column)"
  text = (
    f"data: {series.path}: {len(series.values)} rows, {date}; "
    f"{len(series.channels)} channel(s): {', '.join(series.channels)}"
  )
  if series.ignored_columns:
    text += f"; ignored non-numeric: {', '.join(series.ignored_columns)}"
  return text


def pct_change(new: float, old: float) -> float:
  """The change from `old` to `new` in percent (NaN if `old` is 0)."""
  return 100.0 * (new - old) / old if old else float("nan")


def describe(results: Mapping[str, Any]) -> str:
  """The command's summary line from its results:
  ``dlinear on ETTh1.csv (7 channels, H=96): test MSE ...``."""
  metrics, channels = results["metrics"], len(results["data"]["channels"])
  b, s = metrics["base"]["test"], metrics["bsa"]["test"]
  line = (
    f"{results['model']} on {results['data']['file']} ({channels} "
    f"channel{'s' * (channels != 1)}, "
    f"H={results['settings']['horizon']}): test MSE {b['mse']:.3f} -> "
    f"{s['mse']:.3f} with BSA ({pct_change(s['mse'], b['mse']):+.1f}%), "
    f"MAE {b['mae']:.3f} -> {s['mae']:.3f} "
    f"({pct_change(s['mae'], b['mae']):+.1f}%)"
  )
  if "control" in metrics:
    c = metrics["control"]["test"]
    line += (
      f"; control fine-tune without BSA: MSE {c['mse']:.3f} "
      f"({pct_change(c['mse'], b['mse']):+.1f}%)"
    )
  if "search" in results:
    line += "; fine-tuning rates searched"
  return line


def plot_forecasts(
  path: Path,
  fd: fdata.ForecastData,
  models: dict,
  channel: int,
  channel_name: str,
  title: str,
  dates: Optional[Sequence[str]] = None,
) -> list[int]:
  """Draws the first test windows of one channel (original units): in each
  panel the look-back history, the truth and the base and BSA forecasts, on
  a standalone Agg Figure (no display, pyplot untouched).

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
  starts = [
    int(test[0]) + i * fd.horizon
    for i in range(PLOT_WINDOWS)
    if int(test[0]) + i * fd.horizon <= int(test[-1])
  ]
  scale, shift = fd.std[channel], fd.mean[channel]
  preds = {
    name: training.predict(model, fd, starts)[:, channel] * scale + shift
    for name, model in models.items()
  }
  series = fd.series[:, channel] * scale + shift
  fig = Figure(figsize=(4.2 * len(starts), 3.6))
  FigureCanvasAgg(fig)
  axes = fig.subplots(1, len(starts), squeeze=False)[0]
  L, H = fd.lookback, fd.horizon
  for k, (ax, s) in enumerate(zip(axes, starts)):
    hist, fut = np.arange(s, s + L), np.arange(s + L, s + L + H)
    ax.plot(hist, series[hist], color="0.45", lw=1, label="look-back")
    ax.plot(fut, series[fut], color="black", lw=1.2, label="truth")
    ax.plot(
      fut, preds["base"][k], color="tab:blue", ls="--", lw=1.2, label="base"
    )
    ax.plot(
      fut, preds["bsa"][k], color="tab:red", ls="-", lw=1.2, label="with BSA"
    )
    when = f" ({dates[s + L]})" if dates is not None else ""
    ax.set_title(
      f"test window {k + 1}: rows {s + L}-{s + L + H - 1}{when}",
      fontsize="small",
    )
    ax.set_xlabel("row")
    ax.grid(True, alpha=0.3)
  axes[0].set_ylabel(channel_name)
  axes[0].legend(loc="best", fontsize="small")
  fig.suptitle(title)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  return starts


def _command(
  task: harness.Task, given: dict[str, Any], options: harness.Options
) -> int:
  """``grokfast-jax forecast``: writes OUT/results.json and OUT/forecast.png.

  Bad settings or input raise a ValueError (the command line prints it as
  one error line, exit status 2) before anything is written.
  """
  cfg = task.make_config(given)
  target, control = given.get("target", "all"), bool(given.get("control"))
  search = bool(given.get("search"))
  series = fdata.load_csv(given["data"], target)
  fdata.check_rows(
    len(series.values),
    cfg.lookback,
    cfg.horizon,
    split=cfg.split,
    ratios=cfg.ratios,
    source=series.path,
    min_train_windows=max(
      cfg.batch_size, cfg.ft_batch_size if cfg.ft_epochs else 1
    ),
  )
  out = Path(options.out)
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out {out}: exists and is not a folder")
  if importlib.util.find_spec("matplotlib") is None:
    raise ValueError(
      "forecast.png needs matplotlib (pip install 'grokfast_jax[experiments]')"
    )
  if options.resume and options.checkpoint_dir is None:
    raise ValueError("--resume needs --checkpoint-dir")
  print(describe_data(series))
  result = run(
    series.values,
    cfg,
    control=control,
    search=search,
    keep_models=True,
    progress=options.progress,
    checkpoint_dir=options.checkpoint_dir,
    checkpoint_every=options.checkpoint_every,
    resume=options.resume,
  )
  fd, metrics, runs = result["data"], result["metrics"], result["runs"]
  file, channel = os.path.basename(series.path), series.channels[-1]
  plot_path = out / "forecast.png"
  plotted = plot_forecasts(
    plot_path,
    fd,
    {k: result["models"][k] for k in ("base", "bsa")},
    len(series.channels) - 1,
    channel,
    f"{cfg.model} on {file}: {channel} (L={cfg.lookback}, H={cfg.horizon})",
    series.dates,
  )
  borders = fdata.split_borders(len(series.values), cfg.split, cfg.ratios)
  results = {
    "task": task.name,
    "command": "forecast",
    "model": cfg.model,
    "data": {
      "path": os.path.abspath(series.path),
      "file": file,
      "rows": len(series.values),
      "target": target,
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
    "settings": {
      **dataclasses.asdict(cfg),
      "control": control,
      "search": search,
    },
    "units": UNITS,
    "metrics": metrics,
    "bsa_change_percent": {
      f"{split}_{m}": pct_change(
        metrics["bsa"][split][m], metrics["base"][split][m]
      )
      for split in ("val", "test")
      for m in ("mse", "mae")
    },
    "plot": {
      "file": plot_path.name,
      "channel": channel,
      "window_starts": plotted,
    },
    "log": result["log"],
    **({"search": result["search"]} if search else {}),
    "stages": {
      name: {k: r.results[k] for k in _STAGE_KEYS} for name, r in runs.items()
    },
    "seconds": result["seconds"],
    # The same in every stage's results (the harness's keys).
    **{
      k: runs["base"].results[k]
      for k in ("backend", "devices", "process_count", "versions")
    },
  }
  common.save_results(out, results)
  print(describe(results))
  print(f"wrote {out / 'results.json'} and {plot_path}")
  return 0


TASK = harness.Task(
  name="forecast",
  help="forecast a CSV time series with and without Batched Spectral Attention",
  description="Train a base forecaster on shuffled windows of a CSV "
  "series (a date column and numeric columns; the date column is the one "
  "named date/time/timestamp, else the first non-numeric column), "
  "fine-tune it with Batched Spectral Attention on consecutive windows, "
  "and score both on the validation and test splits (chronological). "
  "Writes OUT/results.json and OUT/forecast.png.",
  config_class=ForecastConfig,
  make_config=make_config,
  extra_flags=FLAGS,
  build=training.build,
  summarize=training.summarize,
  describe=describe,
  plots=(),
  default_out="runs/forecast",
  mesh_ok=False,
  custom_run=_command,
)
"""The task. Its command (``custom_run``) reads the CSV file and runs
:func:`run`, whose stages :func:`harness.train` trains (config: a
:class:`training.Stage`, data: a :class:`training.StageData`).

:meta hide-value:
"""
