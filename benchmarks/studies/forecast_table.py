"""Forecasting with and without Batched Spectral Attention: models x data x horizons.

For each data set, horizon, base model and seed, one ``grokfast-jax
forecast`` run (:func:`grokfast_jax.experiments.forecasting.task.run`, with
the command's settings from :func:`~grokfast_jax.experiments.forecasting.
config.make_config`): the base forecaster, the same model fine-tuned with BSA
on its input, and the control (the same fine-tuning without BSA), all scored
on the test split. Prints the markdown table of test MSE / MAE (normalized
units, mean over seeds) with the changes from the base model, and a summary
per model and data set: does BSA beat the control?

Data sets (``--datasets``; files under ``--data-dir``) and their conventions:

- ETTh1, ETTh2 (``ett/ETTh1.csv``, ``ett/ETTh2.csv``): rows split
  0.6 / 0.2 / 0.2, look-back 96, horizons 96 / 192 / 336 / 720;
- Exchange (``exchange/exchange_rate.csv``): 0.7 / 0.1 / 0.2, look-back 96,
  horizons 96 / 192 / 336 / 720 (the long-term forecasting literature's);
- ILI (``ili/national_illness.csv``): 0.7 / 0.1 / 0.2, look-back 36,
  horizons 24 / 36 / 48 / 60 (the literature's for this short weekly
  series).

``--protocol quick`` (default) trains as the command does by default;
``--protocol reference`` as the authors' code (see docs/guides/spectral_attention.md).
``--search`` adds the reference's learning-rate search to every run (each
fine-tuning rate in turn at x 0.7 / 1 / 1.4, chosen by that run's validation
MSE, for BSA and the control alike; the reference chooses by the mean over
its three seeds); runs with and without it are recorded apart. ``--max-epochs`` and
``--patience`` override the protocol's base training (the first ETT table
used 8 and 2).

Every run is appended to ``--runs`` (JSON lines) as it ends, and runs already
there with the same settings are reused, so an interrupted table resumes and
a table can be grown model by model.

  python -m benchmarks.studies.forecast_table --models dlinear,rlinear \\
      --runs benchmarks/results/forecast_runs.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from grokfast_jax.experiments import common
from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting import task
from grokfast_jax.experiments.forecasting.config import PROTOCOLS, make_config
from grokfast_jax.experiments.forecasting.models import MODELS

REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class DataSet:
  """A data set of the table: its file under the data folder, look-back and
  horizons."""

  file: str
  lookback: int
  horizons: tuple[int, ...]


DATASETS = {
    "ETTh1": DataSet("ett/ETTh1.csv", 96, (96, 192, 336, 720)),
    "ETTh2": DataSet("ett/ETTh2.csv", 96, (96, 192, 336, 720)),
    "Exchange": DataSet("exchange/exchange_rate.csv", 96,
                        (96, 192, 336, 720)),
    "ILI": DataSet("ili/national_illness.csv", 36, (24, 36, 48, 60)),
}
KEEP = ("base", "bsa", "control", "base_val", "bsa_val", "seconds")


def _list(items: list[str]) -> list[str]:
  return [x for item in items for x in item.split(",") if x]


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data-dir", default=str(REPO / ".." / "shared" / "data"),
                 help="folder holding ett/, exchange/ and ili/")
  p.add_argument("--datasets", nargs="+", default=list(DATASETS),
                 help=f"of {', '.join(DATASETS)} (comma- or space-separated)")
  p.add_argument("--horizons", nargs="+", type=int, default=None,
                 help="default: each data set's four")
  p.add_argument("--models", nargs="+", default=list(MODELS),
                 help=f"base models, of {', '.join(MODELS)}")
  p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
  p.add_argument("--one-seed", nargs="+", default=[],
                 help="models run with the first seed only (slow ones; the "
                 "table marks them)")
  p.add_argument("--protocol", default="quick", choices=PROTOCOLS)
  p.add_argument("--search", action="store_true",
                 help="the reference's learning-rate search in every run "
                 "(5-7 fine-tunings with BSA, 3 for the control)")
  p.add_argument("--max-epochs", type=int, default=None)
  p.add_argument("--patience", type=int, default=None)
  p.add_argument("--runs", default=None, metavar="FILE.jsonl",
                 help="append each run here and reuse the runs already there")
  p.add_argument("--json", default=None, help="write the table's rows here")
  args = p.parse_args(argv)
  args.models, args.datasets = _list(args.models), _list(args.datasets)
  args.one_seed = _list(args.one_seed)
  for name, given, known in (("--models", args.models + args.one_seed,
                              MODELS),
                             ("--datasets", args.datasets, DATASETS)):
    unknown = [m for m in given if m not in known]
    if unknown:
      p.error(f"{name}: unknown {', '.join(unknown)}; choose from "
              f"{', '.join(known)}")
  return args


def run_key(dataset: str, given: dict[str, Any], search: bool = False) -> str:
  """The record key of one run: the data set and the command's settings
  (with ``"search"`` appended for a searched run, so that the keys of runs
  without it stay as they were)."""
  cfg = make_config(given)
  return json.dumps([dataset, dataclasses.asdict(cfg), True]
                    + ["search"] * search, sort_keys=True)


def one_run(path: str, given: dict[str, Any],
            search: bool = False) -> dict[str, Any]:
  """One command run (base, BSA, control) on the file at `path`; with
  `search`, also the rates chosen and tried."""
  series = fdata.load_csv(path)
  out = task.run(series.values, make_config({**given, "data": path}),
                 control=True, search=search)
  return {k: out[k] for k in KEEP + ("search",) * search}


def _pct(new: float, old: float) -> str:
  return f"{100.0 * (new - old) / old:+.1f}%"


def table(rows: list[dict[str, Any]]) -> str:
  """The markdown table of the rows (one per data set, horizon, model)."""
  lines = ["| data | H | model | seeds | base MSE | BSA MSE | ΔMSE | "
           "control MSE | Δ control | base MAE | BSA MAE | control MAE |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['dataset']} | {r['horizon']} | {r['model']} | "
        f"{len(r['runs'])}{'*' if r['one_seed'] else ''} | "
        f"{r['base_mse']:.4f} | {r['bsa_mse']:.4f} | "
        f"{_pct(r['bsa_mse'], r['base_mse'])} | {r['control_mse']:.4f} | "
        f"{_pct(r['control_mse'], r['base_mse'])} | {r['base_mae']:.4f} | "
        f"{r['bsa_mae']:.4f} | {r['control_mae']:.4f} |")
  return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]]) -> str:
  """Per model and data set: the mean test MSE over the horizons run, of
  BSA against the control, and the horizons where BSA's is lower."""
  lines = ["| data | model | horizons | BSA MSE | control MSE | BSA vs "
           "control | BSA lower at |", "|---|---|---|---|---|---|---|"]
  for ds in dict.fromkeys(r["dataset"] for r in rows):
    for model in dict.fromkeys(r["model"] for r in rows):
      sel = [r for r in rows if r["dataset"] == ds and r["model"] == model]
      if not sel:
        continue
      bsa = float(np.mean([r["bsa_mse"] for r in sel]))
      ctl = float(np.mean([r["control_mse"] for r in sel]))
      wins = sum(r["bsa_mse"] < r["control_mse"] for r in sel)
      lines.append(f"| {ds} | {model} | {len(sel)} | {bsa:.4f} | {ctl:.4f} |"
                   f" {_pct(bsa, ctl)} | {wins}/{len(sel)} |")
  return "\n".join(lines)


