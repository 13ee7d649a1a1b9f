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

import functools
from typing import Any, Mapping

from grokfast_jax.experiments import common, harness
from grokfast_jax.experiments.harness import report
from grokfast_jax.experiments.mnist import config as config_lib
from grokfast_jax.experiments.mnist import data as data_lib
from grokfast_jax.experiments.mnist import training


def load_data(cfg: config_lib.MnistConfig) -> data_lib.Dataset:
  """The dataset of `cfg.data`, checked to hold `cfg.train_size` images."""
  dataset = data_lib.load_dataset(cfg.data)
  data_lib.check_train_size(dataset, cfg.train_size)
  return dataset


def announce(
  cfg: config_lib.MnistConfig, dataset: data_lib.Dataset
) -> list[str]:
  """What is trained on (and a warning when it is not MNIST)."""
  lines = [
    f"dataset: {dataset.label} from {dataset.source} "
    f"({len(dataset.y_train)} train images available, "
    f"{len(dataset.y_test)} test)"
  ]
  if dataset.label != data_lib.MNIST_LABEL:
    lines.append(
      "WARNING: no --data given; these are NOT MNIST results. "
      "Pass --data with the MNIST files to reproduce the paper's "
      "setting."
    )
  return lines


def title(cfg: config_lib.MnistConfig, what: str) -> str:
  """The plot title of a run (`what` its name) or of a comparison (`what`
  joins the run names with " vs ")."""
  label = data_lib.DIGITS_LABEL if cfg.data is None else data_lib.MNIST_LABEL
  return report.title(cfg, what, "MNIST large init", f"[{label}]")


def summarize(
  cfg: config_lib.MnistConfig,
  dataset: data_lib.Dataset,
  facts: Mapping[str, Any],
) -> dict[str, Any]:
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
  step95, sec95 = common.steps_to_threshold(
    history, "val_acc", config_lib.THRESHOLD
  )
  best, best_step = report.extreme(history, "val_acc")
  paper = None
  if dataset.label == data_lib.MNIST_LABEL and config_lib.is_paper_setting(cfg):
    paper = config_lib.PAPER_STEPS_TO_95.get(cfg.filter)
  return {
    "experiment": "mnist-large-init",
    **report.names(cfg, facts),
    "dataset": dataset.label,
    "data_source": dataset.source,
    "optimizer": report.optimizer_name(cfg.filter),
    "loss": "mse on one-hot targets",
    "n_train": cfg.train_size,
    "n_test": len(dataset.y_test),
    "n_params": facts["info"]["n_params"],
    "steps_to_val_acc": report.mark_steps(history, config_lib.THRESHOLDS),
    "steps_to_val_acc_95": step95,
    "seconds_to_val_acc_95": sec95,
    "paper_steps_to_val_acc_95": paper,
    **report.finals(
      history[-1], ("step", "train_acc", "val_acc", "train_loss", "val_loss")
    ),
    "best_val_acc": best,
    "best_val_acc_step": best_step,
    "total_seconds": history[-1]["seconds"],
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
    "0.95": results["steps_to_val_acc_95"]
  }
  final = common.format_steps(results["final_step"])
  reached = ", ".join(
    f"{float(t):.0%} "
    + (
      f"never in {final} steps"
      if s is None
      else f"at step {common.format_steps(s)}"
    )
    for t, s in marks.items()
  )
  line = (
    f"{report.headline(results)}: test accuracy {reached}; "
    + report.figure(
      "best", results["best_val_acc"], results.get("best_val_acc_step"), ".1%"
    )
    + f", final {results['final_val_acc']:.1%}"
  )
  if results.get("seconds_to_val_acc_95") is not None:
    line += f" (95% after {results['seconds_to_val_acc_95']:.1f} s)"
  return line


# The verdict of two runs at a test-accuracy mark (default 95%), and the
# highest of :data:`config.THRESHOLDS` some run reached.
compare_line = report.mark_verdict
verdict_threshold = functools.partial(
  report.verdict_mark, marks=config_lib.THRESHOLDS
)


# ``plan_compare(given)``: baseline (``--baseline-weight-decay``, default
# 0.01), weight decay only (not with ``--no-control``) and Grokfast.
plan_compare = functools.partial(
  report.plan_compare, make_config=config_lib.make_config
)


def summarize_compare(
  runs: Mapping[str, Mapping[str, Any]],
) -> tuple[list[str], dict[str, Any]]:
  """The verdicts against the baseline, at the highest test-accuracy mark
  some run reached, and the comparison's results keys."""
  base, *others = runs.values()
  threshold = verdict_threshold([base, *others])
  verdicts = [compare_line(base, r, threshold) for r in others]
  extra = {
    "experiment": "mnist-large-init-compare",
    "dataset": base["dataset"],
    "verdict_threshold": threshold,
    "verdicts": verdicts,
    "summary": [describe(r) for r in runs.values()],
  }
  return [f"[{base['dataset']}] {v}" for v in verdicts], extra


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
  announce=announce,
  default_out="runs/mnist",
  compare_out="runs/mnist-compare",
  extra_flags=report.compare_flags(
    "baseline's AdamW weight decay (default: the paper's 0.01)", control=True
  ),
)
