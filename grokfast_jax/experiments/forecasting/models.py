"""Forecasters for the Spectral Attention experiments.

DLinear, RLinear, PatchTST and a small iTransformer. All map input windows
(B, C, L) to forecasts (B, C, H) and can carry a
:class:`~grokfast_jax.spectral_attention.BatchedSpectralAttention` on their
(C, L) input: as in the BSA reference, on the raw window for DLinear and on
the instance-normalized window for the iTransformer; for RLinear and PatchTST
(our choice) on the raw window in front of the model, before RevIN, whose
statistics are then those of the filtered window, so that the BSA can move
the level of the forecast as it does for DLinear. The BSA starts as the
identity, so a model built with it and loaded with a base model's parameters
(:func:`transfer_params`) predicts exactly like the base model.

Every model is built as ``Model(channels, lookback, horizon, *, ...,
spectral=None, rngs)``: C series, input length L, forecast length H, then its
own sizes, `spectral` (None, or the keyword arguments of a
BatchedSpectralAttention to put on its input) and the NNX rngs.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from grokfast_jax.spectral_attention import BatchedSpectralAttention

MODELS = ("dlinear", "rlinear", "patchtst", "itransformer")
# PatchTST's patching (the paper's setting).
PATCH_LEN = 16
PATCH_STRIDE = 8


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


class _Forecaster(nnx.Module):
  """A model whose optional BSA filters the raw window and whose
  :meth:`forecast` sees it through its RevIN, if it has one."""

  revin = None

  def __call__(self, x: jax.Array) -> jax.Array:
    """(B, C, L) windows -> (B, C, H) forecasts."""
    if self.spectral is not None:
      x = self.spectral(x)
    if self.revin is None:
      return self.forecast(x)
    x, stats = self.revin.normalize(x)
    return self.revin.denormalize(self.forecast(x), stats)


class DLinear(_Forecaster):
  """DLinear (Zeng et al. 2023): trend + seasonal linear maps, shared by channels.

  Args:
    kernel: moving-average width of the trend/seasonal decomposition.
    (channels, lookback, horizon, spectral, rngs: see the module docstring.)
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

  def forecast(self, x: jax.Array) -> jax.Array:
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
    d_model, heads, d_ff, layers: encoder shape.
    (channels, lookback, horizon, spectral, rngs: see the module docstring;
    the BSA filters the normalized window.)
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

  def normalize(self, x: jax.Array) -> tuple[jax.Array,
                                              tuple[jax.Array, jax.Array]]:
    """(B, C, L) windows -> (normalized windows, (mean, std) of (B, C, 1))."""
    mean = jax.lax.stop_gradient(jnp.mean(x, axis=-1, keepdims=True))
    std = jax.lax.stop_gradient(
        jnp.sqrt(jnp.var(x, axis=-1, keepdims=True) + self.eps))
    return (x - mean) / std * self.weight[...] + self.bias[...], (mean, std)

  def denormalize(self, y: jax.Array,
                  stats: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Inverts :meth:`normalize` on (B, C, H) outputs with its `stats`."""
    mean, std = stats
    y = (y - self.bias[...]) / (self.weight[...] + self.eps * self.eps)
    return y * std + mean


class RLinear(_Forecaster):
  """RLinear (Li et al. 2023): RevIN and one linear map L -> H.

  The map is shared by the channels (channel independence): each channel's
  forecast depends on its own window only. Dropout is left out. Args: see
  the module docstring (the BSA filters the raw window, before RevIN).
  """

  def __init__(self, channels: int, lookback: int, horizon: int, *,
               spectral: Optional[Mapping[str, Any]] = None,
               rngs: nnx.Rngs):
    self.revin = RevIN(channels)
    self.linear = nnx.Linear(lookback, horizon, rngs=rngs)
    self.spectral = _spectral(channels, lookback, spectral, rngs)

  def forecast(self, x: jax.Array) -> jax.Array:
    return self.linear(x)


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


class PatchTST(_Forecaster):
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
    (channels, lookback, horizon, spectral, rngs: see the module docstring;
    the BSA filters the raw window, before RevIN.)

  Raises:
    ValueError: a look-back too short for one patch.
  """

  def __init__(self, channels: int, lookback: int, horizon: int, *,
               patch_len: int = PATCH_LEN, stride: int = PATCH_STRIDE,
               d_model: int = 16,
               heads: int = 4, d_ff: int = 128, layers: int = 3,
               spectral: Optional[Mapping[str, Any]] = None,
               rngs: nnx.Rngs):
    if stride < 1 or patch_len < 1:
      raise ValueError(f"patch_len and stride must be >= 1, got {patch_len}, "
                       f"{stride}")
    n = patch_count(lookback, patch_len, stride)
    if n < 1:
      raise ValueError(f"lookback must be >= patch_len - stride = "
                       f"{patch_len - stride} for PatchTST (patch_len "
                       f"{patch_len}, stride {stride}), got {lookback}")
    self.patch_len, self.stride, self.n_patches = patch_len, stride, n
    self.revin = RevIN(channels)
    self.embed = nnx.Linear(patch_len, d_model, rngs=rngs)
    self.pos = nnx.Param(jax.random.uniform(rngs.params(), (n, d_model),
                                            jnp.float32, -0.02, 0.02))
    self.layers = nnx.List([_EncoderLayer(d_model, heads, d_ff, rngs)
                            for _ in range(layers)])
    self.head = nnx.Linear(n * d_model, horizon, rngs=rngs)
    self.spectral = _spectral(channels, lookback, spectral, rngs)

  def forecast(self, x: jax.Array) -> jax.Array:
    b, c = x.shape[:2]
    patches = make_patches(x, self.patch_len, self.stride)  # (B, C, N, P)
    h = self.embed(patches) + self.pos[...]
    h = h.reshape(b * c, self.n_patches, -1)
    for layer in self.layers:
      h = layer(h)
    return self.head(h.reshape(b, c, -1))


def make_model(name: str, channels: int, lookback: int, horizon: int, *,
               seed: int = 0,
               spectral: Optional[Mapping[str, Any]] = None) -> nnx.Module:
  """Builds one of MODELS with its default sizes.

  Args:
    name: one of MODELS.
    channels, lookback, horizon: shapes.
    seed: init seed.
    spectral: None or BatchedSpectralAttention keyword arguments.

  Returns:
    The model.

  Raises:
    ValueError: unknown `name`, or shapes the model cannot take.
  """
  check_shapes(name, lookback, horizon)
  rngs = nnx.Rngs(seed)
  cls = {"dlinear": DLinear, "rlinear": RLinear, "patchtst": PatchTST,
         "itransformer": ITransformer}[name]
  return cls(channels, lookback, horizon, spectral=spectral, rngs=rngs)


def check_shapes(name: str, lookback: int, horizon: int) -> None:
  """Raises ValueError if model `name` cannot take this look-back/horizon."""
  if name not in MODELS:
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")
  if lookback < 1 or horizon < 1:
    raise ValueError(f"lookback and horizon must be >= 1, got {lookback}, "
                     f"{horizon}")
  if name == "patchtst" and patch_count(lookback, PATCH_LEN,
                                        PATCH_STRIDE) < 1:
    raise ValueError(f"lookback must be >= {PATCH_LEN - PATCH_STRIDE} for "
                     f"patchtst (patch length {PATCH_LEN}, stride "
                     f"{PATCH_STRIDE}), got {lookback}")


def transfer_params(source: nnx.Module, target: nnx.Module) -> None:
  """Copies every nnx.Param of `source` into `target` (matching paths).

  Used to start a Spectral Attention model from a trained base model: the
  target's extra (spectral) parameters keep their identity initialization.
  """
  nnx.update(target, nnx.state(source, nnx.Param))
