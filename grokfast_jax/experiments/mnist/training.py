"""The pure pieces of one MNIST run, as the experiment harness trains it.

:func:`make_update` is one AdamW (behind the Grokfast filter) update of the
MLP on one minibatch; :func:`make_train_epoch` scans it over a reshuffled
epoch of the training subset (:func:`settings.shuffled_epoch`);
:func:`make_evaluate` computes the MSE and accuracy on the whole training
subset and the whole test set. :func:`build` puts them together into the
:class:`~grokfast_jax.experiments.harness.Program` of one run. The factories
are cached, so runs of equal shapes and settings share one compilation.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from grokfast_jax.experiments import harness, settings
from grokfast_jax.experiments.mnist import config as config_lib
from grokfast_jax.experiments.mnist import data as data_lib
from grokfast_jax.experiments.mnist.model import MLP

NUM_CLASSES = 10
EVAL_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")

TrainState = settings.TrainState
make_optimizer = settings.make_optimizer
# ``make_train_epoch(update, steps_per_epoch, batch_size)``: one epoch of
# `update` over reshuffled minibatches of data["x_train"], data["y_train"].
make_train_epoch = functools.partial(
  settings.shuffled_epoch, keys=("x_train", "y_train")
)


def mse_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean squared error against one-hot targets, averaged over all entries."""
  targets = jax.nn.one_hot(labels, NUM_CLASSES, dtype=logits.dtype)
  return jnp.mean((logits - targets) ** 2)


@functools.lru_cache(maxsize=32)
def make_update(
  graphdef: nnx.GraphDef,
  tx: optax.GradientTransformation,
  shard_batch: Callable[[Any], Any] = settings.identity,
) -> Callable[..., Any]:
  """The pure update of one minibatch.

  Args:
    graphdef: the model's graph definition (from `nnx.split`).
    tx: the optimizer.
    shard_batch: splits a batch array over the devices
      (:attr:`harness.Context.shard_batch`; identity on one device).

  Returns:
    ``update(state, (x, y)) -> (state, {})``: the gradient of
    :func:`mse_loss` at ``state.params``, through `tx`. Cached: equal
    arguments return the same function.
  """

  def loss_fn(params, x, y):
    return mse_loss(nnx.merge(graphdef, params)(x), y)

  def update(state: TrainState, batch) -> tuple[TrainState, dict[str, Any]]:
    x, y = batch
    x, y = shard_batch(x), shard_batch(y)
    grads = jax.grad(loss_fn)(state.params, x, y)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state._replace(params=params, opt_state=opt_state), {}

  return update


def metrics(
  graphdef: nnx.GraphDef, params: nnx.State, x: jax.Array, y: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """MSE and accuracy of the model ``nnx.merge(graphdef, params)`` on (x, y)."""
  logits = nnx.merge(graphdef, params)(x)
  acc = jnp.mean(jnp.argmax(logits, -1) == y)
  return mse_loss(logits, y), acc


@functools.lru_cache(maxsize=32)
def make_evaluate(graphdef: nnx.GraphDef) -> Callable[..., Any]:
  """``evaluate(state, data) -> (state, metrics)``: :data:`EVAL_KEYS` on the
  whole training subset and the whole test set. Cached by `graphdef`."""

  def evaluate(state: TrainState, data: Mapping[str, jax.Array]):
    train_loss, train_acc = metrics(
      graphdef, state.params, data["x_train"], data["y_train"]
    )
    val_loss, val_acc = metrics(
      graphdef, state.params, data["x_test"], data["y_test"]
    )
    return state, {
      "train_loss": train_loss,
      "train_acc": train_acc,
      "val_loss": val_loss,
      "val_acc": val_acc,
    }

  return evaluate


def entry(epoch_metrics: Any, evals: Mapping[str, float]) -> dict[str, Any]:
  """The task's keys of a history entry: :data:`EVAL_KEYS`."""
  del epoch_metrics  # an epoch reports nothing
  return {k: float(evals[k]) for k in EVAL_KEYS}


def init_state(
  cfg: config_lib.MnistConfig,
  in_features: int,
  ctx: harness.Context = harness.Context(),
) -> tuple[nnx.GraphDef, TrainState]:
  """The model's graph definition and the initial :class:`TrainState`
  (:func:`settings.seed_keys`); the params are placed by `ctx` before the
  optimizer state is made."""
  init_key, shuffle_key = settings.seed_keys(cfg.seed)
  model = MLP(
    in_features,
    cfg.hidden,
    NUM_CLASSES,
    init_scale=cfg.init_scale,
    rngs=nnx.Rngs(params=init_key),
  )
  graphdef, params = nnx.split(model, nnx.Param)
  params = ctx.place_params(params)
  return graphdef, TrainState(
    params, make_optimizer(cfg).init(params), shuffle_key
  )


def build(
  cfg: config_lib.MnistConfig, dataset: data_lib.Dataset, ctx: harness.Context
) -> harness.Program:
  """The :class:`~grokfast_jax.experiments.harness.Program` of one run.

  The first `cfg.train_size` training images are trained on; the whole test
  set is the validation set. Evaluated at step 0 and every `eval_every`
  steps; with `stop_at_target` the run ends at the first evaluation after
  training that reaches 95% test accuracy.
  """
  subset = data_lib.train_subset(dataset, cfg.train_size)
  data = ctx.place_data(
    {
      "x_train": jnp.asarray(subset.x_train),
      "y_train": jnp.asarray(subset.y_train),
      "x_test": jnp.asarray(subset.x_test),
      "y_test": jnp.asarray(subset.y_test),
    }
  )
  graphdef, state = init_state(cfg, subset.x_train.shape[1], ctx)
  spe = cfg.steps_per_epoch
  update = make_update(graphdef, make_optimizer(cfg), ctx.shard_batch)
  return harness.Program(
    state=state,
    data=data,
    train_epoch=make_train_epoch(update, spe, cfg.batch_size),
    evaluate=make_evaluate(graphdef),
    entry=entry,
    total_epochs=cfg.max_steps // spe,
    steps_per_epoch=spe,
    epochs_per_eval=cfg.eval_every // spe,
    evals_per_chunk=1,
    initial_eval=True,
    should_stop=(
      functools.partial(settings.reached, "val_acc", config_lib.THRESHOLD)
      if cfg.stop_at_target
      else None
    ),
    info={"n_params": settings.count_params(state.params)},
  )
