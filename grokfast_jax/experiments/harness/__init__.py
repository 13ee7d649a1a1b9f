"""One experiment harness for every task.

A task supplies a :class:`Task` (its config, data, per-run
:class:`Program`, figures and summary line); the harness supplies the
compiled chunked loop, evaluations, history, progress, checkpoints and exact
resume, device meshes and several processes, ``results.json`` in one schema,
plots, the comparison runner and the ``TASK`` / ``TASK-compare``
subcommands, the figures and standard comparison the tasks report
(``_report.py``, as ``report``) and sweeps: many seeds and settings of a
task as one vmapped program (:func:`sweep`, ``grokfast-jax sweep TASK``).
Call :func:`train` from your own code to run a task's config.
"""

from grokfast_jax.experiments.harness import _report as report
from grokfast_jax.experiments.harness._cli import (
  Options,
  add_parsers,
  add_sweep_parser,
  given_from_args,
)
from grokfast_jax.experiments.harness._devices import (
  make_context,
  start_distributed,
)
from grokfast_jax.experiments.harness._flags import option
from grokfast_jax.experiments.harness._loop import train
from grokfast_jax.experiments.harness._results import (
  settings_dict,
  write_compare,
  write_run,
)
from grokfast_jax.experiments.harness._sweep import (
  Member,
  plan_members,
  sweep,
  vmap_program,
)
from grokfast_jax.experiments.harness._task import (
  Context,
  Flag,
  Program,
  Run,
  Task,
)

__all__ = [
  "Context",
  "Flag",
  "Member",
  "Options",
  "Program",
  "Run",
  "Task",
  "add_parsers",
  "add_sweep_parser",
  "given_from_args",
  "make_context",
  "option",
  "plan_members",
  "report",
  "settings_dict",
  "start_distributed",
  "sweep",
  "train",
  "vmap_program",
  "write_compare",
  "write_run",
]
