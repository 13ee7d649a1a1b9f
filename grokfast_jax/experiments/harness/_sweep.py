"""Many runs of one task as one compiled program: ``jax.vmap`` over members.

A sweep's members are runs of one task that differ only in their seed and in
float hyperparameters (:attr:`~._task.Task.sweep_floats`). Each member's
program comes from the task's ``Task.build_member``, which
builds the run's state and data from its own config (so its split,
initialization and batch order come from its seed) with the swept floats
held in the optimizer state (``optax.inject_hyperparams``): the members'
programs then share one epoch and one evaluation function, which
:func:`vmap_program` maps over the stacked states and data. The harness's
loop (:func:`~._loop.train`) trains the result as one run, with its chunks,
progress, checkpoints and exact resume; :func:`sweep` then splits the
history per member and writes each member's ``results.json`` in the task's
own schema, a ``summary.json`` and an overlay plot.

A member whose run would have stopped (its config's ``should_stop``, e.g.
``--stop-at-target``) stops counting there: its history ends where its
single run's would; the sweep ends when every member has stopped or at the
last epoch. Members run ``members_per_chunk`` at a time when memory asks
for it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from grokfast_jax.experiments import common
from grokfast_jax.experiments.harness import _loop, _results
from grokfast_jax.experiments.harness._task import Context, Program, Run, Task


@dataclasses.dataclass(frozen=True)
class Member:
  """One run of a sweep.

  Attributes:
    name: its folder name, e.g. ``seed3`` or ``seed3-lr0.002``.
    cfg: its config.
    values: the swept settings that make it (seed and grid values).
  """

  name: str
  cfg: Any
  values: Mapping[str, Any]


def parse_seeds(text: str) -> list[int]:
  """``"0-9"``, ``"0,3,5"`` or ``"0-4,8"`` as a list of distinct ints.

  Raises:
    ValueError: naming `--seeds` and the text.
  """
  seeds: list[int] = []
  for part in text.split(","):
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
    if m is None:
      raise ValueError(
        f"--seeds takes ints and ranges such as 0-9 or 0,3,5; got {text!r}"
      )
    lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
    seeds += range(lo, hi + 1)
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"--seeds must name distinct ints >= 0, got {text!r}")
  return seeds


def parse_grid(
  items: Sequence[str], allowed: Sequence[str]
) -> dict[str, list[float]]:
  """``["lr=1e-3,2e-3", "lamb=1,2"]`` as ``{"lr": [...], "lamb": [...]}``.

  Raises:
    ValueError: a name not in `allowed`, a name given twice, or a value
      that is not a number.
  """
  grid: dict[str, list[float]] = {}
  for item in items:
    name, _, values = item.partition("=")
    name = name.strip().replace("-", "_")
    if name not in allowed:
      raise ValueError(
        f"--grid {item!r}: the swept settings are {', '.join(allowed)}"
      )
    if name in grid:
      raise ValueError(f"--grid names {name} twice")
    try:
      grid[name] = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
      raise ValueError(f"--grid {item!r}: values must be numbers") from None
    if not grid[name]:
      raise ValueError(f"--grid {item!r}: no values")
  return grid


def plan_members(
  task: Task,
  given: Mapping[str, Any],
  seeds: Sequence[int],
  grid: Mapping[str, Sequence[float]],
) -> list[Member]:
  """Every seed with every point of `grid`, each a validated config.

  Raises:
    ValueError: a member's settings out of range (from the task's config).
  """
  names = sorted(grid)
  members = []
  for seed in seeds:
    for point in itertools.product(*(grid[n] for n in names)):
      values = {"seed": seed, **dict(zip(names, point))}
      cfg = task.make_config({**given, **values})
      name = f"seed{seed}" + "".join(f"-{n}{v:g}" for n, v in zip(names, point))
      members.append(Member(name, cfg, values))
  return members


def _same_layout(a: Any, b: Any, what: str) -> None:
  if jax.tree.structure(a) != jax.tree.structure(b) or any(
    np.shape(x) != np.shape(y) or jnp.result_type(x) != jnp.result_type(y)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  ):
    raise ValueError(
      f"sweep members differ in the layout of their {what}; "
      f"only seeds and the swept floats may differ"
    )


def vmap_program(programs: Sequence[Program]) -> Program:
  """One program training every one of `programs` (``jax.vmap``).

  The programs must share their functions' behaviour (a task's
  ``build_member`` makes them so) and the shapes of their state and data;
  the first program's functions are mapped over the stacked states and
  data. History entries are ``{"members": [entry of each program]}``.

  Raises:
    ValueError: the programs' schedules or layouts differ.
  """
  first = programs[0]
  for p in programs[1:]:
    for attr in (
      "total_epochs",
      "steps_per_epoch",
      "epochs_per_eval",
      "initial_eval",
    ):
      if getattr(p, attr) != getattr(first, attr):
        raise ValueError(f"sweep members differ in {attr}")
    _same_layout(first.state, p.state, "state")
    _same_layout(first.data, p.data, "data")
  n = len(programs)

  def stack(*xs):
    return jnp.stack([jnp.asarray(x) for x in xs])

  evaluate = None if first.evaluate is None else jax.vmap(first.evaluate)

  def entry(epoch_metrics, evals):
    return {
      "members": [
        p.entry(
          None
          if epoch_metrics is None
          else {k: np.asarray(v)[..., j] for k, v in epoch_metrics.items()},
          {k: evals[k][j] for k in evals},
        )
        for j, p in enumerate(programs)
      ]
    }

  def should_stop(history):
    return all(
      _stopped_at(p, _member_history(history, j)) is not None
      for j, p in enumerate(programs)
    )

  return Program(
    state=jax.tree.map(stack, *(p.state for p in programs)),
    data=jax.tree.map(stack, *(p.data for p in programs)),
    train_epoch=jax.vmap(first.train_epoch, in_axes=(0, None, 0)),
    evaluate=evaluate,
    entry=entry,
    total_epochs=first.total_epochs,
    steps_per_epoch=first.steps_per_epoch,
    epochs_per_eval=first.epochs_per_eval,
    evals_per_chunk=first.evals_per_chunk,
    initial_eval=first.initial_eval,
    should_stop=(should_stop if any(p.should_stop for p in programs) else None),
    info={"members": n},
  )


def _member_history(
  history: Sequence[Mapping[str, Any]], j: int
) -> list[dict[str, Any]]:
  return [
    {
      "step": h["step"],
      "epoch": h["epoch"],
      **h["members"][j],
      "seconds": h["seconds"],
    }
    for h in history
  ]


def _stopped_at(
  program: Program, history: list[dict[str, Any]]
) -> Optional[int]:
  """The length of the history at which `program`'s run would have stopped
  (None: it would go on)."""
  if program.should_stop is None:
    return None
  for k in range(1, len(history) + 1):
    if program.should_stop(history[:k]):
      return k
  return None


@dataclasses.dataclass(frozen=True)
class _SweepSettings:
  """What a sweep's checkpoint stores and a resume compares."""

  members: Mapping[str, Any]

  def to_dict(self) -> dict[str, Any]:
    return {"members": dict(self.members)}


