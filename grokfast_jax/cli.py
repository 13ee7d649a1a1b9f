"""The `grokfast-jax` command line: a thin dispatcher over the experiments.

Each experiment package exposes `add_parsers(subparsers)`, which adds its
subcommands and sets `func` on them; this module only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

# Experiment packages whose `train` module registers subcommands.
_EXPERIMENTS = (
    "grokfast_jax.experiments.modular.train",
    "grokfast_jax.experiments.mnist.train",
    "grokfast_jax.experiments.qm9.train",
    "grokfast_jax.experiments.imdb.train",
    "grokfast_jax.experiments.forecasting.train",
)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="grokfast-jax",
      description="Grokfast experiments: baseline vs gradient-filtered runs.")
  sub = parser.add_subparsers(dest="command", required=True)
  for name in _EXPERIMENTS:
    try:
      module = importlib.import_module(name)
    except ModuleNotFoundError as e:
      if e.name and name.startswith(e.name):
        continue  # experiment not present in this build
      raise
    module.add_parsers(sub)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return int(args.func(args) or 0)
  except (ValueError, FileNotFoundError) as e:
    # Bad settings, data or checkpoints: one clear line, exit status 2.
    print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
