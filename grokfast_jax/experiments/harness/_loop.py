"""The one training loop: compiled chunks, evaluations, history, resume.

:func:`train` runs a task's :class:`~._task.Program`: each jitted call (the
state donated) is a ``lax.scan`` over `evals_per_chunk` evaluation periods,
each a ``lax.scan`` of the task's epoch over `epochs_per_eval` epochs and then
its evaluation. After each call the harness writes the history entries,
moves the progress bar, asks the task whether to stop and saves a checkpoint
when one is due. Data order is a function of the seed and the epoch, so a run
resumed from its newest checkpoint continues exactly as if never interrupted.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from grokfast_jax.experiments import common
from grokfast_jax.experiments.harness import _results
from grokfast_jax.experiments.harness._task import Context, Program, Run, Task


@functools.lru_cache(maxsize=64)
def _chunk_fn(train_epoch, evaluate, epochs_per_eval: int):
  """The jitted chunk of `train_epoch` and `evaluate` (cached by identity,
  so runs whose task returns the same functions share the compilation)."""

  def chunk(state, data, first_epoch, n_periods: int):
    def period(state, i):
      epochs = (
        first_epoch
        + i * epochs_per_eval
        + jnp.arange(epochs_per_eval, dtype=jnp.int32)
      )
      state, metrics = jax.lax.scan(
        lambda s, e: train_epoch(s, e, data), state, epochs
      )
      evals = {}
      if evaluate is not None:
        state, evals = evaluate(state, data)
      return state, (metrics, evals)

    state, (metrics, evals) = jax.lax.scan(
      period, state, jnp.arange(n_periods, dtype=jnp.int32)
    )
    return state, metrics, evals

  return jax.jit(chunk, static_argnames="n_periods", donate_argnums=0)


@functools.lru_cache(maxsize=64)
def _eval_fn(evaluate):
  return jax.jit(lambda state, data: evaluate(state, data)[1])


def _on_mesh(state: Any, ctx: Context) -> Any:
  """`state` with every leaf not yet on `ctx`'s mesh (an optimizer's step
  count, say) replicated on it: one jitted program spans the mesh's
  devices, every process's."""
  if ctx.mesh is None:
    return state
  from jax.sharding import NamedSharding

  def place(x):
    s = getattr(x, "sharding", None)
    if isinstance(s, NamedSharding) and s.mesh == ctx.mesh:
      return x
    return ctx.place_data(x)

  return jax.tree.map(place, state)


def _floats(tree: Any) -> dict[str, Any]:
  """Host arrays of a dict of device values (``.tolist()`` of one is a
  Python float, or a list of them for a sweep's members)."""
  return {k: np.asarray(v) for k, v in jax.device_get(tree).items()}


