"""Helpers shared by the experiments: results files, curves, thresholds, progress.

The Grokfast settings that the paper tasks (MNIST, IMDb, QM9) share live in
:mod:`grokfast_jax.experiments.settings`.

A run's history is a list of per-evaluation dicts with the keys
``step, epoch, train_loss, train_acc, val_loss, val_acc, seconds`` (`seconds`
is wall time since the start of the run, compilation included).
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

HISTORY_KEYS = (
  "step",
  "epoch",
  "train_loss",
  "train_acc",
  "val_loss",
  "val_acc",
  "seconds",
)

PathLike = Union[str, os.PathLike]


def to_json_safe(value: Any) -> Any:
  """Converts `value` to plain JSON types (NaN and infinities become None).

  Handles dicts, lists, tuples, numpy / JAX scalars and arrays (anything with
  ``tolist``), Paths, and plain scalars.

  Args:
    value: a nested structure.

  Returns:
    The same structure made of dict, list, str, int, float, bool and None.
  """
  if isinstance(value, Mapping):
    return {str(k): to_json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json_safe(v) for v in value]
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
    return to_json_safe(value.tolist())
  if value is None or isinstance(value, (bool, str, int)):
    return value
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  return str(value)


def save_results(out_dir: PathLike, results: Mapping[str, Any]) -> Path:
  """Writes `results` to ``out_dir/results.json`` as strict JSON.

  Args:
    out_dir: directory, created if missing.
    results: nested dict; numpy / JAX values are converted, NaN and infinities
      are written as null.

  Returns:
    The path of the written file.
  """
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  path = out / "results.json"
  text = json.dumps(to_json_safe(results), indent=2, allow_nan=False)
  path.write_text(text + "\n")
  return path


def steps_to_threshold(
  history: Sequence[Mapping[str, Any]],
  key: str = "val_acc",
  threshold: float = 0.95,
) -> tuple[Optional[int], Optional[float]]:
  """Step and seconds of the first history entry with ``entry[key] >= threshold``.

  Args:
    history: per-evaluation dicts in training order.
    key: metric to test.
    threshold: value to reach.

  Returns:
    ``(step, seconds)`` of the first entry reaching it, or ``(None, None)``.

  Example:
    >>> steps_to_threshold([{"step": 10, "val_acc": 0.5, "seconds": 1.0},
    ...                     {"step": 20, "val_acc": 0.96, "seconds": 2.0}])
    (20, 2.0)
  """
  for entry in history:
    value = entry.get(key)
    if value is not None and value >= threshold:
      seconds = entry.get("seconds")
      return int(entry["step"]), (None if seconds is None else float(seconds))
  return None, None


def versions() -> dict[str, str]:
  """Versions of Python and the libraries a result depends on."""
  import flax
  import jax
  import numpy as np
  import optax

  import grokfast_jax

  return {
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": getattr(jax.lib, "__version__", jax.__version__),
    "optax": optax.__version__,
    "flax": flax.__version__,
    "grokfast_jax": grokfast_jax.__version__,
    "numpy": np.__version__,
  }


def plot_curves(
  runs: Mapping[str, Sequence[Mapping[str, Any]]],
  path: PathLike,
  title: str,
  *,
  metric: str = "acc",
  ylabel: str = "accuracy",
  log_y: bool = False,
) -> Path:
  """Plots train (dashed) and validation (solid) curves against step.

  One colour per run label, all runs overlaid, log-scaled step axis, as in the
  Grokfast paper's figures. Draws on a standalone `matplotlib.figure.Figure`
  with its own Agg canvas, so it needs no display and leaves pyplot's
  backend (a notebook's inline plots, say) untouched.

  Args:
    runs: run label -> history (dicts with "step", ``"train_" + metric`` and
      ``"val_" + metric``; a missing or None value is left out).
    path: image file to write (the suffix picks the format, e.g. ``.png``).
    title: figure title.
    metric: what to plot, "acc" (the default) or "loss".
    ylabel: the y axis label.
    log_y: log-scaled y axis (for losses); accuracies get a [0, 1] axis.

  Returns:
    The path written.
  """
  import matplotlib
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig = Figure(figsize=(7, 4.5))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, (label, history) in enumerate(runs.items()):
    colour = colours[i % len(colours)]
    for split, style in (("train", "--"), ("val", "-")):
      points = [
        (h["step"], h[f"{split}_{metric}"])
        for h in history
        if h.get("step", 0) > 0 and h.get(f"{split}_{metric}") is not None
      ]
      if points:
        ax.plot(*zip(*points), style, color=colour, label=f"{label} {split}")
  ax.set_xscale("log")
  ax.set_xlabel("optimization step")
  ax.set_ylabel(ylabel)
  if log_y:
    ax.set_yscale("log")
  else:
    ax.set_ylim(-0.02, 1.02)
  ax.grid(True, which="both", alpha=0.3)
  ax.set_title(title)
  ax.legend(loc="best", fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return path


class Progress:
  """A tqdm progress bar over optimization steps showing the latest metrics.

  Example:
    >>> with Progress(total=1000, desc="ema", disable=True) as bar:
    ...   bar.update_to({"step": 10, "train_acc": 0.1, "val_acc": 0.0,
    ...                  "train_loss": 4.5, "val_loss": 4.6})
  """

  def __init__(self, total: int, desc: str = "", disable: bool = False):
    """Opens a bar of `total` steps labelled `desc` (`disable`: hidden, as
    with ``--no-progress``)."""
    from tqdm.auto import tqdm

    self._bar = tqdm(
      total=total, desc=desc, disable=disable, unit="step", dynamic_ncols=True
    )
    self._step = 0

  def update_to(self, entry: Mapping[str, Any]) -> None:
    """Moves the bar to ``entry["step"]`` and shows accuracies and losses."""
    step = int(entry["step"])
    self._bar.update(max(step - self._step, 0))
    self._step = max(step, self._step)
    self._bar.set_postfix(
      {
        k: f"{entry[k]:.3f}"
        for k in ("train_acc", "val_acc", "train_loss", "val_loss")
        if entry.get(k) is not None
      },
      refresh=False,
    )

  def close(self) -> None:
    """Closes the bar."""
    self._bar.close()

  def __enter__(self) -> Progress:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()


def progress_bar(total: int, desc: str = "", disable: bool = False) -> Progress:
  """Returns a :class:`Progress` bar (use as a context manager)."""
  return Progress(total=total, desc=desc, disable=disable)


def format_steps(step: Optional[int]) -> str:
  """Formats a step count with thousands separators (``"n/a"`` for None)."""
  return "n/a" if step is None else f"{step:,}"


def read_records(path: Any) -> dict[str, dict[str, Any]]:
  """The JSON-lines records in `path` by their ``"key"`` ({} if no file).

  A line that does not parse (a run interrupted while writing) is skipped,
  and a later record of the same key replaces an earlier one, so a record
  appended run by run can be resumed.
  """
  records = {}
  path = Path(path)
  if path.exists():
    for line in path.read_text().splitlines():
      try:
        r = json.loads(line)
      except json.JSONDecodeError:
        continue
      records[r["key"]] = r
  return records


def median(values: Iterable[float]) -> Optional[float]:
  """Median of `values` (None if empty)."""
  v = sorted(values)
  if not v:
    return None
  mid = len(v) // 2
  return float(v[mid]) if len(v) % 2 else (v[mid - 1] + v[mid]) / 2.0
