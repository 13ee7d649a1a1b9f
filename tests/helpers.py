"""Helpers for the filter tests: random pytrees and running a transform."""

from __future__ import annotations

from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax


def tree_like(rng: np.random.Generator, dtype: Any = np.float32,
              with_none: bool = True) -> dict:
  """A nested params-like pytree with a scalar, a matrix and a `None` leaf."""
  tree = {
      "dense": {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,))},
      "list": [rng.normal(size=(2,)), rng.normal(size=())],
  }
  if with_none:
    tree["frozen"] = None
  return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


def grad_sequence(rng: np.random.Generator, like: Any, steps: int,
                  mean: float = 0.3) -> list[Any]:
  """`steps` random gradient trees shaped like `like` (a slow + fast part)."""
  slow = jax.tree.map(lambda x: rng.normal(size=x.shape) * mean, like)
  return [
      jax.tree.map(
          lambda s, x: jnp.asarray(s + rng.normal(size=x.shape), x.dtype),
          slow, like)
      for _ in range(steps)
  ]


def run_jitted(tx: optax.GradientTransformation, params: Any,
               grads: Sequence[Any]) -> tuple[list[Any], Any]:
  """Apply `tx.update` under jax.jit to each gradient in turn."""
  state = tx.init(params)
  update = jax.jit(tx.update)
  outs = []
  for g in grads:
    out, state = update(g, state, params)
    outs.append(out)
  return outs, state


def leaves_by_step(trees: Sequence[Any]) -> list[list[np.ndarray]]:
  """[step][leaf] -> [leaf][step] as float64 NumPy arrays (None leaves dropped)."""
  per_step = [[np.asarray(x, np.float64) for x in jax.tree.leaves(t)]
              for t in trees]
  return [list(col) for col in zip(*per_step)]


def assert_dtypes_stable(tx: optax.GradientTransformation, params: Any,
                         grads: Sequence[Any]) -> None:
  """Outputs keep the gradients' dtypes; the state keeps its dtypes after
  updates, also when updated inside `jax.lax.cond` (whose branches must
  return identically typed states)."""
  state0 = tx.init(params)
  outs, state = run_jitted(tx, params, grads)
  chex.assert_trees_all_equal_dtypes(outs[-1], grads[-1])
  chex.assert_trees_all_equal_shapes_and_dtypes(state, state0)

  def cond_step(pred, g, s):
    return jax.lax.cond(pred, lambda s: tx.update(g, s)[1], lambda s: s, s)

  state_c = jax.jit(cond_step)(True, grads[0], state0)
  chex.assert_trees_all_equal_shapes_and_dtypes(state_c, state0)
