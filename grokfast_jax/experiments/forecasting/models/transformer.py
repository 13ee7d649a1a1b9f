"""Transformer forecasters: the iTransformer (variate tokens) and PatchTST
(patch tokens)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from grokfast_jax.experiments.forecasting.models._parts import (
  EncoderLayer,
  Forecaster,
  RevIN,
  instance_normalize,
  spectral_module,
)

# PatchTST's patching (the paper's setting).
PATCH_LEN = 16
PATCH_STRIDE = 8


class ITransformer(nnx.Module):
  """A small iTransformer (Liu et al. 2024): attention across variate tokens.

  Each channel's instance-normalized look-back window is embedded as one
  token; a post-norm transformer encoder mixes the C tokens and a linear head
  maps each token to its H-step forecast, which is de-normalized. Time-stamp
  tokens and dropout are left out.

  Args:
    d_model, heads, d_ff, layers: encoder shape.
    channels, lookback, horizon, spectral, rngs: see the module docstring
      (the BSA filters the normalized window).
  """

  def __init__(
    self,
    channels: int,
    lookback: int,
    horizon: int,
    *,
    d_model: int = 64,
    heads: int = 4,
    d_ff: int = 128,
    layers: int = 2,
    spectral: Optional[Mapping[str, Any]] = None,
    rngs: nnx.Rngs,
  ):
    self.embed = nnx.Linear(lookback, d_model, rngs=rngs)
    self.layers = nnx.List(
      [EncoderLayer(d_model, heads, d_ff, rngs) for _ in range(layers)]
    )
    self.norm = nnx.LayerNorm(d_model, rngs=rngs)
    self.head = nnx.Linear(d_model, horizon, rngs=rngs)
    self.spectral = spectral_module(channels, lookback, spectral, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """(B, C, L) windows -> (B, C, H) forecasts."""
    x, mean, std = instance_normalize(x)
    if self.spectral is not None:
      x = self.spectral(x)
    h = self.embed(x)
    for layer in self.layers:
      h = layer(h)
    return self.head(self.norm(h)) * std + mean


def patch_count(lookback: int, patch_len: int, stride: int) -> int:
  """Patches of PatchTST's window padded with `stride` copies of its end."""
  return (lookback + stride - patch_len) // stride + 1


def make_patches(x: jax.Array, patch_len: int, stride: int) -> jax.Array:
  """(..., L) -> (..., N, patch_len) patches, after end padding.

  As in PatchTST, the window is first extended by `stride` repeats of its
  last value, so that the last patch ends on the most recent step.
  """
  x = jnp.concatenate([x, jnp.repeat(x[..., -1:], stride, axis=-1)], axis=-1)
  n = patch_count(x.shape[-1] - stride, patch_len, stride)
  idx = jnp.arange(n)[:, None] * stride + jnp.arange(patch_len)[None]
  return x[..., idx]


class PatchTST(Forecaster):
  """PatchTST (Nie et al. 2023), channel-independent, supervised.

  Each channel's window goes through RevIN, is padded at its end with
  `stride` copies of its last value and cut into N patches of `patch_len`
  (stride `stride`; N = 12 for L = 96); a linear patch embedding to
  `d_model` plus a learned positional embedding (uniform in +-0.02 at init)
  feeds a post-norm transformer encoder over the N patch tokens (GELU
  feed-forward), whose outputs are flattened (N * d_model) and mapped to the
  H-step forecast by one linear head, then de-normalized. All channels share
  the weights. Differences from the paper: LayerNorm instead of BatchNorm in
  the encoder, no residual attention scores, no dropout (deterministic
  training).

  The defaults are the paper's ETTh1/ETTh2 setting (3 layers, d_model 16,
  4 heads, d_ff 128, patch length 16, stride 8), cheap enough for a CPU.

  Args:
    patch_len, stride: patching (`lookback` >= patch_len - stride).
    d_model, heads, d_ff, layers: encoder shape.
    channels, lookback, horizon, spectral, rngs: see the module docstring
      (the BSA filters the raw window, before RevIN).

  Raises:
    ValueError: a look-back too short for one patch.
  """

  def __init__(
    self,
    channels: int,
    lookback: int,
    horizon: int,
    *,
    patch_len: int = PATCH_LEN,
    stride: int = PATCH_STRIDE,
    d_model: int = 16,
    heads: int = 4,
    d_ff: int = 128,
    layers: int = 3,
    spectral: Optional[Mapping[str, Any]] = None,
    rngs: nnx.Rngs,
  ):
    if stride < 1 or patch_len < 1:
      raise ValueError(
        f"patch_len and stride must be >= 1, got {patch_len}, {stride}"
      )
    n = patch_count(lookback, patch_len, stride)
    if n < 1:
      raise ValueError(
        f"lookback must be >= patch_len - stride = "
        f"{patch_len - stride} for PatchTST (patch_len "
        f"{patch_len}, stride {stride}), got {lookback}"
      )
    self.patch_len, self.stride, self.n_patches = patch_len, stride, n
    self.revin = RevIN(channels)
    self.embed = nnx.Linear(patch_len, d_model, rngs=rngs)
    self.pos = nnx.Param(
      jax.random.uniform(rngs.params(), (n, d_model), jnp.float32, -0.02, 0.02)
    )
    self.layers = nnx.List(
      [EncoderLayer(d_model, heads, d_ff, rngs) for _ in range(layers)]
    )
    self.head = nnx.Linear(n * d_model, horizon, rngs=rngs)
    self.spectral = spectral_module(channels, lookback, spectral, rngs)

  def forecast(self, x: jax.Array) -> jax.Array:
    b, c = x.shape[:2]
    patches = make_patches(x, self.patch_len, self.stride)  # (B, C, N, P)
    h = self.embed(patches) + self.pos[...]
    h = h.reshape(b * c, self.n_patches, -1)
    for layer in self.layers:
      h = layer(h)
    return self.head(h.reshape(b, c, -1))
