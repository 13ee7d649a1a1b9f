"""The MNIST large-initialization task of the experiment harness.

``TASK`` gives the harness the task's config (:class:`config.MnistConfig`,
whose fields are the flags), its data, the :class:`~grokfast_jax.experiments.
harness.Program` of a run (:func:`training.build`), the figures of
results.json (:func:`summarize`), the one-line :func:`describe` and the
comparison (:func:`plan_compare`, :func:`summarize_compare`)::

  grokfast-jax mnist --data ~/data/mnist --filter ema --out runs/mnist-ema
  grokfast-jax mnist-compare --data ~/data/mnist.npz --out runs/mnist-compare

Without ``--data`` both run on scikit-learn's 8x8 digits, labelled as an
offline stand-in for MNIST everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from grokfast_jax.experiments import common
from grokfast_jax.experiments import harness
from grokfast_jax.experiments.mnist import config as config_lib
from grokfast_jax.experiments.mnist import data as data_lib
from grokfast_jax.experiments.mnist import training

COMPARE_FILTERS = ("ema", "ma")


def load_data(cfg: config_lib.MnistConfig) -> data_lib.Dataset:
  """The dataset of `cfg.data`, checked to hold `cfg.train_size` images."""
  dataset = data_lib.load_dataset(cfg.data)
  data_lib.check_train_size(dataset, cfg.train_size)
  return dataset


def announce(cfg: config_lib.MnistConfig,
             dataset: data_lib.Dataset) -> list[str]:
  """What is trained on (and a warning when it is not MNIST)."""
  lines = [f"dataset: {dataset.label} from {dataset.source} "
           f"({len(dataset.y_train)} train images available, "
           f"{len(dataset.y_test)} test)"]
  if dataset.label != data_lib.MNIST_LABEL:
    lines.append("WARNING: no --data given; these are NOT MNIST results. "
                 "Pass --data with the MNIST files to reproduce the paper's "
                 "setting.")
  return lines


def title(cfg: config_lib.MnistConfig, what: str) -> str:
  """The plot title of a run (`what` its name) or of a comparison (`what`
  joins the run names with " vs ")."""
  label = (data_lib.DIGITS_LABEL if cfg.data is None
           else data_lib.MNIST_LABEL)
  settings = "" if " vs " in what else f" ({cfg.label})"
  return f"MNIST large init: {what}{settings}\n[{label}]"


def summarize(cfg: config_lib.MnistConfig, dataset: data_lib.Dataset,
              facts: Mapping[str, Any]) -> dict[str, Any]:
  """The task's keys of results.json.

  experiment, run, label (the distinguishing settings), dataset,
  data_source, settings, optimizer, loss, n_train, n_test, n_params,
  steps_to_val_acc (threshold -> first step with test accuracy at or above
  it, for each of :data:`config.THRESHOLDS`, None if never; resolution
  `eval_every` steps), steps_to_val_acc_95 / seconds_to_val_acc_95 (the 95%
  entry and its wall time since the start of training, compilation and
  evaluations included), paper_steps_to_val_acc_95 (the paper's figure, only
  for real MNIST with the paper's settings; else None), final_step,
  final_train_acc, final_val_acc, final_train_loss, final_val_loss,
  best_val_acc and best_val_acc_step, total_seconds, stopped_at_threshold
  (True when the run ended early at 95%), history.
  """
  history = facts["history"]
  step95, sec95 = common.steps_to_threshold(history, "val_acc",
                                            config_lib.THRESHOLD)
  marks = {f"{t:g}": common.steps_to_threshold(history, "val_acc", t)[0]
           for t in config_lib.THRESHOLDS}
  best = max(history, key=lambda h: h["val_acc"])
  last = history[-1]
  paper = None
  if (dataset.label == data_lib.MNIST_LABEL
      and config_lib.is_paper_setting(cfg)):
    paper = config_lib.PAPER_STEPS_TO_95.get(cfg.filter)
  optimizer = ("adamw" if cfg.filter == "none"
               else f"grokfast_{cfg.filter} -> adamw")
  return {
      "experiment": "mnist-large-init",
      "run": facts.get("label") or cfg.run_name,
      "label": cfg.label,
      "dataset": dataset.label,
      "data_source": dataset.source,
      "optimizer": optimizer,
      "loss": "mse on one-hot targets",
      "n_train": cfg.train_size,
      "n_test": int(len(dataset.y_test)),
      "n_params": facts["info"]["n_params"],
      "steps_to_val_acc": marks,
      "steps_to_val_acc_95": step95,
      "seconds_to_val_acc_95": sec95,
      "paper_steps_to_val_acc_95": paper,
      "final_step": last["step"],
      "final_train_acc": last["train_acc"],
      "final_val_acc": last["val_acc"],
      "final_train_loss": last["train_loss"],
      "final_val_loss": last["val_loss"],
      "best_val_acc": best["val_acc"],
      "best_val_acc_step": best["step"],
      "total_seconds": last["seconds"],
      "stopped_at_threshold": bool(facts["stopped_early"]),
  }


def describe(results: Mapping[str, Any]) -> str:
  """One honest line: the steps at which the run first reached 85%, 90% and
  95% test accuracy ("never" for a mark it missed), its best test accuracy
  and where, and its final test accuracy.

  Example:
    >>> describe({"run": "baseline", "label": "wd 0.01", "final_step": 6000,
    ...           "steps_to_val_acc": {"0.85": 1700, "0.9": None},
    ...           "best_val_acc": 0.899, "best_val_acc_step": 5800,
    ...           "final_val_acc": 0.897})
    'baseline (wd 0.01): test accuracy 85% at step 1,700, 90% never in 6,000 steps; best 89.9% at step 5,800, final 89.7%'
  """
  marks = results.get("steps_to_val_acc") or {
      "0.95": results["steps_to_val_acc_95"]}
  final = common.format_steps(results["final_step"])
  reached = ", ".join(
      f"{float(t):.0%} " + (f"never in {final} steps" if s is None
                            else f"at step {common.format_steps(s)}")
      for t, s in marks.items())
  line = f"{results['run']} ({results['label']}): test accuracy {reached}"
  if results.get("best_val_acc_step") is not None:
    line += (f"; best {results['best_val_acc']:.1%} at step "
             f"{common.format_steps(results['best_val_acc_step'])}")
  else:
    line += f"; best {results['best_val_acc']:.1%}"
  line += f", final {results['final_val_acc']:.1%}"
  if results.get("seconds_to_val_acc_95") is not None:
    line += f" (95% after {results['seconds_to_val_acc_95']:.1f} s)"
  return line


def compare_line(baseline: Mapping[str, Any], other: Mapping[str, Any],
                 threshold: float = config_lib.THRESHOLD) -> str:
  """The side-by-side verdict of two runs at one test-accuracy mark.

  Args:
    baseline: the reference run's results.
    other: the run compared with it.
    threshold: the mark, one of :data:`config.THRESHOLDS`.

  Returns:
    A line such as ``"grokfast-ema reached 90% at step 1,200, baseline at
    step 4,800: 4.0x fewer steps"``.
  """

  def steps(res):
    marks = res.get("steps_to_val_acc")
    if marks is None:  # results written before the other marks existed
      return res["steps_to_val_acc_95"]
    return marks.get(f"{threshold:g}")

  b, g = steps(baseline), steps(other)
  gname, bname = other["run"], baseline["run"]
  pct = f"{threshold:.0%}"
  if g is not None and b is not None:
    ratio = (f"{b / g:.1f}x fewer steps" if b >= g
             else f"{g / b:.1f}x more steps")
    return (f"{gname} reached {pct} at step {g:,}, {bname} at step {b:,}: "
            f"{ratio}")
  if g is not None:
    return (f"{gname} reached {pct} at step {g:,}; {bname} had not after "
            f"{baseline['final_step']:,} steps "
            f"(> {baseline['final_step'] / g:.1f}x fewer steps)")
  if b is not None:
    return (f"{bname} reached {pct} at step {b:,}; {gname} had not after "
            f"{other['final_step']:,} steps")
  return (f"neither run reached {pct} ({bname}: {baseline['final_step']:,} "
          f"steps, {gname}: {other['final_step']:,} steps)")


def verdict_threshold(runs: list[Mapping[str, Any]]) -> float:
  """The highest mark of :data:`config.THRESHOLDS` that some run reached
  (the lowest mark if none did): the one at which to compare the runs."""
  for t in sorted(config_lib.THRESHOLDS, reverse=True):
    if any(common.steps_to_threshold(r["history"], "val_acc", t)[0]
           is not None for r in runs):
      return t
  return min(config_lib.THRESHOLDS)


def plan_compare(given: Mapping[str, Any]
                 ) -> list[tuple[str, str, config_lib.MnistConfig]]:
  """Baseline, weight decay only and the Grokfast run, as (folder, name,
  config).

  The Grokfast run takes every given flag (filter "ema" or "ma"); the
  baseline is AdamW with ``--baseline-weight-decay`` (default the paper's
  0.01) and the shared settings; the control (left out with
  ``--no-control``) is the baseline with the Grokfast run's weight decay, so
  the filter's effect is told apart from the weight decay's.

  Raises:
    ValueError: a filter other than "ema" or "ma", or bad settings.
  """
  given = dict(given)
  base_wd = given.pop("baseline_weight_decay", None)
  no_control = bool(given.pop("no_control", False))
  filter_ = given.get("filter", "ema")
  if filter_ not in COMPARE_FILTERS:
    raise ValueError(f"filter must be one of {COMPARE_FILTERS} for "
                     f"mnist-compare, got {filter_!r}")
  grok = config_lib.make_config(given)
  shared = {k: v for k, v in given.items()
            if k not in ("filter", "alpha", "lamb", "window_size",
                         "weight_decay")}
  base = config_lib.paper_config("none", weight_decay=base_wd, **shared)
  plan = [("baseline", "baseline", base)]
  if not no_control:
    plan.append(("weight-decay", "weight-decay", dataclasses.replace(
        base, weight_decay=grok.weight_decay)))
  plan.append((grok.run_name, grok.run_name, grok))
  return plan


def summarize_compare(runs: Mapping[str, Mapping[str, Any]]
                      ) -> tuple[list[str], dict[str, Any]]:
  """The verdicts against the baseline, at the highest test-accuracy mark
  some run reached, and the comparison's results keys."""
  names = list(runs)
  threshold = verdict_threshold(list(runs.values()))
  verdicts = [compare_line(runs[names[0]], runs[n], threshold)
              for n in names[1:]]
  dataset = runs[names[0]]["dataset"]
  extra = {"experiment": "mnist-large-init-compare", "dataset": dataset,
           "verdict_threshold": threshold, "verdicts": verdicts,
           "summary": [describe(r) for r in runs.values()]}
  return [f"[{dataset}] {v}" for v in verdicts], extra


TASK = harness.Task(
    name="mnist",
    help="MNIST with large initialization: one run",
    description="Train the 784-200-200-10 MLP (init scaled by 8, MSE, "
    "AdamW) on 1,000 MNIST images; unset options take the paper's settings "
    "for the chosen --filter.",
    compare_help="MNIST with large initialization: baseline, weight decay "
    "only, Grokfast",
    compare_description="Three runs on the same data and seed: the baseline "
    "(AdamW, the reference script's weight decay 0.01), weight decay only "
    "(AdamW with the Grokfast run's weight decay, 2.0 by default, no "
    "filter: the control the reference lacks) and the Grokfast run (--filter "
    "ema or ma); --alpha, --lamb, --window-size and --weight-decay apply to "
    "the Grokfast run (--weight-decay to the control too).",
    config_class=config_lib.MnistConfig,
    make_config=config_lib.make_config,
    load_data=load_data,
    build=training.build,
    summarize=summarize,
    describe=describe,
    plan_compare=plan_compare,
    summarize_compare=summarize_compare,
    title=title,
    default_out="runs/mnist",
    compare_out="runs/mnist-compare",
    announce=announce,
    extra_flags=(
        harness.Flag("--baseline-weight-decay", "baseline_weight_decay",
                     help="baseline's AdamW weight decay (default: the "
                     "paper's 0.01)", parse=float, single=False),
        harness.Flag("--no-control", "no_control",
                     help="skip the weight-decay-only run", single=False,
                     switch=True),
    ),
)
