"""The pure training pieces of the IMDb LSTM experiment: the optimizer
(clip, then the Grokfast filter, then AdamW; its settings traced), the loss
and accuracy, the per-update function :func:`update`, the epoch
(:func:`make_train_epoch`) and the evaluation on every validation review
(:func:`make_evaluate`). :mod:`.task` puts them together.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grokfast_jax.experiments import settings
from grokfast_jax.experiments.harness import report
from grokfast_jax.experiments.imdb import config as config_lib
from grokfast_jax.experiments.imdb.model import LSTMClassifier

HYPERPARAMS = ("lr", "weight_decay", "clip_norm", "alpha", "lamb")


class TrainState(NamedTuple):
  """:class:`settings.TrainState` (params, opt_state, key) and `hparams`:
  the traced optimizer settings (:func:`hyperparams`, float32 scalars), so
  that runs differing only in them share one compilation."""

  params: Any
  opt_state: Any
  key: jax.Array
  hparams: dict[str, jax.Array]


def hyperparams(cfg: config_lib.ImdbConfig) -> dict[str, float]:
  """The optimizer settings that may be traced: lr, weight_decay, clip_norm,
  alpha and lamb."""
  return {k: getattr(cfg, k) for k in HYPERPARAMS}


def build_optimizer(
  filter: str,
  window_size: int,
  *,
  lr: float | jax.Array,
  weight_decay: float | jax.Array,
  clip_norm: float | jax.Array,
  alpha: float | jax.Array,
  lamb: float | jax.Array,
) -> optax.GradientTransformation:
  """The optimizer from explicit (possibly traced) settings.

  The reference clips the raw gradient's global norm and filters the clipped
  gradient, so the filter sees (and accumulates) clipped gradients.

  Args:
    filter: "none", "ema" or "ma".
    window_size: Grokfast-MA window (static; used by "ma").
    lr, weight_decay: AdamW's settings.
    clip_norm: the global-norm clip, applied first.
    alpha: Grokfast-EMA momentum (used by "ema").
    lamb: Grokfast amplification (used by "ema" and "ma").

  Returns:
    ``chain(clip_by_global_norm(clip_norm), [grokfast_<filter>,]
    adamw(lr, weight_decay))``; the filter's state is ``opt_state[1]``.
  """
  parts = [optax.clip_by_global_norm(clip_norm)]
  grokfast = settings.grokfast_filter(
    filter, alpha=alpha, lamb=lamb, window_size=window_size
  )
  if grokfast is not None:
    parts.append(grokfast)
  parts.append(optax.adamw(lr, weight_decay=weight_decay))
  return optax.chain(*parts)


def make_optimizer(cfg: config_lib.ImdbConfig) -> optax.GradientTransformation:
  """:func:`build_optimizer` with the config's (untraced) settings."""
  return build_optimizer(cfg.filter, cfg.window_size, **hyperparams(cfg))


def optimizer_name(cfg: config_lib.ImdbConfig) -> str:
  """E.g. "clip_by_global_norm(5) -> grokfast_ema -> adamw(3e-4)"."""
  return report.optimizer_name(
    cfg.filter,
    (f"clip_by_global_norm({cfg.clip_norm:g})",),
    f"adamw({cfg.lr:g})",
  )


