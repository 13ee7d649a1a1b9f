"""Mixed precision: bf16 updates with f32 state, f32 updates with bf16 state.

Outputs are checked against a float64 computation of the same rule on the
same (already rounded) gradients, so only the filter's own rounding counts.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import grokfast_jax as gj
from tests import reference as ref

pytestmark = pytest.mark.usefixtures("strict_dtype_promotion")

FILTERS = {
    "ema": (lambda dt: gj.grokfast_ema(accumulator_dtype=dt),
            lambda seq: ref.ema(seq)),
    "ma": (lambda dt: gj.grokfast_ma(100, accumulator_dtype=dt),
           lambda seq: ref.ma(seq, 100)),
}


def _run(name, grad_dtype, state_dtype, steps=300):
  rng = np.random.default_rng(0)
  slow = rng.normal(size=(256,))
  grads = [jnp.asarray(slow + rng.normal(size=(256,)), grad_dtype)
           for _ in range(steps)]
  make, reference = FILTERS[name]
  tx = make(state_dtype)
  state = tx.init(grads[0])
  update = jax.jit(tx.update)
  outs = []
  for g in grads:
    out, state = update(g, state)
    assert out.dtype == grad_dtype
    outs.append(np.asarray(out, np.float64))
  want = np.stack(reference([np.asarray(g, np.float64) for g in grads]))
  return np.stack(outs), want, state


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_bf16_updates_with_f32_state_lose_only_the_output_rounding(name):
  got, want, state = _run(name, jnp.bfloat16, jnp.float32)
  for leaf in jax.tree.leaves(state)[1:]:
    assert leaf.dtype == jnp.float32
  # One bf16 rounding of the output (unit roundoff 2**-8).
  np.testing.assert_array_less(np.abs(got - want),
                               2.0**-8 * np.abs(want) + 1e-6)


@pytest.mark.parametrize("name,mean_tol", [("ema", 1e-2), ("ma", 1e-3)])
def test_f32_updates_with_bf16_state(name, mean_tol):
  got, want, state = _run(name, jnp.float32, jnp.bfloat16)
  assert state[1].dtype == jnp.bfloat16  # mu / window
  scale = np.abs(want).mean()
  err = np.abs(got - want) / scale
  assert err.mean() <= mean_tol
  # ... and an f32 state is far more exact: the test sees the difference.
  got32, want32, _ = _run(name, jnp.float32, jnp.float32)
  err32 = np.abs(got32 - want32) / np.abs(want32).mean()
  assert err32.max() <= 1e-5
  assert err32.mean() * 100 < err.mean()
