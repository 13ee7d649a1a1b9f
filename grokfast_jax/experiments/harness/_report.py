"""The figures and comparisons the tasks report, written once: from a
history, the first step at each mark, the best and the final values; the
optimizer's name; pieces of summary lines and plot titles; the verdict of
two runs at a mark; and the standard comparison (baseline, weight decay
only, Grokfast) with its flags.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional, Sequence

from grokfast_jax.experiments import common
from grokfast_jax.experiments.harness._task import Flag

History = Sequence[Mapping[str, Any]]
COMPARE_FILTERS = ("ema", "ma")  # the Grokfast run's, in a comparison
# What the Grokfast run of a comparison sets apart from the baseline.
_GROKFAST_FIELDS = ("filter", "alpha", "lamb", "window_size", "weight_decay")


def mark_steps(
  history: History, marks: Sequence[float], key: str = "val_acc"
) -> dict[str, Optional[int]]:
  """``{f"{mark:g}": the first step with entry[key] >= mark, or None}``.

  Example:
    >>> mark_steps([{"step": 0, "val_acc": 0.1}, {"step": 5, "val_acc": 0.9}],
    ...            (0.5, 0.95))
    {'0.5': 5, '0.95': None}
  """
  return {
    f"{m:g}": common.steps_to_threshold(history, key, m)[0] for m in marks
  }


def extreme(
  history: History, key: str, pick: Callable = max
) -> tuple[Optional[float], Optional[int]]:
  """``(value, step)``: `pick` (max or min) of the finite values of `key`
  and the first step holding it; ``(None, None)`` if none is finite."""
  finite = [
    h for h in history if h.get(key) is not None and math.isfinite(h[key])
  ]
  if not finite:
    return None, None
  value = pick(h[key] for h in finite)
  return value, next(h["step"] for h in finite if h[key] == value)


def finals(entry: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
  """``{"final_" + key: entry[key]}`` for each of `keys`."""
  return {f"final_{k}": entry[k] for k in keys}


def optimizer_name(
  filter: str, first: Sequence[str] = (), last: str = "adamw"
) -> str:
  """The chain's name: `first`, the Grokfast filter (none for "none"),
  `last`, e.g. "grokfast_ema -> adamw"."""
  grokfast = [] if filter == "none" else [f"grokfast_{filter}"]
  return " -> ".join([*first, *grokfast, last])


def names(cfg: Any, facts: Mapping[str, Any]) -> dict[str, str]:
  """A run's ``run`` (its name in the harness, else the config's
  `run_name`) and ``label`` (the settings that tell it apart)."""
  return {"run": facts.get("label") or cfg.run_name, "label": cfg.label}


def headline(results: Mapping[str, Any]) -> str:
  """``"run (label)"``, how a summary line starts."""
  return f"{results['run']} ({results['label']})"


def figure(
  what: str,
  value: Optional[float],
  step: Optional[int] = None,
  fmt: str = ".3f",
  at: str = "step",
) -> str:
  """``"what 0.900 at step 1,200"`` (without the step when None), or
  ``"what n/a"`` when `value` is None."""
  if value is None:
    return f"{what} n/a"
  text = f"{what} {value:{fmt}}"
  return text if step is None else f"{text} at {at} {step:,}"


def title(cfg: Any, what: str, task: str, data: str) -> str:
  """A plot title: `task`, then the run `what` and its settings (or the
  runs compared, "a vs b"), then `data` on a second line."""
  if " vs " not in what:
    what = f"{what} ({cfg.label})"
  return f"{task}: {what}\n{data}"


def table(
  runs: Mapping[str, Mapping[str, Any]], keys: Sequence[str]
) -> dict[str, dict[str, Any]]:
  """``{run: {key: its results[key]}}``: the comparison's table."""
  return {name: {k: r[k] for k in keys} for name, r in runs.items()}


def settings_but(*keys: str) -> Callable[[Any], dict[str, Any]]:
  """``cfg -> cfg.to_dict()`` without `keys`: a task's
  ``checkpoint_settings`` when a resume may change those (a run's length)."""
  return lambda cfg: {k: v for k, v in cfg.to_dict().items() if k not in keys}


