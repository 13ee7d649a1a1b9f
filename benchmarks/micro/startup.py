"""Start-up of a command with and without the persistent compilation cache.

Runs the same short `grokfast-jax` command (default: the main job's model,
``modular --filter ema``, 50 updates) as fresh processes, side by side:

- ``off``: the cache turned off (``--no-compile-cache``);
- ``first``: the cache on, in an empty folder (compiles and stores);
- ``second``: the same command again (loads what ``first`` stored).

For each it prints the wall time of the whole process, the seconds from the
start of training to its first evaluation (``seconds_first_eval`` of
results.json: the first chunk's compilation and run) and the entries the
cache gained. Rounds repeat the three in turn (each round a fresh cache
folder); the report gives medians.

Usage: python -m benchmarks.micro.startup [--rounds 3] [--max-steps 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(args: list[str], out: Path, cache: Path, on: bool) -> dict:
  env = {**os.environ, "GROKFAST_JAX_CACHE_DIR": str(cache),
         "GROKFAST_JAX_NO_COMPILE_CACHE": "" if on else "1"}
  t0 = time.perf_counter()
  subprocess.run([sys.executable, "-m", "grokfast_jax.cli", *args, "--out",
                  str(out), "--no-progress"], check=True, env=env,
                 capture_output=True)
  wall = time.perf_counter() - t0
  results = json.loads((out / "results.json").read_text())
  files = sum(1 for p in cache.rglob("*") if p.is_file()) if cache.exists() \
      else 0
  return {"wall": wall, "first_eval": results["seconds_first_eval"],
          "entries": files}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--max-steps", type=int, default=50)
  args = parser.parse_args(argv)
  command = ["modular", "--filter", "ema", "--max-steps", str(args.max_steps)]
  rows: dict[str, list[dict]] = {"off": [], "first": [], "second": []}
  for _ in range(args.rounds):
    with tempfile.TemporaryDirectory() as tmp:
      tmp = Path(tmp)
      rows["off"].append(_run(command, tmp / "off", tmp / "none", False))
      rows["first"].append(_run(command, tmp / "first", tmp / "cache", True))
      rows["second"].append(_run(command, tmp / "second", tmp / "cache",
                                 True))
  print(f"grokfast-jax {' '.join(command)}: {args.rounds} rounds, "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs")
  print(f"{'run':8s} {'process s':>10s} {'to 1st eval s':>14s} "
        f"{'cache entries':>14s}")
  for name, runs in rows.items():
    print(f"{name:8s} {statistics.median(r['wall'] for r in runs):10.2f} "
          f"{statistics.median(r['first_eval'] for r in runs):14.2f} "
          f"{statistics.median(r['entries'] for r in runs):14.0f}")
  off, second = rows["off"], rows["second"]
  ratio = (statistics.median(r["first_eval"] for r in second)
           / statistics.median(r["first_eval"] for r in off))
  print(f"second / off, seconds to the first evaluation: {ratio:.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
