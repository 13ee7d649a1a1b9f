"""Egalitarian gradient descent: every singular direction of a matrix
gradient moves at the same speed."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import optax

from grokfast_jax import _common

MaskOrFn = Optional[Union[Any, Callable[[Any], Any]]]


def _check_n_iter(n_iter: Any) -> int:
  if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
    raise ValueError(f"n_iter must be an int >= 0, got {n_iter!r}")
  return n_iter


def _whiten(
  g: jax.Array, eps: float, rank: Optional[int], n_iter: int, key: jax.Array
) -> jax.Array:
  """``U diag(1 / max(s, eps)) U^T G`` of one matrix `g` (U, s: its left
  singular vectors and values, exact or from a randomized sketch of rank
  `rank`), in at least float32, cast back to `g`'s dtype."""
  dt = _common.at_least_f32(g.dtype)
  mat = g.astype(dt)
  if rank is None:
    u, s, _ = jnp.linalg.svd(mat, full_matrices=False)
  else:
    r = min(rank, *mat.shape)
    q = jax.random.normal(key, (mat.shape[1], r), dt)
    for _ in range(n_iter):  # power iterations sharpen the top-r subspace
      q = jnp.linalg.qr(mat @ q)[0]
      q = jnp.linalg.qr(mat.T @ q)[0]
    u, s, _ = jnp.linalg.svd(mat @ q, full_matrices=False)
  s = jnp.maximum(s, jnp.asarray(eps, dt))
  return ((u / s) @ (u.T @ mat)).astype(g.dtype)


def egalitarian(
  *,
  eps: float = 1e-6,
  rank: Optional[int] = None,
  n_iter: int = 2,
  seed: int = 0,
  mask: MaskOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Egalitarian gradient descent (EGD): whiten each matrix gradient.

  Each selected matrix gradient :math:`G` (shape ``(m, n)``) is replaced by

  .. math::

    \hat G = (G G^\top)^{-1/2} G
           = U \operatorname{diag}\!\big(1 / \max(s, \epsilon)\big) U^\top G,

  with :math:`G = U \operatorname{diag}(s) V^\top` its thin SVD. Where every
  singular value exceeds :math:`\epsilon`, :math:`\hat G = U V^\top`: every
  singular direction of the gradient gets the same step, so the slow
  directions that delay generalization ("grokking") move as fast as the
  fast ones. Singular values below :math:`\epsilon` are clamped, as in the
  authors' code, so a (nearly) rank-deficient or zero gradient stays finite
  (its tiny directions are scaled by :math:`s/\epsilon`, not blown up).

  With `rank`, :math:`U` and :math:`s` come from the authors' randomized
  low-rank variant instead: a Gaussian sketch :math:`Q` of `rank` columns
  (drawn from `seed`, the same at every step, as in their code), `n_iter`
  power iterations :math:`Q \leftarrow \mathrm{qr}(G Q)`,
  :math:`Q \leftarrow \mathrm{qr}(G^\top Q)`, and the SVD of :math:`G Q`;
  then :math:`\hat G` is whitened on the top-`rank` left singular subspace
  and zero outside it.

  The first axis of a leaf is :math:`m` (Flax kernels are ``(in, out)``, so
  the whitening acts on the input side, as in the authors' one-hidden-layer
  MLP). Stateless: place it first in a chain,
  ``optax.chain(egalitarian(), optax.sgd(0.7))``. The SVD runs in at least
  float32 and the output keeps each leaf's dtype. Under ``jax.vmap`` (many
  seeds as one program) the SVD is batched.

  Args:
    eps: singular values are clamped to at least this (> 0; the authors'
      1e-6).
    rank: None for the exact SVD; an int >= 1 for the randomized variant of
      that rank (capped at ``min(m, n)``; the authors used 64 and 128).
    n_iter: power iterations of the randomized variant (>= 0; the authors'
      2).
    seed: seeds the randomized variant's sketch (leaf `i` uses
      ``fold_in(key(seed), i)``).
    mask: the leaves to whiten, as :func:`optax.masked` takes it: a tree of
      bools matching the params or a function of the params returning one.
      None (default): every 2-D leaf; the others pass unchanged. A
      selected leaf that is not 2-D is an error.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with an
    :class:`optax.EmptyState`.

  Raises:
    ValueError: a setting out of range (at construction), or a selected leaf
      that is not a matrix (at ``init``/``update``, naming the leaf).

  Example:
    >>> import jax.numpy as jnp, optax, grokfast_jax as gj
    >>> tx = gj.egalitarian()
    >>> g = {"w": jnp.array([[3.0, 0.0], [0.0, 0.5]]), "b": jnp.ones(2)}
    >>> updates, _ = tx.update(g, tx.init(g))
    >>> updates["w"].tolist(), updates["b"].tolist()  # both directions 1
    ([[1.0, 0.0], [0.0, 1.0]], [1.0, 1.0])

  References:
    Pasand, Dohmatob, `Egalitarian Gradient Descent: A Simple Approach to
    Accelerated Grokking <https://arxiv.org/abs/2510.04930>`_, ICLR 2026.
  """
  _common.check_in_range(
    "eps", eps, lo=0.0, hi=float("inf"), lo_open=True, hi_open=True
  )
  if rank is not None:
    rank = _common.static_positive_int("rank", rank)
  n_iter = _check_n_iter(n_iter)
  if isinstance(seed, bool) or not isinstance(seed, int):
    raise ValueError(f"seed must be an int, got {seed!r}")
  eps = float(eps)

  def selected(tree):
    if mask is None:
      return jax.tree.map(
        lambda x: x is not None and jnp.ndim(x) == 2,
        tree,
        is_leaf=_common.is_none,
      )
    return mask(tree) if callable(mask) else mask

  def check(tree, chosen):
    def one(path, x, on):
      if x is not None and on and jnp.ndim(x) != 2:
        raise ValueError(
          f"egalitarian: the leaf {jax.tree_util.keystr(path) or '<root>'} "
          f"of shape {tuple(jnp.shape(x))} is selected but is not a "
          f"matrix; leave it out with mask"
        )

    jax.tree_util.tree_map_with_path(one, tree, chosen, is_leaf=_common.is_none)

  def init_fn(params):
    check(params, selected(params))
    return optax.EmptyState()

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    chosen = selected(updates if params is None else params)
    check(updates, chosen)
    leaves, treedef = jax.tree.flatten(updates, is_leaf=_common.is_none)
    flags = treedef.flatten_up_to(chosen)
    key = jax.random.key(seed)
    out = [
      g
      if g is None or not on
      else _whiten(g, eps, rank, n_iter, jax.random.fold_in(key, i))
      for i, (g, on) in enumerate(zip(leaves, flags))
    ]
    return jax.tree.unflatten(treedef, out), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
