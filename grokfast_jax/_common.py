"""Helpers shared by the Grokfast filters: validation, hyperparameters, dtypes.

Nothing here is filter math; it is kept apart so the transforms in
`filters/` and `transforms/` read as the update rules they implement.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

ScalarOrSchedule = Union[
  float, jax.Array, Callable[[jax.typing.ArrayLike], jax.typing.ArrayLike]
]


def _concrete_float(value: Any) -> Optional[float]:
  """`value` as a Python float, or None for a schedule or a traced value."""
  if callable(value) or isinstance(value, Tracer):
    return None
  try:
    arr = np.asarray(value)
  except (
    TypeError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
  ):
    return None
  if arr.shape != ():
    raise ValueError(f"expected a scalar hyperparameter, got shape {arr.shape}")
  return float(arr)


def check_in_range(
  name: str,
  value: Any,
  *,
  lo: float,
  hi: float,
  lo_open: bool = False,
  hi_open: bool = False,
) -> None:
  """Raise a ValueError naming `name` unless a concrete `value` lies in range.

  Schedules and traced values (as `optax.inject_hyperparams` passes them) are
  not checked: their values are only known at run time.
  """
  x = _concrete_float(value)
  if x is None:
    return
  ok = math.isfinite(x) and (x > lo if lo_open else x >= lo)
  ok = ok and (x < hi if hi_open else x <= hi)
  if not ok:
    lb = "(" if lo_open else "["
    rb = ")" if hi_open else "]"
    raise ValueError(
      f"{name} must be a finite number in {lb}{lo:g}, {hi:g}{rb}, got {x!r}"
    )


def static_positive_int(name: str, value: Any) -> int:
  """`value` as a Python int >= 1, or a ValueError naming `name`."""
  if isinstance(value, Tracer):
    raise ValueError(
      f"{name} sets the shape of the filter state and must be a static Python "
      f"int >= 1, got a traced value; with optax.inject_hyperparams pass "
      f"static_args=('{name}',)"
    )
  if isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be an int >= 1, got {value!r}")
  if (
    isinstance(value, (jax.Array, np.ndarray))
    and value.shape == ()
    and (jnp.issubdtype(value.dtype, jnp.integer))
  ):
    value = int(value)
  if not isinstance(value, numbers.Integral) or value < 1:
    raise ValueError(f"{name} must be an int >= 1, got {value!r}")
  return int(value)


def hyperparam(
  value: ScalarOrSchedule, count: jax.typing.ArrayLike
) -> jax.typing.ArrayLike:
  """The value of a float-or-schedule hyperparameter at step `count`."""
  return value(count) if callable(value) else value


def compute_dtype(state_dtype: Any, update_dtype: Any) -> jnp.dtype:
  """The dtype that holds both the state and the update without loss.

  Computed with JAX's standard promotion lattice whatever the global
  `jax_numpy_dtype_promotion` setting, so bf16 state and f32 updates (or the
  reverse) are combined in f32 explicitly rather than by implicit promotion.
  """
  with jax.numpy_dtype_promotion("standard"):
    return jnp.promote_types(state_dtype, update_dtype)


def state_dtype_for(param: Any, accumulator_dtype: Any) -> jnp.dtype:
  """The state dtype for one leaf: `accumulator_dtype`, else the param's."""
  return (
    jnp.dtype(accumulator_dtype)
    if accumulator_dtype is not None
    else (jnp.result_type(param))
  )


def at_least_f32(dtype: Any) -> jnp.dtype:
  """`dtype`, widened to float32 if it is a narrower float (f16, bf16)."""
  dtype = jnp.dtype(dtype)
  if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4:
    return jnp.dtype(jnp.float32)
  return dtype


def zeros_state(
  param: Any, dtype: Any, lead: tuple[int, ...] = ()
) -> jax.Array:
  """Zeros of `dtype` and shape `lead + param.shape`, placed like `param`.

  A concrete sharded `param` gives state sharded the same way (the `lead`
  axes unsharded), so the filter adds no data movement to a sharded step.
  """
  if not lead:
    return jnp.zeros_like(param, dtype=dtype)  # keeps param's sharding
  sharding = None
  if isinstance(param, jax.Array) and not isinstance(param, Tracer):
    sharding = param.sharding
    if isinstance(sharding, jax.sharding.NamedSharding):
      spec = jax.sharding.PartitionSpec(*(None,) * len(lead), *sharding.spec)
      sharding = jax.sharding.NamedSharding(sharding.mesh, spec)
    elif not isinstance(sharding, jax.sharding.SingleDeviceSharding):
      sharding = None  # let XLA's sharding propagation decide
  return jnp.zeros(lead + jnp.shape(param), dtype, device=sharding)


def canonical_dtype(accumulator_dtype: Any) -> Optional[jnp.dtype]:
  """Validate and canonicalize an `accumulator_dtype` argument."""
  if accumulator_dtype is None:
    return None
  try:
    dt = jnp.dtype(accumulator_dtype)
  except TypeError as e:
    raise ValueError(
      f"accumulator_dtype must be None or a floating dtype, got "
      f"{accumulator_dtype!r}"
    ) from e
  if not jnp.issubdtype(dt, jnp.floating):
    raise ValueError(
      f"accumulator_dtype must be None or a floating dtype, got {dt}"
    )
  return jax.dtypes.canonicalize_dtype(dt)


def is_none(x: Any) -> bool:
  return x is None


def tree_map_none(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
  """`jax.tree.map` that passes `None` leaves of `tree` through as `None`."""
  return jax.tree.map(
    lambda x, *r: None if x is None else fn(x, *r), tree, *rest, is_leaf=is_none
  )


def unzip_pairs(like: Any, pairs: Any, n: int = 2) -> tuple[Any, ...]:
  """Split a tree of n-tuples (shaped like `like`, `None` kept) into n trees."""
  outer = jax.tree.structure(like, is_leaf=is_none)
  flat = outer.flatten_up_to(pairs)
  return tuple(
    outer.unflatten([None if p is None else p[i] for p in flat])
    for i in range(n)
  )
