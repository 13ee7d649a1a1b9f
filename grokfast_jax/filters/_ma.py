"""Grokfast-MA: amplify the windowed moving average of gradients."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from grokfast_jax import _common

FILTER_TYPES = ("mean", "sum")


class GrokfastMaState(NamedTuple):
  """State of :func:`grokfast_ma`.

  Attributes:
    count: number of updates seen so far, an int32 scalar. The next update is
      written to slot `count % window_size` of `window`.
    window: ring buffer of the last `window_size` raw updates; each leaf has
      shape `(window_size, *param.shape)` (zeros where not yet written).
    window_sum: the running sum of `window`: each step adds the new update and
      subtracts the one it evicts.
    cycle_sum: sum of the updates written since the ring was last at slot 0,
      this cycle's slots so far. When the ring wraps it is the sum of the whole
      window, summed afresh, and it replaces `window_sum`: rounding never
      accumulates past one cycle.

  `window` is held in the accumulator dtype; `window_sum` and `cycle_sum` in
  the accumulator dtype widened to at least float32, since they sum many
  updates.
  """

  count: jax.typing.ArrayLike
  window: optax.Updates
  window_sum: optax.Updates
  cycle_sum: optax.Updates


def grokfast_ma(
  window_size: int = 100,
  lamb: _common.ScalarOrSchedule = 5.0,
  *,
  filter_type: Literal["mean", "sum"] = "mean",
  warmup: bool = True,
  accumulator_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Grokfast-MA: add an amplified moving average over a window of updates.

  With :math:`g_t` the incoming update at call :math:`t = 1, 2, \dots`,
  :math:`w` the window size and :math:`n_t = \min(t, w)`:

  .. math::

    S_t &= \sum_{i = t - n_t + 1}^{t} g_i, \qquad
    a_t = S_t / n_t \ (\text{"mean"}) \ \text{ or } \ S_t \ (\text{"sum"}), \\
    \hat g_t &= g_t + \lambda a_t ,

  except that with `warmup=True` the update passes unchanged
  (:math:`\hat g_t = g_t`) until the window is full (:math:`t < w`). This is
  the PyTorch reference ``gradfilter_ma``.

  Cost: the window is a ring buffer with a running sum, so a step reads and
  writes one slot whatever `window_size` is (O(1) in the window, where the
  reference re-sums the whole window every step). When the ring wraps, the
  running sum is replaced by a fresh sum of the window accumulated over that
  cycle, so its rounding error is that of at most about `2 * window_size`
  additions, however long training runs. The state holds
  `window_size` copies of the params in `accumulator_dtype` (the buffer) and
  two more in at least float32 (the running sums): a bf16
  `accumulator_dtype` halves the buffer for f32 params. Donate the optimizer state
  to the jitted step (``jax.jit(step, donate_argnums=...)``): the buffer is
  then updated in place; without donation XLA must copy the whole buffer
  every step to keep the input alive, which makes a step O(window_size).

  Args:
    window_size: number of most recent updates averaged, a static int >= 1.
      Under :func:`optax.inject_hyperparams` pass
      ``static_args=("window_size",)``.
    lamb: amplification of the slow component, >= 0, a float or an Optax
      schedule (a function of the step count). With `warmup=True`, a schedule
      that is 0 for the first `k` steps reproduces the reference's two-stage
      (``trigger=True`` for the first `k` steps) ablation.
    filter_type: ``"mean"`` divides the window sum by its length, ``"sum"``
      does not.
    warmup: pass updates through unchanged until the window is full. With
      `False`, average over the updates seen so far.
    accumulator_dtype: dtype of the window buffer; `None` (default) uses each
      param's dtype. The two running sums use it widened to at least float32.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`GrokfastMaState`.

  Raises:
    ValueError: `window_size` not an int >= 1, `lamb` negative or not finite,
      unknown `filter_type`, non-bool `warmup` or non-floating
      `accumulator_dtype`.

  Example:
    >>> import jax.numpy as jnp, optax, grokfast_jax as gj
    >>> tx = optax.chain(gj.grokfast_ma(window_size=100, lamb=5.0),
    ...                  optax.adam(1e-3))
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)

  References:
    Lee et al., `Grokfast: Accelerated Grokking by Amplifying Slow Gradients
    <https://arxiv.org/abs/2405.20233>`_, 2024.
  """
  w = _common.static_positive_int("window_size", window_size)
  _common.check_in_range("lamb", lamb, lo=0.0, hi=float("inf"), hi_open=True)
  if filter_type not in FILTER_TYPES:
    raise ValueError(
      f"filter_type must be one of {FILTER_TYPES}, got {filter_type!r}"
    )
  if not isinstance(warmup, bool):
    raise ValueError(f"warmup must be a bool, got {warmup!r}")
  accumulator_dtype = _common.canonical_dtype(accumulator_dtype)

  def init_fn(params):
    def window(p):
      return _common.zeros_state(
        p, _common.state_dtype_for(p, accumulator_dtype), (w,)
      )

    def running_sum(p):  # never narrower than f32: it sums many updates
      return _common.zeros_state(
        p, _common.at_least_f32(_common.state_dtype_for(p, accumulator_dtype))
      )

    return GrokfastMaState(
      count=jnp.zeros([], jnp.int32),
      window=_common.tree_map_none(window, params),
      window_sum=_common.tree_map_none(running_sum, params),
      cycle_sum=_common.tree_map_none(running_sum, params),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    count = state.count
    slot = count % w
    seen = jnp.minimum(count + 1, w)  # length of the window after this step
    apply = (count + 1 >= w) if warmup else jnp.asarray(True)
    lam = _common.hyperparam(lamb, count)
    # False at run time (the count never goes negative), but not known to be
    # false when compiling: see the buffer write below.
    never = count < 0

    def leaf(g, buf, total, cycle):
      dt = _common.compute_dtype(total.dtype, g.dtype)
      sum_dtype = total.dtype
      new = g.astype(buf.dtype)  # exactly what the buffer will hold
      evicted = jax.lax.dynamic_index_in_dim(buf, slot, 0, keepdims=False)
      cycle = jnp.where(
        slot == 0, jnp.zeros_like(cycle, dt), cycle.astype(dt)
      ) + new.astype(dt)
      # At a wrap the cycle's sum is a fresh sum of the whole window.
      total = jnp.where(
        slot == w - 1,
        cycle,
        total.astype(dt) + new.astype(dt) - evicted.astype(dt),
      )
      # The evicted entry is read before the slot is overwritten. To update
      # the buffer in place (with donation) XLA must see that read ordered
      # before the write; otherwise it copies the whole buffer every step. The
      # written value therefore depends on the new sum, which depends on the
      # read, through a select that is always `new` at run time.
      buf = jax.lax.dynamic_update_index_in_dim(
        buf, jnp.where(never, total.astype(buf.dtype), new), slot, 0
      )
      avg = total / seen.astype(dt) if filter_type == "mean" else total
      out = jnp.where(
        apply, g.astype(dt) + jnp.asarray(lam, dt) * avg, g.astype(dt)
      ).astype(g.dtype)
      return out, buf, total.astype(sum_dtype), cycle.astype(sum_dtype)

    leaves = _common.tree_map_none(
      leaf, updates, state.window, state.window_sum, state.cycle_sum
    )
    out, window, total, cycle = _common.unzip_pairs(updates, leaves, 4)
    return out, GrokfastMaState(
      count=optax.safe_increment(count),
      window=window,
      window_sum=total,
      cycle_sum=cycle,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
