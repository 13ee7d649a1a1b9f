"""The optimizer of a modular run: the whole Optax chain, built from a config.

:func:`make_optimizer` chains, in this order, the parts a
:class:`~grokfast_jax.experiments.modular.config.ModularConfig` turns on::

  optax.chain(
      record_gradients(64, buffer_size=4096),  # record_spectrum: raw grads
      egalitarian(mask=blocks' kernels),       # egd: EGD
      orthograd(),                             # orthograd: ⊥Grad
      grokfast_ema | grokfast_ma | grokfast_iir,  # filter (none: identity)
      <optimizer>,                             # adam, adamw, lion, muon
      masked(constrain_weight_norm(c, axis)),  # max_weight_norm: last
  )

Parts that are off are left out, so the default chain and its state tree are
exactly those of earlier versions (the paper's Adam with coupled L2, the
filter on the raw loss gradient), and their checkpoints still resume.

Optimizers (Optax's own, each given the warm-up of :func:`lr_schedule`):
``adam`` is ``scale_by_adam`` + ``scale_by_learning_rate`` with coupled L2
before it (``decoupled_wd``: after); ``adamw`` and ``lion`` are
``optax.adamw`` / ``optax.lion``; ``muon`` is ``optax.contrib.muon`` on the
Linear kernels of the transformer blocks (attention qkv and output, MLP fc1
and fc2) and its AdamW fallback (betas ``beta1, beta2``) on everything else
(embeddings, head, biases, LayerNorms), as modded-nanogpt keeps embeddings
and head on Adam; its momentum is Optax's 0.95 (Nesterov), and
``consistent_rms=0.2`` scales its updates to AdamW's typical RMS so that one
learning rate serves both halves. Weight decay is decoupled on both.

Weight norm (``max_weight_norm``) constrains the same block kernels
(:func:`constrained_leaves`), leaving the token and position embeddings and
the head free as the Clip-to-Grok reference does (biases and LayerNorm
parameters, vectors, are never constrained). Flax kernels are ``[in, out]``,
so "row" (a PyTorch weight row, one output unit's incoming weights) is the
norm over axis 0. The initial params are projected into the ball
(:func:`initial_params` only scales rows down) and every update is projected,
last in the chain. With ``weight_norm_scope="all"`` the bound is the
Clip-to-Grok reference's instead (its ``project_to_sphere`` and
``clip_weight_norms``): at init every leaf's PyTorch rows are scaled to norm
exactly ``max_weight_norm`` (up or down; all-zero rows stay zero), and after
each update every leaf but the token embeddings and the head is clipped; a
PyTorch row is axis 0 of a Flax kernel, axis 1 of an embedding and the whole
of a vector (:func:`row_axis`).
"""

from __future__ import annotations

from typing import Any, Optional, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

import grokfast_jax as gj
from grokfast_jax.experiments import settings
from grokfast_jax.experiments.modular import config as config_lib

ModularConfig = config_lib.ModularConfig

# The gradient recorder of `record_spectrum`: coordinates, ring-buffer rows.
SPECTRUM_COORDS = 64
SPECTRUM_BUFFER = 4096
# results.json holds the spectrum averaged over at most this many log bands.
SPECTRUM_BANDS = 64


def lr_schedule(cfg: ModularConfig) -> optax.Schedule:
  """``lr * min(update / warmup_steps, 1)``, update counted from 0."""
  if cfg.warmup_steps == 0:
    return optax.constant_schedule(cfg.lr)
  return lambda count: cfg.lr * jnp.minimum(count / cfg.warmup_steps, 1.0)


def grad_filter(cfg: ModularConfig) -> optax.GradientTransformation:
  """The Grokfast filter of `cfg` (identity for "none")."""
  if cfg.filter == "iir":
    b, a = gj.butterworth(cfg.iir_order, cfg.iir_cutoff)
    return gj.grokfast_iir(tuple(b), tuple(a), lamb=cfg.lamb)
  return (
    settings.grokfast_filter(
      cfg.filter, alpha=cfg.alpha, lamb=cfg.lamb, window_size=cfg.window_size
    )
    or optax.identity()
  )


def filter_coefficients(
  cfg: ModularConfig,
) -> Optional[tuple[str, tuple[np.ndarray, np.ndarray]]]:
  """``(label, (b, a))``: the low-pass the filter of `cfg` amplifies.

  EMA: ``ema_coefficients(alpha)``; MA: the boxcar ``b = ones(w) / w,
  a = [1]``; IIR: its Butterworth design; None for filter "none".
  """
  if cfg.filter == "ema":
    return f"EMA alpha={cfg.alpha:g}", gj.ema_coefficients(cfg.alpha)
  if cfg.filter == "ma":
    w = cfg.window_size
    return f"MA w={w}", (np.full(w, 1.0 / w), np.ones(1))
  if cfg.filter == "iir":
    return (
      f"Butterworth order {cfg.iir_order}, cutoff {cfg.iir_cutoff:g}",
      gj.butterworth(cfg.iir_order, cfg.iir_cutoff),
    )
  return None