def mark_verdict(
  baseline: Mapping[str, Any], other: Mapping[str, Any], mark: float = 0.95
) -> str:
  """The side-by-side verdict of two runs at one validation-accuracy mark.

  Args:
    baseline: the reference run's results (``steps_to_val_acc`` of
      :func:`mark_steps`; older results: ``steps_to_val_acc_95``).
    other: the run compared with it.
    mark: the mark.

  Returns:
    E.g. ``"grokfast-ema reached 90% at step 1,200, baseline at step
    4,800: 4.0x fewer steps"``.
  """

  def steps(res):
    marks = res.get("steps_to_val_acc")
    return (
      res["steps_to_val_acc_95"] if marks is None else marks.get(f"{mark:g}")
    )

  b, g = steps(baseline), steps(other)
  gname, bname = other["run"], baseline["run"]
  pct = f"{mark:.0%}"
  if g is not None and b is not None:
    ratio = (
      f"{b / g:.1f}x fewer steps" if b >= g else f"{g / b:.1f}x more steps"
    )
    return (
      f"{gname} reached {pct} at step {g:,}, {bname} at step {b:,}: {ratio}"
    )
  if g is not None:
    return (
      f"{gname} reached {pct} at step {g:,}; {bname} had not after "
      f"{baseline['final_step']:,} steps "
      f"(> {baseline['final_step'] / g:.1f}x fewer steps)"
    )
  if b is not None:
    return (
      f"{bname} reached {pct} at step {b:,}; {gname} had not after "
      f"{other['final_step']:,} steps"
    )
  return (
    f"neither run reached {pct} ({bname}: {baseline['final_step']:,} "
    f"steps, {gname}: {other['final_step']:,} steps)"
  )


def verdict_mark(
  runs: Sequence[Mapping[str, Any]], marks: Sequence[float]
) -> float:
  """The highest of `marks` some run's history reached in validation
  accuracy (the lowest if none did): where to compare the runs."""
  for m in sorted(marks, reverse=True):
    if any(
      common.steps_to_threshold(r["history"], "val_acc", m)[0] is not None
      for r in runs
    ):
      return m
  return min(marks)


def plan_compare(
  given: Mapping[str, Any],
  make_config: Callable[[Mapping[str, Any]], Any],
  filters: Sequence[str] = COMPARE_FILTERS,
) -> list[tuple[str, str, Any]]:
  """The standard comparison on the same data and seed: baseline, weight
  decay only and Grokfast, as ``[(folder, run name, config)]``.

  The Grokfast run takes every flag given (its filter one of `filters`,
  default "ema"); the baseline, filter "none", the flags but the Grokfast
  run's own (filter, alpha, lamb, window_size, weight_decay) and
  ``--baseline-weight-decay`` (default: the task's for "none"); the control
  (not with ``--no-control``), the baseline with the Grokfast run's weight
  decay, tells the filter's effect from the weight decay's.

  Args:
    given: the flags given (field -> value, absent when not given).
    make_config: the task's ``given -> config``.
    filters: the filters the Grokfast run may take.

  Raises:
    ValueError: a filter not in `filters`, or a bad setting.
  """
  given = dict(given)
  base_wd = given.pop("baseline_weight_decay", None)
  control = not given.pop("no_control", False)
  filter = given.get("filter", "ema")
  if filter not in filters:
    raise ValueError(
      f"filter must be one of {tuple(filters)} (the Grokfast "
      f"run's), got {filter!r}"
    )
  grokfast = make_config(given)
  shared = {k: v for k, v in given.items() if k not in _GROKFAST_FIELDS}
  base = make_config(
    {
      **shared,
      "filter": "none",
      **({} if base_wd is None else {"weight_decay": base_wd}),
    }
  )
  plan = [("baseline", "baseline", base)]
  if control:
    plan.append(
      (
        "weight-decay",
        "weight-decay",
        dataclasses.replace(base, weight_decay=grokfast.weight_decay),
      )
    )
  return plan + [(grokfast.run_name, grokfast.run_name, grokfast)]


def compare_flags(
  baseline_help: str, control: bool = False
) -> tuple[Flag, ...]:
  """The flags of :func:`plan_compare`: ``--baseline-weight-decay`` (its
  help `baseline_help`) and, with `control`, ``--no-control``."""
  flags = (
    Flag(
      "--baseline-weight-decay",
      "baseline_weight_decay",
      help=baseline_help,
      parse=float,
      single=False,
    ),
  )
  if control:
    flags += (
      Flag(
        "--no-control",
        "no_control",
        single=False,
        switch=True,
        help="skip the weight-decay-only run",
      ),
    )
  return flags
