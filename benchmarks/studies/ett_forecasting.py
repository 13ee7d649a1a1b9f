"""ETTh1/ETTh2 long-term forecasting with and without Batched Spectral Attention.

For each dataset, horizon, base model and seed: train the base forecaster
(shuffled windows, early stopping on the validation MSE), evaluate it on the
test split, then insert BSA on its input, fine-tune on consecutive windows
and evaluate again. Prints a markdown table of test MSE / MAE (normalized
units, mean over seeds) with the relative change, and per model the mean over
horizons.

Base models (`--models`, comma- or space-separated; default dlinear and
itransformer): DLinear (kernel 25), RLinear (RevIN + one L->H linear map),
PatchTST (RevIN, patches of 16 with stride 8 and end padding, 3 post-norm
LayerNorm encoder layers with d_model 16, 4 heads, d_ff 128, no dropout: the
paper's ETTh setting) and a small iTransformer; see
``grokfast_jax/experiments/forecasting/models/``. BSA sits on the raw input
window for DLinear, RLinear and PatchTST (before RevIN) and on the
instance-normalized window for the iTransformer.

Usage (from the repository root):
  .venv/bin/python -m benchmarks.studies.ett_forecasting       # full run
  .venv/bin/python -m benchmarks.studies.ett_forecasting --horizons 96 \\
      --seeds 0 --datasets ETTh1                               # quick look
  .venv/bin/python -m benchmarks.studies.ett_forecasting --control \\
      --models rlinear,patchtst                                # new models
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

import numpy as np

from grokfast_jax.experiments import common
from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting import task
from grokfast_jax.experiments.forecasting.config import ForecastConfig
from grokfast_jax.experiments.forecasting.models import MODELS

REPO = Path(__file__).resolve().parents[2]


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data-dir", default=str(REPO / ".." / "shared" / "data" /
                                           "ett"),
                 help="folder holding ETTh1.csv / ETTh2.csv")
  p.add_argument("--datasets", nargs="+", default=["ETTh1", "ETTh2"])
  p.add_argument("--horizons", nargs="+", type=int,
                 default=[96, 192, 336, 720])
  p.add_argument("--models", nargs="+", default=["dlinear", "itransformer"],
                 help=f"base models, comma- or space-separated, of {MODELS}")
  p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
  p.add_argument("--lookback", type=int, default=96)
  p.add_argument("--max-epochs", type=int, default=8)
  p.add_argument("--patience", type=int, default=2)
  p.add_argument("--ft-epochs", type=int, default=3)
  p.add_argument("--split", default="ratio", choices=fdata.SPLITS)
  p.add_argument("--control", action="store_true",
                 help="also fine-tune the base model without BSA by the same "
                 "protocol (separates BSA from the extra training)")
  p.add_argument("--json", default=None, help="also write raw results here")
  p.add_argument("--runs", default=None, metavar="FILE.jsonl",
                 help="append every (dataset, horizon, model, seed) run to "
                 "this JSON-lines file as it ends, and reuse the runs already "
                 "there with the same settings (an interrupted table "
                 "resumes)")
  args = p.parse_args(argv)
  args.models = [m for item in args.models for m in item.split(",") if m]
  unknown = [m for m in args.models if m not in MODELS]
  if unknown:
    p.error(f"--models: unknown {', '.join(unknown)}; choose from "
            f"{', '.join(MODELS)}")
  return args


def _pct(new: float, old: float) -> str:
  return f"{100.0 * (new - old) / old:+.1f}%"


def main(argv=None) -> None:
  args = parse_args(argv)
  t_start = time.perf_counter()
  rows = []
  done = ({k: r["run"] for k, r in common.read_records(args.runs).items()}
          if args.runs else {})
  for ds in args.datasets:
    values, _, _ = fdata.load_ett_csv(os.path.join(args.data_dir, f"{ds}.csv"))
    for horizon in args.horizons:
      for model in args.models:
        runs = []
        for seed in args.seeds:
          cfg = ForecastConfig(model=model, lookback=args.lookback,
                               horizon=horizon, seed=seed, split=args.split,
                               max_epochs=args.max_epochs,
                               patience=args.patience,
                               ft_epochs=args.ft_epochs)
          key = json.dumps([ds, dataclasses.asdict(cfg), args.control],
                           sort_keys=True)
          if key in done:
            runs.append(done[key])
            continue
          out = task.run(values, cfg, control=args.control)
          runs.append(out)
          if args.runs:
            keep = {k: out[k] for k in ("base", "bsa", "control", "base_val",
                                        "bsa_val", "seconds") if k in out}
            with open(args.runs, "a") as fh:
              fh.write(json.dumps({"key": key, "run": keep}) + "\n")
          print(f"[{time.perf_counter() - t_start:7.1f}s] {ds} H={horizon} "
                f"{model} seed={seed}: base {out['base']['mse']:.4f} "
                f"bsa {out['bsa']['mse']:.4f} ({out['seconds']:.1f}s)",
                file=sys.stderr, flush=True)
        rows.append({
            "dataset": ds, "horizon": horizon, "model": model,
            **{f"{k}_{m}": float(np.mean([r[k][m] for r in runs]))
               for k in ("base", "bsa", "control") if k in runs[0]
               for m in ("mse", "mae")},
            "runs": [{k: r[k] for k in ("base", "bsa", "control", "base_val",
                                        "bsa_val", "seconds") if k in r}
                     for r in runs]})
  total = time.perf_counter() - t_start

  ctl = args.control
  print("| dataset | H | model | base MSE | BSA MSE | ΔMSE | base MAE | "
        "BSA MAE | ΔMAE |" + (" control MSE | Δ control |" if ctl else ""))
  print("|---|---|---|---|---|---|---|---|---|" + ("---|---|" if ctl else ""))
  for r in rows:
    extra = (f" {r['control_mse']:.4f} | "
             f"{_pct(r['control_mse'], r['base_mse'])} |" if ctl else "")
    print(f"| {r['dataset']} | {r['horizon']} | {r['model']} | "
          f"{r['base_mse']:.4f} | {r['bsa_mse']:.4f} | "
          f"{_pct(r['bsa_mse'], r['base_mse'])} | {r['base_mae']:.4f} | "
          f"{r['bsa_mae']:.4f} | {_pct(r['bsa_mae'], r['base_mae'])} |"
          + extra)
  print()
  print("Mean over horizons:")
  print()
  print("| dataset | model | base MSE | BSA MSE | ΔMSE | base MAE | BSA MAE |"
        " ΔMAE |" + (" control MSE | Δ control |" if ctl else ""))
  print("|---|---|---|---|---|---|---|---|" + ("---|---|" if ctl else ""))
  for ds in args.datasets:
    for model in args.models:
      sel = [r for r in rows if r["dataset"] == ds and r["model"] == model]
      keys = ("base_mse", "bsa_mse", "base_mae", "bsa_mae") + (
          ("control_mse",) if ctl else ())
      m = {k: float(np.mean([r[k] for r in sel])) for k in keys}
      extra = (f" {m['control_mse']:.4f} | "
               f"{_pct(m['control_mse'], m['base_mse'])} |" if ctl else "")
      print(f"| {ds} | {model} | {m['base_mse']:.4f} | {m['bsa_mse']:.4f} | "
            f"{_pct(m['bsa_mse'], m['base_mse'])} | {m['base_mae']:.4f} | "
            f"{m['bsa_mae']:.4f} | {_pct(m['bsa_mae'], m['base_mae'])} |"
            + extra)
  print()
  print(f"Total wall time: {total:.0f} s on {platform.machine()} "
        f"({os.cpu_count()} CPUs visible), seeds {args.seeds}.")
  if args.json:
    with open(args.json, "w") as fh:
      json.dump({"args": vars(args), "rows": rows, "seconds": total}, fh,
                indent=1)


if __name__ == "__main__":
  main()
