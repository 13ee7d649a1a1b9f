"""The pure pieces of one QM9 run, as the experiment harness trains it: the
update of one padded minibatch (:func:`make_update`), the epoch
(:func:`make_train_epoch`), the test MSE after every epoch
(:func:`make_evaluate`) and :func:`build`, the run's
:class:`~grokfast_jax.experiments.harness.Program` (jitted chunks of
`chunk_epochs` epochs).

Per epoch the training loss is the reference's: each minibatch's loss (before
its update) times its size, summed and divided by the training molecules.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grokfast_jax.experiments import harness, settings
from grokfast_jax.experiments.qm9 import config as config_lib
from grokfast_jax.experiments.qm9 import data as data_lib
from grokfast_jax.experiments.qm9.model import (
  GraphBatch,
  Qm9Net,
  full_batch,
  gather_batch,
  masked_mse,
)


class TrainState(NamedTuple):
  """:class:`settings.TrainState` (params, opt_state, key) and
  `min_val_loss`: the lowest test MSE after any epoch so far (+inf before
  the first; non-finite losses are skipped), for `stop_at_target`."""

  params: nnx.State
  opt_state: optax.OptState
  key: jax.Array
  min_val_loss: jax.Array


make_optimizer = settings.make_optimizer


@functools.lru_cache(maxsize=32)
def make_update(
  graphdef: nnx.GraphDef,
  tx: optax.GradientTransformation,
  shard_batch: Callable[[Any], Any] = settings.identity,
) -> Callable[..., Any]:
  """The pure update of one padded minibatch.

  Args:
    graphdef: the model's graph definition (from `nnx.split`).
    tx: the optimizer.
    shard_batch: splits a batch array over the devices
      (:attr:`harness.Context.shard_batch`; identity on one device); every
      array of the :class:`GraphBatch` but its edge table is split.

  Returns:
    ``update(state, batch) -> (state, {"loss", "graphs"})``: the MSE of
    `batch`'s real graphs at ``state.params`` (before the update) and their
    number; the gradient goes through `tx`. Cached: equal arguments return
    the same function.
  """

  def loss_fn(params, batch: GraphBatch):
    return masked_mse(nnx.merge(graphdef, params)(batch), batch)

  def update(state: TrainState, batch: GraphBatch):
    batch = GraphBatch(
      *(
        a if name == "edge_table" else shard_batch(a)
        for name, a in zip(GraphBatch._fields, batch)
      )
    )
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return (
      state._replace(params=params, opt_state=opt_state),
      {"loss": loss, "graphs": jnp.sum(batch.graph_mask)},
    )

  return update


@functools.lru_cache(maxsize=32)
def make_train_epoch(
  update: Callable, n_train: int, batch_size: int, buffers: tuple[int, int]
) -> Callable[..., Any]:
  """One epoch of `update`: ``train_epoch(state, epoch, data) -> (state,
  {"train_loss"})``, as :func:`settings.shuffled_epoch` but over the
  `n_train` molecules of ``data["train"]`` (a :class:`data_lib.PackedGraphs`)
  with the last, smaller minibatch kept (its empty slots padding), each
  gathered into `buffers` (``(max_nodes, max_edges)``). Cached.
  """
  updates = -(-n_train // batch_size)
  padding = updates * batch_size - n_train

  def step(carry, mol_idx):
    state, train = carry
    state, metrics = update(state, gather_batch(train, mol_idx, *buffers))
    return (state, train), metrics["loss"] * metrics["graphs"]

  def train_epoch(state: TrainState, epoch, data: Mapping[str, Any]):
    del epoch  # the order comes from the carried key
    key, sub = jax.random.split(state.key)
    order = jax.random.permutation(sub, n_train).astype(jnp.int32)
    order = jnp.concatenate([order, jnp.full((padding,), -1, jnp.int32)])
    (state, _), weighted = jax.lax.scan(
      step,
      (state._replace(key=key), data["train"]),
      order.reshape(updates, batch_size),
    )
    return state, {"train_loss": jnp.sum(weighted) / n_train}

  return train_epoch


@functools.lru_cache(maxsize=32)
def make_evaluate(graphdef: nnx.GraphDef) -> Callable[..., Any]:
  """``evaluate(state, data) -> (state, {"val_loss", "min_val_loss"})``: the
  MSE over the test molecules ``data["test"]`` (a :class:`GraphBatch`) and
  the lowest so far (kept in the state). Cached by `graphdef`."""

  def evaluate(state: TrainState, data: Mapping[str, Any]):
    test = data["test"]
    val = masked_mse(nnx.merge(graphdef, state.params)(test), test)
    lowest = jnp.where(val < state.min_val_loss, val, state.min_val_loss)
    return (
      state._replace(min_val_loss=lowest),
      {"val_loss": val, "min_val_loss": lowest},
    )

  return evaluate


@functools.partial(jax.jit, static_argnums=0)
def evaluate_both(
  graphdef: nnx.GraphDef, params: nnx.State, train: GraphBatch, test: GraphBatch
) -> jax.Array:
  """MSEs of the model on two batches (one compilation for both)."""
  return jnp.stack(
    [masked_mse(nnx.merge(graphdef, params)(b), b) for b in (train, test)]
  )


def entry(
  epoch_metrics: Mapping[str, Any], evals: Mapping[str, float]
) -> dict[str, Any]:
  """The task's keys of a history entry: the epoch's training loss, the test
  MSE after it and the lowest test MSE so far."""
  return {
    "train_loss": float(epoch_metrics["train_loss"][-1]),
    "val_loss": evals["val_loss"],
    "min_val_loss": evals["min_val_loss"],
  }


def history_epochs(epochs: int, log_every: int) -> list[int]:
  """Epochs kept in the history: 0, log-spaced ones up to `log_every`, every
  `log_every`-th, and the last.

  Example:
    >>> history_epochs(1000, 200)
    [0, 1, 2, 3, 5, 6, 9, 12, 17, 23, 31, 42, 57, 79, 107, 146, 200, 400, 600, 800, 1000]
  """
  early = np.unique(np.round(np.geomspace(1, log_every, 18)).astype(int))
  kept = {0, epochs, *range(log_every, epochs + 1, log_every)}
  kept.update(int(e) for e in early if e <= epochs)
  return sorted(kept)


def init_params(init_scale: float, seed: int) -> tuple[nnx.GraphDef, Any]:
  """The graphdef and initial params of :class:`Qm9Net`, from the first of
  :func:`settings.seed_keys`, drawn by one function compiled without
  optimization (:func:`settings.compile_o0`, cached per `init_scale`).

  Returns:
    ``(graphdef, params)`` as from ``nnx.split(model, nnx.Param)``.
  """
  graphdef, initializer = _param_initializer(init_scale)
  return graphdef, initializer(seed)[0]


def init_state(
  cfg: config_lib.Qm9Config,
  ctx: harness.Context = harness.Context(),
) -> tuple[nnx.GraphDef, TrainState]:
  """The model's graphdef and the initial :class:`TrainState` (seeded by
  `cfg.seed`); the params are placed by `ctx` before the optimizer state is
  made."""
  graphdef, initializer = _param_initializer(cfg.init_scale)
  params, shuffle_key = initializer(cfg.seed)
  tx = make_optimizer(cfg)
  if ctx.mesh is None:
    opt_state = _opt_initializer(tx, params)(params)
  else:
    params = ctx.place_params(params)
    opt_state = tx.init(params)
  return graphdef, TrainState(
    params, opt_state, shuffle_key, jnp.asarray(jnp.inf, jnp.float32)
  )


@functools.lru_cache(maxsize=8)
def _param_initializer(init_scale: float):
  def create(key) -> Qm9Net:
    return Qm9Net(init_scale=init_scale, rngs=nnx.Rngs(params=key))

  def initial(seed):
    init_key, shuffle_key = settings.seed_keys(seed)
    return nnx.split(create(init_key), nnx.Param)[1], shuffle_key

  graphdef, _ = nnx.split(
    nnx.eval_shape(lambda: create(jax.random.key(0))), nnx.Param
  )
  return graphdef, settings.compile_o0(initial, 0)


_OPT_INITIALIZERS: dict[Any, Any] = {}


def _opt_initializer(tx: optax.GradientTransformation, params):
  # `make_optimizer` returns one object per setting.
  if tx not in _OPT_INITIALIZERS:
    _OPT_INITIALIZERS[tx] = settings.compile_o0(tx.init, params)
  return _OPT_INITIALIZERS[tx]


def _reached_target(target: float, history: list[dict[str, Any]]) -> bool:
  """Whether the lowest test MSE so far (the newest entry's) is at most
  `target`."""
  return history[-1].get("min_val_loss", np.inf) <= target


def build(
  cfg: config_lib.Qm9Config,
  molecules: Sequence[data_lib.Molecule],
  ctx: harness.Context,
) -> harness.Program:
  """The :class:`~grokfast_jax.experiments.harness.Program` of one run.

  The `cfg.size` molecules are split 50 / 50 by `cfg.seed`; step 0 holds the
  initial model's MSE on the training and test molecules. The history keeps
  the epochs of :func:`history_epochs` (and, with `stop_at_target`, each
  chunk's last, after which the run may end); every epoch's losses go to
  the curves.

  Raises:
    ValueError: the number of molecules is not `cfg.size`.
  """
  if len(molecules) != cfg.size:
    raise ValueError(
      f"size is {cfg.size} but {len(molecules)} molecules were given"
    )
  train_mols, test_mols = data_lib.split(molecules, cfg.seed)
  data = ctx.place_data(
    jax.tree.map(
      jnp.asarray,
      {
        "train": data_lib.pack(train_mols),
        "test": full_batch(test_mols),
        "train_all": full_batch(train_mols),
      },
    )
  )
  # Buffers that fit any minibatch, the last, smaller one included: one
  # compiled step serves them all (giving the last batch smaller buffers
  # saves about 15% of the run time but doubles the compilation time).
  buffers = data_lib.batch_capacity(train_mols, cfg.batch_size)
  graphdef, state = init_state(cfg, ctx)
  update = make_update(graphdef, make_optimizer(cfg), ctx.shard_batch)

  def initial_entry(state: TrainState, data: Mapping[str, Any]):
    losses = evaluate_both(
      graphdef, state.params, data["train_all"], data["test"]
    )
    return {"train_loss": float(losses[0]), "val_loss": float(losses[1])}

  kept = set(history_epochs(cfg.epochs, cfg.log_every))
  if cfg.stop_at_target:
    kept.update(range(cfg.chunk_epochs, cfg.epochs, cfg.chunk_epochs))
  return harness.Program(
    state=state,
    data=data,
    train_epoch=make_train_epoch(update, cfg.n_train, cfg.batch_size, buffers),
    evaluate=make_evaluate(graphdef),
    entry=entry,
    total_epochs=cfg.epochs,
    steps_per_epoch=cfg.updates_per_epoch,
    epochs_per_eval=1,
    evals_per_chunk=cfg.chunk_epochs,
    initial_eval=True,
    initial_entry=initial_entry,
    should_stop=(
      functools.partial(_reached_target, cfg.target_mse)
      if cfg.stop_at_target
      else None
    ),
    keep=kept.__contains__,
    curve_keys=("train_loss", "val_loss", "seconds"),
    info={
      "n_params": settings.count_params(state.params),
      "train_gdb_ids": [m.gdb_id for m in train_mols],
      "test_gdb_ids": [m.gdb_id for m in test_mols],
    },
  )