def _is_block_kernel(path: Any, x: Any) -> bool:
  keys = jax.tree_util.keystr(path)
  return "['blocks']" in keys and "['kernel']" in keys and jnp.ndim(x) == 2


def constrained_leaves(params: Any) -> Any:
  """Bool tree like `params`: True on the Linear kernels of the blocks.

  These are the leaves ``max_weight_norm`` constrains and Muon
  orthogonalizes; the embeddings, the output head, biases and LayerNorm
  parameters are False.
  """
  return jax.tree_util.tree_map_with_path(_is_block_kernel, params)


def _muon_dimensions(params: Any) -> Any:
  return jax.tree_util.tree_map_with_path(
    lambda path, x: (
      optax.contrib.MuonDimensionNumbers(0, 1)
      if _is_block_kernel(path, x)
      else None
    ),
    params,
  )


def base_optimizer(cfg: ModularConfig) -> list[optax.GradientTransformation]:
  """The optimizer's transforms (after the filter), weight decay included."""
  lr = lr_schedule(cfg)
  wd = cfg.weight_decay
  if cfg.optimizer == "adamw":
    return [
      optax.adamw(lr, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps, weight_decay=wd)
    ]
  if cfg.optimizer == "lion":
    return [optax.lion(lr, b1=cfg.beta1, b2=cfg.beta2, weight_decay=wd)]
  if cfg.optimizer == "muon":
    return [
      optax.contrib.muon(
        lr,
        eps=cfg.eps,
        weight_decay=wd,
        adam_b1=cfg.beta1,
        adam_b2=cfg.beta2,
        adam_weight_decay=wd,
        consistent_rms=0.2,
        muon_weight_dimension_numbers=_muon_dimensions,
      )
    ]
  adam = optax.scale_by_adam(b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps)
  decay = optax.add_decayed_weights(wd)
  scale = optax.scale_by_learning_rate(lr)
  if cfg.decoupled_wd:
    return [adam, decay, scale]
  return [decay, adam, scale]


def row_axis(path: Any, x: Any) -> int:
  """The axis of leaf `x` over which PyTorch's ``norm(dim=-1)`` runs.

  PyTorch stores a Linear weight ``[out, in]``, Flax a kernel ``[in, out]``
  (axis 0); embeddings are ``[n, width]`` in both (axis 1); a vector is its
  own row (axis 0).
  """
  del x
  return 1 if "['embedding']" in jax.tree_util.keystr(path) else 0


def _clipped(axis: int):
  """Mask fn: the leaves scope "all" clips over `axis` after each update."""

  def mask(params: Any) -> Any:
    def keep(path, x):
      keys = jax.tree_util.keystr(path)
      free = "['tok']" in keys or "['head']" in keys
      return not free and row_axis(path, x) == axis

    return jax.tree_util.tree_map_with_path(keep, params)

  return mask


def weight_norm_bound(cfg: ModularConfig) -> list[optax.GradientTransformation]:
  """The chain's last part(s): `max_weight_norm` on the leaves of its scope."""
  c = cfg.max_weight_norm
  if c is None:
    return []
  if cfg.weight_norm_scope == "all":
    return [
      optax.masked(gj.constrain_weight_norm(c, axis=axis), _clipped(axis))
      for axis in (0, 1)
    ]
  axis = config_lib.WEIGHT_NORM_AXES[cfg.weight_norm_axis]
  return [
    optax.masked(gj.constrain_weight_norm(c, axis=axis), constrained_leaves)
  ]


# The float settings a sweep may hold in the optimizer state.
SWEEP_FLOATS = ("lr", "lamb", "alpha", "weight_decay", "max_weight_norm")


class _Swept:
  """`cfg` with some float settings replaced (by the traced values that
  ``optax.inject_hyperparams`` passes its factory)."""

  def __init__(self, cfg: ModularConfig, values: dict[str, Any]):
    self._cfg, self._values = cfg, values

  def __getattr__(self, name: str) -> Any:
    return self._values.get(name, getattr(self._cfg, name))


