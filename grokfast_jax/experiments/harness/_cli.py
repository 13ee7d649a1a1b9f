"""The ``TASK`` and ``TASK-compare`` subcommands of every registered task.

The harness's own flags (the same names for every task) are added here; the
task's flags come from its config's fields (:mod:`._flags`). Training code
holds no argparse.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Optional

from grokfast_jax.experiments.harness import _flags
from grokfast_jax.experiments.harness._task import Task


@dataclasses.dataclass(frozen=True)
class Options:
  """The harness's flags of one command (not settings of the runs)."""

  out: str
  progress: bool = True
  checkpoint_dir: Optional[str] = None
  checkpoint_every: int = 10
  resume: bool = False
  mesh: str = "none"
  devices: int = 0
  distributed: bool = False
  coordinator_address: Optional[str] = None
  num_processes: Optional[int] = None
  process_id: Optional[int] = None


def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text}")
  return value


_HARNESS_FIELDS = ("mesh", "devices")


def add_harness_flags(
  p: argparse.ArgumentParser, out: str, *, mesh: bool = True
) -> None:
  """Adds ``--out``, ``--no-progress``, the checkpoint flags and, when the
  task's batches can be split, the device flags."""
  p.add_argument(
    "--out",
    default=out,
    metavar="DIR",
    help=f"output directory (default {out})",
  )
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  p.add_argument(
    "--no-compile-cache",
    action="store_true",
    help="do not use the persistent compilation cache (in "
    "~/.cache/grokfast_jax/jax; GROKFAST_JAX_NO_COMPILE_CACHE=1 "
    "also turns it off)",
  )
  ck = p.add_argument_group("checkpoints (exact resume)")
  ck.add_argument(
    "--checkpoint-dir",
    default=None,
    metavar="DIR",
    help="save the training state (params, optimizer and "
    "filter state) and the history here (a comparison: one "
    "sub-folder per run)",
  )
  ck.add_argument(
    "--checkpoint-every",
    type=_positive_int,
    default=10,
    metavar="N",
    help="evaluations between checkpoints "
    "(default 10; the last is always saved)",
  )
  ck.add_argument(
    "--resume",
    action="store_true",
    help="continue from the newest checkpoint in "
    "--checkpoint-dir: the run goes on exactly as if never "
    "interrupted",
  )
  if not mesh:
    return
  dev = p.add_argument_group("several devices")
  dev.add_argument(
    "--mesh",
    default="none",
    choices=("none", "dp", "fsdp"),
    help="none: one device; dp: data parallel (params "
    "replicated, batches split); fsdp: params, optimizer and "
    "filter state split over the devices too",
  )
  dev.add_argument(
    "--devices",
    type=int,
    default=0,
    help="devices in the mesh (default 0: all)",
  )
  dev.add_argument(
    "--distributed",
    action="store_true",
    help="join the other processes of a multi-host run first "
    "(jax.distributed.initialize)",
  )
  dev.add_argument(
    "--coordinator-address",
    default=None,
    metavar="HOST:PORT",
    help="with --distributed: process "
    "0's address (default: found by JAX, as on Cloud TPU or "
    "under SLURM)",
  )
  dev.add_argument(
    "--num-processes",
    type=_positive_int,
    default=None,
    metavar="N",
    help="with --distributed: processes in all",
  )
  dev.add_argument(
    "--process-id",
    type=int,
    default=None,
    metavar="I",
    help="with --distributed: this process's index",
  )


def options_from_args(args: argparse.Namespace) -> Options:
  """The harness's flags of `args` (the device flags' defaults when the
  task has none)."""
  flags: dict[str, Any] = {
    f.name: getattr(args, f.name, f.default)
    for f in dataclasses.fields(Options)
    if f.name not in ("out", "progress")
  }
  return Options(out=args.out, progress=not args.no_progress, **flags)


