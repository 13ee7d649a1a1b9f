"""The modular-arithmetic task on the experiment harness.

One epoch is a reshuffle of the training split (the key is
``fold_in(fold_in(key(seed), 1), epoch)``) cut into batches of 512, the last
partial batch padded to full size with a mask so that its loss and gradient
equal the unpadded mean; the per-update function is a pure function of
``(state, batch)``. After each epoch the whole validation split is
evaluated, so steps to a target come in multiples of the updates per epoch
(10 for p=97 at 0.5). The optimizer (by default the reference's Adam with
coupled L2, the filter on the raw gradient, learning rate 0 at the first
update) is in :mod:`.optimizers`; named recipes in :mod:`.recipes`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import grokfast_jax as gj
from grokfast_jax.experiments import common, harness, settings
from grokfast_jax.experiments.harness import report
from grokfast_jax.experiments.modular import config as config_lib
from grokfast_jax.experiments.modular import data as data_lib
from grokfast_jax.experiments.modular import optimizers, recipes
from grokfast_jax.experiments.modular.model import Transformer

ModularConfig = config_lib.ModularConfig


def batch_loss(
  logits: jax.Array,
  labels: jax.Array,
  mask: Optional[jax.Array] = None,
  loss: str = "ce",
) -> tuple[jax.Array, jax.Array]:
  """Mean loss and number of correct answers over unmasked rows.

  Args:
    logits: ``[b, vocab]``.
    labels: ``[b]`` int.
    mask: ``[b]`` 1 for real rows, 0 for padding; None means all real.
    loss: "ce" (softmax cross-entropy) or "stablemax" (StableMax's).

  Returns:
    ``(mean loss over real rows, count of correct real rows)``.
  """
  ce = (
    gj.stablemax_cross_entropy
    if loss == "stablemax"
    else optax.softmax_cross_entropy_with_integer_labels
  )(logits.astype(jnp.float32), labels)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  if mask is None:
    return ce.mean(), correct.sum()
  mask = mask.astype(jnp.float32)
  return (ce * mask).sum() / mask.sum(), (correct * mask).sum()


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
    return Transformer(
      data_lib.vocab_size(cfg.p, cfg.op),
      data_lib.SEQ_LEN,
      depth=cfg.depth,
      width=cfg.width,
      heads=cfg.heads,
      mlp_ratio=cfg.mlp_ratio,
      rngs=nnx.Rngs(cfg.seed),
    )

  graphdef, _ = nnx.split(nnx.eval_shape(create), nnx.Param)
  return graphdef, settings.compile_o0(
    lambda: nnx.split(create(), nnx.Param)[1]
  )()


def epoch_batches(
  key: jax.Array, n: int, batch_size: int
) -> tuple[jax.Array, jax.Array]:
  """A fresh permutation of ``range(n)`` cut into padded batches.

  Returns:
    ``(indices, mask)``, both ``[ceil(n / batch_size), batch_size]``; padded
    slots of the last batch point at example 0 with mask 0.
  """
  nb = -(-n // batch_size)
  pad = nb * batch_size - n
  perm = jax.random.permutation(key, n)
  idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)])
  mask = jnp.concatenate(
    [jnp.ones((n,), jnp.float32), jnp.zeros((pad,), jnp.float32)]
  )
  return idx.reshape(nb, batch_size), mask.reshape(nb, batch_size)


def make_update(
  cfg: ModularConfig,
  graphdef: Any,
  tx: optax.GradientTransformation,
  ctx: harness.Context,
) -> Callable[..., Any]:
  """The pure per-update function ``update(state, batch)``.

  `state` is ``(params, opt_state)``; `batch` is ``(inputs, labels, mask)``
  (padding rows masked out). Returns the new state and ``(summed loss of the
  real rows, correct count)``, both measured before the update.
  """

  def loss_fn(p, x, y, m):
    return batch_loss(nnx.merge(graphdef, p)(x), y, m, cfg.loss)

  def update(state, batch):
    p, s = state
    x, y, m = (ctx.shard_batch(a) for a in batch)
    (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      p, x, y, m
    )
    updates, s = tx.update(grads, s, p)
    return (optax.apply_updates(p, updates), s), (loss * m.sum(), correct)

  return update


def build(
  cfg: ModularConfig,
  data: Any,
  ctx: harness.Context,
  swept: tuple[str, ...] = (),
) -> harness.Program:
  """The run of `cfg`: data split, model, optimizer and the pure epoch.

  `swept` names float settings held in the optimizer state
  (:func:`optimizers.make_optimizer`), so that sweep members differing in
  them (and in the seed) share the functions (the harness's
  ``build_member``).
  """
  train, val = data_lib.make_splits(cfg.op, cfg.p, cfg.train_fraction, cfg.seed)
  graphdef, params = init_model(cfg)
  params = optimizers.initial_params(cfg, params)
  tx = optimizers.make_optimizer(cfg, swept)
  n_train, n_val = len(train.labels), len(val.labels)
  batch_size = min(cfg.batch_size, n_train)
  if ctx.mesh is None:
    opt_state = jax.jit(tx.init)(params)
  else:
    if batch_size % ctx.devices:
      raise ValueError(
        f"batch_size ({batch_size}) must be a multiple of the number of "
        f"devices ({ctx.devices}) with mesh {ctx.layout!r}"
      )
    params = ctx.place_params(params)
    # Optimizer and filter state are created like the params they shadow.
    opt_state = tx.init(params)
  arrays = ctx.place_data(
    {
      "train_x": jnp.asarray(train.inputs),
      "train_y": jnp.asarray(train.labels),
      "val_x": jnp.asarray(val.inputs),
      "val_y": jnp.asarray(val.labels),
      "key": jax.random.key_data(
        jax.random.fold_in(jax.random.key(cfg.seed), 1)
      ),
    }
  )
  update = make_update(cfg, graphdef, tx, ctx)

  def train_epoch(state, epoch, d):
    key = jax.random.fold_in(jax.random.wrap_key_data(d["key"]), epoch)
    idx, mask = epoch_batches(key, n_train, batch_size)
    state, (losses, corrects) = jax.lax.scan(
      lambda s, b: update(s, (d["train_x"][b[0]], d["train_y"][b[0]], b[1])),
      state,
      (idx, mask),
    )
    return state, {"loss_sum": losses.sum(), "correct": corrects.sum()}

  def evaluate(state, d):
    # Chunks of <= batch_size rows (padded, masked) run faster on CPU than
    # one large batch and bound the memory used.
    x, y = d["val_x"], d["val_y"]
    chunks = -(-n_val // batch_size)
    size = -(-n_val // chunks)
    pad = chunks * size - n_val
    xs = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    ys = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
    ms = jnp.concatenate([jnp.ones((n_val,)), jnp.zeros((pad,))])
    model = nnx.merge(graphdef, state[0])

    def chunk(args):
      xb, yb, mb = args
      loss, correct = batch_loss(model(xb), yb, mb, cfg.loss)
      return loss * mb.sum(), correct

    losses, corrects = jax.lax.map(
      chunk,
      (
        xs.reshape(chunks, size, -1),
        ys.reshape(chunks, size),
        ms.reshape(chunks, size),
      ),
    )
    return state, {
      "val_loss": losses.sum() / n_val,
      "val_acc": corrects.sum() / n_val,
    }

  def entry(m, ev):
    return {
      "train_loss": float(m["loss_sum"][-1]) / n_train,
      "train_acc": float(m["correct"][-1]) / n_train,
      "val_loss": ev["val_loss"],
      "val_acc": ev["val_acc"],
    }

  steps_per_epoch = -(-n_train // batch_size)
  return harness.Program(
    state=(params, opt_state),
    data=arrays,
    train_epoch=train_epoch,
    evaluate=evaluate,
    entry=entry,
    total_epochs=-(-cfg.max_steps // steps_per_epoch),
    steps_per_epoch=steps_per_epoch,
    should_stop=cfg.should_stop,
  )


def build_member(
  cfg: ModularConfig, data: Any, ctx: harness.Context, swept: tuple[str, ...]
) -> harness.Program:
  """A sweep member's run (:mod:`~grokfast_jax.experiments.harness`): the
  same as :func:`build`, on one device.

  Raises:
    ValueError: `record_spectrum` (its recorder is not kept per member).
  """
  if cfg.record_spectrum:
    raise ValueError(
      "record_spectrum (--record-spectrum) is not available "
      "in a sweep; record it in a single run"
    )
  return build(cfg, data, ctx, swept)


def summarize(
  cfg: ModularConfig, data: Any, facts: Mapping[str, Any]
) -> dict[str, Any]:
  """The task's figures: steps and seconds to 95% val acc, the final entry,
  ``seconds_first_epoch`` and, with `record_spectrum`, the spectrum."""
  history = facts["history"]
  step95, sec95 = common.steps_to_threshold(history, "val_acc", 0.95)
  last = history[-1]
  out = {
    "task": "modular",
    "settings": dataclasses.asdict(cfg),
    "steps_to_val_acc_95": step95,
    "seconds_to_val_acc_95": sec95,
    "final": {
      k: last[k]
      for k in (
        "step",
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
      )
    },
    "seconds_first_epoch": facts["seconds_first_eval"],
  }
  if cfg.record_spectrum:
    out["spectrum"] = optimizers.spectrum_results(cfg, facts["state"][1])
  return out


# Display name of a filter's run: baseline, grokfast-ema, grokfast-ma...
run_label = settings.run_name


def describe(result: Mapping[str, Any]) -> str:
  """One honest line: when 95% val acc was reached, or that it was not."""
  label = result.get("run") or run_label(result["settings"]["filter"])
  step, sec = result["steps_to_val_acc_95"], result["seconds_to_val_acc_95"]
  final = result["final"]
  if step is not None:
    return (
      f"{label} reached 95% val acc at step {step:,} ({sec:.0f} s, "
      "compile included); "
      + report.figure("final val acc", final["val_acc"], final["step"])
    )
  return (
    f"{label} had not reached 95% val acc after {final['step']:,} "
    f"steps (final val acc {final['val_acc']:.3f}, train acc "
    f"{final['train_acc']:.3f})"
  )


def title(cfg: ModularConfig, what: str) -> str:
  task = (
    "S5 composition"
    if cfg.op == "s5"
    else f"x {cfg.op} y mod {cfg.p}"
    if cfg.op in data_lib.REFERENCE_OPS
    else f"{cfg.op} mod {cfg.p}"
  )
  return (
    f"{task}, train fraction {cfg.train_fraction:g}, seed {cfg.seed}: {what}"
  )


def make_config(given: Mapping[str, Any]) -> ModularConfig:
  """``grokfast-jax modular``'s config: --recipe, then the flags given."""
  return recipes.config_from_given(given, given.get("filter"))


def plan_compare(given: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
  """``grokfast-jax compare``: one run per --filters entry, same seed."""
  text = given.get("filters", "none,ema")
  filters = [f.strip() for f in text.split(",") if f.strip()]
  for f in filters:
    if f not in config_lib.FILTERS:
      raise ValueError(
        f"--filters must list some of {config_lib.FILTERS}, got {f!r}"
      )
  if len(set(filters)) != len(filters):
    raise ValueError(f"--filters lists a filter twice: {text!r}")
  given = {"max_steps": 2000, **given}
  return [
    (f, run_label(f), recipes.config_from_given(given, f)) for f in filters
  ]


def summarize_compare(
  runs: Mapping[str, Mapping[str, Any]],
) -> tuple[list[str], dict[str, Any]]:
  lines = [describe(r) for r in runs.values()]
  summary = report.table(
    runs, ("steps_to_val_acc_95", "seconds_to_val_acc_95", "final")
  )
  return lines, {
    "task": "modular-compare",
    "summary": summary,
    "summary_text": lines,
  }


def spectrum_file(out: Path, run: harness.Run) -> list[Path]:
  """``spectrum.png`` of a run that recorded the gradient spectrum."""
  if "spectrum" not in run.results:
    return []
  settings = run.results["settings"]
  fields: dict[str, Any] = {
    k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()
  }
  cfg = ModularConfig(**fields)
  path = Path(out) / "spectrum.png"
  label = run.results.get("run") or "run"
  if optimizers.plot_run_spectrum(
    cfg,
    run.results["spectrum"],
    path,
    title(cfg, f"{label}, raw gradient spectrum"),
  ):
    return [path]
  return []


TASK = harness.Task(
  name="modular",
  compare_name="compare",
  help="train one run on x op y mod p",
  description="Train the 2-layer transformer on x op y mod p with an "
  "optional Grokfast filter; writes OUT/results.json and OUT/curves.png.",
  compare_help="baseline vs Grokfast on x op y mod p, same seed",
  compare_description="Run the baseline and the Grokfast runs with the "
  "same seed and settings; writes OUT/<filter>/{results.json,curves.png}, "
  "OUT/results.json (all runs + summary) and OUT/curves.png (overlaid).",
  config_class=ModularConfig,
  make_config=make_config,
  build=build,
  summarize=summarize,
  describe=describe,
  plan_compare=plan_compare,
  summarize_compare=summarize_compare,
  title=title,
  default_out="runs/modular",
  compare_out="runs/compare",
  checkpoint_settings=config_lib.checkpoint_settings,
  run_label=lambda cfg: cfg.recipe or run_label(cfg.filter),
  extra_files=spectrum_file,
  build_member=build_member,
  sweep_floats=optimizers.SWEEP_FLOATS,
  sweep_metric="steps_to_val_acc_95",
  extra_flags=(
    harness.Flag(
      "--betas",
      "betas",
      "the optimizer's two betas (default 0.9,0.98)",
      metavar="B1,B2",
    ),
    harness.Flag(
      "--filters",
      "filters",
      "comma-separated filters among none, ema, ma, iir (default none,ema)",
      single=False,
    ),
  ),
)


def run(cfg: ModularConfig, **kwargs: Any) -> dict[str, Any]:
  """Trains one run of `cfg` (:func:`harness.train`); its results dict."""
  return harness.train(TASK, cfg, **kwargs).results
