"""Tests for grokfast_jax.grokfast_ema against a NumPy statement of its rule."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import grokfast_jax as gj
from tests import helpers
from tests import reference as ref

pytestmark = pytest.mark.usefixtures("strict_dtype_promotion")


@pytest.mark.parametrize("alpha,lamb", [(0.98, 2.0), (0.5, 0.1), (0.0, 1.0),
                                        (0.999, 0.0)])
def test_matches_reference_over_hundreds_of_steps(alpha, lamb):
  rng = np.random.default_rng(0)
  params = helpers.tree_like(rng)
  grads = helpers.grad_sequence(rng, params, steps=300)
  outs, state = helpers.run_jitted(gj.grokfast_ema(alpha, lamb), params, grads)
  for got, g in zip(helpers.leaves_by_step(outs),
                    helpers.leaves_by_step(grads)):
    want = ref.ema(g, alpha, lamb)
    np.testing.assert_allclose(np.stack(got), np.stack(want),
                               rtol=2e-5, atol=2e-5)
  assert int(state.count) == 300
  assert state.mu["frozen"] is None


def test_first_step_state_is_the_first_gradient():
  g = {"a": jnp.array([1.0, -2.0, 3.0])}
  tx = gj.grokfast_ema(alpha=0.9, lamb=2.0)
  out, state = jax.jit(tx.update)(g, tx.init(g))
  chex.assert_trees_all_equal(state.mu, g)
  chex.assert_trees_all_close(out, {"a": 3.0 * g["a"]})


def test_defaults_follow_the_reference():
  rng = np.random.default_rng(1)
  grads = [jnp.asarray(rng.normal(size=(5,)), jnp.float32) for _ in range(50)]
  outs, _ = helpers.run_jitted(gj.grokfast_ema(), grads[0], grads)
  want = ref.ema([np.asarray(g) for g in grads], alpha=0.98, lamb=2.0)
  np.testing.assert_allclose(np.stack(outs), np.stack(want), rtol=1e-5,
                             atol=1e-5)


def test_schedules_for_alpha_and_lamb():
  # lamb = 0 for the first 20 steps: the reference's two-stage "trigger".
  lamb_fn = lambda c: jnp.where(c < 20, 0.0, 2.0)
  alpha = optax.linear_schedule(0.5, 0.95, transition_steps=60)
  rng = np.random.default_rng(2)
  grads = [jnp.asarray(rng.normal(size=(4,)), jnp.float32) for _ in range(100)]
  outs, _ = helpers.run_jitted(gj.grokfast_ema(alpha, lamb_fn), grads[0],
                               grads)
  want = ref.ema([np.asarray(g) for g in grads],
                 alpha=lambda c: float(alpha(c)),
                 lamb=lambda c: 0.0 if c < 20 else 2.0)
  np.testing.assert_allclose(np.stack(outs), np.stack(want), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(np.stack(outs[:20]), np.stack(grads[:20]))


DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32]


@pytest.mark.parametrize("param_dtype", DTYPES)
@pytest.mark.parametrize("acc_dtype", [None, *DTYPES])
def test_dtypes_are_stable(param_dtype, acc_dtype):
  rng = np.random.default_rng(3)
  params = helpers.tree_like(rng, param_dtype)
  grads = helpers.grad_sequence(rng, params, steps=5)
  tx = gj.grokfast_ema(accumulator_dtype=acc_dtype)
  state0 = tx.init(params)
  want_state_dtype = acc_dtype or param_dtype
  for leaf in jax.tree.leaves(state0.mu):
    assert leaf.dtype == want_state_dtype
  helpers.assert_dtypes_stable(tx, params, grads)


def test_float64_state_with_x64():
  with jax.enable_x64(True):
    g = {"a": jnp.arange(3, dtype=jnp.float64)}
    tx = gj.grokfast_ema(accumulator_dtype=jnp.float64)
    out, state = jax.jit(tx.update)(g, tx.init(g))
    assert state.mu["a"].dtype == jnp.float64
    assert out["a"].dtype == jnp.float64


def test_mixed_dtypes_compute_in_the_wider_dtype():
  # bf16 gradients with an f32 state: the state keeps f32 precision.
  g = {"a": jnp.full((4,), 1.0 + 2**-7, jnp.bfloat16)}
  tx = gj.grokfast_ema(alpha=0.5, lamb=1.0, accumulator_dtype=jnp.float32)
  state = tx.init(g)
  out, state = jax.jit(tx.update)(g, state)
  assert state.mu["a"].dtype == jnp.float32 and out["a"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(state.mu["a"]),
                                np.asarray(g["a"], np.float32))


@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha=1.0), r"alpha must be a finite number in \[0, 1\)"),
    (dict(alpha=-0.1), r"alpha must be"),
    (dict(alpha=float("nan")), r"alpha must be"),
    (dict(lamb=-1.0), r"lamb must be a finite number in \[0, inf\)"),
    (dict(lamb=float("inf")), r"lamb must be"),
    (dict(accumulator_dtype=jnp.int32), r"accumulator_dtype must be"),
    (dict(accumulator_dtype="not-a-dtype"), r"accumulator_dtype must be"),
])
def test_bad_arguments_raise_at_construction(kwargs, match):
  with pytest.raises(ValueError, match=match):
    gj.grokfast_ema(**kwargs)


def test_schedules_and_tracers_are_not_validated_at_construction():
  # A schedule is not called at construction (its values cannot be checked
  # there) but at each update, with the update's count.
  seen = []

  def alpha(count):
    seen.append(count)
    return jnp.where(count == 0, 0.25, 0.5)

  tx = gj.grokfast_ema(alpha=alpha, lamb=1.0)
  assert seen == []
  g1, g2, g3 = (jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5]),
                jnp.array([-1.0, 4.0]))
  state = tx.init(jnp.zeros(2))
  _, state = tx.update(g1, state)
  out2, state = tx.update(g2, state)
  out3, _ = tx.update(g3, state)
  assert seen
  mu2 = 0.5 * g1 + 0.5 * g2  # mu_1 = g_1; the second update's alpha is 0.5
  np.testing.assert_allclose(out2, g2 + mu2, rtol=1e-6)
  np.testing.assert_allclose(out3, g3 + 0.5 * mu2 + 0.5 * g3, rtol=1e-6)
  # A traced alpha cannot be checked either: an out-of-range value is
  # computed with, as a schedule's would be.
  def second(a):
    tx = gj.grokfast_ema(alpha=a, lamb=1.0)
    _, s = tx.update(g1, tx.init(jnp.zeros(2)))
    return tx.update(g2, s)[0]

  np.testing.assert_allclose(jax.jit(second)(1.5),
                             g2 + 1.5 * g1 - 0.5 * g2, rtol=1e-6)


def test_no_retracing_across_steps():
  tx = gj.grokfast_ema()
  params = {"a": jnp.zeros(3)}

  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(g, state):
    return tx.update(g, state)

  state = tx.init(params)
  for i in range(20):
    _, state = step({"a": jnp.full(3, float(i))}, state)