def main(argv=None) -> Optional[list[dict[str, Any]]]:
  args = parse_args(argv)
  t_start = time.perf_counter()
  done = ({k: r["run"] for k, r in common.read_records(args.runs).items()}
          if args.runs else {})
  rows = []
  for ds in args.datasets:
    spec = DATASETS[ds]
    path = os.path.join(args.data_dir, spec.file)
    for horizon in args.horizons or spec.horizons:
      for model in args.models + [m for m in args.one_seed
                                  if m not in args.models]:
        one = model in args.one_seed
        runs = []
        for seed in args.seeds[:1] if one else args.seeds:
          given = {"data": path, "model": model, "lookback": spec.lookback,
                   "horizon": horizon, "seed": seed,
                   "protocol": args.protocol}
          if args.max_epochs is not None:
            given["max_epochs"] = args.max_epochs
          if args.patience is not None:
            given["patience"] = args.patience
          key = run_key(ds, given, args.search)
          if key in done:
            runs.append(done[key])
            continue
          out = one_run(path, given, args.search)
          runs.append(out)
          if args.runs:
            with open(args.runs, "a") as fh:
              fh.write(json.dumps({"key": key, "run": out}) + "\n")
          print(f"[{time.perf_counter() - t_start:7.1f}s] {ds} H={horizon} "
                f"{model} seed={seed}: base {out['base']['mse']:.4f} bsa "
                f"{out['bsa']['mse']:.4f} control {out['control']['mse']:.4f}"
                f" ({out['seconds']:.1f}s)", file=sys.stderr, flush=True)
        rows.append({
            "dataset": ds, "horizon": horizon, "model": model,
            "one_seed": one,
            **{f"{k}_{m}": float(np.mean([r[k][m] for r in runs]))
               for k in ("base", "bsa", "control") for m in ("mse", "mae")},
            "runs": runs})
  total = time.perf_counter() - t_start
  print(table(rows))
  print()
  print(verdicts(rows))
  print()
  print(f"Protocol {args.protocol}, learning-rate search "
        f"{'used' if args.search else 'not used'}; total wall time {total:.0f} s on "
        f"{platform.machine()} ({os.cpu_count()} CPUs visible); seeds "
        f"{args.seeds} (* = first seed only).")
  if args.json:
    with open(args.json, "w") as fh:
      json.dump({"args": vars(args), "rows": rows, "seconds": total}, fh,
                indent=1)
  return rows


if __name__ == "__main__":
  main()
