"""The filters in Flax training loops (NNX and Linen) and Orbax checkpoints."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import linen, nnx
from flax.training import train_state

import grokfast_jax as gj

FILTERS = {
    "ema": lambda: gj.grokfast_ema(alpha=0.98, lamb=2.0),
    "ma": lambda: gj.grokfast_ma(window_size=5, lamb=5.0),
}


def _data(seed=0, n=64):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 8)).astype(np.float32)
  y = (x @ rng.normal(size=(8, 1)) + 0.1).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(y)


class NnxMlp(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.l1 = nnx.Linear(8, 16, rngs=rngs)
    self.l2 = nnx.Linear(16, 1, rngs=rngs)

  def __call__(self, x):
    return self.l2(nnx.gelu(self.l1(x)))


@nnx.jit
def nnx_step(model, optimizer, x, y):
  loss, grads = nnx.value_and_grad(
      lambda m: jnp.mean((m(x) - y) ** 2))(model)
  optimizer.update(model, grads)
  return loss


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_nnx_optimizer_loop_trains(name):
  x, y = _data()
  model = NnxMlp(nnx.Rngs(0))
  tx = optax.chain(FILTERS[name](), optax.adamw(3e-3, weight_decay=0.005))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  losses = [float(nnx_step(model, optimizer, x, y)) for _ in range(60)]
  assert losses[-1] < 0.5 * losses[0]
  # The filter state lives inside the NNX optimizer and has advanced.
  filter_state = optimizer.opt_state[0]
  assert int(filter_state.count[...]) == 60


class LinenMlp(linen.Module):

  @linen.compact
  def __call__(self, x):
    return linen.Dense(1)(linen.gelu(linen.Dense(16)(x)))


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_linen_train_state_trains(name):
  x, y = _data(1)
  model = LinenMlp()
  params = model.init(jax.random.key(0), x)["params"]
  tx = optax.chain(FILTERS[name](), optax.adamw(3e-3, weight_decay=0.005))
  state = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                        tx=tx)

  @jax.jit
  def step(state):
    def loss_fn(p):
      return jnp.mean((state.apply_fn({"params": p}, x) - y) ** 2)
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss

  losses = []
  for _ in range(60):
    state, loss = step(state)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0]
  assert int(state.opt_state[0].count) == 60  # the filter ran every step


def _train(params, opt_state, tx, steps, x, y):
  @jax.jit
  def step(params, opt_state):
    grads = jax.grad(lambda p: jnp.mean((x @ p["w"] + p["b"] - y) ** 2))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(steps):
    params, opt_state = step(params, opt_state)
  return params, opt_state


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_orbax_restore_continues_bit_identically(name, tmp_path):
  x, y = _data(2)
  tx = optax.chain(FILTERS[name](), optax.adamw(1e-2, weight_decay=0.005))
  params = {"w": jnp.zeros((8, 1)), "b": jnp.zeros((1,))}

  # Uninterrupted: 20 steps.
  p_ref, s_ref = _train(params, tx.init(params), tx, 20, x, y)

  # Interrupted after 8 steps, saved, restored into a fresh process-like
  # target built from tx.init, then 12 more steps.
  p_mid, s_mid = _train(params, tx.init(params), tx, 8, x, y)
  path = tmp_path / "ckpt"
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, {"params": p_mid, "opt_state": s_mid})
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          {"params": params, "opt_state": tx.init(params)})
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(path, abstract)
  chex.assert_trees_all_equal(restored["opt_state"], s_mid)
  assert type(restored["opt_state"][0]) is type(s_mid[0])
  p_res, s_res = _train(restored["params"], restored["opt_state"], tx, 12, x, y)

  chex.assert_trees_all_equal(p_res, p_ref)
  chex.assert_trees_all_equal(s_res, s_ref)