def bce_with_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-review binary cross-entropy of ``sigmoid(logits)`` against 0/1 labels.

  Computed stably from the logit (``optax.sigmoid_binary_cross_entropy``);
  equals torch's ``BCELoss`` on the sigmoid except that torch clamps each
  log at -100 (a sigmoid saturated to exactly 0 or 1 in float32 costs at
  most 100 there, unbounded here).
  """
  return optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))


def correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """1.0 where ``round(sigmoid(logit)) == label`` (0.5 rounds to 0, as torch)."""
  pred = jnp.round(jax.nn.sigmoid(logits))
  return (pred == labels.astype(logits.dtype)).astype(logits.dtype)


def eval_chunks(
  x: np.ndarray, y: np.ndarray, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Splits (x, y) into zero-padded chunks with a mask, for evaluation.

  Args:
    x: ``[n, seq_len]`` token ids.
    y: ``[n]`` labels.
    chunk: reviews per chunk.

  Returns:
    ``[k, chunk, seq_len]`` ids, ``[k, chunk]`` labels and ``[k, chunk]``
    float32 mask (1 for real reviews), ``k = ceil(n / chunk)``.
  """
  n = len(y)
  k = -(-n // chunk)
  pad = k * chunk - n
  xs = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
  ys = np.concatenate([y, np.zeros(pad, y.dtype)])
  mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  return (
    xs.reshape(k, chunk, *x.shape[1:]),
    ys.reshape(k, chunk),
    mask.reshape(k, chunk),
  )


def build_model(cfg: config_lib.ImdbConfig, key: jax.Array) -> LSTMClassifier:
  """The classifier the config describes, initialized from `key`."""
  return LSTMClassifier(
    cfg.vocab_size + 1,
    cfg.embed_dim,
    cfg.hidden,
    num_layers=cfg.num_layers,
    init_scale=cfg.init_scale,
    rngs=nnx.Rngs(params=key),
  )


def init_state(
  cfg: config_lib.ImdbConfig,
  place_params: Callable[[Any], Any] = settings.identity,
) -> tuple[nnx.GraphDef, TrainState]:
  """The model's graph definition and the initial :class:`TrainState`
  (:func:`settings.seed_keys`).

  Args:
    cfg: the run's settings.
    place_params: puts the params on the devices (a mesh's layout).
  """
  init_key, shuffle_key = settings.seed_keys(cfg.seed)
  graphdef, params = nnx.split(build_model(cfg, init_key), nnx.Param)
  params = place_params(params)
  hparams = {
    k: jnp.asarray(v, jnp.float32) for k, v in hyperparams(cfg).items()
  }
  return graphdef, TrainState(
    params, make_optimizer(cfg).init(params), shuffle_key, hparams
  )


def update(
  state: TrainState,
  batch: tuple[jax.Array, jax.Array],
  *,
  graphdef: nnx.GraphDef,
  filter: str,
  window_size: int,
  shard_batch: Callable[[Any], Any] = settings.identity,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One AdamW update on a minibatch (pure in `state` and `batch`).

  Args:
    state: the training state; its `hparams` set the optimizer.
    batch: ``(x [batch, seq_len], y [batch])``.
    graphdef, filter, window_size: static settings.
    shard_batch: splits a batch array over a mesh's devices.

  Returns:
    The new state and ``{"loss", "acc"}`` on the batch, before the update.
  """
  x, y = shard_batch(batch[0]), shard_batch(batch[1])
  tx = build_optimizer(filter, window_size, **state.hparams)

  def loss_fn(params):
    logits = nnx.merge(graphdef, params)(x)
    return jnp.mean(bce_with_logits(logits, y)), jnp.mean(correct(logits, y))

  (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return (
    state._replace(params=params, opt_state=opt_state),
    {"loss": loss, "acc": acc},
  )


@functools.lru_cache(maxsize=32)
def make_train_epoch(
  graphdef: nnx.GraphDef,
  filter: str,
  window_size: int,
  steps_per_epoch: int,
  batch_size: int,
  shard_batch: Callable[[Any], Any] = settings.identity,
) -> Callable[..., Any]:
  """The pure epoch ``(state, epoch, data) -> (state, metrics)``:
  :func:`settings.shuffled_epoch` of :func:`update` over the training
  reviews ``data["x"]``, ``data["y"]``. `metrics`: ``train_loss`` and
  ``train_acc``, means over the minibatches, each before its update.
  Cached: equal arguments return the same function (so the harness reuses
  its compilation).
  """
  step = functools.partial(
    update,
    graphdef=graphdef,
    filter=filter,
    window_size=window_size,
    shard_batch=shard_batch,
  )
  return settings.shuffled_epoch(step, steps_per_epoch, batch_size)


def evaluate_params(
  graphdef: nnx.GraphDef,
  params: Any,
  xs: jax.Array,
  ys: jax.Array,
  mask: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """Mean BCE and accuracy on the chunks of :func:`eval_chunks`."""

  def one(batch):
    x, y, m = batch
    logits = nnx.merge(graphdef, params)(x)
    return (
      jnp.sum(bce_with_logits(logits, y) * m),
      jnp.sum(correct(logits, y) * m),
    )

  losses, hits = jax.lax.map(one, (xs, ys, mask))
  n = jnp.sum(mask)
  return losses.sum() / n, hits.sum() / n


@functools.lru_cache(maxsize=32)
def make_evaluate(graphdef: nnx.GraphDef) -> Callable[..., Any]:
  """The pure ``(state, data) -> (state, {"val_loss", "val_acc"})`` on every
  validation review (``data["val"]``: the :func:`eval_chunks`). Cached."""

  def evaluate(state: TrainState, data):
    loss, acc = evaluate_params(graphdef, state.params, *data["val"])
    return state, {"val_loss": loss, "val_acc": acc}

  return evaluate
