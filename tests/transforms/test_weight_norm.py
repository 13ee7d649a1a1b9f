"""Tests for grokfast_jax.constrain_weight_norm and project_weight_norm."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import grokfast_jax as gj


def norms(x, axis):
  return np.linalg.norm(np.asarray(x, np.float64), axis=axis, keepdims=True)


def _params(rng, dtype=jnp.float32):
  return {"w": jnp.asarray(rng.normal(size=(4, 3)), dtype),
          "conv": jnp.asarray(rng.normal(size=(2, 2, 3)), dtype),
          "frozen": None}


def _train(tx, params, steps, rng, scale=1.0):
  """`steps` jitted steps of random updates of size `scale` through `tx`."""
  state = tx.init(params)

  @jax.jit
  def step(params, state, g):
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state, updates

  history = []
  for _ in range(steps):
    g = jax.tree.map(
        lambda p: jnp.asarray(rng.normal(size=p.shape) * scale, p.dtype),
        params)
    params, state, updates = step(params, state, g)
    history.append((params, updates, g))
  return history, state


@pytest.mark.usefixtures("strict_dtype_promotion")
@pytest.mark.parametrize("axis", [0, -1, (0, 1), None])
def test_norms_stay_in_the_ball_after_apply_updates(axis):
  rng = np.random.default_rng(0)
  max_norm = 1.5
  params = gj.project_weight_norm(_params(rng), max_norm, axis=axis)
  for leaf in jax.tree.leaves(params):
    assert np.all(norms(leaf, axis) <= max_norm * (1 + 1e-6))
  history, _ = _train(gj.constrain_weight_norm(max_norm, axis=axis), params,
                      10, rng)
  for p, _, _ in history:
    assert p["frozen"] is None
    for leaf in jax.tree.leaves(p):
      assert np.all(norms(leaf, axis) <= max_norm * (1 + 1e-6))
    # The ball's boundary is reached: the constraint is active.
  assert any(np.any(norms(leaf, axis) > max_norm * (1 - 1e-5))
             for leaf in jax.tree.leaves(history[-1][0]))


@pytest.mark.usefixtures("strict_dtype_promotion")
def test_updates_that_stay_inside_are_returned_bitwise():
  rng = np.random.default_rng(1)
  params = {"w": jnp.asarray(rng.normal(size=(5, 4)) * 0.1, jnp.float32)}
  u = {"w": jnp.asarray(rng.normal(size=(5, 4)) * 0.01, jnp.float32)}
  # Push column 0 outside, leave the rest inside.
  u["w"] = u["w"].at[:, 0].add(10.0)
  tx = gj.constrain_weight_norm(1.0, axis=0)
  out, _ = jax.jit(tx.update)(u, tx.init(params), params)
  np.testing.assert_array_equal(out["w"][:, 1:], u["w"][:, 1:])
  assert not np.array_equal(out["w"][:, 0], u["w"][:, 0])
  new = optax.apply_updates(params, out)["w"]
  np.testing.assert_allclose(np.linalg.norm(new[:, 0]), 1.0, rtol=1e-6)
  # Its direction is that of p + u.
  want = np.asarray(params["w"] + u["w"])[:, 0]
  np.testing.assert_allclose(new[:, 0], want / np.linalg.norm(want),
                             rtol=1e-5)


def test_max_norm_schedule_and_inject_hyperparams():
  rng = np.random.default_rng(2)
  sched = optax.linear_schedule(2.0, 0.5, transition_steps=8)
  params = gj.project_weight_norm(_params(rng), 2.0, axis=None)
  history, _ = _train(gj.constrain_weight_norm(sched, axis=None), params, 10,
                      rng)
  for t, (p, _, _) in enumerate(history):
    for leaf in jax.tree.leaves(p):
      assert norms(leaf, None).item() <= float(sched(t)) * (1 + 1e-6)
  # inject_hyperparams: max_norm changed at run time through the state.
  inj = optax.inject_hyperparams(gj.constrain_weight_norm,
                                 static_args=("axis",))(max_norm=2.0,
                                                        axis=None)
  state = inj.init(params)
  state.hyperparams["max_norm"] = jnp.asarray(0.25)
  u = jax.tree.map(jnp.zeros_like, params)
  out, state = jax.jit(inj.update)(u, state, params)
  new = optax.apply_updates(params, out)
  for leaf in jax.tree.leaves(new):
    assert norms(leaf, None).item() == pytest.approx(0.25, rel=1e-6)


def test_masked_skips_biases_and_vectors():
  rng = np.random.default_rng(3)
  params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(4, 3)) * 3,
                                            jnp.float32),
                      "bias": jnp.asarray(rng.normal(size=(3,)) * 3,
                                          jnp.float32)},
            "scale": jnp.asarray(5.0)}
  tx = optax.chain(
      optax.sgd(1.0),
      optax.masked(gj.constrain_weight_norm(1.0, axis=0),
                   lambda ps: jax.tree.map(lambda p: p.ndim >= 2, ps)))
  history, _ = _train(tx, params, 5, rng)
  for p, u, g in history:
    assert np.all(norms(p["dense"]["kernel"], 0) <= 1 + 1e-6)
    np.testing.assert_array_equal(u["dense"]["bias"], -g["dense"]["bias"])
    np.testing.assert_array_equal(u["scale"], -g["scale"])
  # Unmasked, axis=0 does not fit the scalar leaf: the error names it.
  tx = gj.constrain_weight_norm(1.0, axis=0)
  with pytest.raises(ValueError, match=r"\['scale'\].*ndim 0.*optax.masked"):
    tx.init(params)
  with pytest.raises(ValueError, match=r"\['dense'\]\['bias'\]"):
    gj.constrain_weight_norm(1.0, axis=(0, 1)).init(params)


def test_project_weight_norm_with_a_mask_and_dtypes():
  params = {"w": jnp.full((2, 2), 3.0, jnp.bfloat16), "b": jnp.full(2, 3.0),
            "none": None}
  out = gj.project_weight_norm(params, 1.0, axis=0,
                               mask={"w": True, "b": False, "none": False})
  assert out["w"].dtype == jnp.bfloat16 and out["none"] is None
  np.testing.assert_allclose(norms(out["w"], 0), 1.0, rtol=1e-2)
  np.testing.assert_array_equal(out["b"], params["b"])
  inside = {"w": jnp.full((2, 2), 0.1)}
  chex.assert_trees_all_equal(
      gj.project_weight_norm(inside, 1.0, axis=0), inside)


@pytest.mark.usefixtures("strict_dtype_promotion")
def test_bf16_params_and_updates():
  rng = np.random.default_rng(4)
  params = gj.project_weight_norm(_params(rng, jnp.bfloat16), 1.0, axis=0)
  history, _ = _train(gj.constrain_weight_norm(1.0, axis=0), params, 5, rng)
  for p, u, _ in history:
    chex.assert_trees_all_equal_dtypes(p, params)
    chex.assert_trees_all_equal_dtypes(u, params)
    for leaf in jax.tree.leaves(p):  # bf16 rounding of p + u: 2**-7 relative
      assert np.all(norms(leaf, 0) <= 1.0 + 2**-7)
  # Projected onto the bound, not shrunk inside it.
  last = jax.tree.leaves(history[-1][0])
  assert any(np.any(norms(leaf, 0) > 1.0 - 2**-7) for leaf in last)


def test_multisteps_and_apply_if_finite():
  rng = np.random.default_rng(5)
  params = gj.project_weight_norm(_params(rng), 1.0, axis=-1)
  tx = optax.apply_if_finite(optax.MultiSteps(
      optax.chain(optax.sgd(1.0), gj.constrain_weight_norm(1.0, axis=-1)),
      every_k_schedule=2), max_consecutive_errors=3)
  history, state = _train(tx, params, 6, rng)
  for p, _, _ in history:
    for leaf in jax.tree.leaves(p):
      assert np.all(norms(leaf, -1) <= 1.0 + 1e-6)
  # MultiSteps: no update while accumulating, one every second step.
  assert all(not np.any(u["w"]) for _, u, _ in history[0::2])
  assert all(np.any(u["w"]) for _, u, _ in history[1::2])
  # Projected onto the bound, not shrunk inside it.
  last = jax.tree.leaves(history[-1][0])
  assert any(np.any(norms(leaf, -1) > 1.0 - 1e-5) for leaf in last)
  assert int(state.total_notfinite) == 0


def test_needs_params_and_bad_arguments():
  tx = gj.constrain_weight_norm(1.0, axis=0)
  with pytest.raises(ValueError, match=r"needs the params.*tx.update\("):
    tx.update({"w": jnp.ones((2, 2))}, tx.init({"w": jnp.ones((2, 2))}))
  for bad in (0.0, -1.0, float("inf"), float("nan")):
    with pytest.raises(ValueError, match=r"max_norm must be a finite number "
                       r"in \(0, inf\)"):
      gj.constrain_weight_norm(bad, axis=0)
  for bad_axis in (1.5, "0", (0, None), True):
    with pytest.raises(ValueError, match="axis must be None, an int or a "
                       "tuple of ints"):
      gj.constrain_weight_norm(1.0, axis=bad_axis)
  with pytest.raises(ValueError, match=r"\['w'\] of shape \(2, 2\)"):
    gj.constrain_weight_norm(1.0, axis=2).init({"w": jnp.ones((2, 2))})
  with pytest.raises(ValueError, match=r"axis=\(0, -2\) does not fit"):
    gj.constrain_weight_norm(1.0, axis=(0, -2)).init({"w": jnp.ones((2, 2))})
