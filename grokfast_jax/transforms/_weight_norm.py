"""Keep the weights inside a norm ball: a projection placed last in a chain."""

from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from grokfast_jax import _common
from grokfast_jax.transforms._orthograd import needs_params_error

Axis = Optional[Union[int, tuple[int, ...]]]


class ConstrainWeightNormState(NamedTuple):
  """State of :func:`constrain_weight_norm`.

  Attributes:
    count: number of updates seen so far, an int32 scalar (the step a
      `max_norm` schedule is evaluated at).
  """

  count: jax.typing.ArrayLike


def _canonical_axis(axis: Any) -> Axis:
  """Validate `axis`: None, an int, or a tuple of distinct ints."""
  if axis is None:
    return None
  ints = axis if isinstance(axis, (tuple, list)) else (axis,)
  if not all(
    isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in ints
  ):
    raise ValueError(
      f"axis must be None, an int or a tuple of ints, got {axis!r}"
    )
  if isinstance(axis, (tuple, list)):
    return tuple(int(i) for i in axis)
  return int(axis)


def _check_axis(axis: Axis, tree: Any, what: str) -> None:
  """Raise a ValueError naming the leaf path where `axis` does not fit."""
  if axis is None:
    return
  axes = axis if isinstance(axis, tuple) else (axis,)

  def check(path, x):
    if x is None:
      return
    ndim = jnp.ndim(x)
    normalized = [i % ndim if -ndim <= i < ndim else None for i in axes]
    if None in normalized or len(set(normalized)) != len(axes):
      raise ValueError(
        f"{what}: axis={axis!r} does not fit the leaf "
        f"{jax.tree_util.keystr(path) or '<root>'} of shape "
        f"{tuple(jnp.shape(x))} (ndim {ndim}); skip such leaves (biases, "
        f"scalars) with optax.masked"
      )

  jax.tree_util.tree_map_with_path(check, tree, is_leaf=_common.is_none)


def _project(
  p: jax.Array, max_norm: Any, axis: Axis
) -> tuple[jax.Array, jax.Array]:
  """`p` scaled down, per slice over `axis`, into the `max_norm` ball (in at
  least float32), and the mask of slices already inside."""
  dt = _common.at_least_f32(p.dtype)
  x = p.astype(dt)
  norm = jnp.linalg.norm(x, axis=axis, keepdims=True)
  m = jnp.asarray(max_norm, dt)
  inside = norm <= m
  scale = jnp.where(inside, jnp.ones_like(norm), m / norm)
  return x * scale, inside


