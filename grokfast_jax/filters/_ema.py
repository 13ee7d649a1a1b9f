"""Grokfast-EMA: amplify the slow (exponential-moving-average) part of gradients."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from grokfast_jax import _common


class GrokfastEmaState(NamedTuple):
  """State of :func:`grokfast_ema`.

  Attributes:
    count: number of updates seen so far, an int32 scalar.
    mu: the EMA of the incoming updates, a tree like the params held in the
      accumulator dtype (`None` where the params hold `None`).
  """

  count: jax.typing.ArrayLike
  mu: optax.Updates


def grokfast_ema(
  alpha: _common.ScalarOrSchedule = 0.98,
  lamb: _common.ScalarOrSchedule = 2.0,
  *,
  accumulator_dtype: Optional[Any] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Grokfast-EMA: add an amplified exponential moving average of the updates.

  Treats each parameter's gradient over the training steps as a signal and
  adds back `lamb` times its low-pass (EMA) component. With :math:`g_t` the
  incoming update at call :math:`t = 1, 2, \dots`:

  .. math::

    \mu_1 &= g_1, \\
    \mu_t &= \alpha \mu_{t-1} + (1 - \alpha) g_t \quad (t > 1), \\
    \hat g_t &= g_t + \lambda \mu_t .

  There is no bias correction, exactly as in the PyTorch reference
  ``gradfilter_ema``. Chain it in front of an optimizer so the optimizer sees
  :math:`\hat g_t`.

  The state costs one extra copy of the params (in `accumulator_dtype`). The
  output keeps each update leaf's dtype; the arithmetic runs in the wider of
  the state and update dtypes and the state is cast back to its dtype at the
  end of every update.

  Args:
    alpha: EMA momentum in [0, 1), a float or an Optax schedule (a function of
      the step count). Larger is a lower cut-off frequency.
    lamb: amplification of the slow component, >= 0, a float or a schedule.
      A schedule that is 0 for the first `k` steps reproduces the reference's
      two-stage ("trigger") ablation: the EMA keeps accumulating but is only
      added from step `k` on.
    accumulator_dtype: dtype of the EMA state; `None` (default) uses each
      param's dtype.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`GrokfastEmaState`.

  Raises:
    ValueError: `alpha` outside [0, 1), `lamb` negative or not finite, or a
      non-floating `accumulator_dtype`. Schedules and traced values are not
      checked.

  Example:
    >>> import jax.numpy as jnp, optax, grokfast_jax as gj
    >>> tx = optax.chain(gj.grokfast_ema(alpha=0.98, lamb=2.0),
    ...                  optax.adamw(1e-3, weight_decay=0.005))
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)

  References:
    Lee et al., `Grokfast: Accelerated Grokking by Amplifying Slow Gradients
    <https://arxiv.org/abs/2405.20233>`_, 2024.
  """
  _common.check_in_range("alpha", alpha, lo=0.0, hi=1.0, hi_open=True)
  _common.check_in_range("lamb", lamb, lo=0.0, hi=float("inf"), hi_open=True)
  accumulator_dtype = _common.canonical_dtype(accumulator_dtype)

  def init_fn(params):
    mu = _common.tree_map_none(
      lambda p: _common.zeros_state(
        p, _common.state_dtype_for(p, accumulator_dtype)
      ),
      params,
    )
    return GrokfastEmaState(count=jnp.zeros([], jnp.int32), mu=mu)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    count = state.count
    # First call: mu_1 = g_1, i.e. momentum 0 (mu starts at zeros).
    a = jnp.where(count == 0, 0.0, _common.hyperparam(alpha, count))
    lam = _common.hyperparam(lamb, count)

    def leaf(g, mu):
      dt = _common.compute_dtype(mu.dtype, g.dtype)
      a_, lam_ = jnp.asarray(a, dt), jnp.asarray(lam, dt)
      new_mu = a_ * mu.astype(dt) + (1 - a_) * g.astype(dt)
      out = (g.astype(dt) + lam_ * new_mu).astype(g.dtype)
      return out, new_mu.astype(mu.dtype)

    pairs = _common.tree_map_none(leaf, updates, state.mu)
    out, mu = _common.unzip_pairs(updates, pairs)
    return out, GrokfastEmaState(count=optax.safe_increment(count), mu=mu)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
