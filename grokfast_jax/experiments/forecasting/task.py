"""The ``grokfast-jax forecast`` command: a CSV series with and without BSA.

Reads a CSV file (ETT-style or any file with a date column and numeric
columns), trains a base forecaster on shuffled windows, fine-tunes it with
Batched Spectral Attention on consecutive windows and scores both on the
validation and test splits (:func:`run`; the stages are
:mod:`.stages`, each trained by the experiment harness, so
``--checkpoint-dir DIR`` keeps one sub-folder per stage and ``--resume``
ends with exactly the results of an uninterrupted command). Writes
OUT/results.json and OUT/forecast.png (a few test windows of one channel:
look-back, truth and both forecasts) and prints one summary line::

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
from typing import Any, Mapping, Optional

import numpy as np

from grokfast_jax.experiments import common, harness
from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting import report, stages, steps
from grokfast_jax.experiments.forecasting.config import (
    CommandConfig, ForecastConfig, make_command_config)

# The harness keys kept per stage in the command's results.json.
_STAGE_KEYS = ("steps_per_epoch", "epochs", "stopped_early", "n_params",
               "seconds_total", "seconds_first_eval", "steps_per_second",
               "history")


def run(values: np.ndarray, cfg: ForecastConfig, *, control: bool = False,
        keep_models: bool = False, progress: bool = False,
        checkpoint_dir: Optional[str | os.PathLike] = None,
        checkpoint_every: int = 10, resume: bool = False) -> dict[str, Any]:
  """Base training, BSA fine-tuning and test metrics of both.

  Args:
    values: the raw (T, C) series (e.g. from :func:`data.load_ett_csv`).
    cfg: the settings.
    control: also fine-tune a copy of the base model WITHOUT BSA by the same
      protocol (consecutive batches, same optimizer, epochs and selection),
      to separate the effect of BSA from that of the extra training.
    keep_models: also return the data and the trained models.
    progress: show a progress bar per stage.
    checkpoint_dir: checkpoint each stage in a sub-folder ("base",
      "finetune", "control") of this folder; None: no checkpoints.
    checkpoint_every: evaluations (epochs) between checkpoints.
    resume: continue from the checkpoints in `checkpoint_dir` (stages
      already finished are restored, not trained again).

  Returns:
    A dict with "base" and "bsa" (and "control") test metrics
    ({"mse", "mae"}), their validation MSEs ("base_val", "bsa_val"),
    "metrics" (model -> {"val", "test"} -> {"mse", "mae"}), the per-epoch
    "log", "seconds" and "runs" (stage -> harness ``Run``); with
    `keep_models`, "data" (the :class:`data.ForecastData`) and "models"
    (model -> nnx.Module).
  """
  if resume and checkpoint_dir is None:
    raise ValueError("--resume needs --checkpoint-dir")
  t0 = time.perf_counter()
  fd = fdata.make_forecast_data(values, cfg.lookback, cfg.horizon,
                                split=cfg.split, ratios=cfg.ratios,
                                max_rows=cfg.max_rows)

  def train(name: str, start: Any = None):
    stage = stages.Stage(cfg, name)
    ckpt = ({} if checkpoint_dir is None else
            {"checkpoint_dir": Path(checkpoint_dir) / name, "resume": resume,
             "checkpoint_every": checkpoint_every})
    done = harness.train(TASK, stage, stages.StageData(fd, start),
                         label=f"{cfg.model} {name}", progress=progress,
                         **ckpt)
    return done, stages.final_model(stage, fd, done.state)

  def scores(model):
    return {split: steps.evaluate(model, fd, split,
                                  batch_size=cfg.eval_batch_size)
            for split in ("val", "test")}

  runs, models = {}, {}
  runs["base"], models["base"] = train("base")
  best_base = runs["base"].state["best_params"]
  metrics = {"base": scores(models["base"])}
  runs["finetune"], models["bsa"] = train("finetune", best_base)
  metrics["bsa"] = scores(models["bsa"])
  if control:
    runs["control"], models["control"] = train("control", best_base)
    metrics["control"] = scores(models["control"])
  out: dict[str, Any] = {name: m["test"] for name, m in metrics.items()}
  out["base_val"] = metrics["base"]["val"]["mse"]
  out["bsa_val"] = metrics["bsa"]["val"]["mse"]
  out["metrics"] = metrics
  out["log"] = [e for r in runs.values() for e in r.results["log"]]
  out["runs"] = runs
  if keep_models:
    out["data"] = fd
    out["models"] = models
  out["seconds"] = time.perf_counter() - t0
  return out


def load_data(cmd: CommandConfig) -> fdata.CsvSeries:
  """Reads the command's CSV file and checks it has rows enough.

  Raises:
    ValueError: naming the file (and the line and column of a bad cell).
  """
  cfg = cmd.run_config()
  series = fdata.load_csv(cmd.data, cmd.target)
  need = max(cfg.batch_size, cfg.ft_batch_size if cfg.ft_epochs else 1)
  fdata.check_rows(len(series.values), cfg.lookback, cfg.horizon,
                   split=cfg.split, ratios=cfg.ratios,
                   min_train_windows=need, source=series.path)
  return series


def _results(cmd: CommandConfig, cfg: ForecastConfig,
             series: fdata.CsvSeries, result: Mapping[str, Any],
             plot: dict[str, Any]) -> dict[str, Any]:
  """The command's results.json (the keys of the pre-harness command, plus
  "task", "process_count" and per-stage harness figures under "stages")."""
  import jax
  fd, metrics = result["data"], result["metrics"]
  borders = fdata.split_borders(len(series.values), cfg.split, cfg.ratios)
  change = {f"{split}_{m}": report.pct_change(metrics["bsa"][split][m],
                                              metrics["base"][split][m])
            for split in ("val", "test") for m in ("mse", "mae")}
  return {
      "task": TASK.name,
      "command": "forecast",
      "model": cfg.model,
      "data": {
          "path": os.path.abspath(series.path),
          "file": os.path.basename(series.path),
          "rows": len(series.values), "target": cmd.target,
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
      "settings": {**dataclasses.asdict(cfg), "control": cmd.control},
      "units": report.UNITS,
      "metrics": metrics,
      "bsa_change_percent": change,
      "plot": plot,
      "log": result["log"],
      "stages": {name: {k: r.results[k] for k in _STAGE_KEYS}
                 for name, r in result["runs"].items()},
      "seconds": result["seconds"],
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "process_count": jax.process_count(),
      "versions": common.versions(),
  }


def describe(results: Mapping[str, Any]) -> str:
  """The command's summary line from its results."""
  return report.summary_line(results["model"], results["data"]["file"],
                             len(results["data"]["channels"]),
                             results["settings"]["horizon"],
                             results["metrics"])


