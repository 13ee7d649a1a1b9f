"""Wall-clock seconds to 95% validation accuracy (compilation included).

Each run is a fresh process (``grokfast-jax modular --stop-at-target``), so
every run pays for its own compilation, as a user would. Reports, per seed,
the seconds to 95% counted from the start of the run (building the data and
model, compiling and evaluating included; Python and JAX import excluded),
the whole process's wall time, and the training speed in steps per second
after the first epoch (which includes compilation).

  python -m benchmarks.studies.time_to_grok                  # EMA, seeds 0-2
  python -m benchmarks.studies.time_to_grok --filters ema,ma --seeds 0

Wrap timed runs in ``flock /tmp/grokfast_timing.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grokfast_jax.experiments import common


def time_run(filter: str, seed: int, max_steps: int) -> dict:
  """One fresh-process run; returns its results.json plus process seconds."""
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [sys.executable, "-m", "grokfast_jax.cli", "modular", "--filter",
           filter, "--seed", str(seed), "--max-steps", str(max_steps),
           "--stop-at-target", "--no-progress", "--out", tmp]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    result = json.loads((Path(tmp) / "results.json").read_text())
  result["process_seconds"] = wall
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--filters", default="ema",
                      help="comma-separated among none, ema, ma (default ema)")
  parser.add_argument("--seeds", default="0,1,2",
                      help="comma-separated seeds (default 0,1,2)")
  parser.add_argument("--max-steps", type=int, default=5000)
  parser.add_argument("--machine", default=f"{os.cpu_count()}-core machine",
                      help="machine description for the table")
  args = parser.parse_args(argv)
  rows = []
  for f in [f for f in args.filters.split(",") if f]:
    for seed in [int(s) for s in args.seeds.split(",") if s]:
      r = time_run(f, seed, args.max_steps)
      rows.append((f, seed, r))
      print(f"{f} seed {seed}: {r['steps_to_val_acc_95']} steps, "
            f"{r['seconds_to_val_acc_95']} s", file=sys.stderr, flush=True)
  backend = rows[0][2]["backend"] if rows else "?"
  print(f"\nTime to 95% val acc, x * y mod 97, backend {backend}, "
        f"{args.machine}\n")
  print("| filter | seed | steps to 95% | seconds to 95% (compile incl.) | "
        "first epoch s (compile) | steps/s after | process s |")
  print("|---|---|---|---|---|---|---|")
  for f, seed, r in rows:
    s95, t95 = r["steps_to_val_acc_95"], r["seconds_to_val_acc_95"]
    rate = r["steps_per_second"]
    print(f"| {f} | {seed} | {common.format_steps(s95)} | "
          f"{'n/a' if t95 is None else f'{t95:.1f}'} | "
          f"{r['seconds_first_epoch']:.1f} | "
          f"{'n/a' if rate is None else f'{rate:.1f}'} | "
          f"{r['process_seconds']:.1f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