def make_optimizer(
  cfg: ModularConfig, swept: tuple[str, ...] = ()
) -> optax.GradientTransformation:
  """The whole chain of `cfg` (see the module docstring for its order).

  Args:
    cfg: the settings.
    swept: float settings (of :data:`SWEEP_FLOATS`) to hold in the state:
      the chain is then ``optax.inject_hyperparams`` of the same chain, its
      state holding those values (a sweep's members differ there only).

  Returns:
    An ``optax.GradientTransformation``; call ``update(grads, state,
    params)`` (⊥Grad and the weight-norm bound need the params).

  Raises:
    ValueError: a `swept` name not in :data:`SWEEP_FLOATS`, or one whose
      setting is off (a max_weight_norm of None).
  """
  if swept:
    for name in swept:
      if name not in SWEEP_FLOATS or getattr(cfg, name) is None:
        raise ValueError(
          f"a sweep holds {', '.join(SWEEP_FLOATS)} in the "
          f"optimizer state (each set); got {name!r}"
        )

    # Named parameters: inject_hyperparams keeps the numeric ones it is
    # given in the state (a **kwargs factory would freeze them).
    def factory(
      lr=None, lamb=None, alpha=None, weight_decay=None, max_weight_norm=None
    ):
      values = {
        "lr": lr,
        "lamb": lamb,
        "alpha": alpha,
        "weight_decay": weight_decay,
        "max_weight_norm": max_weight_norm,
      }
      return make_optimizer(
        cast(
          ModularConfig,
          _Swept(cfg, {k: v for k, v in values.items() if k in swept}),
        )
      )

    return optax.inject_hyperparams(factory)(
      **{name: getattr(cfg, name) for name in swept}
    )
  parts = []
  if cfg.record_spectrum:
    parts.append(
      gj.record_gradients(
        SPECTRUM_COORDS, buffer_size=SPECTRUM_BUFFER, seed=cfg.seed
      )
    )
  if cfg.egd:
    parts.append(gj.egalitarian(mask=constrained_leaves))
  if cfg.orthograd:
    parts.append(gj.orthograd())
  parts.append(grad_filter(cfg))
  parts += base_optimizer(cfg)
  parts += weight_norm_bound(cfg)
  return optax.chain(*parts)


def initial_params(cfg: ModularConfig, params: Any) -> Any:
  """`params` projected into the weight-norm ball of `cfg` (if it has one).

  Scope "all" sets every row of every leaf to norm `max_weight_norm`
  exactly (the Clip-to-Grok reference's init); scope "blocks" only scales
  the blocks' kernel rows that lie outside the ball down onto it.
  """
  if cfg.max_weight_norm is None:
    return params
  if cfg.weight_norm_scope == "all":
    c = cfg.max_weight_norm

    def sphere(path, x):
      norm = jnp.linalg.norm(
        x.astype(jnp.float32), axis=row_axis(path, x), keepdims=True
      )
      return (x * (c / jnp.maximum(norm, 1e-8))).astype(x.dtype)

    return jax.tree_util.tree_map_with_path(sphere, params)
  return gj.project_weight_norm(
    params,
    cfg.max_weight_norm,
    axis=config_lib.WEIGHT_NORM_AXES[cfg.weight_norm_axis],
    mask=constrained_leaves,
  )


def _round(values: Any) -> list[float]:
  return [float(f"{v:.4g}") for v in np.asarray(values, np.float64)]


def spectrum_results(cfg: ModularConfig, opt_state: Any) -> dict[str, Any]:
  """The raw-gradient power spectrum recorded by a run, compact.

  Args:
    cfg: the settings (with `record_spectrum`).
    opt_state: the final state of :func:`make_optimizer`'s chain.

  Returns:
    ``num_coords, num_records`` (the last updates, one record each),
    ``freqs`` (cycles per update) and ``power``: the periodogram of
    :func:`grokfast_jax.gradient_spectrum` averaged over at most
    `SPECTRUM_BANDS` log-spaced bands (4 significant digits); no `freqs`
    and `power` with fewer than 2 records.
  """
  state = opt_state[0]
  if not isinstance(state, gj.RecordGradientsState):
    raise ValueError(
      "the optimizer state holds no gradient recorder; build "
      "it with record_spectrum=True"
    )
  n = min(int(state.written), SPECTRUM_BUFFER)
  out = {
    "num_coords": SPECTRUM_COORDS,
    "num_records": n,
    "recorded": "raw gradient, every update",
  }
  if n < 2:
    return out
  freqs, power = gj.gradient_spectrum(state)
  freqs, power = freqs[1:], power[1:]  # f = 0 is 0 after detrending
  edges = np.geomspace(freqs[0], freqs[-1], SPECTRUM_BANDS + 1)
  band = np.clip(
    np.searchsorted(edges, freqs, side="right") - 1, 0, SPECTRUM_BANDS - 1
  )
  keep = [b for b in range(SPECTRUM_BANDS) if np.any(band == b)]
  out["freqs"] = _round([np.exp(np.log(freqs[band == b]).mean()) for b in keep])
  out["power"] = _round([power[band == b].mean() for b in keep])
  return out


def plot_run_spectrum(
  cfg: ModularConfig, spectrum: dict[str, Any], path: Any, title: str
) -> bool:
  """Writes the spectrum with the filter's power gain over it.

  Returns:
    Whether a plot was written (not with fewer than 2 records).
  """
  if "power" not in spectrum:
    return False
  coeffs = filter_coefficients(cfg)
  gj.plot_spectrum(
    spectrum["freqs"],
    spectrum["power"],
    path,
    filters=dict([coeffs]) if coeffs else None,
    title=title,
  )
  return True
