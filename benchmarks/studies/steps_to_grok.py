"""Steps to 95% validation accuracy on x * y mod 97, over several seeds.

Runs the paper's settings for each requested filter and seed (each run stops
at its first evaluation with val acc >= 95%, or at --max-steps) and prints a
markdown table of the median, min and max steps next to the paper's and the
team's PyTorch figures.

  python -m benchmarks.studies.steps_to_grok     # ema, ma; seeds 0-2
  python -m benchmarks.studies.steps_to_grok --filters none --seeds 0 \\
      --max-steps 50000

Steps come in multiples of 10: validation runs once per epoch (10 updates).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax

from grokfast_jax.experiments import common
from grokfast_jax.experiments.modular import config as config_lib
from grokfast_jax.experiments.modular import task as modular_task

# Iterations to 95% val acc: Grokfast paper (Lee et al. 2024) and the team's
# PyTorch re-run of the reference (seed 0).
PAPER = {"none": 39890, "ema": 910, "ma": 790}
TEAM_TORCH = {"none": 29320, "ema": 1110, "ma": 1120}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--filters", default="ema,ma",
                      help="comma-separated among none, ema, ma "
                      "(default ema,ma; the baseline needs 40k+ steps)")
  parser.add_argument("--seeds", default="0,1,2",
                      help="comma-separated seeds (default 0,1,2)")
  parser.add_argument("--max-steps", type=int, default=5000,
                      help="give up after this many steps (default 5000)")
  parser.add_argument("--json", default=None,
                      help="also write every run's summary to this file")
  parser.add_argument("--progress", action="store_true",
                      help="show a progress bar per run")
  args = parser.parse_args(argv)
  filters = [f for f in args.filters.split(",") if f]
  seeds = [int(s) for s in args.seeds.split(",") if s]
  for f in filters:
    if f not in config_lib.FILTERS:
      raise ValueError(f"--filters must list some of {config_lib.FILTERS}")

  rows, runs = [], []
  for f in filters:
    steps, secs = [], []
    for seed in seeds:
      cfg = config_lib.paper_config(f, seed=seed, max_steps=args.max_steps,
                                    stop_at_target=True)
      r = modular_task.run(cfg, progress=args.progress,
                           label=f"{modular_task.run_label(f)} seed {seed}")
      s95, t95 = r["steps_to_val_acc_95"], r["seconds_to_val_acc_95"]
      print(f"{modular_task.run_label(f)} seed {seed}: "
            + (f"95% at step {s95:,} ({t95:.0f} s)" if s95 else
               f"not reached in {r['final']['step']:,} steps "
               f"(val acc {r['final']['val_acc']:.3f})"),
            file=sys.stderr, flush=True)
      steps.append(s95)
      secs.append(t95)
      runs.append({"filter": f, "seed": seed, "steps_to_val_acc_95": s95,
                   "seconds_to_val_acc_95": t95,
                   "steps_per_second": r["steps_per_second"],
                   "final": r["final"], "settings": r["settings"]})
    done = [s for s in steps if s is not None]
    rows.append((f, steps, done))

  print(f"\nSteps to 95% val acc, x * y mod 97, train fraction 0.5, "
        f"backend {jax.default_backend()}, max {args.max_steps:,} steps\n")
  print("| run | settings | per seed | median | min | max | paper | "
        "PyTorch (team, seed 0) |")
  print("|---|---|---|---|---|---|---|---|")
  for f, steps, done in rows:
    d = config_lib.PAPER_DEFAULTS[f]
    setting = {"none": f"wd {d['weight_decay']:g}",
               "ema": f"alpha {d['alpha']:g}, lamb {d['lamb']:g}, "
                      f"wd {d['weight_decay']:g}",
               "ma": f"window {d['window_size']}, lamb {d['lamb']:g}, "
                     f"wd {d['weight_decay']:g}"}[f]
    per_seed = ", ".join(common.format_steps(s) if s else f">{args.max_steps:,}"
                         for s in steps)
    if len(done) == len(steps):
      med = common.format_steps(int(common.median(done)))
      lo, hi = common.format_steps(min(done)), common.format_steps(max(done))
    else:
      med = lo = hi = f"{len(done)}/{len(steps)} reached"
    print(f"| {modular_task.run_label(f)} | {setting} | {per_seed} | {med} "
          f"| {lo} | {hi} | {PAPER[f]:,} | {TEAM_TORCH[f]:,} |")
  if args.json:
    with open(args.json, "w") as fh:
      json.dump(common.to_json_safe({"runs": runs, "time": time.time()}), fh,
                indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
