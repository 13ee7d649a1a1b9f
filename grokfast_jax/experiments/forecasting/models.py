"""Forecasters for the Spectral Attention experiments: DLinear and iTransformer.

Both map input windows (B, C, L) to forecasts (B, C, H) and can carry a
:class:`~grokfast_jax.spectral_attention.BatchedSpectralAttention` on their
(C, L) input, as in the BSA reference: on the raw window for DLinear, on the
instance-normalized window for the iTransformer. The BSA starts as the
identity, so a model built with it and loaded with a base model's parameters
(:func:`transfer_params`) predicts exactly like the base model.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from grokfast_jax.spectral_attention import BatchedSpectralAttention

MODELS = ("dlinear", "itransformer")


def moving_average(x: jax.Array, kernel: int) -> jax.Array:
  """Moving average along the last axis with edge-replicated padding."""
  front = (kernel - 1) // 2
  back = kernel - 1 - front
  padded = jnp.concatenate(
      [jnp.repeat(x[..., :1], front, axis=-1), x,
       jnp.repeat(x[..., -1:], back, axis=-1)], axis=-1)
  csum = jnp.cumsum(padded, axis=-1)
  csum = jnp.concatenate([jnp.zeros_like(csum[..., :1]), csum], axis=-1)
  return (csum[..., kernel:] - csum[..., :-kernel]) / kernel


def _spectral(channels: int, lookback: int,
              spectral: Optional[Mapping[str, Any]],
              rngs: nnx.Rngs) -> Optional[BatchedSpectralAttention]:
  if spectral is None:
    return None
  return BatchedSpectralAttention(channels, lookback, rngs=rngs, **spectral)


class DLinear(nnx.Module):
  """DLinear (Zeng et al. 2023): trend + seasonal linear maps, shared by channels.

  Args:
    channels: number of series C.
    lookback: input length L.
    horizon: forecast length H.
    kernel: moving-average width of the trend/seasonal decomposition.
    spectral: None, or keyword arguments of BatchedSpectralAttention to put
      one on the input window.
    rngs: NNX rngs.
  """

  def __init__(self, channels: int, lookback: int, horizon: int, *,
               kernel: int = 25,
               spectral: Optional[Mapping[str, Any]] = None,
               rngs: nnx.Rngs):
    self.kernel = kernel
    init = nnx.initializers.constant(1.0 / lookback)
    self.seasonal = nnx.Linear(lookback, horizon, kernel_init=init, rngs=rngs)
    self.trend = nnx.Linear(lookback, horizon, kernel_init=init, rngs=rngs)
    self.spectral = _spectral(channels, lookback, spectral, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """(B, C, L) windows -> (B, C, H) forecasts."""
    if self.spectral is not None:
      x = self.spectral(x)
    trend = moving_average(x, self.kernel)
    return self.seasonal(x - trend) + self.trend(trend)


class _EncoderLayer(nnx.Module):
  """Post-norm transformer encoder layer over the variate tokens."""

  def __init__(self, d_model: int, heads: int, d_ff: int, rngs: nnx.Rngs):
    self.attn = nnx.MultiHeadAttention(
        num_heads=heads, in_features=d_model, qkv_features=d_model,
        decode=False, keep_rngs=False, rngs=rngs)
    self.norm1 = nnx.LayerNorm(d_model, rngs=rngs)
    self.ff1 = nnx.Linear(d_model, d_ff, rngs=rngs)
    self.ff2 = nnx.Linear(d_ff, d_model, rngs=rngs)
    self.norm2 = nnx.LayerNorm(d_model, rngs=rngs)

  def __call__(self, h: jax.Array) -> jax.Array:
    h = self.norm1(h + self.attn(h))
    return self.norm2(h + self.ff2(jax.nn.gelu(self.ff1(h))))


class ITransformer(nnx.Module):
  """A small iTransformer (Liu et al. 2024): attention across variate tokens.

  Each channel's instance-normalized look-back window is embedded as one
  token; a post-norm transformer encoder mixes the C tokens and a linear head
  maps each token to its H-step forecast, which is de-normalized. Time-stamp
  tokens and dropout are left out.

  Args:
    channels: number of series C.
    lookback: input length L.
    horizon: forecast length H.
    d_model, heads, d_ff, layers: encoder shape.
    spectral: None, or keyword arguments of BatchedSpectralAttention to put
      one on the normalized input window.
    rngs: NNX rngs.
  """

  def __init__(self, channels: int, lookback: int, horizon: int, *,
               d_model: int = 64, heads: int = 4, d_ff: int = 128,
               layers: int = 2,
               spectral: Optional[Mapping[str, Any]] = None,
               rngs: nnx.Rngs):
    self.embed = nnx.Linear(lookback, d_model, rngs=rngs)
    self.layers = nnx.List([_EncoderLayer(d_model, heads, d_ff, rngs)
                            for _ in range(layers)])
    self.norm = nnx.LayerNorm(d_model, rngs=rngs)
    self.head = nnx.Linear(d_model, horizon, rngs=rngs)
    self.spectral = _spectral(channels, lookback, spectral, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """(B, C, L) windows -> (B, C, H) forecasts."""
    mean = jax.lax.stop_gradient(jnp.mean(x, axis=-1, keepdims=True))
    x = x - mean
    std = jnp.sqrt(jnp.var(x, axis=-1, keepdims=True) + 1e-5)
    x = x / std
    if self.spectral is not None:
      x = self.spectral(x)
    h = self.embed(x)
    for layer in self.layers:
      h = layer(h)
    return self.head(self.norm(h)) * std + mean


def make_model(name: str, channels: int, lookback: int, horizon: int, *,
               seed: int = 0,
               spectral: Optional[Mapping[str, Any]] = None) -> nnx.Module:
  """Builds "dlinear" or "itransformer" with default sizes.

  Args:
    name: one of MODELS.
    channels, lookback, horizon: shapes.
    seed: init seed.
    spectral: None or BatchedSpectralAttention keyword arguments.

  Returns:
    The model.

  Raises:
    ValueError: unknown `name`.
  """
  rngs = nnx.Rngs(seed)
  if name == "dlinear":
    return DLinear(channels, lookback, horizon, spectral=spectral, rngs=rngs)
  if name == "itransformer":
    return ITransformer(channels, lookback, horizon, spectral=spectral,
                        rngs=rngs)
  raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def transfer_params(source: nnx.Module, target: nnx.Module) -> None:
  """Copies every nnx.Param of `source` into `target` (matching paths).

  Used to start a Spectral Attention model from a trained base model: the
  target's extra (spectral) parameters keep their identity initialization.
  """
  nnx.update(target, nnx.state(source, nnx.Param))