def given_from_args(task: Task, args: argparse.Namespace) -> dict[str, Any]:
  """The settings the user gave on `task`'s command line (config fields and
  extra flags; absent when not given)."""
  given = _flags.given_settings(args, task.config_class)
  for f in task.extra_flags:
    if getattr(args, f.dest, None) is not None:
      given[f.dest] = getattr(args, f.dest)
  fields = {f.name for f in dataclasses.fields(task.config_class)}
  for name in _HARNESS_FIELDS:
    if name in fields and getattr(args, name, None) is not None:
      given.setdefault(name, getattr(args, name))
  return given


def _add_extra_flag(p: argparse.ArgumentParser, f: Any) -> None:
  if f.switch:
    p.add_argument(
      f.name,
      dest=f.dest,
      action="store_const",
      const=True,
      default=None,
      help=f.help or None,
    )
  else:
    p.add_argument(
      f.name,
      dest=f.dest,
      type=f.parse,
      default=None,
      metavar=f.metavar,
      help=f.help or None,
    )


def add_parsers(subparsers: Any, task: Task) -> None:
  """Adds `task`'s subcommand and, if it has one, its comparison."""
  skip = _HARNESS_FIELDS
  p = subparsers.add_parser(
    task.name, help=task.help, description=task.description or task.help
  )
  _flags.add_config_flags(p, task.config_class, skip=skip)
  for f in [f for f in task.extra_flags if f.single]:
    _add_extra_flag(p, f)
  add_harness_flags(p, task.default_out, mesh=task.mesh_ok)
  p.set_defaults(func=lambda args: _run_single(task, args))
  if task.plan_compare is None:
    return
  c = subparsers.add_parser(
    task.compare_name or f"{task.name}-compare",
    help=task.compare_help,
    description=task.compare_description or task.compare_help,
  )
  _flags.add_config_flags(c, task.config_class, skip=skip)
  for f in task.extra_flags:
    if f.compare:
      _add_extra_flag(c, f)
  add_harness_flags(c, task.compare_out, mesh=task.mesh_ok)
  c.set_defaults(func=lambda args: _run_compare(task, args))


def _prepare(options: Options):
  from grokfast_jax.experiments.harness import _devices

  if options.distributed:
    _devices.start_distributed(
      options.coordinator_address, options.num_processes, options.process_id
    )
  elif (
    options.coordinator_address
    or options.num_processes is not None
    or (options.process_id is not None)
  ):
    raise ValueError(
      "--coordinator-address, --num-processes and "
      "--process-id need --distributed"
    )
  return _devices.make_context(
    options.mesh, options.devices
  ), _devices.is_writer()


def _checkpoint(options: Options, sub: Optional[str]) -> dict[str, Any]:
  if options.checkpoint_dir is None:
    if options.resume:
      raise ValueError("--resume needs --checkpoint-dir")
    return {}
  d = Path(options.checkpoint_dir)
  return {
    "checkpoint_dir": d / sub if sub else d,
    "resume": options.resume,
    "checkpoint_every": options.checkpoint_every,
  }


def _run(
  task: Task,
  plan: list[tuple[Any, str, Any]],
  options: Options,
  ctx: Any,
  writer: bool,
) -> dict[str, Any]:
  """Trains the runs of `plan` (``(sub-folder or None, label, config)``) on
  the data of its first config, announced by its last; the writer writes
  and describes each. Returns label -> Run."""
  from grokfast_jax.experiments.harness import _loop, _results

  data = task.load_data(plan[0][2]) if task.load_data else None
  for line in task.announce(plan[-1][2], data) if task.announce else []:
    print(line)
  runs = {}
  for sub, label, cfg in plan:
    runs[label] = run = _loop.train(
      task,
      cfg,
      data,
      ctx=ctx,
      label=label,
      progress=options.progress and writer,
      **_checkpoint(options, sub),
    )
    if writer:
      out = Path(options.out) / (sub or "")
      written = _results.write_run(task, out, run, cfg, label)
      print(task.describe(run.results))
      print("wrote " + ", ".join(str(p) for p in written))
  return runs


def _run_single(task: Task, args: argparse.Namespace) -> int:
  options = options_from_args(args)
  given = given_from_args(task, args)
  if task.custom_run is not None:
    return task.custom_run(task, given, options)
  ctx, writer = _prepare(options)
  cfg = task.make_config(given)
  _run(task, [(None, task.run_label(cfg), cfg)], options, ctx, writer)
  return 0


