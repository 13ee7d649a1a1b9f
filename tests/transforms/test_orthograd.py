"""Tests for grokfast_jax.orthograd (⊥Grad) against a NumPy statement."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import grokfast_jax as gj
from tests import helpers


def oracle(g, w, eps=1e-30):
  """⊥Grad of one leaf, in float64, as the reference implementation."""
  g = np.asarray(g, np.float64).ravel()
  w = np.asarray(w, np.float64).ravel()
  perp = g - (w @ g) / (w @ w + eps) * w
  return perp * np.linalg.norm(g) / (np.linalg.norm(perp) + eps)


def _tree(rng, dtype=np.float32):
  """A params-like tree without scalar leaves (where g is always parallel to
  w and ⊥Grad rescales rounding noise, in the reference too)."""
  tree = helpers.tree_like(rng, dtype)
  tree["list"][1] = jnp.asarray(rng.normal(size=(2, 1, 3)), dtype)
  return tree


def _check_tree(out, grads, params, rtol=1e-5):
  for o, g, w in zip(jax.tree.leaves(out), jax.tree.leaves(grads),
                     jax.tree.leaves(params)):
    assert o.shape == g.shape and o.dtype == g.dtype
    want = oracle(g, w).reshape(g.shape)
    np.testing.assert_allclose(np.asarray(o, np.float64), want, rtol=rtol,
                               atol=rtol * (1 + np.abs(want).max(initial=0)))


@pytest.mark.usefixtures("strict_dtype_promotion")
def test_matches_the_oracle_is_orthogonal_and_keeps_the_norm():
  rng = np.random.default_rng(0)
  params = _tree(rng)
  grads = _tree(rng)
  tx = gj.orthograd()
  state = tx.init(params)
  assert state == optax.EmptyState()
  out, state = jax.jit(tx.update)(grads, state, params)
  assert out["frozen"] is None
  _check_tree(out, grads, params)
  for o, g, w in zip(jax.tree.leaves(out), jax.tree.leaves(grads),
                     jax.tree.leaves(params)):
    o, g, w = (np.asarray(x, np.float64).ravel() for x in (o, g, w))
    assert abs(o @ w) <= 1e-5 * np.linalg.norm(o) * np.linalg.norm(w)
    assert np.linalg.norm(o) == pytest.approx(np.linalg.norm(g), rel=1e-5)


@pytest.mark.usefixtures("strict_dtype_promotion")
def test_zero_weights_and_zero_gradients():
  params = {"zero_w": jnp.zeros((2, 3)), "w": jnp.ones(3)}
  grads = {"zero_w": jnp.arange(6.0).reshape(2, 3), "w": jnp.zeros(3)}
  out, _ = jax.jit(gj.orthograd().update)(grads, optax.EmptyState(), params)
  np.testing.assert_allclose(out["zero_w"], grads["zero_w"], rtol=1e-6)
  np.testing.assert_array_equal(out["w"], np.zeros(3))
  # A gradient parallel to the weights: nothing is left.
  out, _ = gj.orthograd().update({"w": jnp.full(3, 2.0)}, optax.EmptyState(),
                                 {"w": jnp.ones(3)})
  np.testing.assert_allclose(out["w"], np.zeros(3), atol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_a_scalar_leaf_has_no_orthogonal_part(jit):
  # g is parallel to w: g_perp is exactly 0 (the reference's formula leaves
  # rounding noise, rescaled to +-|g| or 0 by the compiler's whim).
  update = gj.orthograd().update
  update = jax.jit(update) if jit else update
  for w, g in ((-1.7, 0.3), (3.3, -0.2), (2.0, 1.0), (0.5, 0.3)):
    out, _ = update({"s": jnp.asarray(g), "v": jnp.asarray([g])},
                    optax.EmptyState(),
                    {"s": jnp.asarray(w), "v": jnp.asarray([w])})
    assert float(out["s"]) == 0.0 and float(out["v"][0]) == 0.0, (w, g)
  # A zero weight has no direction to remove: the gradient passes.
  out, _ = update({"s": jnp.asarray(0.3)}, optax.EmptyState(),
                  {"s": jnp.asarray(0.0)})
  assert float(out["s"]) == pytest.approx(0.3, rel=1e-6)


@pytest.mark.usefixtures("strict_dtype_promotion")
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_computes_in_f32(dtype):
  rng = np.random.default_rng(1)
  params = _tree(rng, dtype)
  grads = _tree(rng, dtype)
  out, _ = jax.jit(gj.orthograd().update)(grads, optax.EmptyState(), params)
  chex.assert_trees_all_equal_dtypes(out, grads)
  _check_tree(out, grads, params, rtol=1e-2)


def test_needs_params():
  with pytest.raises(ValueError, match=r"needs the params.*tx.update\(grads, "
                     r"state, params\)"):
    gj.orthograd().update({"w": jnp.ones(2)}, optax.EmptyState())


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_eps(eps):
  with pytest.raises(ValueError, match=r"eps must be a finite number in \(0, "):
    gj.orthograd(eps=eps)


def test_in_a_chain_with_wrappers_and_inject_hyperparams():
  rng = np.random.default_rng(2)
  params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(2,)), jnp.float32)}
  grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape),
                                              p.dtype), params)
           for _ in range(6)]
  # masked: only "w" is projected.
  tx = optax.masked(gj.orthograd(), {"w": True, "b": False})
  out, _ = jax.jit(tx.update)(grads[0], tx.init(params), params)
  np.testing.assert_allclose(out["w"], oracle(grads[0]["w"], params["w"])
                             .reshape(3, 2), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(out["b"], grads[0]["b"])
  # inject_hyperparams (eps becomes a traced hyperparameter).
  inj = optax.inject_hyperparams(gj.orthograd)(eps=1e-30)
  out, state = jax.jit(inj.update)(grads[0], inj.init(params), params)
  _check_tree(out, grads[0], params)
  assert set(state.hyperparams) == {"eps"}
  # MultiSteps (k = 2) and apply_if_finite pass the params through.
  tx = optax.apply_if_finite(
      optax.MultiSteps(gj.orthograd(), every_k_schedule=2), 3)
  outs, _ = helpers.run_jitted(tx, params, grads)
  for i in (1, 3, 5):
    mean = jax.tree.map(lambda a, b: (a + b) / 2, grads[i - 1], grads[i])
    _check_tree(outs[i], mean, params)
