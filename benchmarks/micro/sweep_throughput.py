"""Ten seeds as one vmapped sweep vs ten runs one after another.

Both sides train the same runs (default: the ``fastest`` recipe on
``x * y mod 97``, seeds 0-9, stopping at 95% validation accuracy) in this
one process, side by side:

- ``sequential``: ``harness.train`` of each seed in turn (compiled once, the
  later runs reuse the compilation, as a loop over seeds would);
- ``sweep``: :func:`grokfast_jax.experiments.harness.sweep`, every seed in
  one jitted program (``jax.vmap`` over the members).

Each side is timed from its first build to its last result, compilation
included; the sweep side goes first, so the sequential side meets a warm
process (cached imports, an initialized backend) and the ratio is not in
the sweep's favour. The report gives both wall times, runs per hour, the
ratio, and each seed's updates to 95% on both sides (they agree unless the
rounding of the vmapped program moves a crossing).

Usage: python -m benchmarks.micro.sweep_throughput [--seeds 0-9]
  [--recipe fastest] [--op '*'] [--max-steps 3000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax

from grokfast_jax.experiments import harness
from grokfast_jax.experiments.harness import _sweep
from grokfast_jax.experiments.modular import task as modular


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", default="0-9")
  parser.add_argument("--recipe", default="fastest")
  parser.add_argument("--op", default="*")
  parser.add_argument("--max-steps", type=int, default=3000)
  args = parser.parse_args(argv)
  given = {"recipe": args.recipe, "op": args.op, "max_steps": args.max_steps,
           "stop_at_target": True}
  members = _sweep.plan_members(modular.TASK, given,
                                _sweep.parse_seeds(args.seeds), {})

  t0 = time.perf_counter()
  swept = _sweep.sweep(modular.TASK, members, progress=False)
  t_sweep = time.perf_counter() - t0

  t0 = time.perf_counter()
  single = {m.name: harness.train(modular.TASK, m.cfg, progress=False).results
            for m in members}
  t_seq = time.perf_counter() - t0

  n = len(members)
  print(f"{args.recipe} on x {args.op} y mod 97, {n} seeds, stop at 95%: "
        f"{jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
  print(f"{'member':10s} {'sweep':>7s} {'single':>7s}")
  for m in members:
    print(f"{m.name:10s} {swept[m.name]['steps_to_val_acc_95']!s:>7s} "
          f"{single[m.name]['steps_to_val_acc_95']!s:>7s}")
  print(f"sequential: {t_seq:8.1f} s  ({3600 * n / t_seq:7.1f} runs/hour)")
  print(f"sweep:      {t_sweep:8.1f} s  ({3600 * n / t_sweep:7.1f} runs/hour)")
  print(f"sweep / sequential wall time: {t_sweep / t_seq:.2f}x "
        f"({t_seq / t_sweep:.2f}x the runs per hour)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
