"""Exact resume of an experiment run with Orbax's CheckpointManager.

A checkpoint holds the run's state (params and optimizer state, the Grokfast
filter's included) and a JSON record: the run's settings, the epoch, and the
history so far. The data order of the experiments is a function of the seed
and the epoch, so that is all a run needs to continue exactly where it
stopped: a run interrupted at any step and resumed reproduces the history and
final parameters of an uninterrupted run (bit for bit on CPU).

Nothing is silently lost or mixed: a run refuses to start over a folder that
already holds checkpoints unless asked to resume, and a resume whose settings
differ from the checkpoint's (say another window size, which would change the
filter state's shape, or another dtype, which Orbax would cast silently) is
refused with an error that names every differing setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import jax
import orbax.checkpoint as ocp

# Settings that may change between an interrupted run and its resumption:
# they say how long to run, not what is trained.
RESUMABLE_CHANGES = ("max_steps", "stop_at_target")


def _dotted(path: tuple[Any, ...]) -> str:
  """A key path as Orbax names a saved leaf: keys joined by dots."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return ".".join(parts)


class CheckpointMismatchError(ValueError):
  """A checkpoint does not belong to the run that tries to restore it."""


class RunCheckpointer:
  """Saves and restores one run's state every `every` epochs.

  Args:
    directory: the run's checkpoint folder (created if missing).
    settings: the run's settings, JSON-serializable; stored with every
      checkpoint and compared on restore.
    every: save every this many epochs (the last epoch is always saved).
    keep: how many checkpoints to keep.
    may_change: settings allowed to differ on resume.

  Example:
    >>> import tempfile, jax.numpy as jnp
    >>> folder = tempfile.mkdtemp()
    >>> state = {"w": jnp.arange(3.0), "step": jnp.asarray(3)}
    >>> ckpt = RunCheckpointer(folder, {"seed": 0})
    >>> ckpt.save(3, state, {"history": [{"epoch": 3, "loss": 0.5}]})
    True
    >>> ckpt.latest_epoch()
    3
    >>> restored, record = RunCheckpointer(folder, {"seed": 0}).restore(state)
    >>> restored["w"].tolist(), record["epoch"], record["history"][0]["loss"]
    ([0.0, 1.0, 2.0], 3, 0.5)
    >>> RunCheckpointer(folder, {"seed": 1}).restore(state)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    grokfast_jax.experiments.checkpoint.CheckpointMismatchError: the checkpoint in ... (seed: checkpoint 0, this run 1). ...
  """

  def __init__(
    self,
    directory: os.PathLike | str,
    settings: Mapping[str, Any],
    *,
    every: int = 1,
    keep: int = 2,
    may_change: Iterable[str] = RESUMABLE_CHANGES,
  ):
    if every < 1:
      raise ValueError(f"every must be an int >= 1, got {every!r}")
    if keep < 1:
      raise ValueError(f"keep must be an int >= 1, got {keep!r}")
    self.directory = Path(directory).absolute()
    self.settings = dict(settings)
    self.every = every
    self.may_change = set(may_change)
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
      item_handlers={
        "state": ocp.StandardCheckpointHandler(),
        "record": ocp.JsonCheckpointHandler(),
      },
    )

  def latest_epoch(self) -> Optional[int]:
    """The epoch of the newest checkpoint, or None when there is none."""
    return self._manager.latest_step()

  def check_settings(self, stored: Mapping[str, Any]) -> None:
    """Raise CheckpointMismatchError naming every setting that differs."""
    keys = sorted(set(stored) | set(self.settings))
    diffs = [
      f"{k}: checkpoint {stored.get(k, '<absent>')!r}, this run "
      f"{self.settings.get(k, '<absent>')!r}"
      for k in keys
      if k not in self.may_change
      and stored.get(k, "<absent>") != self.settings.get(k, "<absent>")
    ]
    if diffs:
      raise CheckpointMismatchError(
        f"the checkpoint in {self.directory} was written by a run with "
        f"other settings; refusing to restore it into this one ("
        + "; ".join(diffs)
        + "). Resume with the checkpoint's settings, or "
        "start the new run in another checkpoint folder."
      )

  def restore(
    self, abstract_state: Any, epoch: Optional[int] = None
  ) -> tuple[Any, dict[str, Any]]:
    """The state and record saved at `epoch` (default: the newest).

    Args:
      abstract_state: a tree like the state to restore (arrays or
        ``jax.ShapeDtypeStruct`` values); it fixes the tree, shapes, dtypes and
        shardings of the result.
      epoch: which checkpoint; None for the newest.

    Returns:
      ``(state, record)``; `record` is what :meth:`save` was given, plus
      ``"settings"`` and ``"epoch"``.

    Raises:
      FileNotFoundError: no checkpoint in the folder.
      CheckpointMismatchError: the checkpoint's settings or state layout
        differ from this run's.
    """
    epoch = self.latest_epoch() if epoch is None else epoch
    if epoch is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    record = self._manager.restore(
      epoch, args=ocp.args.Composite(record=ocp.args.JsonRestore())
    )["record"]
    self.check_settings(record["settings"])
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    # Compare what is on disk with the target before restoring: Orbax would
    # refuse other shapes, but cast other dtypes silently.
    stored = {
      m.name: m
      for m in jax.tree.leaves(self._manager.item_metadata(epoch)["state"].tree)
    }
    wanted = {
      _dotted(path): leaf
      for path, leaf in jax.tree_util.tree_leaves_with_path(target)
    }
    problems = [
      f"{k}: missing from the checkpoint" for k in wanted if k not in stored
    ]
    problems += [
      f"{k}: in the checkpoint, not in this run"
      for k in stored
      if k not in wanted
    ]
    problems += [
      f"{k}: saved {tuple(stored[k].shape)} {stored[k].dtype}, this run "
      f"{tuple(v.shape)} {v.dtype}"
      for k, v in wanted.items()
      if k in stored
      and (
        tuple(stored[k].shape) != tuple(v.shape) or stored[k].dtype != v.dtype
      )
    ]
    if problems:
      raise CheckpointMismatchError(
        f"the state saved in {self.directory} (epoch {epoch}) does not fit "
        f"this run's state; refusing to restore it: " + "; ".join(problems)
      )
    state = self._manager.restore(
      epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
    )["state"]
    return state, record

  def save(
    self,
    epoch: int,
    state: Any,
    record: Mapping[str, Any],
    *,
    force: bool = False,
  ) -> bool:
    """Saves `state` and `record` at `epoch` if it is due (or `force`).

    Returns:
      Whether a checkpoint was written.
    """
    if not force and epoch % self.every:
      return False
    full = dict(record, settings=self.settings, epoch=epoch)
    self._manager.save(
      epoch,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(full)
      ),
      force=True,
    )
    self._manager.wait_until_finished()
    return True

  def close(self) -> None:
    self._manager.close()
