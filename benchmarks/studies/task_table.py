"""Updates to 95% across the grokking tasks: recipes x operations x seeds.

Each cell (an operation and a recipe) is one sweep
(:func:`grokfast_jax.experiments.harness.sweep`): ten seeds by default,
each stopping ``--after`` updates after its first evaluation at 95%
validation accuracy (or at ``--max-steps``). A cell reports the median and
range of the updates to 95% over all its seeds (a seed that never got there
counts as more than ``--max-steps``), how many seeds got there, the median seconds to
95% (on the sweep's clock: all seeds advance together, compilation included)
and the stability after 95%: the lowest validation accuracy of any seed in
the ``--after`` updates that follow its first 95%.

Recipes: ``paper-ema`` (the Grokfast paper's), ``lion-clip`` (Clip-to-Grok:
Lion, rows clipped to norm c, with its published c per task: 2.0 for
``*``, 1.75 for ``+`` and ``/``, 1.5 for ``-``, 1.0 for ``s5``; a task
without a published c takes the ``*`` value, 2.0), ``fastest`` (one
setting for every task) and ``fastest-c`` (``fastest`` with one stated
per-task rule: its bound c is Clip-to-Grok's published c for the task,
as ``lion-clip`` takes it; ``fastest``'s own 2.0 is that c for ``*``). The
published medians beside them are Clip-to-Grok's (n = 100 for ``*``).

Every finished cell is appended to ``--json`` as it ends; a cell already in
that file is not run again, so an interrupted table resumes.

  python -m benchmarks.studies.task_table --recipes fastest \\
      --json benchmarks/results/task_table.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax

from grokfast_jax.experiments.harness import _sweep
from grokfast_jax.experiments.modular import task as modular

OPS = ("*", "+", "-", "/", "x^2+xy+y^2", "s5")
RECIPES = ("paper-ema", "lion-clip", "fastest", "fastest-c")
# Recipes that take Clip-to-Grok's c per task, and the recipe each runs.
PER_TASK_C = {"lion-clip": "lion-clip", "fastest-c": "fastest"}
# Clip-to-Grok's published medians (updates to 95%) and its weight-norm c.
PUBLISHED = {"*": 535, "+": 570, "/": 730, "-": 775, "s5": 1348}
CLIP_C = {"*": 2.0, "+": 1.75, "/": 1.75, "-": 1.5, "s5": 1.0}


def cell_settings(op: str, recipe: str) -> dict:
  """The flags of one cell (lion-clip and fastest-c take the published c)."""
  if recipe not in PER_TASK_C:
    return {"op": op, "recipe": recipe}
  return {
    "op": op,
    "recipe": PER_TASK_C[recipe],
    "max_weight_norm": CLIP_C.get(op, CLIP_C["*"]),
  }


def run_cell(
  op: str, recipe: str, seeds: list[int], max_steps: int, after: int
) -> dict:
  """One cell's sweep and its figures."""
  given = {
    **cell_settings(op, recipe),
    "max_steps": max_steps,
    "stop_at_target": True,
    "after_target": after,
  }
  members = _sweep.plan_members(modular.TASK, given, seeds, {})
  t0 = time.perf_counter()
  results = _sweep.sweep(modular.TASK, members, progress=False)
  wall = time.perf_counter() - t0
  steps, secs, lows, best = [], [], [], []
  for m in members:
    r = results[m.name]
    step = r["steps_to_val_acc_95"]
    steps.append(step)
    best.append(max(h["val_acc"] for h in r["history"]))
    if step is None:
      continue
    secs.append(r["seconds_to_val_acc_95"])
    lows.append(min(h["val_acc"] for h in r["history"] if h["step"] >= step))
  got = [s for s in steps if s is not None]
  return {
    "op": op,
    "recipe": recipe,
    "settings": cell_settings(op, recipe),
    "seeds": seeds,
    "max_steps": max_steps,
    "after": after,
    "steps": steps,
    "reached": len(got),
    "median": _sweep.median_of(steps),
    "min": min(got) if got else None,
    "max": max(got) if len(got) == len(steps) else None,
    "median_seconds": statistics.median(secs) if secs else None,
    "min_val_acc_after": min(lows) if lows else None,
    "best_val_acc": best,  # each seed's best (what a cell that missed got)
    "sweep_seconds": wall,
    "backend": jax.default_backend(),
    "device": jax.devices()[0].device_kind,
  }


def table(cells: list[dict]) -> str:
  """The markdown table of `cells`, with the published medians."""
  lines = [
    "| task | recipe | median (range) updates to 95% | reached | "
    "median s to 95% | min val acc after | published median | "
    "target (half) |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for c in cells:
    pub = PUBLISHED.get(c["op"])
    got = [s for s in c["steps"] if s is not None]
    median = _sweep.median_of(c["steps"])  # (old records agree)
    past = f">{c['max_steps']}"  # a seed that never reached 95%
    if not got:
      med = "never"
    elif len(got) == len(c["steps"]):
      med = f"{median:g} ({min(got)}-{max(got)})"
    else:
      med = (
        f"{past if median is None else f'{median:g}'} ({min(got)} to {past})"
      )
    sec = "" if c["median_seconds"] is None else f"{c['median_seconds']:.0f}"
    low = (
      "" if c["min_val_acc_after"] is None else f"{c['min_val_acc_after']:.3f}"
    )
    lines.append(
      f"| `{c['op']}` | {c['recipe']} | {med} | {c['reached']}/"
      f"{len(c['seeds'])} | {sec} | {low} | {pub or '-'} | "
      f"{'-' if pub is None else f'<= {pub / 2:g}'} |"
    )
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ops", default=",".join(OPS))
  parser.add_argument("--recipes", default=",".join(RECIPES))
  parser.add_argument("--seeds", default="0-9")
  parser.add_argument("--max-steps", type=int, default=3000)
  parser.add_argument(
    "--after",
    type=int,
    default=200,
    help="updates watched after 95%% (default 200)",
  )
  parser.add_argument(
    "--json",
    default=None,
    help="append each finished cell here (JSON lines); "
    "cells already there are not run again",
  )
  args = parser.parse_args(argv)
  ops = [o for o in args.ops.split(",") if o]
  recipes = [r for r in args.recipes.split(",") if r]
  seeds = _sweep.parse_seeds(args.seeds)
  done = []
  if args.json and Path(args.json).exists():
    done = [
      json.loads(line)
      for line in Path(args.json).read_text().splitlines()
      if line.strip()
    ]
  cells = []
  for recipe in recipes:
    for op in ops:
      old = [
        c
        for c in done
        if (c["op"], c["recipe"], c["seeds"], c["max_steps"], c["after"])
        == (op, recipe, seeds, args.max_steps, args.after)
      ]
      if old:
        cells.append(old[-1])
        continue
      cell = run_cell(op, recipe, seeds, args.max_steps, args.after)
      cells.append(cell)
      print(
        f"{recipe} {op}: median {cell['median']} ({cell['min']}-"
        f"{cell['max']}), {cell['reached']}/{len(seeds)}, sweep "
        f"{cell['sweep_seconds']:.0f} s",
        flush=True,
      )
      if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "a") as f:
          f.write(json.dumps(cell) + "\n")
  print(table(cells))
  return 0


if __name__ == "__main__":
  sys.exit(main())
