"""The `grokfast-jax` command line: a thin dispatcher over the experiments.

Every task of :mod:`grokfast_jax.experiments.registry` gets its subcommands
from the experiment harness; this module only wires them together, and turns
on JAX's persistent compilation cache (:func:`enable_compile_cache`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from grokfast_jax.experiments import registry

# Set to 1 (or true/yes) to run without the persistent compilation cache.
NO_CACHE_ENV = "GROKFAST_JAX_NO_COMPILE_CACHE"
# Where the cache lives, if not in the user's cache directory.
CACHE_DIR_ENV = "GROKFAST_JAX_CACHE_DIR"


def compile_cache_dir() -> Path:
  """``$GROKFAST_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/grokfast_jax/jax``
  (``~/.cache/grokfast_jax/jax`` without XDG_CACHE_HOME)."""
  if os.environ.get(CACHE_DIR_ENV):
    return Path(os.environ[CACHE_DIR_ENV]).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base).expanduser() / "grokfast_jax" / "jax"


def enable_compile_cache(disable: bool = False) -> Optional[Path]:
  """Turns on JAX's persistent compilation cache for this process.

  Every compiled program (however quick its compilation) is stored in
  :func:`compile_cache_dir`, keyed by the program, the JAX/XLA versions and
  the device, so a repeated command loads what an earlier one compiled
  instead of compiling it again. Off when `disable` or when the environment
  variable ``GROKFAST_JAX_NO_COMPILE_CACHE`` is 1/true/yes.

  Returns:
    The cache folder, or None when the cache stays off.
  """
  off = os.environ.get(NO_CACHE_ENV, "").strip().lower() in ("1", "true", "yes")
  if disable or off:
    return None
  import jax

  path = compile_cache_dir()
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    print(f"grokfast-jax: warning: no compilation cache ({e})", file=sys.stderr)
    return None
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


def build_parser() -> argparse.ArgumentParser:
  from grokfast_jax.experiments import harness

  parser = argparse.ArgumentParser(
    prog="grokfast-jax",
    description="Grokfast experiments: baseline vs gradient-filtered runs.",
  )
  sub = parser.add_subparsers(dest="command", required=True)
  tasks = []
  for module in registry.TASKS.values():
    try:
      mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
      if e.name and module.startswith(e.name):
        continue  # task not present in this build
      raise
    harness.add_parsers(sub, mod.TASK)
    tasks.append(mod.TASK)
  harness.add_sweep_parser(sub, tasks)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    enable_compile_cache(disable=getattr(args, "no_compile_cache", False))
    return int(args.func(args) or 0)
  except (ValueError, FileNotFoundError) as e:
    # Bad settings, data or checkpoints: one clear line, exit status 2.
    print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
