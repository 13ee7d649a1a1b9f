"""Training loop and command line of the modular-arithmetic grokking task.

One epoch (a reshuffle of the training split cut into batches of 512, the
last partial batch kept) runs inside a single jitted function: a `lax.scan`
over the epoch's batches, the permutation drawn on device, the last batch
padded to full size with a mask so that its loss and gradient equal the
unpadded mean. Params and optimizer state are donated. After each epoch the
whole validation split is evaluated (also jitted), so steps to a target come
in multiples of the number of updates per epoch (10 for p=97 at 0.5).

Optimizer (the reference's): ``optax.chain(filter, add_decayed_weights(wd),
scale_by_adam(0.9, 0.98, 1e-8), scale_by_learning_rate(lr * min(t/10, 1)))``
-- the Grokfast filter sees the raw loss gradient, L2 weight decay is added
after it (coupled, as ``torch.optim.Adam(weight_decay=...)``), and the first
update has learning rate 0. The other optimizers, ⊥Grad, the weight-norm
bound and the gradient recorder are in :mod:`.optimizers`; named recipes and
the flags that pick them in :mod:`.recipes`.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import grokfast_jax as gj
from grokfast_jax.experiments import checkpoint as checkpoint_lib
from grokfast_jax.experiments import common
from grokfast_jax.experiments import sharding as sharding_lib
from grokfast_jax.experiments.modular import config as config_lib
from grokfast_jax.experiments.modular import data as data_lib
from grokfast_jax.experiments.modular import optimizers, recipes
from grokfast_jax.experiments.modular.model import Transformer
from grokfast_jax.experiments.modular.optimizers import (  # noqa: F401
    grad_filter, lr_schedule, make_optimizer)

ModularConfig = config_lib.ModularConfig


# ------------------------------------------------------------------- losses

def batch_loss(logits: jax.Array, labels: jax.Array,
               mask: Optional[jax.Array] = None,
               loss: str = "ce") -> tuple[jax.Array, jax.Array]:
  """Mean loss and number of correct answers over unmasked rows.

  Args:
    logits: ``[b, vocab]``.
    labels: ``[b]`` int.
    mask: ``[b]`` 1 for real rows, 0 for padding; None means all real.
    loss: "ce" (softmax cross-entropy) or "stablemax" (StableMax's).

  Returns:
    ``(mean loss over real rows, count of correct real rows)``.
  """
  ce = (gj.stablemax_cross_entropy if loss == "stablemax" else
        optax.softmax_cross_entropy_with_integer_labels)(
            logits.astype(jnp.float32), labels)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  if mask is None:
    return ce.mean(), correct.sum()
  mask = mask.astype(jnp.float32)
  return (ce * mask).sum() / mask.sum(), (correct * mask).sum()


# --------------------------------------------------------------- the trainer

@dataclasses.dataclass
class Trainer:
  """Jitted training and evaluation of one run (built by :func:`make_trainer`).

  Attributes:
    cfg: the settings.
    train_epoch: ``(params, opt_state, key) -> (params, opt_state, metrics)``
      runs one epoch; `metrics` holds the epoch's summed training loss
      (weighted by batch size) and correct count, measured on each batch
      before its update. Params and state are donated.
    evaluate: ``(params, inputs, labels) -> (mean loss, accuracy)``.
    params, opt_state: the current state.
    graphdef: the model's structure (``nnx.merge(graphdef, params)``).
    steps_per_epoch: updates per epoch.
  """

  cfg: ModularConfig
  train_epoch: Callable
  evaluate: Callable
  params: Any
  opt_state: Any
  graphdef: Any
  steps_per_epoch: int
  train: data_lib.Split
  val: data_lib.Split

  def model(self) -> Transformer:
    """The model with the current params."""
    return nnx.merge(self.graphdef, self.params)


def init_model(cfg: ModularConfig) -> tuple[Any, Any]:
  """The model's graphdef and initial params (seeded by `cfg.seed`).

  The initialization runs as one jitted function compiled without
  optimization: the same distributions as eager construction (values agree
  to an ulp), without compiling each initializer op on its own, which takes
  seconds on CPU.

  Returns:
    ``(graphdef, params)`` as from ``nnx.split(model, nnx.Param)``.
  """

  def create() -> Transformer:
    return Transformer(data_lib.vocab_size(cfg.p), data_lib.SEQ_LEN,
                       depth=cfg.depth, width=cfg.width, heads=cfg.heads,
                       mlp_ratio=cfg.mlp_ratio, rngs=nnx.Rngs(cfg.seed))

  graphdef, _ = nnx.split(nnx.eval_shape(create), nnx.Param)
  lowered = jax.jit(lambda: nnx.split(create(), nnx.Param)[1]).lower()
  # Optimizing this run-once graph costs more than it saves.
  params = lowered.compile(
      compiler_options={"xla_backend_optimization_level": 0})()
  return graphdef, params


def epoch_batches(key: jax.Array, n: int,
                  batch_size: int) -> tuple[jax.Array, jax.Array]:
  """A fresh permutation of ``range(n)`` cut into padded batches.

  Args:
    key: PRNG key of the epoch.
    n: number of training examples.
    batch_size: batch size.

  Returns:
    ``(indices, mask)``, both ``[ceil(n / batch_size), batch_size]``; padded
    slots of the last batch point at example 0 with mask 0.
  """
  nb = -(-n // batch_size)
  pad = nb * batch_size - n
  perm = jax.random.permutation(key, n)
  idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)])
  mask = jnp.concatenate([jnp.ones((n,), jnp.float32),
                          jnp.zeros((pad,), jnp.float32)])
  return idx.reshape(nb, batch_size), mask.reshape(nb, batch_size)


def make_trainer(cfg: ModularConfig) -> Trainer:
  """Builds the data, model, optimizer and jitted functions of a run.

  Args:
    cfg: the settings.

  Returns:
    A :class:`Trainer` holding the initial params and optimizer state.
  """
  train, val = data_lib.make_splits(cfg.op, cfg.p, cfg.train_fraction,
                                    cfg.seed)
  graphdef, params = init_model(cfg)
  params = optimizers.initial_params(cfg, params)
  tx = make_optimizer(cfg)
  n_train = len(train.labels)
  batch_size = min(cfg.batch_size, n_train)
  steps_per_epoch = -(-n_train // batch_size)
  train_x = jnp.asarray(train.inputs)
  train_y = jnp.asarray(train.labels)
  split_batch = lambda a: a  # noqa: E731
  if cfg.mesh == "none":
    opt_state = jax.jit(tx.init)(params)
  else:
    mesh = sharding_lib.make_mesh(cfg.devices)
    n = mesh.devices.size
    if batch_size % n:
      raise ValueError(
          f"batch_size ({batch_size}) must be a multiple of the number of "
          f"devices ({n}) with mesh {cfg.mesh!r}")
    params = sharding_lib.place_params(params, mesh, cfg.mesh)
    # Optimizer and filter state are created like the params they shadow.
    opt_state = tx.init(params)
    train_x, train_y = jax.device_put((train_x, train_y),
                                      sharding_lib.replicated(mesh))
    split = sharding_lib.batch_split(mesh)
    split_batch = lambda a: jax.lax.with_sharding_constraint(a, split)  # noqa: E731

  def loss_fn(p, x, y, m):
    logits = nnx.merge(graphdef, p)(x)
    return batch_loss(logits, y, m, cfg.loss)

  def step(carry, batch):
    p, s = carry
    idx, m = batch
    (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        p, split_batch(train_x[idx]), split_batch(train_y[idx]),
        split_batch(m))
    updates, s = tx.update(grads, s, p)
    p = optax.apply_updates(p, updates)
    return (p, s), (loss * m.sum(), correct)

  def train_epoch(p, s, key):
    idx, mask = epoch_batches(key, n_train, batch_size)
    (p, s), (losses, corrects) = jax.lax.scan(step, (p, s), (idx, mask))
    return p, s, {"loss_sum": losses.sum(), "correct": corrects.sum()}

  def evaluate(p, x, y):
    # Chunks of <= batch_size rows (padded, masked) run faster on CPU than
    # one large batch and bound the memory used.
    n = y.shape[0]
    chunks = -(-n // batch_size)
    size = -(-n // chunks)
    pad = chunks * size - n
    xs = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    ys = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
    ms = jnp.concatenate([jnp.ones((n,)), jnp.zeros((pad,))])
    model = nnx.merge(graphdef, p)

    def chunk(args):
      xb, yb, mb = args
      loss, correct = batch_loss(model(xb), yb, mb, cfg.loss)
      return loss * mb.sum(), correct

    losses, corrects = jax.lax.map(
        chunk, (xs.reshape(chunks, size, -1), ys.reshape(chunks, size),
                ms.reshape(chunks, size)))
    return losses.sum() / n, corrects.sum() / n

  return Trainer(cfg=cfg, train_epoch=jax.jit(train_epoch,
                                              donate_argnums=(0, 1)),
                 evaluate=jax.jit(evaluate), params=params,
                 opt_state=opt_state, graphdef=graphdef,
                 steps_per_epoch=steps_per_epoch, train=train, val=val)


def train(cfg: ModularConfig, *, progress: bool = True,
          label: Optional[str] = None,
          checkpoint_dir: Optional[str | Path] = None, resume: bool = False,
          checkpoint_every: int = 1) -> tuple[dict[str, Any], Any, Any]:
  """Trains one run: its results (see :func:`summarize`), params, opt state.

  Runs whole epochs until `cfg.max_steps` updates are done (rounded up to a
  whole epoch), or until `cfg.after_target` updates after the validation
  accuracy first reaches `cfg.target` when `cfg.stop_at_target`. With
  `cfg.record_spectrum`, the results hold the raw gradients' spectrum
  (:func:`.optimizers.spectrum_results`).

  With `checkpoint_dir`, the params, the optimizer state (the Grokfast filter
  included) and the history are saved every `checkpoint_every` epochs and at
  the end. The batch order is a function of the seed and the epoch, so a run
  resumed from a checkpoint continues exactly as the uninterrupted run would
  have: the same history (but for wall-clock seconds) and, on CPU, bit-for-bit
  the same parameters.

  Args:
    cfg: the settings.
    progress: show a tqdm bar updated every epoch.
    label: name shown on the bar (defaults to the filter).
    checkpoint_dir: folder for this run's checkpoints, or None.
    resume: continue from the newest checkpoint in `checkpoint_dir` (start
      afresh if it holds none).
    checkpoint_every: save every this many epochs.

  Returns:
    ``(results, params, opt_state)``: the results dict (settings, history,
    steps and seconds to 95%, finals, backend, versions) and the final
    state.

  Raises:
    ValueError: `checkpoint_dir` already holds checkpoints and `resume` is
      off (nothing is overwritten), or the checkpoint was written with other
      settings (a `CheckpointMismatchError` naming them).
  """
  if cfg.record_spectrum and checkpoint_dir is not None:
    raise ValueError("--record-spectrum cannot be combined with "
                     "--checkpoint-dir (the recorder is not checkpointed)")
  t_start = time.perf_counter()
  trainer = make_trainer(cfg)
  val_x, val_y = jnp.asarray(trainer.val.inputs), jnp.asarray(
      trainer.val.labels)
  n_train = len(trainer.train.labels)
  n_epochs = -(-cfg.max_steps // trainer.steps_per_epoch)
  base_key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
  params, opt_state = trainer.params, trainer.opt_state
  history: list[dict[str, Any]] = []
  first_epoch_seconds = None
  ckpt = None
  if checkpoint_dir is not None:
    ckpt = checkpoint_lib.RunCheckpointer(
        checkpoint_dir, config_lib.checkpoint_settings(cfg),
        every=checkpoint_every)
    latest = ckpt.latest_epoch()
    if latest is not None and not resume:
      raise ValueError(
          f"{checkpoint_dir} already holds checkpoints of a run (newest at "
          f"epoch {latest}); pass --resume to continue it, or choose another "
          f"--checkpoint-dir")
    if latest is not None:
      (params, opt_state), record = ckpt.restore((params, opt_state))
      history = record["history"]
      first_epoch_seconds = record["first_epoch_seconds"]
  # Seconds continue from the checkpoint's clock.
  t0 = t_start - (history[-1]["seconds"] if history else 0.0)
  done = cfg.should_stop(history)
  desc = label or (cfg.filter if cfg.filter != "none" else "baseline")
  with common.progress_bar(n_epochs * trainer.steps_per_epoch, desc,
                           disable=not progress) as bar:
    for epoch in range(len(history) + 1, n_epochs + 1):
      if done:
        break
      params, opt_state, m = trainer.train_epoch(
          params, opt_state, jax.random.fold_in(base_key, epoch))
      val_loss, val_acc = trainer.evaluate(params, val_x, val_y)
      entry = {
          "step": epoch * trainer.steps_per_epoch,
          "epoch": epoch,
          "train_loss": float(m["loss_sum"]) / n_train,
          "train_acc": float(m["correct"]) / n_train,
          "val_loss": float(val_loss),
          "val_acc": float(val_acc),
          "seconds": time.perf_counter() - t0,
      }
      if first_epoch_seconds is None:
        first_epoch_seconds = entry["seconds"]
      history.append(entry)
      bar.update_to(entry)
      done = cfg.should_stop(history)
      if ckpt is not None:
        ckpt.save(epoch, (params, opt_state),
                  {"history": history,
                   "first_epoch_seconds": first_epoch_seconds},
                  force=done or epoch == n_epochs)
  if ckpt is not None:
    ckpt.close()
  result = summarize(cfg, history, first_epoch_seconds,
                     trainer.steps_per_epoch)
  if cfg.record_spectrum:
    result["spectrum"] = optimizers.spectrum_results(cfg, opt_state)
  return result, params, opt_state


def run(cfg: ModularConfig, **kwargs: Any) -> dict[str, Any]:
  """Trains one run (see :func:`train`) and returns its results dict."""
  return train(cfg, **kwargs)[0]


def summarize(cfg: ModularConfig, history: list[dict[str, Any]],
              first_epoch_seconds: Optional[float],
              steps_per_epoch: int) -> dict[str, Any]:
  """The results dict of a finished run.

  Args:
    cfg: the settings.
    history: per-epoch entries.
    first_epoch_seconds: wall time to the end of the first epoch (includes
      building and compiling).
    steps_per_epoch: updates per epoch.

  Returns:
    ``settings, steps_to_val_acc_95, seconds_to_val_acc_95, final, history,
    steps_per_epoch, steps_per_second, seconds_total, backend, versions``.
    `steps_per_second` excludes the first epoch (compilation).
  """
  step95, sec95 = common.steps_to_threshold(history, "val_acc", 0.95)
  last = history[-1]
  rate = None
  if len(history) > 1 and first_epoch_seconds is not None:
    dt = last["seconds"] - first_epoch_seconds
    rate = (last["step"] - history[0]["step"]) / dt if dt > 0 else None
  return {
      "task": "modular",
      "settings": dataclasses.asdict(cfg),
      "steps_to_val_acc_95": step95,
      "seconds_to_val_acc_95": sec95,
      "final": {k: last[k] for k in ("step", "epoch", "train_loss",
                                     "train_acc", "val_loss", "val_acc")},
      "steps_per_epoch": steps_per_epoch,
      "steps_per_second": rate,
      "seconds_total": last["seconds"],
      "seconds_first_epoch": first_epoch_seconds,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "versions": common.versions(),
      "history": history,
  }


# ---------------------------------------------------------- command line

def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text}")
  return value


def _add_task_args(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--op", default="*", choices=data_lib.OPS,
                      help="operator of x op y mod p ('/' uses the modular "
                      "inverse of y; default '*')")
  parser.add_argument("--p", type=int, default=97,
                      help="prime modulus >= 3 (default 97)")
  parser.add_argument("--train-fraction", type=float, default=0.5,
                      help="fraction of equations for training, in (0, 1) "
                      "(default 0.5)")
  parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
  parser.add_argument("--decoupled-wd", action="store_true",
                      help="AdamW-style decoupled weight decay instead of "
                      "coupled L2 added to the gradient")
  parser.add_argument("--no-progress", action="store_true",
                      help="no progress bar")
  ckpt = parser.add_argument_group("checkpoints (exact resume)")
  ckpt.add_argument("--checkpoint-dir", default=None,
                    help="save params, optimizer and filter state and the "
                    "history here (compare: one sub-folder per filter)")
  ckpt.add_argument("--checkpoint-every", type=_positive_int, default=10,
                    help="epochs between checkpoints (default 10; the last "
                    "epoch is always saved)")
  ckpt.add_argument("--resume", action="store_true",
                    help="continue from the newest checkpoint in "
                    "--checkpoint-dir: the run goes on exactly as if never "
                    "interrupted")
  dev = parser.add_argument_group("several devices")
  dev.add_argument("--mesh", default="none", choices=config_lib.MESHES,
                   help="none: one device; dp: data parallel (params "
                   "replicated, batches split); fsdp: params, optimizer and "
                   "filter state split over the devices too")
  dev.add_argument("--devices", type=int, default=0,
                   help="devices in the mesh (default 0: all)")
  dev.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (one "
                   "process per host of a TPU pod slice or GPU cluster)")
  shape = parser.add_argument_group(
      "model shape (defaults: the paper's 2 blocks, width 128, 4 heads)")
  shape.add_argument("--depth", type=_positive_int, default=2)
  shape.add_argument("--width", type=_positive_int, default=128)
  shape.add_argument("--heads", type=_positive_int, default=4)


def _add_filter_args(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--alpha", type=float, default=None,
                      help="EMA momentum (default 0.98)")
  parser.add_argument("--lamb", type=float, default=None,
                      help="amplification (default: ema 2, ma 5, iir 2)")
  parser.add_argument("--window-size", type=_positive_int, default=None,
                      help="MA window (default 100)")
  parser.add_argument("--weight-decay", type=float, default=None,
                      help="weight decay (default: none 0, ema 0.005, "
                      "ma 0.01)")


def _config_from_args(args: argparse.Namespace, filter: Optional[str],
                      stop_at_target: bool) -> ModularConfig:
  """The run's config: --recipe, then the explicit flags (see recipes)."""
  return recipes.config_from_args(args, filter, stop_at_target)


def run_label(filter: str) -> str:
  """Display name of a filter's run: baseline, grokfast-ema, grokfast-ma."""
  return "baseline" if filter == "none" else f"grokfast-{filter}"


def describe(label: str, result: dict[str, Any]) -> str:
  """One honest line: when 95% val acc was reached, or that it was not."""
  step, sec = result["steps_to_val_acc_95"], result["seconds_to_val_acc_95"]
  final = result["final"]
  if step is not None:
    return (f"{label} reached 95% val acc at step {step:,} ({sec:.0f} s, "
            f"compile included); final val acc {final['val_acc']:.3f} at "
            f"step {final['step']:,}")
  return (f"{label} had not reached 95% val acc after {final['step']:,} "
          f"steps (final val acc {final['val_acc']:.3f}, train acc "
          f"{final['train_acc']:.3f})")


def _save_run(out: Path, label: str, result: dict[str, Any],
              cfg: ModularConfig) -> None:
  common.save_results(out, result)
  common.plot_curves({label: result["history"]}, out / "curves.png",
                     _title(result["settings"], label))
  if "spectrum" in result and optimizers.plot_run_spectrum(
      cfg, result["spectrum"], out / "spectrum.png",
      _title(result["settings"], f"{label}, raw gradient spectrum")):
    print(f"wrote {out / 'spectrum.png'}")


def _title(settings: dict[str, Any], what: str) -> str:
  return (f"x {settings['op']} y mod {settings['p']}, train fraction "
          f"{settings['train_fraction']:g}, seed {settings['seed']}: {what}")


def _checkpoint_kwargs(args: argparse.Namespace,
                       sub: Optional[str]) -> dict[str, Any]:
  """run()'s checkpoint arguments from the command line."""
  if args.checkpoint_dir is None:
    if args.resume:
      raise ValueError("--resume needs --checkpoint-dir")
    return {}
  directory = Path(args.checkpoint_dir)
  return {"checkpoint_dir": directory / sub if sub else directory,
          "resume": args.resume, "checkpoint_every": args.checkpoint_every}


def _start_distributed(args: argparse.Namespace) -> None:
  """Joins the other hosts' processes when --distributed is given."""
  if args.distributed:
    jax.distributed.initialize()


def cmd_modular(args: argparse.Namespace) -> int:
  """``grokfast-jax modular``: one run, results.json and curves.png in --out."""
  _start_distributed(args)
  cfg = _config_from_args(args, args.filter, args.stop_at_target)
  label = cfg.recipe or run_label(cfg.filter)
  result = run(cfg, progress=not args.no_progress, label=label,
               **_checkpoint_kwargs(args, None))
  out = Path(args.out)
  _save_run(out, label, result, cfg)
  print(describe(label, result))
  print(f"wrote {out / 'results.json'} and {out / 'curves.png'}")
  return 0


def cmd_compare(args: argparse.Namespace) -> int:
  """``grokfast-jax compare``: baseline and Grokfast runs, same seed."""
  _start_distributed(args)
  filters = [f.strip() for f in args.filters.split(",") if f.strip()]
  for f in filters:
    if f not in config_lib.FILTERS:
      raise ValueError(
          f"--filters must list some of {config_lib.FILTERS}, got {f!r}")
  if len(set(filters)) != len(filters):
    raise ValueError(f"--filters lists a filter twice: {args.filters!r}")
  out = Path(args.out)
  results, lines = {}, []
  print(f"comparing {', '.join(run_label(f) for f in filters)} on x "
        f"{args.op} y mod {args.p} (train fraction {args.train_fraction:g}, "
        f"seed {args.seed}), each for up to {args.max_steps:,} steps"
        + (", stopping at 95% val acc" if args.stop_at_target else ""))
  for f in filters:
    cfg = _config_from_args(args, f, args.stop_at_target)
    label = run_label(f)
    result = run(cfg, progress=not args.no_progress, label=label,
                 **_checkpoint_kwargs(args, f))
    _save_run(out / f, label, result, cfg)
    results[label] = result
    lines.append(describe(label, result))
    print(lines[-1])
  summary = {label: {"steps_to_val_acc_95": r["steps_to_val_acc_95"],
                     "seconds_to_val_acc_95": r["seconds_to_val_acc_95"],
                     "final": r["final"]} for label, r in results.items()}
  common.save_results(out, {"task": "modular-compare", "summary": summary,
                            "summary_text": lines, "runs": results})
  common.plot_curves({k: r["history"] for k, r in results.items()},
                     out / "curves.png",
                     _title(next(iter(results.values()))["settings"],
                            " vs ".join(results)))
  print("summary:")
  for line in lines:
    print("  " + line)
  print(f"wrote {out / 'results.json'}, {out / 'curves.png'} and one "
        f"results.json + curves.png per run under {out}/<filter>/")
  return 0


def add_parsers(subparsers: Any) -> None:
  """Adds the ``modular`` and ``compare`` subcommands."""
  p = subparsers.add_parser(
      "modular", help="train one run on x op y mod p",
      description="Train the 2-layer transformer on x op y mod p with an "
      "optional Grokfast filter; writes OUT/results.json and OUT/curves.png.")
  _add_task_args(p)
  p.add_argument("--filter", default=None, choices=config_lib.FILTERS,
                 help="gradient filter (default: the recipe's, else ema)")
  _add_filter_args(p)
  recipes.add_args(p)
  p.add_argument("--max-steps", type=_positive_int, default=3000,
                 help="updates to run, rounded up to whole epochs "
                 "(default 3000)")
  p.add_argument("--stop-at-target", action="store_true",
                 help="stop at the first evaluation with val acc >= 95%%")
  p.add_argument("--out", default="runs/modular",
                 help="output directory (default runs/modular)")
  p.set_defaults(func=cmd_modular)

  c = subparsers.add_parser(
      "compare", help="baseline vs Grokfast on x op y mod p, same seed",
      description="Run the baseline and the Grokfast runs with the same seed "
      "and settings; writes OUT/<filter>/{results.json,curves.png}, "
      "OUT/results.json (all runs + summary) and OUT/curves.png (overlaid).")
  _add_task_args(c)
  c.add_argument("--filters", default="none,ema",
                 help="comma-separated filters among none, ema, ma, iir "
                 "(default none,ema)")
  _add_filter_args(c)
  recipes.add_args(c)
  c.add_argument("--max-steps", type=_positive_int, default=2000,
                 help="updates per run, rounded up to whole epochs "
                 "(default 2000)")
  c.add_argument("--stop-at-target", action="store_true",
                 help="stop each run at its first evaluation with val acc "
                 ">= 95%%")
  c.add_argument("--out", default="runs/compare",
                 help="output directory (default runs/compare)")
  c.set_defaults(func=cmd_compare)
