"""⊥Grad: keep only the part of each gradient orthogonal to its weights."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from grokfast_jax import _common


def needs_params_error(name: str) -> ValueError:
  """The error raised when a transform that needs the params gets none."""
  return ValueError(
    f"{name} needs the params: pass them to tx.update(grads, state, params) "
    f"(optax.chain and the Optax wrappers pass them through)"
  )


def orthograd(*, eps: float = 1e-30) -> optax.GradientTransformationExtraArgs:
  r"""⊥Grad: drop each gradient's component along its weights, keep its norm.

  Per parameter leaf, with :math:`w` and :math:`g` the flattened weights and
  gradient:

  .. math::

    g_\perp &= g - \frac{\langle w, g \rangle}{\langle w, w \rangle +
      \epsilon} \, w, \\
    \hat g &= g_\perp \, \frac{\lVert g \rVert}{\lVert g_\perp \rVert +
      \epsilon} .

  The step then cannot grow (or shrink) the weights' norm along the
  direction they already point to, the "naive loss minimization" that scales
  up the logits and drives Softmax Collapse; rescaling keeps the step size of
  the optimizer that follows. Chain it first:
  ``optax.chain(orthograd(), optax.adamw(...))``. A leaf of zero weights
  passes its gradient unchanged (up to :math:`\epsilon`). A one-entry leaf
  (a scalar) is always parallel to its weight, so its :math:`g_\perp` is
  exactly 0 here and so is its output (unless the weight is 0); the formula
  above, as the reference computes it, would leave rounding noise that the
  rescaling blows up to :math:`\pm\lVert g \rVert` or 0 depending on the
  compiler. Where a larger gradient is parallel to its weights the same noise
  remains: leave such leaves out with :func:`optax.masked`.

  Stateless; it needs the params, so call ``tx.update(grads, state, params)``.
  The arithmetic runs in at least float32 and the output keeps each gradient
  leaf's dtype. On sharded params the two inner products per leaf are
  reductions over the whole leaf (one all-reduce each under SPMD).

  Args:
    eps: a small float > 0 added to both denominators, as in the reference.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with an
    :class:`optax.EmptyState`.

  Raises:
    ValueError: `eps` not a finite number > 0 (at construction), or no params
      given to ``update``.

  Example:
    >>> import jax.numpy as jnp, optax, grokfast_jax as gj
    >>> tx = optax.chain(gj.orthograd(), optax.sgd(0.1))
    >>> params = {"w": jnp.array([1.0, 0.0])}
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.array([3.0, 4.0])}, state, params)
    >>> updates["w"].tolist()  # the radial part is gone, the norm (5) kept
    [-0.0, -0.5]

  References:
    Prieto, Barsbey, Mediano, Birdal, `Grokking at the Edge of Numerical
    Stability <https://arxiv.org/abs/2501.04697>`_, 2025.
  """
  _common.check_in_range(
    "eps", eps, lo=0.0, hi=float("inf"), lo_open=True, hi_open=True
  )

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise needs_params_error("orthograd (⊥Grad)")

    def leaf(g, w):
      dt = _common.at_least_f32(_common.compute_dtype(w.dtype, g.dtype))
      gf, wf = g.astype(dt), w.astype(dt)
      e = jnp.asarray(eps, dt)
      if g.size == 1:  # exactly parallel: no rounding noise to rescale
        perp = jnp.where(wf == 0, gf, jnp.zeros_like(gf))
      else:
        proj = jnp.sum(wf * gf) / (jnp.sum(wf * wf) + e)
        perp = gf - proj * wf
      scale = jnp.sqrt(jnp.sum(gf * gf)) / (jnp.sqrt(jnp.sum(perp * perp)) + e)
      return (perp * scale).astype(g.dtype)

    return _common.tree_map_none(leaf, updates, params), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