def _run_compare(task: Task, args: argparse.Namespace) -> int:
  from grokfast_jax.experiments.harness import _results

  assert task.plan_compare is not None and task.summarize_compare is not None
  options = options_from_args(args)
  given = given_from_args(task, args)
  ctx, writer = _prepare(options)
  plan = task.plan_compare(given)
  runs = _run(task, plan, options, ctx, writer)
  out = Path(options.out)
  lines, extra = task.summarize_compare({k: r.results for k, r in runs.items()})
  if writer:
    title = task.title(plan[0][2], " vs ".join(runs))
    _results.write_compare(task, out, runs, extra, title)
    print("summary:")
    for line in lines:
      print("  " + line)
    print(f"wrote {out / 'results.json'} and one folder per run under {out}/")
  return 0


def add_sweep_parser(subparsers: Any, tasks: list[Task]) -> None:
  """Adds ``sweep TASK``: many seeds and float settings of a task trained as
  one vmapped program (``_sweep.py``), for the tasks that have one."""
  tasks = [t for t in tasks if t.build_member is not None]
  if not tasks:
    return
  s = subparsers.add_parser(
    "sweep",
    help="many seeds / settings of one task as one vmapped program",
    description="Train a task's runs for several seeds and "
    "a grid of float settings as one jitted program (jax.vmap over the "
    "members); writes OUT/<member>/results.json (the single run's schema), "
    "OUT/summary.json (median and range) and OUT/curves.png (overlaid).",
  )
  sub = s.add_subparsers(dest="task", required=True)
  for task in tasks:
    p = sub.add_parser(
      task.name, help=task.help, description=task.description or task.help
    )
    _flags.add_config_flags(
      p, task.config_class, skip=_HARNESS_FIELDS + ("seed",)
    )
    for f in [f for f in task.extra_flags if f.single]:
      _add_extra_flag(p, f)
    add_harness_flags(p, f"runs/sweep-{task.name}", mesh=False)
    g = p.add_argument_group("sweep")
    g.add_argument(
      "--seeds",
      default="0",
      metavar="LIST",
      help="seeds of the members, e.g. 0-9 or 0,3,5 (default 0)",
    )
    g.add_argument(
      "--grid",
      action="append",
      default=[],
      metavar="NAME=V1,V2",
      help="a float setting and its values; repeat for a "
      "product grid (NAME one of "
      f"{', '.join(task.sweep_floats)})",
    )
    g.add_argument(
      "--members-per-chunk",
      type=int,
      default=0,
      metavar="K",
      help="train K members at a time (default 0: all at "
      "once); fewer need less memory",
    )
    p.set_defaults(func=lambda args, task=task: _run_sweep(task, args))


def _run_sweep(task: Task, args: argparse.Namespace) -> int:
  from grokfast_jax.experiments.harness import _sweep

  options = options_from_args(args)
  given = given_from_args(task, args)
  if args.members_per_chunk < 0:
    raise ValueError(
      f"--members-per-chunk must be >= 0, got {args.members_per_chunk}"
    )
  grid = _sweep.parse_grid(args.grid, task.sweep_floats)
  members = _sweep.plan_members(
    task, given, _sweep.parse_seeds(args.seeds), grid
  )
  data = task.load_data(members[0].cfg) if task.load_data else None
  results = _sweep.sweep(
    task,
    members,
    data,
    out=options.out,
    members_per_chunk=args.members_per_chunk,
    progress=options.progress,
    **_checkpoint(options, None),
  )
  summary = _sweep.summary(task, members, results)
  for m in members:
    print(task.describe(results[m.name]))
  print(
    f"{summary['reached']} of {summary['members']} members reached the "
    f"target; {summary['metric']}: median {summary['median']}, range "
    f"{summary['min']}-{summary['max']}"
  )
  print(
    f"wrote {Path(options.out) / 'summary.json'} and one folder per "
    f"member under {options.out}/"
  )
  return 0
