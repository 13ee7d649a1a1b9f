"""Training loop and command line of the MNIST large-initialization experiment.

Each evaluation period runs as one jitted call: a `lax.scan` over epochs, each
a reshuffle of the training subset and a `lax.scan` over its minibatches, with
the training state donated. Train and test metrics are then computed on the
whole training subset and the whole test set.

Command line (registered on ``grokfast-jax`` by :func:`add_parsers`)::

  grokfast-jax mnist --data ~/data/mnist --filter ema --out runs/mnist-ema
  grokfast-jax mnist-compare --data ~/data/mnist.npz --out runs/mnist-compare

Without ``--data`` both run on scikit-learn's 8x8 digits, labelled as an
offline stand-in for MNIST everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grokfast_jax.experiments import common
from grokfast_jax.experiments import settings
from grokfast_jax.experiments.mnist import config as config_lib
from grokfast_jax.experiments.mnist import data as data_lib
from grokfast_jax.experiments.mnist.model import MLP

NUM_CLASSES = 10


TrainState = settings.TrainState


def make_optimizer(cfg: config_lib.MnistConfig) -> optax.GradientTransformation:
  """AdamW, behind the Grokfast filter the config names (if any):
  :func:`settings.filtered_adamw` of its settings, so equal settings share one
  (stateless) object and with it the compiled training function."""
  return settings.filtered_adamw(cfg.filter, settings.filter_knobs(cfg), cfg.lr,
                               cfg.weight_decay)


def mse_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean squared error against one-hot targets, averaged over all entries."""
  targets = jax.nn.one_hot(labels, NUM_CLASSES, dtype=logits.dtype)
  return jnp.mean((logits - targets) ** 2)


