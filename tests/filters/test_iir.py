"""Tests for grokfast_jax.grokfast_iir against Grokfast-EMA and scipy.signal."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.signal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grokfast_jax as gj
from tests import helpers
from tests import reference as ref
from tests import test_properties as props

pytestmark = pytest.mark.usefixtures("strict_dtype_promotion")


def lowpass(b, a, seq):
  """scipy's lfilter of a [T, ...] sequence, started at its steady state."""
  seq = np.asarray(seq, np.float64)
  zi = scipy.signal.lfilter_zi(b, a)
  zi = zi.reshape((-1,) + (1,) * (seq.ndim - 1)) * seq[0]
  return scipy.signal.lfilter(b, a, seq, axis=0, zi=zi)[0]


def _grads(steps, shape=(3,), seed=0, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  return [jnp.asarray(rng.normal(size=shape) + 0.5, dtype)
          for _ in range(steps)]


@pytest.mark.parametrize("alpha,lamb", [(0.98, 2.0), (0.0, 1.0)])
def test_ema_coefficients_reproduce_grokfast_ema(alpha, lamb):
  rng = np.random.default_rng(0)
  params = helpers.tree_like(rng)
  grads = helpers.grad_sequence(rng, params, steps=200)
  got, state = helpers.run_jitted(
      gj.grokfast_iir([1 - alpha], [1, -alpha], lamb), params, grads)
  want, _ = helpers.run_jitted(gj.grokfast_ema(alpha, lamb), params, grads)
  chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-6)
  assert int(state.count) == 200
  assert state.delay["frozen"] is None
  assert state.delay["dense"]["w"].shape == (1, 3, 4)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_butterworth_matches_scipy_lfilter_in_float64(order):
  b, a = gj.butterworth(order, 0.05 * order)
  lamb = 1.5
  with jax.enable_x64(True):
    rng = np.random.default_rng(order)
    params = helpers.tree_like(rng, np.float64)
    grads = helpers.grad_sequence(rng, params, steps=200)
    outs, state = helpers.run_jitted(
        gj.grokfast_iir(b, a, lamb, accumulator_dtype=jnp.float64), params,
        grads)
    assert state.delay["dense"]["w"].dtype == jnp.float64
    for got, g in zip(helpers.leaves_by_step(outs),
                      helpers.leaves_by_step(grads)):
      g = np.stack(g)
      np.testing.assert_allclose(np.stack(got), g + lamb * lowpass(b, a, g),
                                 rtol=1e-10, atol=1e-10)


def test_butterworth_in_float32_tracks_float64():
  b, a = gj.butterworth(3, 0.08)
  grads = _grads(200, shape=(4, 5))
  outs, _ = helpers.run_jitted(gj.grokfast_iir(b, a, 1.0), grads[0], grads)
  g = np.stack(grads).astype(np.float64)
  np.testing.assert_allclose(np.stack(outs), g + lowpass(b, a, g), rtol=0,
                             atol=2e-5)


@pytest.mark.parametrize("b,a", [([0.5, 0.5], [1.0]),  # FIR
                                 ([1.0, 2.0, 1.0], [8.0, -4.0, 1.0]),
                                 ([0.3, 0.2], [2.0, -1.0, 0.3])])
def test_fir_and_unnormalized_filters_match_scipy(b, a):
  grads = _grads(60, shape=(2, 3))
  outs, _ = helpers.run_jitted(gj.grokfast_iir(b, a, 2.0), grads[0], grads)
  g = np.stack(grads).astype(np.float64)
  np.testing.assert_allclose(np.stack(outs), g + 2.0 * lowpass(b, a, g),
                             rtol=1e-5, atol=1e-5)


def test_a_pure_gain_has_no_delay():
  tx = gj.grokfast_iir([3.0], [4.0], lamb=2.0)
  g = {"w": jnp.arange(3.0), "frozen": None}
  state = tx.init(g)
  assert state.delay["w"].shape == (0, 3)
  out, _ = jax.jit(tx.update)(g, state)
  np.testing.assert_allclose(out["w"], g["w"] * (1 + 2.0 * 0.75))
  assert out["frozen"] is None


