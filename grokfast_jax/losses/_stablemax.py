"""StableMax: a Softmax replacement whose probabilities do not saturate."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from grokfast_jax import _common


def log_stablemax_weights(x: Any) -> jax.Array:
  r"""``log s(x)`` for StableMax's :math:`s`, stable for any finite `x`.

  :math:`\log s(x) = \log(1 + x)` for :math:`x \ge 0` and
  :math:`-\log(1 - x)` for :math:`x < 0`, each branch evaluated only where it
  is taken (so neither values nor gradients see a NaN from the other).
  """
  x = jnp.asarray(x)
  pos = x >= 0
  zero = jnp.zeros_like(x)
  return jnp.where(
    pos,
    jnp.log1p(jnp.where(pos, x, zero)),
    -jnp.log1p(-jnp.where(pos, zero, x)),
  )


def stablemax(logits: Any, axis: int = -1) -> jax.Array:
  r"""StableMax probabilities :math:`s(x_i) / \sum_j s(x_j)` along `axis`.

  :math:`s(x) = x + 1` for :math:`x \ge 0` and :math:`1 / (1 - x)` for
  :math:`x < 0`: it grows linearly rather than exponentially, so the
  probabilities of large logits do not round to exactly 0 or 1 (Softmax
  Collapse).

  Args:
    logits: an array of floats.
    axis: the class axis.

  Returns:
    Probabilities of the same shape and dtype as `logits`.

  Example:
    >>> import jax.numpy as jnp, grokfast_jax as gj
    >>> p = gj.stablemax(jnp.array([0.0, 1.0, -1.0]))  # s = 1, 2, 1/2
    >>> [round(float(v), 6) for v in p]
    [0.285714, 0.571429, 0.142857]
  """
  logits = jnp.asarray(logits)
  x = logits.astype(_common.at_least_f32(logits.dtype))
  zero = jnp.zeros_like(x)
  s = jnp.where(
    x >= 0, jnp.maximum(x, zero) + 1, 1 / (1 - jnp.minimum(x, zero))
  )
  return (s / jnp.sum(s, axis=axis, keepdims=True)).astype(logits.dtype)


def stablemax_cross_entropy(
  logits: Any, labels: Any, axis: int = -1
) -> jax.Array:
  r"""Cross-entropy of StableMax probabilities with integer labels.

  With StableMax :math:`s(x) = x + 1` for :math:`x \ge 0`,
  :math:`1 / (1 - x)` for :math:`x < 0` and :math:`y` the label:

  .. math::

    \ell(x, y) = -\log \frac{s(x_y)}{\sum_j s(x_j)}
      = \operatorname{logsumexp}_j \log s(x_j) - \log s(x_y),

  with :math:`\log s` computed as ``log1p(x)`` or ``-log1p(-x)`` and the sum
  as a log-sum-exp around the largest term (with ``log1p``), so it stays
  finite and accurate in float32 for logits of any magnitude (1e-3 or 1e6).
  A drop-in for ``optax.losses.softmax_cross_entropy_with_integer_labels``;
  the arithmetic runs in at least float32.

  Args:
    logits: unnormalized scores, shape ``[..., num_classes]`` (the class axis
      is `axis`).
    labels: integer class indices, the shape of `logits` without `axis`.
    axis: the class axis of `logits`.

  Returns:
    The per-example loss, shape ``labels.shape``, in the dtype of `logits`.

  Example:
    >>> import jax.numpy as jnp, grokfast_jax as gj
    >>> logits = jnp.array([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]])
    >>> loss = gj.stablemax_cross_entropy(logits, jnp.array([1, 0]))
    >>> [round(float(v), 5) for v in loss]  # -log(2 / 3.5), -log(3 / 5)
    [0.55962, 0.51083]

  References:
    Prieto, Barsbey, Mediano, Birdal, `Grokking at the Edge of Numerical
    Stability <https://arxiv.org/abs/2501.04697>`_, 2025.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(
      f"labels must be integer class indices, got dtype {labels.dtype}"
    )
  axis = axis % logits.ndim if logits.ndim else axis
  if labels.shape != logits.shape[:axis] + logits.shape[axis + 1 :]:
    raise ValueError(
      f"labels must have the shape of logits without axis {axis}, got "
      f"labels {labels.shape} for logits {logits.shape}"
    )
  x = jnp.moveaxis(logits, axis, -1).astype(_common.at_least_f32(logits.dtype))
  ls = log_stablemax_weights(x)
  # log sum_j s_j = ls_m + log1p(sum_{j != m} exp(ls_j - ls_m)), m the
  # argmax: exact whatever m is, and log1p keeps a confident prediction's
  # tiny loss (where logsumexp would round log(1 + tiny) to 0).
  top = jnp.argmax(ls, axis=-1)
  is_top = jnp.arange(ls.shape[-1]) == top[..., None]
  ls_top = jnp.take_along_axis(ls, top[..., None], axis=-1)
  rest = jnp.sum(
    jnp.where(is_top, jnp.zeros_like(ls), jnp.exp(ls - ls_top)), axis=-1
  )
  label_ls = jnp.take_along_axis(ls, labels[..., None], axis=-1)
  return ((ls_top - label_ls)[..., 0] + jnp.log1p(rest)).astype(logits.dtype)