def constrain_weight_norm(
  max_norm: _common.ScalarOrSchedule,
  *,
  axis: Axis,
) -> optax.GradientTransformationExtraArgs:
  r"""Rewrite the updates so the new weights stay inside a norm ball.

  Place it last in a chain (after the optimizer and any weight decay), so it
  sees the final updates :math:`u`. Per leaf, with :math:`p` the params and
  :math:`\lVert\cdot\rVert` the 2-norm over `axis`
  (``jnp.linalg.norm(x, axis=axis, keepdims=True)``):

  .. math::

    n &= p + u, \\
    u' &= n \, \min\!\left(1, \frac{c}{\lVert n \rVert}\right) - p ,

  so ``optax.apply_updates(params, updates)`` lands on weights whose every
  norm over `axis` is at most :math:`c` = `max_norm` (up to the rounding of
  :math:`p + u'` in the params' dtype). Where :math:`\lVert n \rVert \le c`
  the update is returned unchanged, bit for bit. The arithmetic runs in at
  least float32; the output keeps each update leaf's dtype.

  Leaves to leave alone (biases, scales, scalars) are chosen with
  :func:`optax.masked`::

    optax.masked(constrain_weight_norm(1.0, axis=0),
                 lambda params: jax.tree.map(lambda p: p.ndim >= 2, params))

  Start from projected weights with :func:`project_weight_norm`.

  Args:
    max_norm: the radius :math:`c > 0`, a float or an Optax schedule (a
      function of the step count).
    axis: the axes each norm is taken over: an int, a tuple of ints, or
      `None` for one norm of the whole leaf. For a ``(fan_in, fan_out)``
      dense kernel, ``axis=0`` bounds the norm of each unit's incoming
      weights. Checked against every leaf's rank (at init and update), with
      an error naming the leaf.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`ConstrainWeightNormState`. It needs the params:
    ``tx.update(updates, state, params)``.

  Raises:
    ValueError: `max_norm` not a finite number > 0, a malformed `axis`, an
      `axis` that does not fit a leaf, or no params given to ``update``.

  Example:
    >>> import jax.numpy as jnp, optax, grokfast_jax as gj
    >>> tx = optax.chain(optax.sgd(1.0),
    ...                  gj.constrain_weight_norm(1.0, axis=None))
    >>> params = {"w": jnp.array([0.6, 0.0])}
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.array([0.0, -2.0])}, state,
    ...                            params)
    >>> new = optax.apply_updates(params, updates)
    >>> round(float(jnp.linalg.norm(new["w"])), 6)
    1.0

  References:
    Srebro, Rennie, Jaakkola, Maximum-Margin Matrix Factorization, 2004, and
    Srivastava et al., Dropout, JMLR 2014 (max-norm constraints); used
    against grokking's weight-norm growth in Liu, Michaud, Tegmark,
    `Omnigrok <https://arxiv.org/abs/2210.01117>`_, 2023.
  """
  _common.check_in_range(
    "max_norm", max_norm, lo=0.0, hi=float("inf"), lo_open=True, hi_open=True
  )
  axis = _canonical_axis(axis)
  name = "constrain_weight_norm"

  def init_fn(params):
    _check_axis(axis, params, name)
    return ConstrainWeightNormState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise needs_params_error(name)
    _check_axis(axis, updates, name)
    count = state.count
    c = _common.hyperparam(max_norm, count)

    def leaf(u, p):
      dt = _common.at_least_f32(_common.compute_dtype(p.dtype, u.dtype))
      new = p.astype(dt) + u.astype(dt)
      projected, inside = _project(new, c, axis)
      return jnp.where(inside, u, (projected - p.astype(dt)).astype(u.dtype))

    out = _common.tree_map_none(leaf, updates, params)
    return out, ConstrainWeightNormState(count=optax.safe_increment(count))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def project_weight_norm(
  params: Any,
  max_norm: Any,
  *,
  axis: Axis,
  mask: Optional[Union[Any, Callable[[Any], Any]]] = None,
) -> Any:
  r"""Scale params into the norm ball of :func:`constrain_weight_norm`.

  Per leaf, :math:`p \min(1, c / \lVert p \rVert)` with the norm over
  `axis`; slices already inside are returned unchanged. Use it on the
  initial params so training starts inside the ball the transform keeps.

  Args:
    params: a pytree of arrays (`None` leaves pass through).
    max_norm: the radius :math:`c > 0`, a float.
    axis: as in :func:`constrain_weight_norm`.
    mask: leaves to project, as :func:`optax.masked` takes it: a tree of
      bools like `params` (a prefix of it) or a function of `params`
      returning one; `None` (default) projects every leaf.

  Returns:
    The projected params, each leaf in its own dtype.

  Raises:
    ValueError: `max_norm` not a finite number > 0, or an `axis` that does
      not fit a (masked-in) leaf.

  Example:
    >>> import jax.numpy as jnp, grokfast_jax as gj
    >>> p = gj.project_weight_norm({"w": jnp.array([[3.0], [4.0]])}, 1.0,
    ...                            axis=0)
    >>> p["w"].ravel().tolist()
    [0.6000000238418579, 0.800000011920929]
  """
  _common.check_in_range(
    "max_norm", max_norm, lo=0.0, hi=float("inf"), lo_open=True, hi_open=True
  )
  axis = _canonical_axis(axis)
  if mask is None:
    selected = params
  else:
    mask_tree = mask(params) if callable(mask) else mask
    selected = jax.tree.map(
      lambda m, sub: jax.tree.map(
        lambda x: x if m else None, sub, is_leaf=_common.is_none
      ),
      mask_tree,
      params,
      is_leaf=_common.is_none,
    )
  _check_axis(axis, selected, "project_weight_norm")

  def leaf(p, s):
    if s is None:
      return p
    return _project(p, max_norm, axis)[0].astype(p.dtype)

  return _common.tree_map_none(leaf, params, selected)