@pytest.mark.parametrize("order", [1, 2, 4])
def test_first_low_pass_is_the_first_gradient(order):
  b, a = gj.butterworth(order, 0.1)
  g = {"w": jnp.array([1.0, -2.0, 3.0])}
  tx = gj.grokfast_iir(b, a, lamb=2.0)
  out, _ = jax.jit(tx.update)(g, tx.init(g))
  np.testing.assert_allclose(out["w"], 3.0 * g["w"], rtol=1e-5)


def test_lamb_schedule_is_a_trigger():
  b, a = gj.butterworth(2, 0.1)
  grads = _grads(40)
  lamb = lambda c: jnp.where(c < 15, 0.0, 2.0)
  outs, _ = helpers.run_jitted(gj.grokfast_iir(b, a, lamb), grads[0], grads)
  np.testing.assert_array_equal(np.stack(outs[:15]), np.stack(grads[:15]))
  g = np.stack(grads).astype(np.float64)
  np.testing.assert_allclose(np.stack(outs[15:]),
                             (g + 2.0 * lowpass(b, a, g))[15:], rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("param_dtype,acc_dtype", [
    (jnp.bfloat16, None), (jnp.bfloat16, jnp.float32),
    (jnp.float32, jnp.bfloat16), (jnp.float32, None)])
def test_dtypes_are_stable(param_dtype, acc_dtype):
  rng = np.random.default_rng(3)
  params = helpers.tree_like(rng, param_dtype)
  grads = helpers.grad_sequence(rng, params, steps=3)
  tx = gj.grokfast_iir(*gj.butterworth(2, 0.2), accumulator_dtype=acc_dtype)
  for leaf in jax.tree.leaves(tx.init(params).delay):
    assert leaf.dtype == (acc_dtype or param_dtype)
  helpers.assert_dtypes_stable(tx, params, grads)


def test_bf16_params_with_an_f32_accumulator_track_float64():
  b, a = gj.butterworth(2, 0.1)
  grads = _grads(50, dtype=jnp.bfloat16)
  outs, _ = helpers.run_jitted(
      gj.grokfast_iir(b, a, 1.0, accumulator_dtype=jnp.float32), grads[0],
      grads)
  g = np.stack(grads).astype(np.float64)
  np.testing.assert_allclose(np.stack(outs).astype(np.float64),
                             g + lowpass(b, a, g), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(b=[1.0], a=[1.0, -1.0]), "a must give a stable filter"),
    (dict(b=[1.0], a=[1.0, 0.0, 1.5]), "a must give a stable filter"),
    (dict(b=[1.0], a=[0.0, 1.0]), r"a\[0\] must be nonzero"),
    (dict(b=[float("nan")], a=[1.0]), "b must hold finite floats"),
    (dict(b=[1.0], a=[[1.0]]), "a must be a non-empty 1-D"),
    (dict(b=[], a=[1.0]), "b must be a non-empty 1-D"),
    (dict(b=[1.0], a=[1.0], lamb=-1.0),
     r"lamb must be a finite number in \[0, inf\)"),
    (dict(b=[1.0], a=[1.0], accumulator_dtype=jnp.int32),
     "accumulator_dtype must be"),
])
def test_bad_arguments_raise_at_construction(kwargs, match):
  with pytest.raises(ValueError, match=match):
    gj.grokfast_iir(**kwargs)


def test_inside_masked_multisteps_and_apply_if_finite():
  # Optax's wrappers themselves promote implicitly.
  with jax.numpy_dtype_promotion("standard"):
    _check_wrappers()


