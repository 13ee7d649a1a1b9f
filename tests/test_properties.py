"""Property-based tests: random pytrees and hyperparameters vs the NumPy rule."""

import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grokfast_jax as gj
from tests import reference as ref

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

DTYPES = {"float32": (jnp.float32, 2e-5), "bfloat16": (jnp.bfloat16, 2e-2),
          "float16": (jnp.float16, 4e-3)}

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def pytrees(draw):
  """Nested dicts/lists/tuples of shapes (scalars and empty arrays too) and
  None leaves."""
  leaves = st.one_of(shapes, st.none())
  tree = draw(st.recursive(
      leaves,
      lambda children: st.one_of(
          st.lists(children, min_size=1, max_size=3),
          st.tuples(children, children),
          st.dictionaries(st.sampled_from("abcde"), children, min_size=1,
                          max_size=3)),
      max_leaves=6))
  return tree


def _is_shape(x):
  return isinstance(x, tuple) and all(isinstance(i, int) for i in x)


def materialize(shape_tree, rng, dtype, steps):
  """`steps` gradient trees with `shape_tree`'s structure."""
  slow = jax.tree.map(lambda s: np.asarray(rng.normal(size=s)) * 0.5,
                      shape_tree,
                      is_leaf=lambda x: x is None or _is_shape(x))
  return [jax.tree.map(
      lambda s: None if s is None else jnp.asarray(s + rng.normal(size=s.shape),
                                                   dtype),
      slow, is_leaf=lambda x: x is None) for _ in range(steps)]


def check(tx, grads, reference, rtol):
  state = tx.init(grads[0])
  update = jax.jit(tx.update)
  outs = []
  for g in grads:
    out, state = update(g, state)
    outs.append(out)
  is_leaf = lambda x: x is None
  structure = jax.tree.structure(grads[0], is_leaf=is_leaf)
  assert jax.tree.structure(outs[-1], is_leaf=is_leaf) == structure
  flat_g = [structure.flatten_up_to(g) for g in grads]
  flat_o = [structure.flatten_up_to(o) for o in outs]
  for i in range(len(flat_g[0])):
    if flat_g[0][i] is None:
      assert all(o[i] is None for o in flat_o)
      continue
    seq = [np.asarray(g[i], np.float64) for g in flat_g]
    want = np.stack(reference(seq))
    got = np.stack([np.asarray(o[i], np.float64) for o in flat_o])
    assert got.dtype == np.float64 and flat_o[-1][i].dtype == flat_g[0][i].dtype
    scale = 1.0 + np.abs(want).max(initial=0.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


@SETTINGS
@given(tree=pytrees(), dtype=st.sampled_from(sorted(DTYPES)),
       alpha=st.floats(0.0, 0.999), lamb=st.floats(0.0, 5.0),
       seed=st.integers(0, 2**16))
def test_ema_on_random_pytrees(tree, dtype, alpha, lamb, seed):
  dt, tol = DTYPES[dtype]
  grads = materialize(tree, np.random.default_rng(seed), dt, steps=8)
  # The state is kept in f32 here so only the output is rounded to `dtype`.
  tx = gj.grokfast_ema(alpha, lamb, accumulator_dtype=jnp.float32)
  check(tx, grads, lambda s: ref.ema(s, alpha, lamb), tol)


@SETTINGS
@given(tree=pytrees(), dtype=st.sampled_from(sorted(DTYPES)),
       window=st.integers(1, 6), lamb=st.floats(0.0, 5.0),
       filter_type=st.sampled_from(["mean", "sum"]), warmup=st.booleans(),
       seed=st.integers(0, 2**16))
def test_ma_on_random_pytrees(tree, dtype, window, lamb, filter_type, warmup,
                              seed):
  dt, tol = DTYPES[dtype]
  grads = materialize(tree, np.random.default_rng(seed), dt, steps=10)
  tx = gj.grokfast_ma(window, lamb, filter_type=filter_type, warmup=warmup,
                      accumulator_dtype=jnp.float32)
  check(tx, grads,
        lambda s: ref.ma(s, window, lamb, filter_type=filter_type,
                         warmup=warmup), tol * (window if filter_type == "sum"
                                                else 1))


bad_alpha = st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0),
                      st.just(math.nan), st.just(math.inf))
bad_lamb = st.one_of(st.floats(max_value=-1e-9), st.just(math.nan),
                     st.just(math.inf), st.just(-math.inf))
bad_window = st.one_of(st.integers(max_value=0), st.floats(0.5, 1e3),
                       st.booleans(), st.text(max_size=3), st.none())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(alpha=bad_alpha)
def test_fuzz_invalid_alpha(alpha):
  with pytest.raises(ValueError, match="alpha must be a finite number in"):
    gj.grokfast_ema(alpha=alpha)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(lamb=bad_lamb, which=st.sampled_from(["ema", "ma"]))
def test_fuzz_invalid_lamb(lamb, which):
  factory = gj.grokfast_ema if which == "ema" else gj.grokfast_ma
  with pytest.raises(ValueError, match="lamb must be a finite number in"):
    factory(lamb=lamb)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(window=bad_window)
def test_fuzz_invalid_window_size(window):
  with pytest.raises(ValueError, match="window_size must be an int >= 1"):
    gj.grokfast_ma(window_size=window)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(filter_type=st.text(max_size=6).filter(lambda s: s not in ("mean",
                                                                 "sum")))
def test_fuzz_invalid_filter_type(filter_type):
  with pytest.raises(ValueError, match="filter_type must be one of"):
    gj.grokfast_ma(filter_type=filter_type)
