"""Grokfast-IIR: amplify any linear IIR low-pass of the gradients."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from grokfast_jax import _common
from grokfast_jax.filters import _design


class GrokfastIirState(NamedTuple):
  """State of :func:`grokfast_iir`.

  Attributes:
    count: number of updates seen so far, an int32 scalar.
    delay: the filter's delay registers (direct form II transposed): each leaf
      has shape ``(order, *param.shape)`` with
      ``order = max(len(a), len(b)) - 1``, held in the accumulator dtype
      (`None` where the params hold `None`).
  """

  count: jax.typing.ArrayLike
  delay: optax.Updates


def grokfast_iir(
  b: Sequence[float],
  a: Sequence[float],
  lamb: _common.ScalarOrSchedule = 2.0,
  *,
  accumulator_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Grokfast-IIR: add an amplified linear IIR low-pass of the updates.

  Generalizes :func:`grokfast_jax.grokfast_ema` (a first-order filter) to any
  stable linear filter with coefficients `b`, `a` (normalized so
  :math:`a_0 = 1`), such as :func:`grokfast_jax.butterworth`'s. With
  :math:`g_t` the incoming update at call :math:`t = 1, 2, \dots`:

  .. math::

    y_t &= \sum_{k \ge 0} b_k g_{t-k} - \sum_{k \ge 1} a_k y_{t-k}, \\
    \hat g_t &= g_t + \lambda y_t ,

  computed in direct form II transposed with :math:`N = \max(|a|, |b|) - 1`
  delay registers :math:`z`:

  .. math::

    y_t = b_0 g_t + z_0, \qquad
    z_i \leftarrow b_{i+1} g_t + z_{i+1} - a_{i+1} y_t
    \quad (z_N = 0).

  The registers start at the filter's steady state for a constant input
  :math:`g_1`, ``z = lfilter_zi(b, a) * g_1`` (as
  ``scipy.signal.lfilter(b, a, g, zi=lfilter_zi(b, a) * g[0])``), so a
  unit-DC-gain filter gives :math:`y_1 = g_1`, like Grokfast-EMA's
  :math:`\mu_1 = g_1`; ``grokfast_iir(*ema_coefficients(alpha), lamb)`` is
  ``grokfast_ema(alpha, lamb)``.

  The state costs `N` extra copies of the params (in `accumulator_dtype`; a
  high-order filter with poles near 1 wants float32 or wider). The output
  keeps each update leaf's dtype; the arithmetic runs in the wider of the
  state and update dtypes and the state is cast back to its dtype at the end
  of every update.

  Args:
    b: numerator (feed-forward) coefficients, a static 1-D sequence of finite
      floats.
    a: denominator (feedback) coefficients, a static 1-D sequence of finite
      floats with ``a[0] != 0`` and all poles strictly inside the unit circle.
      Under :func:`optax.inject_hyperparams` pass them as lists or tuples, or
      with ``static_args=("b", "a")``.
    lamb: amplification of the filtered component, >= 0, a float or an Optax
      schedule (a function of the step count).
    accumulator_dtype: dtype of the delay registers; `None` (default) uses
      each param's dtype.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`GrokfastIirState`.

  Raises:
    ValueError: `b` or `a` not finite 1-D sequences, ``a[0] == 0``, an
      unstable filter (the message names `a`), `lamb` negative or not finite,
      or a non-floating `accumulator_dtype`.

  Example:
    >>> import jax.numpy as jnp, optax, grokfast_jax as gj
    >>> b, a = gj.butterworth(order=2, cutoff=0.04)
    >>> tx = optax.chain(gj.grokfast_iir(b, a, lamb=2.0), optax.adam(1e-3))
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
    >>> state[0].delay["w"].shape
    (2, 3)

  References:
    Lee et al., `Grokfast: Accelerated Grokking by Amplifying Slow Gradients
    <https://arxiv.org/abs/2405.20233>`_, 2024 (Section 3, on filters beyond
    MA and EMA). Direct form II transposed and the steady-state start as in
    ``scipy.signal.lfilter`` and ``scipy.signal.lfilter_zi``.
  """
  b_n, a_n = _design.normalize_coefficients(b, a)
  zi = _design.lfilter_zi(b_n, a_n)
  order = len(a_n) - 1
  _common.check_in_range("lamb", lamb, lo=0.0, hi=float("inf"), hi_open=True)
  accumulator_dtype = _common.canonical_dtype(accumulator_dtype)
  b0 = float(b_n[0])
  b_rest, a_rest, zi = b_n[1:].tolist(), a_n[1:].tolist(), zi.tolist()

  def init_fn(params):
    delay = _common.tree_map_none(
      lambda p: _common.zeros_state(
        p, _common.state_dtype_for(p, accumulator_dtype), (order,)
      ),
      params,
    )
    return GrokfastIirState(count=jnp.zeros([], jnp.int32), delay=delay)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    count = state.count
    first = count == 0
    lam = _common.hyperparam(lamb, count)

    def leaf(g, z):
      dt = _common.compute_dtype(z.dtype, g.dtype)
      x = g.astype(dt)
      if order == 0:  # a pure gain, no memory
        y, new_z = jnp.asarray(b0, dt) * x, z
      else:
        coef = lambda c: jnp.asarray(c, dt).reshape((order,) + (1,) * x.ndim)
        # First call: start from the steady state for a constant input g_1.
        zt = jnp.where(first, coef(zi) * x, z.astype(dt))
        y = jnp.asarray(b0, dt) * x + zt[0]
        shifted = jnp.concatenate([zt[1:], jnp.zeros_like(zt[:1])], axis=0)
        new_z = coef(b_rest) * x + shifted - coef(a_rest) * y
      out = (x + jnp.asarray(lam, dt) * y).astype(g.dtype)
      return out, new_z.astype(z.dtype)

    pairs = _common.tree_map_none(leaf, updates, state.delay)
    out, delay = _common.unzip_pairs(updates, pairs)
    return out, GrokfastIirState(count=optax.safe_increment(count), delay=delay)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
