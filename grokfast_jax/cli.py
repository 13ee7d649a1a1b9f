"""The `grokfast-jax` command line: a thin dispatcher over the experiments.

Every task of :mod:`grokfast_jax.experiments.registry` gets its subcommands
from the experiment harness; this module only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from grokfast_jax.experiments import registry


def build_parser() -> argparse.ArgumentParser:
  from grokfast_jax.experiments import harness
  parser = argparse.ArgumentParser(
      prog="grokfast-jax",
      description="Grokfast experiments: baseline vs gradient-filtered runs.")
  sub = parser.add_subparsers(dest="command", required=True)
  for name, module in registry.TASKS.items():
    try:
      mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
      if e.name and module.startswith(e.name):
        continue  # task not present in this build
      raise
    harness.add_parsers(sub, mod.TASK)
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
