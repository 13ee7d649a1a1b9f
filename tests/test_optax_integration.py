"""The filters inside Optax's wrappers: masked, partition, MultiSteps, ..."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import grokfast_jax as gj
from tests import helpers
from tests import reference as ref


def _grads(steps, shape=(3,), seed=0):
  rng = np.random.default_rng(seed)
  return [jnp.asarray(rng.normal(size=shape) + 0.5, jnp.float32)
          for _ in range(steps)]


def _np(xs):
  return [np.asarray(x, np.float64) for x in xs]


def test_masked_filters_only_the_masked_leaves():
  grads_a, grads_b = _grads(40, seed=1), _grads(40, seed=2)
  trees = [{"a": a, "b": b} for a, b in zip(grads_a, grads_b)]
  tx = optax.masked(gj.grokfast_ema(0.9, 2.0), {"a": True, "b": False})
  outs, _ = helpers.run_jitted(tx, trees[0], trees)
  np.testing.assert_allclose(np.stack([o["a"] for o in outs]),
                             np.stack(ref.ema(_np(grads_a), 0.9, 2.0)),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.stack([o["b"] for o in outs]),
                                np.stack(grads_b))


def test_partition_gives_per_layer_settings():
  names = ["ema", "ma", "plain"]
  seqs = {n: _grads(60, seed=i) for i, n in enumerate(names)}
  trees = [{n: seqs[n][t] for n in names} for t in range(60)]
  tx = optax.partition(
      {"ema": gj.grokfast_ema(0.8, 1.0), "ma": gj.grokfast_ma(5, 2.0),
       "plain": optax.identity()},
      {n: n for n in names})
  outs, _ = helpers.run_jitted(tx, trees[0], trees)
  got = {n: np.stack([o[n] for o in outs]) for n in names}
  np.testing.assert_allclose(got["ema"],
                             np.stack(ref.ema(_np(seqs["ema"]), 0.8, 1.0)),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got["ma"],
                             np.stack(ref.ma(_np(seqs["ma"]), 5, 2.0)),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got["plain"], np.stack(seqs["plain"]))


@pytest.mark.parametrize("make", [lambda: gj.grokfast_ema(0.9, 2.0),
                                  lambda: gj.grokfast_ma(4, 2.0)])
def test_multisteps_filters_the_accumulated_gradient(make):
  k = 3
  micro = _grads(30)
  tx = optax.MultiSteps(optax.chain(make(), optax.sgd(1.0)), every_k_schedule=k)
  params = jnp.zeros(3)
  state = tx.init(params)
  update = jax.jit(tx.update)
  emitted = []
  for i, g in enumerate(micro):
    out, state = update(g, state, params)
    if (i + 1) % k == 0:
      emitted.append(-np.asarray(out, np.float64))  # sgd(1) negates
    else:
      np.testing.assert_array_equal(out, np.zeros(3))
  means = [np.mean(_np(micro[i:i + k]), axis=0) for i in range(0, 30, k)]
  is_ema = isinstance(state.inner_opt_state[0], gj.GrokfastEmaState)
  want = ref.ema(means, 0.9, 2.0) if is_ema else ref.ma(means, 4, 2.0)
  np.testing.assert_allclose(np.stack(emitted), np.stack(want), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("make", [lambda: gj.grokfast_ema(0.9, 2.0),
                                  lambda: gj.grokfast_ma(4, 2.0)])
def test_apply_if_finite_skips_a_nan_step_without_poisoning_the_state(make):
  grads = _grads(25)
  bad = 10
  grads_with_nan = list(grads)
  grads_with_nan[bad] = grads[bad].at[1].set(jnp.nan)
  tx = optax.apply_if_finite(make(), max_consecutive_errors=5)
  outs, state = helpers.run_jitted(tx, grads[0], grads_with_nan)
  assert int(state.total_notfinite) == 1
  clean = grads[:bad] + grads[bad + 1:]
  is_ema = isinstance(state.inner_state, gj.GrokfastEmaState)
  want = ref.ema(_np(clean), 0.9, 2.0) if is_ema else ref.ma(_np(clean), 4, 2.0)
  got = np.stack(outs[:bad] + outs[bad + 1:])
  np.testing.assert_allclose(got, np.stack(want), rtol=1e-5, atol=1e-5)
  assert np.all(np.isfinite(jax.tree.leaves(state.inner_state)[1]))


@pytest.mark.parametrize("make", [gj.grokfast_ema, gj.grokfast_ma])
def test_tree_map_params_reaches_the_param_shaped_state(make):
  params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
  tx = make()
  state = tx.init(params)
  _, state = jax.jit(tx.update)(params, state)
  mapped = optax.tree_utils.tree_map_params(
      tx, lambda p: p.astype(jnp.bfloat16), state)
  assert mapped.count.dtype == jnp.int32 and int(mapped.count) == 1
  if make is gj.grokfast_ema:
    chex.assert_trees_all_equal_dtypes(mapped.mu, {"w": jnp.zeros((), jnp.bfloat16),
                                                   "b": jnp.zeros((), jnp.bfloat16)})
  else:
    for field in ("window", "window_sum", "cycle_sum"):
      for leaf in jax.tree.leaves(getattr(mapped, field)):
        assert leaf.dtype == jnp.bfloat16


@pytest.mark.parametrize("make", [gj.grokfast_ema, lambda: gj.grokfast_ma(7)])
def test_donated_training_step_matches_an_undonated_one(make):
  tx = optax.chain(make(), optax.adamw(1e-2))
  params0 = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4)), jnp.float32)

  def step(params, state):
    loss = lambda p: jnp.mean((x @ p["w"] + p["b"]) ** 2)
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  plain, donated = jax.jit(step), jax.jit(step, donate_argnums=(0, 1))
  p1, s1 = params0, tx.init(params0)
  p2, s2 = jax.tree.map(jnp.copy, params0), tx.init(params0)
  for _ in range(30):
    p1, s1 = plain(p1, s1)
    p2, s2 = donated(p2, s2)
  chex.assert_trees_all_equal(p1, p2)
  chex.assert_trees_all_equal(s1, s2)


def test_inject_hyperparams_ema_equals_the_plain_transform():
  grads = _grads(40)
  inj = optax.inject_hyperparams(gj.grokfast_ema)(alpha=0.9, lamb=1.5)
  out_inj, st = helpers.run_jitted(inj, grads[0], grads)
  out_plain, _ = helpers.run_jitted(gj.grokfast_ema(0.9, 1.5), grads[0], grads)
  chex.assert_trees_all_close(out_inj, out_plain, rtol=1e-6, atol=1e-6)
  assert set(st.hyperparams) == {"alpha", "lamb"}


@pytest.mark.parametrize("factory,kwargs,static", [
    (gj.grokfast_ema, dict(alpha=0.9, lamb=2.0), ()),
    (gj.grokfast_ma, dict(window_size=4, lamb=2.0), ("window_size",)),
])
def test_inject_hyperparams_values_changed_at_run_time(factory, kwargs, static):
  """Setting lamb to 0 through state.hyperparams turns the filter off."""
  grads = _grads(20)
  tx = optax.inject_hyperparams(factory, static_args=static)(**kwargs)
  state = tx.init(grads[0])
  update = jax.jit(tx.update)
  outs = []
  for i, g in enumerate(grads):
    if i == 10:
      state.hyperparams["lamb"] = jnp.zeros_like(state.hyperparams["lamb"])
    out, state = update(g, state)
    outs.append(out)
  np.testing.assert_array_equal(np.stack(outs[10:]), np.stack(grads[10:]))
  seq = _np(grads)
  lamb = lambda c: kwargs["lamb"] if c < 10 else 0.0
  want = (ref.ema(seq, kwargs["alpha"], lamb) if factory is gj.grokfast_ema
          else ref.ma(seq, kwargs["window_size"], lamb))
  np.testing.assert_allclose(np.stack(outs), np.stack(want), rtol=1e-5,
                             atol=1e-5)


def test_inject_hyperparams_with_schedules():
  grads = _grads(30)
  alpha = optax.linear_schedule(0.5, 0.9, 20)
  tx = optax.inject_hyperparams(gj.grokfast_ema)(alpha=alpha, lamb=2.0)
  outs, _ = helpers.run_jitted(tx, grads[0], grads)
  want = ref.ema(_np(grads), lambda c: float(alpha(c)), 2.0)
  np.testing.assert_allclose(np.stack(outs), np.stack(want), rtol=1e-5,
                             atol=1e-5)


def test_inject_hyperparams_ma_without_static_window_size_says_how():
  tx = optax.inject_hyperparams(gj.grokfast_ma)(window_size=4)
  state = tx.init(jnp.zeros(3))
  with pytest.raises(ValueError, match=r"static_args=\('window_size',\)"):
    jax.jit(tx.update)(jnp.ones(3), state)


@pytest.mark.parametrize("make", [gj.grokfast_ema, gj.grokfast_ma])
def test_full_chain_step_is_compiled_once(make):
  tx = optax.chain(make(), optax.add_decayed_weights(0.01), optax.adam(1e-3))
  params = {"w": jnp.ones((3, 2))}

  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, g):
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  for i in range(15):
    params, state = step(params, state, {"w": jnp.full((3, 2), float(i))})