def train(
  task: Task,
  cfg: Any,
  data: Any = None,
  *,
  ctx: Optional[Context] = None,
  label: Optional[str] = None,
  progress: bool = True,
  checkpoint_dir: Optional[str | Path] = None,
  resume: bool = False,
  checkpoint_every: int = 1,
) -> Run:
  """Trains one run of `task` with settings `cfg`.

  Args:
    task: the task.
    cfg: its config.
    data: what ``task.load_data(cfg)`` returned (None if it has none).
    ctx: devices and mesh (default: one device).
    label: the run's name on the progress bar and in results.
    progress: show a progress bar.
    checkpoint_dir: save the state and history here every
      `checkpoint_every` evaluations and at the end; None: no checkpoints.
    resume: continue from the newest checkpoint in `checkpoint_dir`.
    checkpoint_every: evaluations between checkpoints.

  Returns:
    The :class:`~._task.Run`.

  Raises:
    ValueError: `checkpoint_dir` holds checkpoints and `resume` is off
      (nothing is overwritten); `resume` without `checkpoint_dir`; a
      checkpoint of other settings (a ``CheckpointMismatchError`` naming
      every difference).
  """
  if resume and checkpoint_dir is None:
    raise ValueError("--resume needs --checkpoint-dir")
  t_start = time.perf_counter()
  if ctx is None:
    # A config that names its own mesh (modular's `mesh`, `devices`).
    from grokfast_jax.experiments.harness import _devices

    ctx = _devices.make_context(
      getattr(cfg, "mesh", "none"), getattr(cfg, "devices", 0)
    )
  prog: Program = task.build(cfg, data, ctx)
  state = _on_mesh(prog.state, ctx)
  history: list[dict[str, Any]] = []
  curves: dict[str, list[float]] = {k: [] for k in prog.curve_keys}
  epoch, first_eval_seconds = 0, None
  ckpt = None
  if checkpoint_dir is not None:
    from grokfast_jax.experiments import checkpoint as checkpoint_lib

    settings = (
      task.checkpoint_settings(cfg)
      if task.checkpoint_settings
      else _results.settings_dict(cfg)
    )
    ckpt = checkpoint_lib.RunCheckpointer(checkpoint_dir, settings, every=1)
    latest = ckpt.latest_epoch()
    if latest is not None and not resume:
      raise ValueError(
        f"{checkpoint_dir} already holds checkpoints of a run (newest at "
        f"epoch {latest}); pass --resume to continue it, or choose another "
        f"--checkpoint-dir"
      )
    if latest is not None:
      state, record = ckpt.restore(state)
      # An entry kept only because a shorter run ended there goes.
      history = [
        h
        for h in record["history"]
        if prog.keep is None or h["epoch"] == 0 or prog.keep(h["epoch"])
      ]
      epoch = int(record.get("epoch", latest))
      first_eval_seconds = record.get(
        "first_eval_seconds", record.get("first_epoch_seconds")
      )
      curves = {
        k: list(record.get("curves", {}).get(k, [h[k] for h in history]))
        for k in prog.curve_keys
      }
  t0 = t_start - (history[-1]["seconds"] if history else 0.0)
  spe, epe = prog.steps_per_epoch, prog.epochs_per_eval

  if prog.initial_eval and epoch == 0 and not history:
    if prog.initial_entry is not None:
      first = prog.initial_entry(state, prog.data)
    else:
      first = prog.entry(
        None,
        {
          k: v.tolist()
          for k, v in _floats(_eval_fn(prog.evaluate)(state, prog.data)).items()
        },
      )
    entry = {
      "step": 0,
      "epoch": 0,
      **first,
      "seconds": time.perf_counter() - t0,
    }
    history.append(entry)
    for k in prog.curve_keys:
      curves[k].append(entry[k])

  done = bool(prog.should_stop and history and prog.should_stop(history))
  called, steady = set(), [0.0, 0]  # chunk calls; seconds, epochs after them
  with common.progress_bar(
    prog.total_epochs * spe, label or "", disable=not progress
  ) as bar:
    if epoch:
      bar.update_to({"step": epoch * spe})
    while epoch < prog.total_epochs and not done:
      before = epoch // epe
      left = prog.total_epochs - epoch
      period = min(epe, left)
      n = max(1, min(prog.evals_per_chunk, left // period))
      fn = _chunk_fn(prog.train_epoch, prog.evaluate, period)
      t_call = time.perf_counter()
      state, metrics, evals = fn(
        state, prog.data, jnp.int32(epoch + 1), n_periods=n
      )
      metrics, evals = _floats(metrics), _floats(evals)
      now = time.perf_counter() - t0
      if (fn, n) in called:  # compiled before: a steady-state timing
        steady[0] += t0 + now - t_call
        steady[1] += n * period
      called.add((fn, n))
      for i in range(n):
        epoch += period
        entry = {
          "step": epoch * spe,
          "epoch": epoch,
          **prog.entry(
            {k: v[i] for k, v in metrics.items()},
            {k: v[i].tolist() for k, v in evals.items()},
          ),
          "seconds": now,
        }
        for k in prog.curve_keys:
          curves[k].append(entry[k])
        if prog.keep is None or prog.keep(epoch) or epoch == prog.total_epochs:
          history.append(entry)
      if first_eval_seconds is None:
        first_eval_seconds = now
      bar.update_to(history[-1] if history else {"step": epoch * spe})
      done = bool(prog.should_stop and prog.should_stop(history))
      due = epoch // epe // checkpoint_every > before // checkpoint_every
      if ckpt is not None and (due or done or epoch >= prog.total_epochs):
        ckpt.save(
          epoch,
          state,
          {
            "history": history,
            "epoch": epoch,
            "curves": curves,
            "first_eval_seconds": first_eval_seconds,
          },
          force=True,
        )
  if ckpt is not None:
    ckpt.close()
  curves_np = {k: np.asarray(v, np.float32) for k, v in curves.items()}
  facts = {
    "history": history,
    "curves": curves_np,
    "info": prog.info,
    "state": state,
    "steps_per_epoch": spe,
    "label": label,
    "seconds_first_eval": first_eval_seconds,
    "seconds_total": time.perf_counter() - t0,
    "seconds_steady": steady[0],
    "epochs_steady": steady[1],
    "stopped_early": epoch < prog.total_epochs,
  }
  results = _results.assemble(task, cfg, data, facts)
  return Run(results=results, state=state, history=history, curves=curves_np)