def sweep(
  task: Task,
  members: Sequence[Member],
  data: Any = None,
  *,
  out: Optional[str | Path] = None,
  members_per_chunk: int = 0,
  progress: bool = True,
  checkpoint_dir: Optional[str | Path] = None,
  resume: bool = False,
  checkpoint_every: int = 10,
) -> dict[str, dict[str, Any]]:
  """Trains `members` as vmapped chunks; writes their results if `out`.

  Args:
    task: a task with ``build_member``.
    members: from :func:`plan_members`.
    data: what ``task.load_data`` returned for the members (shared).
    out: write ``out/<member>/results.json`` (and the task's plots),
      ``out/summary.json`` and the overlay ``out/curves.png``; None: write
      nothing.
    members_per_chunk: members trained together (0: all at once).
    progress: show a progress bar per chunk.
    checkpoint_dir: checkpoints of each chunk in ``chunk<i>/`` under it.
    resume: continue from them.
    checkpoint_every: evaluations between checkpoints.

  Returns:
    member name -> its results (the task's single-run schema, plus
    "sweep").

  Raises:
    ValueError: the task has no sweep, or the members differ in a setting
      other than the seed and the swept floats (their ``values``).
  """
  if task.build_member is None:
    raise ValueError(f"task {task.name!r} has no sweep")
  # The float settings held in the optimizer state: those the members set.
  names = tuple(sorted({n for m in members for n in m.values} - {"seed"}))
  fixed = [
    {
      k: v
      for k, v in _results.settings_dict(m.cfg).items()
      if k not in names and k != "seed"
    }
    for m in members
  ]
  for m, f in zip(members, fixed):
    if f != fixed[0]:
      diff = sorted(k for k in f if f[k] != fixed[0].get(k))
      raise ValueError(
        f"sweep member {m.name} differs from "
        f"{members[0].name} in {', '.join(diff)}; members "
        f"may differ only in the seed and swept floats"
      )
  k = members_per_chunk or len(members)
  results: dict[str, dict[str, Any]] = {}
  histories: dict[str, list[dict[str, Any]]] = {}
  for c, start in enumerate(range(0, len(members), k)):
    chunk = list(members[start : start + k])
    programs: list[Program] = []

    def build(cfg, data_, ctx, chunk=chunk, programs=programs):
      del cfg
      assert task.build_member is not None
      programs[:] = [task.build_member(m.cfg, data_, ctx, names) for m in chunk]
      return vmap_program(programs)

    runner = dataclasses.replace(
      task, build=build, summarize=lambda *_: {}, checkpoint_settings=None
    )
    settings = _SweepSettings(
      {m.name: _results.settings_dict(m.cfg) for m in chunk}
    )
    ckpt = (
      {}
      if checkpoint_dir is None
      else {
        "checkpoint_dir": Path(checkpoint_dir) / f"chunk{c}",
        "resume": resume,
        "checkpoint_every": checkpoint_every,
      }
    )
    run = _loop.train(
      runner,
      settings,
      data,
      ctx=Context(),
      label=f"sweep {start + 1}-{start + len(chunk)} of {len(members)}",
      progress=progress,
      **ckpt,
    )
    for j, (m, p) in enumerate(zip(chunk, programs)):
      history = _member_history(run.history, j)
      stop = _stopped_at(p, history)
      history = history[:stop] if stop else history
      last_epoch = history[-1]["epoch"] if history else 0
      facts = {
        "history": history,
        "curves": {},
        "info": p.info,
        "state": jax.tree.map(lambda x, j=j: x[j], run.state),
        "steps_per_epoch": p.steps_per_epoch,
        "label": m.name,
        "seconds_first_eval": run.results["seconds_first_eval"],
        "seconds_total": history[-1]["seconds"] if history else 0.0,
        "stopped_early": last_epoch < p.total_epochs,
      }
      res = _results.assemble(task, m.cfg, data, facts)
      res["sweep"] = {
        "member": m.name,
        "values": dict(m.values),
        "members": len(members),
        "chunk": c,
        "members_in_chunk": len(chunk),
        "chunk_seconds_total": run.results["seconds_total"],
      }
      results[m.name] = res
      histories[m.name] = history
  if out is not None:
    write(task, Path(out), members, results, histories)
  return results


