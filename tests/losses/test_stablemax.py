"""Tests for grokfast_jax.stablemax_cross_entropy against a float64 oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import grokfast_jax as gj

pytestmark = pytest.mark.usefixtures("strict_dtype_promotion")


def s(x):
  x = np.asarray(x, np.float64)
  return np.where(x >= 0, x + 1, 1 / (1 - np.minimum(x, 0)))


def oracle(logits, labels):
  """-log(s(x_label) / sum_j s(x_j)) in float64, per example."""
  sx = s(logits)
  p = sx / sx.sum(-1, keepdims=True)
  return -np.log(np.take_along_axis(p, labels[..., None], -1)[..., 0])


@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 30.0, 1e6])
def test_matches_the_float64_oracle(magnitude):
  rng = np.random.default_rng(0)
  logits = (rng.normal(size=(2, 8, 10)) * magnitude).astype(np.float32)
  labels = rng.integers(0, 10, size=(2, 8))
  got = jax.jit(gj.stablemax_cross_entropy)(logits, labels)
  want = oracle(logits, labels)
  softmax = optax.losses.softmax_cross_entropy_with_integer_labels(
      jnp.asarray(logits), jnp.asarray(labels))
  assert got.shape == softmax.shape == labels.shape
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_extreme_logits_stay_finite_and_accurate():
  logits = np.array([[1e6, -1e6, 0.0], [-1e6, -1e6, -1e6],
                     [3e37, 0.0, -3e37], [1e-3, -1e-3, 0.0]], np.float32)
  labels = np.array([0, 1, 2, 1])
  got = gj.stablemax_cross_entropy(logits, labels)
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, oracle(logits, labels), rtol=1e-5,
                             atol=1e-6)
  # A confident, correct prediction: a tiny loss, not a rounded 0 or NaN.
  assert 0 < float(got[0]) < 3e-6


def test_gradients_are_finite_and_match_the_oracle():
  rng = np.random.default_rng(1)
  logits = np.concatenate([rng.normal(size=(4, 5)),
                           rng.normal(size=(2, 5)) * 1e6]).astype(np.float32)
  labels = rng.integers(0, 5, size=6)
  grad = jax.jit(jax.grad(
      lambda x: jnp.sum(gj.stablemax_cross_entropy(x, labels))))(logits)
  assert np.all(np.isfinite(grad))
  # Central differences of the float64 oracle on the moderate rows.
  eps = 1e-6
  x = logits[:4].astype(np.float64)
  num = np.zeros_like(x)
  for i in np.ndindex(x.shape):
    d = np.zeros_like(x)
    d[i] = eps
    num[i] = (oracle(x + d, labels[:4]).sum()
              - oracle(x - d, labels[:4]).sum()) / (2 * eps)
  np.testing.assert_allclose(grad[:4], num, rtol=1e-4, atol=1e-5)
  # ... and exactly 0 gradient at x = 0 is not a kink trap: both sides agree.
  g0 = jax.grad(lambda x: gj.stablemax_cross_entropy(x, jnp.array(0)))(
      jnp.zeros(3))
  # s'(0) = 1 from either side, so as softmax would: p - onehot, p = 1/3.
  np.testing.assert_allclose(g0, [-2 / 3, 1 / 3, 1 / 3], rtol=1e-6)


def test_stablemax_probabilities_and_other_axes():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(3, 4)).astype(np.float32) * 5
  p = gj.stablemax(logits)
  np.testing.assert_allclose(p, s(logits) / s(logits).sum(-1, keepdims=True),
                             rtol=1e-6)
  np.testing.assert_allclose(np.sum(p, -1), 1.0, rtol=1e-6)
  labels = rng.integers(0, 3, size=4)
  got = gj.stablemax_cross_entropy(logits, labels, axis=0)
  np.testing.assert_allclose(got, oracle(logits.T, labels), rtol=1e-5)


def test_bf16_logits_keep_their_dtype():
  logits = jnp.asarray([[2.0, -1.0, 0.5]], jnp.bfloat16)
  got = gj.stablemax_cross_entropy(logits, jnp.array([0]))
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float64),
                             oracle(np.asarray(logits, np.float64),
                                    np.array([0])), rtol=1e-2)


def test_bad_labels():
  with pytest.raises(ValueError, match="labels must be integer"):
    gj.stablemax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros(2))
  with pytest.raises(ValueError, match="labels must have the shape"):
    gj.stablemax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros(3, jnp.int32))
