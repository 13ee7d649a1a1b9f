"""The tasks of the ``grokfast-jax`` command line.

Each entry names a module whose ``TASK`` is a
:class:`~grokfast_jax.experiments.harness.Task`; its subcommands (``NAME``
and ``NAME-compare``) are built by the harness. A task whose module cannot
be imported because an optional dependency is missing is left out.
"""

from __future__ import annotations

import importlib
from typing import Any

TASKS = {
  "modular": "grokfast_jax.experiments.modular.task",
  "mnist": "grokfast_jax.experiments.mnist.task",
  "qm9": "grokfast_jax.experiments.qm9.task",
  "imdb": "grokfast_jax.experiments.imdb.task",
  "forecast": "grokfast_jax.experiments.forecasting.task",
}


def load(name: str) -> Any:
  """The :class:`~grokfast_jax.experiments.harness.Task` named `name`."""
  return importlib.import_module(TASKS[name]).TASK