def median_of(values: Sequence[Optional[float]]) -> Optional[float]:
  """The median over all members, one that never reached the target (None)
  counting as slower than any that did; None when the median falls among
  those.

  Example:
    >>> median_of([300, None, 200]), median_of([300, None, None, 200])
    (300, None)
  """
  ranked = sorted(values, key=lambda v: math.inf if v is None else v)
  n = len(ranked)
  middle = ranked[(n - 1) // 2 : n // 2 + 1]
  if None in middle:
    return None
  return statistics.mean(v for v in middle if v is not None)


def summary(
  task: Task,
  members: Sequence[Member],
  results: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
  """Median (:func:`median_of`: members that never got there count as
  slowest) and range over the members of the task's sweep figure
  (:attr:`~._task.Task.sweep_metric`, e.g. updates to 95%), and each
  member's."""
  key = task.sweep_metric
  per = {
    m.name: {
      "values": dict(m.values),
      key: results[m.name].get(key),
      "final": {
        k: v
        for k, v in results[m.name]["history"][-1].items()
        if k not in ("seconds",)
      },
      "line": task.describe(results[m.name]),
    }
    for m in members
  }
  got = [p[key] for p in per.values() if p[key] is not None]
  return {
    "task": task.name,
    "metric": key,
    "members": len(members),
    "reached": len(got),
    "median": median_of([p[key] for p in per.values()]),
    "min": min(got) if got else None,
    "max": max(got) if got else None,
    "per_member": per,
  }


def write(
  task: Task,
  out: Path,
  members: Sequence[Member],
  results: Mapping[str, Mapping[str, Any]],
  histories: Mapping[str, list[dict[str, Any]]],
) -> list[Path]:
  """Writes each member's results and plots, ``summary.json`` and the
  overlay plot."""
  written = []
  for m in members:
    run = Run(
      results=dict(results[m.name]),
      state=None,
      history=histories[m.name],
      curves={},
    )
    written += _results.write_run(task, out / m.name, run, m.cfg, m.name)
  path = out / "summary.json"
  path.write_text(
    json.dumps(
      common.to_json_safe(summary(task, members, results)),
      indent=2,
      allow_nan=False,
    )
    + "\n"
  )
  written.append(path)
  if task.plots:
    file, metric, ylabel, log_y = task.plots[0]
    written.append(
      common.plot_curves(
        dict(histories),
        out / file,
        task.title(members[0].cfg, f"sweep of {len(members)} runs"),
        metric=metric,
        ylabel=ylabel,
        log_y=log_y,
      )
    )
  return written