def _command(task: harness.Task, given: dict[str, Any],
             options: harness.Options) -> int:
  """``grokfast-jax forecast``: writes OUT/results.json and OUT/forecast.png.

  Bad settings or input raise a ValueError (the command line prints it as
  one error line, exit status 2) before anything is written.
  """
  cmd = task.make_config(given)
  cfg = cmd.run_config()
  series = load_data(cmd)
  out = Path(options.out)
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out {out}: exists and is not a folder")
  if importlib.util.find_spec("matplotlib") is None:
    raise ValueError("forecast.png needs matplotlib (pip install "
                     "'grokfast_jax[experiments]')")
  if options.resume and options.checkpoint_dir is None:
    raise ValueError("--resume needs --checkpoint-dir")
  print(report.describe_data(series))
  result = run(series.values, cfg, control=cmd.control, keep_models=True,
               progress=options.progress,
               checkpoint_dir=options.checkpoint_dir,
               checkpoint_every=options.checkpoint_every,
               resume=options.resume)
  fd, file = result["data"], os.path.basename(series.path)
  channel = len(series.channels) - 1
  plot_path = out / "forecast.png"
  plotted = report.plot_forecasts(
      plot_path, fd, {k: result["models"][k] for k in ("base", "bsa")},
      channel, series.channels[channel],
      f"{cfg.model} on {file}: {series.channels[channel]} "
      f"(L={cfg.lookback}, H={cfg.horizon})", series.dates)
  results = _results(cmd, cfg, series, result, {
      "file": plot_path.name, "channel": series.channels[channel],
      "window_starts": plotted})
  common.save_results(out, results)
  print(describe(results))
  print(f"wrote {out / 'results.json'} and {plot_path}")
  return 0


TASK = harness.Task(
    name="forecast",
    help="forecast a CSV time series with and without Batched Spectral "
    "Attention",
    description="Train a base forecaster on shuffled windows of a CSV "
    "series (a date column and numeric columns; the date column is the one "
    "named date/time/timestamp, else the first non-numeric column), "
    "fine-tune it with Batched Spectral Attention on consecutive windows, "
    "and score both on the validation and test splits (chronological). "
    "Writes OUT/results.json and OUT/forecast.png.",
    config_class=CommandConfig,
    make_config=make_command_config,
    load_data=load_data,
    build=stages.build,
    summarize=stages.summarize,
    describe=describe,
    plots=(),
    default_out="runs/forecast",
    mesh_ok=False,
    run_label=lambda stage: stage.name,
    custom_run=_command,
)
"""The task: the command (``custom_run``) reads the CSV file through
`load_data` and runs :func:`run`, whose stages :func:`harness.train`
trains with ``build`` / ``summarize`` (their config is a
:class:`stages.Stage`, their data a :class:`stages.StageData`)."""
