"""Non-finite gradients: one NaN or Inf must not poison the filter state.

Policy (docs/guides/checkpoints_devices.md, "Non-finite gradients"): wrap the whole chain, filter
included, in `optax.apply_if_finite`. A step whose gradient holds a NaN or Inf
is then skipped entirely: params, filter state and optimizer state stay as
they were, and training continues as if the step had not happened.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import grokfast_jax as gj

FILTERS = {"ema": lambda: gj.grokfast_ema(0.9, 2.0),
           "ma": lambda: gj.grokfast_ma(5, 2.0)}
BAD = {4: jnp.nan, 11: jnp.inf, 12: -jnp.inf, 20: jnp.nan}


def _grads(steps=30, seed=0):
  rng = np.random.default_rng(seed)
  return [{"w": jnp.asarray(rng.normal(size=(3, 2)) + 0.3, jnp.float32),
           "b": jnp.asarray(rng.normal(size=(2,)), jnp.float32)}
          for _ in range(steps)]


def _poison(g, value):
  return {"w": g["w"].at[1, 0].set(value), "b": g["b"]}


def _run(tx, grads):
  params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
  state = tx.init(params)

  @jax.jit
  def step(params, state, g):
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state

  history = []
  for g in grads:
    params, state = step(params, state, g)
    history.append(params)
  return params, state, history


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_unprotected_filter_state_is_poisoned_for_good(name):
  """Why a policy is needed: the NaN stays in the state from then on."""
  grads = _grads()
  grads[4] = _poison(grads[4], jnp.nan)
  tx = optax.chain(FILTERS[name](), optax.adamw(1e-2))
  params, _, _ = _run(tx, grads)
  assert np.isnan(np.asarray(params["w"])).any()


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_apply_if_finite_skips_bad_steps_exactly(name):
  grads = _grads()
  bad = [(_poison(g, BAD[i]) if i in BAD else g) for i, g in enumerate(grads)]
  clean = [g for i, g in enumerate(grads) if i not in BAD]
  make = lambda: optax.apply_if_finite(
      optax.chain(FILTERS[name](), optax.adamw(1e-2, weight_decay=0.01)),
      max_consecutive_errors=3)

  p_bad, s_bad, hist_bad = _run(make(), bad)
  p_clean, s_clean, hist_clean = _run(make(), clean)

  # Same params and same inner state (filter and Adam) as a run that never
  # saw the bad steps, bit for bit.
  chex.assert_trees_all_equal(p_bad, p_clean)
  chex.assert_trees_all_equal(s_bad.inner_state, s_clean.inner_state)
  assert int(s_bad.total_notfinite) == len(BAD)
  # Every later step's params match too, not only the last.
  kept = [h for i, h in enumerate(hist_bad) if i not in BAD]
  chex.assert_trees_all_equal(kept, hist_clean)
  for leaf in jax.tree.leaves(s_bad.inner_state[0]):
    assert np.isfinite(np.asarray(leaf, np.float64)).all()
