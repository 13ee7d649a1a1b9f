"""Tests for grokfast_jax.grokfast_ma against a NumPy statement of its rule."""

import re

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

CONFIGS = [
    dict(window_size=100, lamb=5.0),
    dict(window_size=7, lamb=5.0, warmup=False),
    dict(window_size=7, lamb=0.5, filter_type="sum"),
    dict(window_size=10, lamb=0.1, filter_type="sum", warmup=False),
    dict(window_size=1, lamb=2.0),
    dict(window_size=300, lamb=1.0, warmup=False),
]


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_matches_reference_over_hundreds_of_steps(kwargs):
  rng = np.random.default_rng(0)
  params = helpers.tree_like(rng)
  grads = helpers.grad_sequence(rng, params, steps=320)
  outs, state = helpers.run_jitted(gj.grokfast_ma(**kwargs), params, grads)
  for got, g in zip(helpers.leaves_by_step(outs),
                    helpers.leaves_by_step(grads)):
    want = np.stack(ref.ma(g, **kwargs))
    scale = 1.0 + np.abs(want)
    np.testing.assert_array_less(np.abs(np.stack(got) - want), 2e-5 * scale)
  assert int(state.count) == 320
  assert state.window["frozen"] is None
  assert state.window["dense"]["w"].shape == (kwargs["window_size"], 3, 4)


def test_warmup_passes_updates_unchanged_until_the_window_is_full():
  grads = [jnp.full((2,), float(i + 1)) for i in range(6)]
  outs, _ = helpers.run_jitted(gj.grokfast_ma(window_size=4, lamb=1.0),
                               grads[0], grads)
  for i in range(3):
    np.testing.assert_array_equal(outs[i], grads[i])
  # Step 4: window (1, 2, 3, 4), mean 2.5; step 6: window (3..6), mean 4.5.
  np.testing.assert_allclose(outs[3], 4.0 + 2.5)
  np.testing.assert_allclose(outs[5], 6.0 + 4.5)


def test_lamb_schedule_reproduces_the_two_stage_trigger():
  # Reference: gradfilter_ma(..., trigger=step < k) with warmup=True.
  k, w = 30, 10
  rng = np.random.default_rng(1)
  grads = [jnp.asarray(rng.normal(size=(3,)), jnp.float32) for _ in range(80)]
  lamb = lambda c: jnp.where(c < k, 0.0, 5.0)
  outs, _ = helpers.run_jitted(gj.grokfast_ma(w, lamb), grads[0], grads)
  want = ref.ma([np.asarray(g) for g in grads], w,
                lamb=lambda c: 0.0 if c < k else 5.0)
  np.testing.assert_allclose(np.stack(outs), np.stack(want), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(np.stack(outs[:k]), np.stack(grads[:k]))


DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32]


@pytest.mark.parametrize("param_dtype", DTYPES)
@pytest.mark.parametrize("acc_dtype", [None, *DTYPES])
def test_dtypes_are_stable(param_dtype, acc_dtype):
  rng = np.random.default_rng(3)
  params = helpers.tree_like(rng, param_dtype)
  grads = helpers.grad_sequence(rng, params, steps=6)
  tx = gj.grokfast_ma(window_size=4, warmup=False, accumulator_dtype=acc_dtype)
  state0 = tx.init(params)
  for leaf in jax.tree.leaves(state0.window):
    assert leaf.dtype == (acc_dtype or param_dtype)
  for field in ("window_sum", "cycle_sum"):
    for leaf in jax.tree.leaves(getattr(state0, field)):
      assert leaf.dtype == jnp.float32  # running sums: at least f32
  helpers.assert_dtypes_stable(tx, params, grads)


def test_bf16_state_halves_the_window_memory():
  params = {"w": jnp.zeros((64, 64), jnp.float32)}
  nbytes = lambda s: sum(x.nbytes for x in jax.tree.leaves(s))
  size = params["w"].nbytes
  f32 = nbytes(gj.grokfast_ma(50).init(params))
  bf16 = nbytes(gj.grokfast_ma(50, accumulator_dtype=jnp.bfloat16).init(params))
  # window + two f32 running sums + the int32 count
  assert f32 == 50 * size + 2 * size + 4
  assert bf16 == 50 * size // 2 + 2 * size + 4


def _stream(key, count, n, steps):
  """Gradients whose scale decays 1000x over the run, with rare 30x spikes."""
  k1, k2 = jax.random.split(key)
  scale = 10.0 ** (1.0 - 3.0 * count.astype(jnp.float32) / steps)
  scale = scale * jnp.where(jax.random.uniform(k1) < 1e-3, 30.0, 1.0)
  return scale * (0.3 + jax.random.normal(k2, (n,)))


def _run_100k_steps(window_size, n=128, steps=100_000):
  """Per-step relative error of the filter's window sum, and of a naive one.

  Both are compared with a fresh sum of the buffer at every step, relative
  to the sum of the buffer's magnitudes.
  """
  tx = gj.grokfast_ma(window_size)

  def body(carry, key):
    state, naive = carry
    g = _stream(key, state.count, n, steps)
    evicted = jax.lax.dynamic_index_in_dim(
        state.window, state.count % window_size, 0, keepdims=False)
    _, state = tx.update(g, state)
    naive = naive + g - evicted
    used = state.window_sum  # what the filter averages
    exact, magnitude = state.window.sum(0), jnp.abs(state.window).sum(0)
    rel = lambda x: jnp.max(jnp.abs(x - exact) / magnitude)
    return (state, naive), (rel(used), rel(naive))

  keys = jax.random.split(jax.random.key(0), steps)
  run = jax.jit(lambda s, ks: jax.lax.scan(body, (s, jnp.zeros(n)), ks)[1])
  errs, naive_errs = run(tx.init(jnp.zeros(n)), keys)
  return np.asarray(errs), np.asarray(naive_errs)