def _check_wrappers():
  b, a = gj.butterworth(2, 0.2)
  grads = _grads(30)
  g = np.stack(grads).astype(np.float64)
  # masked: only "a" is filtered.
  trees = [{"a": x, "b": x} for x in grads]
  outs, _ = helpers.run_jitted(
      optax.masked(gj.grokfast_iir(b, a, 2.0), {"a": True, "b": False}),
      trees[0], trees)
  np.testing.assert_allclose(np.stack([o["a"] for o in outs]),
                             g + 2.0 * lowpass(b, a, g), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.stack([o["b"] for o in outs]), g)
  # MultiSteps: the filter sees the mean of every k = 3 micro-batches.
  tx = optax.MultiSteps(gj.grokfast_iir(b, a, 2.0), every_k_schedule=3)
  outs, _ = helpers.run_jitted(tx, grads[0], grads)
  means = g.reshape(10, 3, 3).mean(axis=1)
  np.testing.assert_allclose(np.stack(outs[2::3]),
                             means + 2.0 * lowpass(b, a, means), rtol=1e-5,
                             atol=1e-5)
  # apply_if_finite: a NaN step is skipped and leaves the state clean.
  bad = list(grads)
  bad[7] = grads[7].at[0].set(jnp.nan)
  outs, state = helpers.run_jitted(optax.apply_if_finite(
      gj.grokfast_iir(b, a, 2.0), max_consecutive_errors=3), grads[0], bad)
  clean = np.delete(g, 7, axis=0)
  np.testing.assert_allclose(np.stack(outs[:7] + outs[8:]),
                             clean + 2.0 * lowpass(b, a, clean), rtol=1e-5,
                             atol=1e-5)
  assert np.all(np.isfinite(state.inner_state.delay))


def test_inject_hyperparams():
  b, a = gj.butterworth(2, 0.2)
  grads = _grads(20)
  plain, _ = helpers.run_jitted(gj.grokfast_iir(b, a, 1.5), grads[0], grads)
  inj = optax.inject_hyperparams(gj.grokfast_iir, static_args=("b", "a"))(
      b=b, a=a, lamb=1.5)
  outs, state = helpers.run_jitted(inj, grads[0], grads)
  chex.assert_trees_all_close(outs, plain, rtol=1e-6, atol=1e-6)
  assert set(state.hyperparams) == {"lamb"}
  # Lists are not numeric hyperparameters: static without being named.
  inj = optax.inject_hyperparams(gj.grokfast_iir)(
      b=b.tolist(), a=a.tolist(), lamb=optax.linear_schedule(0.0, 3.0, 10))
  outs, _ = helpers.run_jitted(inj, grads[0], grads)
  g = np.stack(grads).astype(np.float64)
  lam = np.minimum(np.arange(20) * 0.3, 3.0)[:, None]
  np.testing.assert_allclose(np.stack(outs), g + lam * lowpass(b, a, g),
                             rtol=1e-5, atol=1e-5)


def test_inject_hyperparams_with_array_coefficients_says_how():
  b, a = gj.butterworth(2, 0.2)
  tx = optax.inject_hyperparams(gj.grokfast_iir)(b=b, a=a)
  state = tx.init(jnp.zeros(3))
  with pytest.raises(ValueError, match=r"static_args=\('b', 'a'\)"):
    jax.jit(tx.update)(jnp.ones(3), state)


def test_no_retracing_and_ema_reference_with_lists():
  tx = gj.grokfast_iir(*gj.ema_coefficients(0.9), lamb=2.0)
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(g, state):
    return tx.update(g, state)

  state = tx.init(jnp.zeros(3))
  grads = _grads(10)
  outs = []
  for g in grads:
    out, state = step(g, state)
    outs.append(out)
  want = ref.ema([np.asarray(g, np.float64) for g in grads], 0.9, 2.0)
  np.testing.assert_allclose(np.stack(outs), np.stack(want), rtol=1e-5,
                             atol=1e-5)


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(tree=props.pytrees(), dtype=st.sampled_from(sorted(props.DTYPES)),
       order=st.integers(1, 4), cutoff=st.floats(0.02, 0.8),
       lamb=st.floats(0.0, 5.0), seed=st.integers(0, 2**16))
def test_on_random_pytrees(tree, dtype, order, cutoff, lamb, seed):
  dt, tol = props.DTYPES[dtype]
  b, a = gj.butterworth(order, cutoff)
  grads = props.materialize(tree, np.random.default_rng(seed), dt, steps=8)
  tx = gj.grokfast_iir(b, a, lamb, accumulator_dtype=jnp.float32)
  props.check(tx, grads,
              lambda s: list(np.stack(s) + lamb * lowpass(b, a, np.stack(s))),
              tol)
