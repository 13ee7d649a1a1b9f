"""Tests for grokfast_jax.egalitarian (EGD) against its formula in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import grokfast_jax as gj


def oracle(g, eps=1e-6):
  """``(G G^T)^(-1/2) G`` with the singular values clamped at `eps`, in
  float64, from the eigendecomposition of ``G G^T`` (not an SVD of G)."""
  g = np.asarray(g, np.float64)
  lam, vec = np.linalg.eigh(g @ g.T)
  s = np.sqrt(np.clip(lam, 0.0, None))
  return (vec / np.maximum(s, eps)) @ vec.T @ g


def _close(out, want, rtol=2e-5):
  out = np.asarray(out, np.float64)
  np.testing.assert_allclose(out, want, rtol=rtol,
                             atol=rtol * np.abs(want).max(initial=1.0))


@pytest.mark.usefixtures("strict_dtype_promotion")
@pytest.mark.parametrize("shape", [(5, 9), (9, 5), (6, 6), (194, 64)])
def test_exact_variant_matches_the_formula_under_jit(shape):
  rng = np.random.default_rng(0)
  g = jnp.asarray(rng.normal(size=shape), jnp.float32)
  tx = gj.egalitarian()
  out, state = jax.jit(tx.update)({"w": g}, tx.init({"w": g}))
  assert state == optax.EmptyState()
  assert out["w"].dtype == jnp.float32 and out["w"].shape == shape
  _close(out["w"], oracle(g))
  # Full rank: every singular value of the output is 1 (the polar factor).
  np.testing.assert_allclose(np.linalg.svd(np.asarray(out["w"]))[1], 1.0,
                             rtol=1e-4)


def test_tiny_singular_values_are_clamped_not_blown_up():
  # A signed permutation of a diagonal: its float32 SVD is exact, so the
  # clamping is seen alone (in general float32 rounding puts singular values
  # of ~1e-7 * |G| where G has none, and EGD scales those by s / eps).
  s = np.array([2.0, 0.5, 1e-8, 0.0])
  u = np.eye(6)[[3, 0, 5, 1, 2, 4]] * np.array([1, -1, 1, 1, -1, 1])[:, None]
  v = np.eye(4)[[2, 0, 3, 1]]
  g = (u[:, :4] * s) @ v.T
  out = np.asarray(gj.egalitarian().update(
      {"w": jnp.asarray(g, jnp.float32)}, optax.EmptyState())[0]["w"])
  want = (u[:, :4] * (s / np.maximum(s, 1e-6))) @ v.T
  np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)
  assert np.linalg.svd(out)[1][0] == pytest.approx(1.0, rel=1e-5)
  zero = gj.egalitarian().update({"w": jnp.zeros((3, 4))},
                                 optax.EmptyState())[0]["w"]
  assert np.all(np.asarray(zero) == 0.0)


def test_only_matrices_by_default_and_masks_choose_leaves():
  rng = np.random.default_rng(2)
  g = {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
       "bias": jnp.asarray(rng.normal(size=3), jnp.float32),
       "conv": jnp.asarray(rng.normal(size=(2, 2, 3)), jnp.float32),
       "frozen": None}
  tx = gj.egalitarian()
  out, _ = jax.jit(tx.update)(g, tx.init(g))
  _close(out["kernel"], oracle(g["kernel"]))
  for k in ("bias", "conv"):
    np.testing.assert_array_equal(out[k], g[k])
  assert out["frozen"] is None
  mask = {"kernel": False, "bias": False, "conv": False, "frozen": False}
  out, _ = gj.egalitarian(mask=mask).update(g, optax.EmptyState())
  np.testing.assert_array_equal(out["kernel"], g["kernel"])
  with pytest.raises(ValueError, match=r"\['bias'\] of shape \(3,\) is selected"):
    gj.egalitarian(mask=lambda p: jax.tree.map(lambda x: True, p)).init(
        {k: v for k, v in g.items() if k != "frozen"})


@pytest.mark.parametrize("shape", [(30, 12), (12, 30)])
def test_randomized_variant_of_full_rank_equals_the_exact_one(shape):
  rng = np.random.default_rng(3)
  g = {"w": jnp.asarray(rng.normal(size=shape), jnp.float32)}
  exact = gj.egalitarian().update(g, optax.EmptyState())[0]["w"]
  for rank in (12, 100):  # the rank is capped at min(m, n)
    tx = gj.egalitarian(rank=rank, n_iter=2, seed=5)
    out = jax.jit(tx.update)(g, tx.init(g))[0]["w"]
    np.testing.assert_allclose(out, exact, atol=2e-4)


def test_randomized_variant_whitens_the_top_subspace_only():
  rng = np.random.default_rng(4)
  u, _ = np.linalg.qr(rng.normal(size=(40, 40)))
  v, _ = np.linalg.qr(rng.normal(size=(20, 20)))
  s = np.concatenate([[10.0, 8.0, 6.0], np.full(17, 1e-3)])
  g = (u[:, :20] * s) @ v.T
  tx = gj.egalitarian(rank=3, n_iter=4)
  out = np.asarray(tx.update({"w": jnp.asarray(g, jnp.float32)},
                             optax.EmptyState())[0]["w"])
  want = u[:, :3] @ v[:, :3].T  # whitened on the top 3, zero elsewhere
  np.testing.assert_allclose(out, want, atol=1e-3)


def test_keeps_low_precision_dtypes_and_vmaps_over_seeds():
  rng = np.random.default_rng(5)
  g = jnp.asarray(rng.normal(size=(8, 5)), jnp.bfloat16)
  with jax.numpy_dtype_promotion("strict"):
    out = gj.egalitarian().update({"w": g}, optax.EmptyState())[0]["w"]
  assert out.dtype == jnp.bfloat16
  _close(out.astype(jnp.float32), oracle(g.astype(jnp.float32)), rtol=2e-2)
  batch = jnp.asarray(rng.normal(size=(3, 8, 5)), jnp.float32)
  tx = gj.egalitarian()
  many = jax.jit(jax.vmap(lambda w: tx.update({"w": w},
                                              optax.EmptyState())[0]["w"]))
  for i, out in enumerate(many(batch)):
    _close(out, oracle(batch[i]))


@pytest.mark.parametrize("kwargs, match", [
    ({"eps": 0.0}, r"eps must be a finite number in \(0, inf\)"),
    ({"eps": float("nan")}, "eps must be"),
    ({"rank": 0}, "rank must be an int >= 1"),
    ({"rank": 2.5}, "rank must be an int >= 1"),
    ({"n_iter": -1}, "n_iter must be an int >= 0"),
    ({"seed": 1.5}, "seed must be an int"),
])
def test_bad_settings_are_refused_at_construction(kwargs, match):
  with pytest.raises(ValueError, match=match):
    gj.egalitarian(**kwargs)


def test_sgd_with_egd_steps_every_direction_alike():
  # One step of optax.chain(egalitarian(), sgd(lr)) on a matrix moves it by
  # lr along U V^T, however unequal the gradient's singular values.
  tx = optax.chain(gj.egalitarian(), optax.sgd(0.5))
  w = {"w": jnp.zeros((2, 2))}
  g = {"w": jnp.array([[100.0, 0.0], [0.0, 0.01]])}
  updates, _ = jax.jit(tx.update)(g, tx.init(w), w)
  np.testing.assert_allclose(updates["w"], [[-0.5, 0.0], [0.0, -0.5]],
                             rtol=1e-5)