@pytest.mark.parametrize("window_size", [10, 100])
def test_running_sum_stays_exact_over_100k_steps(window_size):
  errs, naive_errs = _run_100k_steps(window_size)
  # At every one of the 100,000 steps, not only at the end.
  assert errs.max() <= 1e-5, errs.max()
  # A running sum that is never refreshed drifts past the bound on the same
  # stream: the test can fail, and the periodic refresh is what passes it.
  assert naive_errs[-1000:].max() > 1e-5, naive_errs[-1000:].max()


def _copies(hlo_text, shape):
  """Lines of `hlo_text` that copy an f32 array of `shape`."""
  typed = "f32[" + ",".join(map(str, shape)) + "]"
  return [l for l in hlo_text.splitlines()
          if re.search(r"\bcopy(-start)?\(", l) and typed in l.split("=")[1]]


def test_donated_step_updates_the_ring_buffer_and_sums_in_place():
  """XLA must not copy the (window, ...) buffer: that would make a step O(w)."""
  params = {"w": jnp.zeros((32, 16)), "b": jnp.zeros((16,))}
  tx = optax.chain(gj.grokfast_ma(50), optax.adamw(1e-3))

  def step(params, state, g):
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state

  args = (params, tx.init(params), params)
  # (optax.adamw itself mixes int32 and float, so not under strict promotion.)
  with jax.numpy_dtype_promotion("standard"):
    donated = jax.jit(step, donate_argnums=(0, 1)).lower(*args).compile()
    kept = jax.jit(step).lower(*args).compile()
  assert not _copies(donated.as_text(), (50, 32, 16))
  assert not _copies(donated.as_text(), (50, 16))
  # Nor the running sums: each is read and rewritten by one fusion, and the
  # output reads the new sum (as EMA reads its new average).
  assert not _copies(donated.as_text(), (32, 16))
  # The check can fail: without donation XLA has to copy the buffer.
  assert _copies(kept.as_text(), (50, 32, 16))


def test_steps_scanned_inside_one_jit_update_the_ring_buffer_in_place():
  """Also inside a `lax.scan` of steps (as the experiments train), where XLA
  knows more about the step count, and with the state created inside jit."""
  params = {"w": jnp.zeros((32, 16))}
  tx = optax.chain(gj.grokfast_ma(50), optax.adam(1e-3))

  def run(params, state, grads):
    def body(carry, g):
      params, state = carry
      updates, state = tx.update(g, state, params)
      return (optax.apply_updates(params, updates), state), None
    return jax.lax.scan(body, (params, state), grads)[0]

  grads = {"w": jnp.ones((10, 32, 16))}
  with jax.numpy_dtype_promotion("standard"):
    donated = jax.jit(run, donate_argnums=(0, 1)).lower(
        params, tx.init(params), grads).compile()
    inside = jax.jit(lambda p, g: run(p, tx.init(p), g)).lower(
        params, grads).compile()
  assert not _copies(donated.as_text(), (50, 32, 16))
  assert not _copies(inside.as_text(), (50, 32, 16))


@pytest.mark.parametrize("kwargs,match", [
    (dict(window_size=0), r"window_size must be an int >= 1, got 0"),
    (dict(window_size=2.5), r"window_size must be an int >= 1"),
    (dict(window_size=True), r"window_size must be an int >= 1"),
    (dict(window_size="100"), r"window_size must be an int >= 1"),
    (dict(lamb=-0.5), r"lamb must be a finite number in \[0, inf\)"),
    (dict(lamb=float("nan")), r"lamb must be"),
    (dict(filter_type="median"), r"filter_type must be one of \('mean', 'sum'\)"),
    (dict(warmup="yes"), r"warmup must be a bool"),
    (dict(accumulator_dtype=jnp.int8), r"accumulator_dtype must be"),
])
def test_bad_arguments_raise_at_construction(kwargs, match):
  with pytest.raises(ValueError, match=match):
    gj.grokfast_ma(**kwargs)


def test_window_size_accepts_integer_scalars_but_not_tracers():
  assert gj.grokfast_ma(np.int64(3)).init(jnp.zeros(2)).window.shape == (3, 2)
  assert gj.grokfast_ma(jnp.array(3)).init(jnp.zeros(2)).window.shape == (3, 2)
  with pytest.raises(ValueError, match=r"static_args=\('window_size',\)"):
    jax.jit(lambda w: gj.grokfast_ma(w).init(jnp.zeros(2)).count)(3)


def test_no_retracing_across_steps():
  tx = gj.grokfast_ma(window_size=5)

  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(g, state):
    return tx.update(g, state)

  state = tx.init({"a": jnp.zeros(3)})
  for i in range(20):
    _, state = step({"a": jnp.full(3, float(i))}, state)
