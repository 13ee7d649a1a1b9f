"""The pieces the forecasters share: the BSA slot on the input window, the
reversible instance normalization, the moving average and a post-norm
encoder layer."""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from grokfast_jax.spectral_attention import BatchedSpectralAttention


def moving_average(x: jax.Array, kernel: int) -> jax.Array:
  """Moving average along the last axis with edge-replicated padding."""
  front = (kernel - 1) // 2
  back = kernel - 1 - front
  padded = jnp.concatenate(
    [
      jnp.repeat(x[..., :1], front, axis=-1),
      x,
      jnp.repeat(x[..., -1:], back, axis=-1),
    ],
    axis=-1,
  )
  csum = jnp.cumsum(padded, axis=-1)
  csum = jnp.concatenate([jnp.zeros_like(csum[..., :1]), csum], axis=-1)
  return (csum[..., kernel:] - csum[..., :-kernel]) / kernel


def spectral_module(
  channels: int,
  lookback: int,
  spectral: Optional[Mapping[str, Any]],
  rngs: nnx.Rngs,
) -> Optional[BatchedSpectralAttention]:
  """The BatchedSpectralAttention on a (C, L) input window (None: none)."""
  if spectral is None:
    return None
  return BatchedSpectralAttention(channels, lookback, rngs=rngs, **spectral)


class Forecaster(nnx.Module):
  """A model whose optional BSA filters the raw window and whose
  ``forecast`` sees it through its RevIN, if it has one."""

  spectral: Optional[BatchedSpectralAttention]
  revin: Optional[RevIN] = None

  def forecast(self, x: jax.Array) -> jax.Array:
    """(B, C, L) windows, normalized by the RevIN if any -> (B, C, H)."""
    raise NotImplementedError

  def __call__(self, x: jax.Array) -> jax.Array:
    """(B, C, L) windows -> (B, C, H) forecasts."""
    if self.spectral is not None:
      x = self.spectral(x)
    if self.revin is None:
      return self.forecast(x)
    x, stats = self.revin.normalize(x)
    return self.revin.denormalize(self.forecast(x), stats)


class EncoderLayer(nnx.Module):
  """Post-norm transformer encoder layer over the variate tokens."""

  def __init__(self, d_model: int, heads: int, d_ff: int, rngs: nnx.Rngs):
    self.attn = nnx.MultiHeadAttention(
      num_heads=heads,
      in_features=d_model,
      qkv_features=d_model,
      decode=False,
      keep_rngs=False,
      rngs=rngs,
    )
    self.norm1 = nnx.LayerNorm(d_model, rngs=rngs)
    self.ff1 = nnx.Linear(d_model, d_ff, rngs=rngs)
    self.ff2 = nnx.Linear(d_ff, d_model, rngs=rngs)
    self.norm2 = nnx.LayerNorm(d_model, rngs=rngs)

  def __call__(self, h: jax.Array) -> jax.Array:
    h = self.norm1(h + self.attn(h))
    return self.norm2(h + self.ff2(jax.nn.gelu(self.ff1(h))))


class RevIN(nnx.Module):
  """Reversible instance normalization (Kim et al. 2022), per channel.

  :meth:`normalize` z-scores each window's channel with its own look-back
  mean and standard deviation (``sqrt(var + eps)``, population variance; both
  statistics without gradient, as in the reference) and applies a learnable
  per-channel affine map (weight 1, bias 0 at init); :meth:`denormalize`
  inverts both on the forecast. ``denormalize(normalize(x), stats)`` is `x`
  (up to float rounding and the ``eps ** 2`` guard on the weight).

  Args:
    channels: number of series C.
    eps: variance guard (1e-5).
  """

  def __init__(self, channels: int, *, eps: float = 1e-5):
    self.eps = eps
    self.weight = nnx.Param(jnp.ones((channels, 1), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((channels, 1), jnp.float32))

  def normalize(
    self, x: jax.Array
  ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(B, C, L) windows -> (normalized windows, (mean, std) of (B, C, 1))."""
    mean = jax.lax.stop_gradient(jnp.mean(x, axis=-1, keepdims=True))
    std = jax.lax.stop_gradient(
      jnp.sqrt(jnp.var(x, axis=-1, keepdims=True) + self.eps)
    )
    return (x - mean) / std * self.weight[...] + self.bias[...], (mean, std)

  def denormalize(
    self, y: jax.Array, stats: tuple[jax.Array, jax.Array]
  ) -> jax.Array:
    """Inverts :meth:`normalize` on (B, C, H) outputs with its `stats`."""
    mean, std = stats
    y = (y - self.bias[...]) / (self.weight[...] + self.eps * self.eps)
    return y * std + mean


@functools.cache
def sinusoid_table(n: int, dim: int) -> np.ndarray:
  """The fixed sinusoidal position table (n, dim), float32: sine on the even
  features, cosine on the odd ones, wavelengths 2 pi 10000^(2i/dim); cached
  and read-only."""
  pos = np.arange(n, dtype=np.float32)[:, None]
  freq = np.exp(
    np.arange(0, dim, 2, dtype=np.float32)
    * np.float32(-math.log(10000.0) / dim)
  )
  table = np.zeros((n, dim), np.float32)
  table[:, 0::2] = np.sin(pos * freq)
  table[:, 1::2] = np.cos(pos * freq)
  table.flags.writeable = False  # cached
  return table


def instance_normalize(
  x: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(B, C, L) windows -> (normalized windows, mean, std), each channel of
  each window z-scored over time: the mean without gradient, the std
  ``sqrt(var + 1e-5)`` (population variance) with it; no affine map."""
  mean = jax.lax.stop_gradient(jnp.mean(x, axis=-1, keepdims=True))
  x = x - mean
  std = jnp.sqrt(jnp.var(x, axis=-1, keepdims=True) + 1e-5)
  return x / std, mean, std