@functools.lru_cache(maxsize=32)
def make_train_epochs(graphdef: nnx.GraphDef,
                      tx: optax.GradientTransformation,
                      steps_per_epoch: int, batch_size: int):
  """Builds the jitted training chunk: a scan over epochs of minibatch scans.

  Args:
    graphdef: the model's graph definition (from `nnx.split`).
    tx: the optimizer.
    steps_per_epoch: minibatches per epoch.
    batch_size: minibatch size.

  Returns:
    ``train_epochs(state, x, y, n_epochs)``, returning the :class:`TrainState`
    after `n_epochs` epochs (`state` donated, `n_epochs` static). Each epoch
    splits the state's key, shuffles the `x.shape[0]` examples with it and
    runs `steps_per_epoch` minibatch steps, dropping the remainder. Cached:
    equal arguments return the same jitted (and compiled) function.
  """

  def loss_fn(params, x, y):
    return mse_loss(nnx.merge(graphdef, params)(x), y)

  def step(state: TrainState, batch):
    x, y = batch
    grads = jax.grad(loss_fn)(state.params, x, y)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state._replace(params=params, opt_state=opt_state), None

  def epoch(state: TrainState, x, y):
    key, sub = jax.random.split(state.key)
    order = jax.random.permutation(sub, x.shape[0])
    idx = order[:steps_per_epoch * batch_size].reshape(
        steps_per_epoch, batch_size)
    state, _ = jax.lax.scan(step, state._replace(key=key), (x[idx], y[idx]))
    return state

  def train_epochs(state: TrainState, x, y, n_epochs: int) -> TrainState:
    state, _ = jax.lax.scan(lambda s, _: (epoch(s, x, y), None), state,
                            length=n_epochs)
    return state

  return jax.jit(train_epochs, static_argnames="n_epochs", donate_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def evaluate(graphdef: nnx.GraphDef, params: nnx.State, x: jax.Array,
             y: jax.Array) -> tuple[jax.Array, jax.Array]:
  """MSE and accuracy of the model ``nnx.merge(graphdef, params)`` on (x, y).

  Jitted with `graphdef` static, so runs of one architecture share the
  compiled function.
  """
  logits = nnx.merge(graphdef, params)(x)
  acc = jnp.mean(jnp.argmax(logits, -1) == y)
  return mse_loss(logits, y), acc


def train(cfg: config_lib.MnistConfig, dataset: data_lib.Dataset, *,
          name: Optional[str] = None, progress: bool = True,
          stop_at_threshold: bool = False) -> dict[str, Any]:
  """Trains one run and returns its results (settings, summary and history).

  Args:
    cfg: the run's settings.
    dataset: the full dataset; its first `cfg.train_size` training images
      are trained on, the whole test set is the validation set.
    name: the run's name in results and progress (default `cfg.run_name`).
    progress: show a progress bar.
    stop_at_threshold: stop at the first evaluation reaching 95% test
      accuracy instead of running `cfg.max_steps` steps.

  Returns:
    A JSON-ready dict; see :func:`summarize` for the keys.

  Example:
    >>> cfg = config_lib.paper_config("ema", max_steps=100, eval_every=50)
    >>> res = train(cfg, data_lib.load_dataset(None), progress=False)
    >>> res["history"][-1]["step"]
    100
  """
  subset = data_lib.train_subset(dataset, cfg.train_size)
  x_train, y_train = jnp.asarray(subset.x_train), jnp.asarray(subset.y_train)
  x_test, y_test = jnp.asarray(subset.x_test), jnp.asarray(subset.y_test)

  init_key, shuffle_key = jax.random.split(jax.random.key(cfg.seed))
  model = MLP(x_train.shape[1], cfg.hidden, NUM_CLASSES,
              init_scale=cfg.init_scale, rngs=nnx.Rngs(params=init_key))
  graphdef, params = nnx.split(model, nnx.Param)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  tx = make_optimizer(cfg)
  state = TrainState(params, tx.init(params), shuffle_key)
  spe = cfg.steps_per_epoch
  train_epochs = make_train_epochs(graphdef, tx, spe, cfg.batch_size)

  name = name or cfg.run_name
  start = time.perf_counter()
  history: list[dict[str, Any]] = []

  def record(step: int) -> dict[str, Any]:
    train_loss, train_acc = evaluate(graphdef, state.params, x_train, y_train)
    val_loss, val_acc = evaluate(graphdef, state.params, x_test, y_test)
    entry = {"step": step, "epoch": step // spe,
             "train_loss": float(train_loss), "train_acc": float(train_acc),
             "val_loss": float(val_loss), "val_acc": float(val_acc),
             "seconds": time.perf_counter() - start}
    history.append(entry)
    return entry

  record(0)
  step = 0
  with common.progress_bar(cfg.max_steps, name,
                           disable=not progress) as bar:
    while step < cfg.max_steps:
      n_steps = min(cfg.eval_every, cfg.max_steps - step)
      state = train_epochs(state, x_train, y_train, n_epochs=n_steps // spe)
      step += n_steps
      entry = record(step)
      bar.update_to(entry)
      if stop_at_threshold and entry["val_acc"] >= config_lib.THRESHOLD:
        break
  return summarize(cfg, dataset, history, name=name, n_params=n_params,
                   stopped_at_threshold=step < cfg.max_steps)


def summarize(cfg: config_lib.MnistConfig, dataset: data_lib.Dataset,
              history: list[dict[str, Any]], *, name: str, n_params: int,
              stopped_at_threshold: bool = False) -> dict[str, Any]:
  """The results dict written to results.json.

  Keys: experiment, run (`name`), label (the distinguishing settings),
  dataset, data_source, settings, optimizer, loss, n_train, n_test, n_params,
  steps_to_val_acc (threshold -> first step with test accuracy at or above
  it, for each of :data:`config.THRESHOLDS`, None if never; resolution
  `eval_every` steps), steps_to_val_acc_95 / seconds_to_val_acc_95 (the 95%
  entry and its wall time since the start of training, compilation and
  evaluations included), paper_steps_to_val_acc_95 (the paper's figure, only
  for real MNIST with the paper's settings; else None), final_step,
  final_train_acc, final_val_acc, final_train_loss, final_val_loss,
  best_val_acc and best_val_acc_step, total_seconds, stopped_at_threshold
  (True when the run ended early at 95%), backend, versions, history.
  """
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
      "run": name,
      "label": cfg.label,
      "dataset": dataset.label,
      "data_source": dataset.source,
      "settings": cfg.to_dict(),
      "optimizer": optimizer,
      "loss": "mse on one-hot targets",
      "n_train": cfg.train_size,
      "n_test": int(len(dataset.y_test)),
      "n_params": n_params,
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
      "stopped_at_threshold": stopped_at_threshold,
      "backend": jax.default_backend(),
      "versions": common.versions(),
      "history": history,
  }


def describe(results: dict[str, Any]) -> str:
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


def compare_line(baseline: dict[str, Any], other: dict[str, Any],
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


def verdict_threshold(runs: list[dict[str, Any]]) -> float:
  """The highest mark of :data:`config.THRESHOLDS` that some run reached
  (the lowest mark if none did): the one at which to compare the runs."""
  for t in sorted(config_lib.THRESHOLDS, reverse=True):
    if any(common.steps_to_threshold(r["history"], "val_acc", t)[0]
           is not None for r in runs):
      return t
  return min(config_lib.THRESHOLDS)


# ---------------------------------------------------------------- command line


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
  """Adds the ``mnist`` and ``mnist-compare`` subcommands.

  Args:
    subparsers: the object returned by ``parser.add_subparsers()``.
  """
  single = subparsers.add_parser(
      "mnist", help="MNIST with large initialization: one run",
      description="Train the 784-200-200-10 MLP (init scaled by 8, MSE, AdamW) "
      "on 1,000 MNIST images; unset options take the paper's settings for "
      "the chosen --filter.")
  _add_common_args(single, filters=config_lib.FILTERS, default_filter="ema",
                   out="runs/mnist")
  single.set_defaults(func=run_single)

  compare = subparsers.add_parser(
      "mnist-compare",
      help="MNIST with large initialization: baseline, weight decay only, "
      "Grokfast",
      description="Three runs on the same data and seed: the baseline "
      "(AdamW, the reference script's weight decay 0.01), weight decay only "
      "(AdamW with the Grokfast run's weight decay, 2.0 by default, no "
      "filter: the control the reference lacks) and the Grokfast run; "
      "--alpha, --lamb, --window-size and --weight-decay apply to the "
      "Grokfast run (--weight-decay to the control too).")
  _add_common_args(compare, filters=("ema", "ma"), default_filter="ema",
                   out="runs/mnist-compare")
  compare.add_argument(
      "--baseline-weight-decay", type=float, default=None,
      help="baseline's AdamW weight decay (default: the paper's 0.01)")
  compare.add_argument(
      "--no-control", action="store_true",
      help="skip the weight-decay-only run")
  compare.set_defaults(func=run_compare)


def _add_common_args(p: argparse.ArgumentParser, *, filters, default_filter,
                     out) -> None:
  p.add_argument("--data", default=None, metavar="PATH",
                 help="directory of MNIST IDX files (plain or .gz), a "
                 "Keras-style mnist.npz, or a directory holding one; "
                 "default: sklearn's 8x8 digits (offline stand-in, NOT MNIST)")
  p.add_argument("--filter", choices=filters, default=default_filter,
                 help=f"gradient filter (default {default_filter})")
  settings.add_filter_args(
      p, alpha_help="Grokfast-EMA momentum (paper: 0.8)",
      lamb_help="Grokfast amplification (default 0.1 for ema, the paper's; "
      "5.0 for ma)",
      weight_decay_help="AdamW weight decay (paper: 0.01 baseline, 2.0 "
      "Grokfast)")
  p.add_argument("--lr", type=float, default=None, help="AdamW lr (1e-3)")
  p.add_argument("--init-scale", type=float, default=None,
                 help="factor on the initial weights (8)")
  p.add_argument("--train-size", type=int, default=None,
                 help="training images: the first N of the training set, as in "
                 "the reference (1000)")
  p.add_argument("--batch-size", type=int, default=None, help="batch (200)")
  p.add_argument("--seed", type=int, default=None, help="seed (0)")
  p.add_argument("--max-steps", type=int, default=None,
                 help="optimization steps (100000), a multiple of the steps "
                 "per epoch")
  p.add_argument("--eval-every", type=int, default=None,
                 help="evaluate every this many steps (100), a multiple of "
                 "the steps per epoch")
  p.add_argument("--stop-at-threshold", action="store_true",
                 help="stop a run once it reaches 95%% test accuracy")
  settings.add_output_args(p, out)


def _config_from_args(args: argparse.Namespace, filter: str,
                      weight_decay: Optional[float]) -> config_lib.MnistConfig:
  return config_lib.paper_config(
      filter, alpha=args.alpha, lamb=args.lamb, window_size=args.window_size,
      weight_decay=weight_decay, lr=args.lr, init_scale=args.init_scale,
      train_size=args.train_size, batch_size=args.batch_size, seed=args.seed,
      max_steps=args.max_steps, eval_every=args.eval_every)


def _print_dataset(dataset: data_lib.Dataset) -> None:
  print(f"dataset: {dataset.label} from {dataset.source} "
        f"({len(dataset.y_train)} train images available, "
        f"{len(dataset.y_test)} test)")
  if dataset.label != data_lib.MNIST_LABEL:
    print("WARNING: no --data given; these are NOT MNIST results. Pass "
          "--data with the MNIST files to reproduce the paper's setting.")


def _run_and_save(cfg, dataset, out_dir: Path, args,
                  name: Optional[str] = None) -> dict[str, Any]:
  results = train(cfg, dataset, name=name, progress=not args.no_progress,
                  stop_at_threshold=args.stop_at_threshold)
  common.save_results(out_dir, results)
  common.plot_curves({results["run"]: results["history"]},
                     out_dir / "curves.png",
                     f"MNIST large init: {results['run']} ({cfg.label})\n"
                     f"[{dataset.label}]")
  return results


def run_single(args: argparse.Namespace) -> int:
  """``grokfast-jax mnist``: one run; writes OUT/results.json and curves.png."""
  try:
    dataset = data_lib.load_dataset(args.data)
    cfg = _config_from_args(args, args.filter, args.weight_decay)
    data_lib.check_train_size(dataset, cfg.train_size)
  except ValueError as e:
    return settings.usage_error(args, e, "mnist")
  _print_dataset(dataset)
  out = Path(args.out)
  results = _run_and_save(cfg, dataset, out, args)
  print(describe(results))
  print(f"wrote {out / 'results.json'} and {out / 'curves.png'}")
  return 0


def run_compare(args: argparse.Namespace) -> int:
  """``grokfast-jax mnist-compare``: baseline, weight decay only, Grokfast.

  All on the same data and seed. Writes OUT/baseline/,
  OUT/weight-decay/ and OUT/grokfast-<filter>/ (each results.json and
  curves.png), OUT/results.json (all runs' results and the verdicts against
  the baseline, at the highest test-accuracy mark some run reached) and
  OUT/curves.png (runs overlaid). The weight-decay run (AdamW with the
  Grokfast run's weight decay, no filter; skipped with ``--no-control``)
  separates the filter's effect from the weight decay's.
  """
  try:
    dataset = data_lib.load_dataset(args.data)
    grok_cfg = _config_from_args(args, args.filter, args.weight_decay)
    base_cfg = config_lib.paper_config(
        "none", weight_decay=args.baseline_weight_decay, lr=args.lr,
        init_scale=args.init_scale, train_size=args.train_size,
        batch_size=args.batch_size, seed=args.seed, max_steps=args.max_steps,
        eval_every=args.eval_every)
    data_lib.check_train_size(dataset, grok_cfg.train_size)
  except ValueError as e:
    return settings.usage_error(args, e, "mnist")
  _print_dataset(dataset)
  out = Path(args.out)
  plan = [("baseline", base_cfg)]
  if not args.no_control:
    plan.append(("weight-decay", dataclasses.replace(
        base_cfg, weight_decay=grok_cfg.weight_decay)))
  plan.append((grok_cfg.run_name, grok_cfg))
  runs = {}
  for name, cfg in plan:
    runs[name] = _run_and_save(cfg, dataset, out / name, args, name=name)
    print(describe(runs[name]))
  threshold = verdict_threshold(list(runs.values()))
  verdicts = [compare_line(runs["baseline"], runs[name], threshold)
              for name, _ in plan[1:]]
  common.save_results(out, {"experiment": "mnist-large-init-compare",
                            "dataset": dataset.label,
                            "verdict_threshold": threshold,
                            "verdicts": verdicts,
                            "summary": [describe(r) for r in runs.values()],
                            "runs": runs})
  common.plot_curves({k: v["history"] for k, v in runs.items()},
                     out / "curves.png",
                     f"MNIST large init: {' vs '.join(runs)}\n"
                     f"[{dataset.label}]")
  for verdict in verdicts:
    print(f"[{dataset.label}] {verdict}")
  print(f"wrote {out / 'results.json'} and {out / 'curves.png'}")
  return 0
