"""Per-step cost of the Grokfast filters in the main job's training step.

`filter_overhead.py` measures the filters on a cheap step (an MLP, batch 64),
where the optimizer's memory traffic is a large share of the step. This script
measures them where they are used here: the algorithmic task's training epoch
(the 2-layer transformer, batch 512, 10 updates in one jitted `lax.scan`,
params and optimizer state donated), with Adam alone, with Grokfast-EMA and
with Grokfast-MA (window 100) in front of it. The weight decay is the same in
all three, so only the filter differs. Configurations are timed in interleaved
rounds of one epoch each; the report gives medians and minima over rounds and
the ratios to Adam alone.

Usage: python -m benchmarks.micro.filter_overhead_modular [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from grokfast_jax.experiments import harness
from grokfast_jax.experiments.modular import config as config_lib
from grokfast_jax.experiments.modular import task as modular_task


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=15)
  parser.add_argument("--window-size", type=int, default=100)
  args = parser.parse_args(argv)

  trainers = {}
  for name in ("none", "ema", "ma"):
    cfg = config_lib.paper_config(name, weight_decay=0.01,
                                  window_size=(args.window_size
                                               if name == "ma" else None))
    # The task's pure epoch, jitted with its state donated, as the harness
    # runs it (here one epoch a call, without the validation).
    prog = modular_task.build(cfg, None, harness.Context())
    epoch = jax.jit(prog.train_epoch, donate_argnums=0)
    state, m = epoch(prog.state, jnp.int32(1), prog.data)  # compile
    jax.block_until_ready(m)
    trainers[name] = [(epoch, prog.data, prog.steps_per_epoch), state, []]

  for r in range(args.rounds):
    for name, entry in trainers.items():
      (epoch, data, steps_per_epoch), state, times = entry
      t0 = time.perf_counter()
      state, m = epoch(state, jnp.int32(r + 2), data)
      jax.block_until_ready(m)
      times.append((time.perf_counter() - t0) / steps_per_epoch)
      entry[1] = state

  n_params = sum(x.size for x in jax.tree.leaves(trainers["none"][1][0]))
  print(f"backend: {jax.default_backend()}, jax {jax.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores")
  print(f"model: the algorithmic task's transformer, {n_params:,} params, "
        f"batch 512; {args.rounds} rounds x 1 epoch (10 updates)\n")
  print("| configuration | ms / step (median) | ratio (median) "
        "| ms / step (min) | ratio (min) |")
  print("|---|---|---|---|---|")
  labels = {"none": "adam (no filter)", "ema": "ema + adam",
            "ma": f"ma(w={args.window_size}) + adam"}
  med0 = statistics.median(trainers["none"][2])
  min0 = min(trainers["none"][2])
  for name, (_, _, times) in trainers.items():
    med, best = statistics.median(times), min(times)
    print(f"| {labels[name]} | {med * 1e3:.2f} | {med / med0:.3f}x | "
          f"{best * 1e3:.2f} | {best / min0:.3f}x |")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
