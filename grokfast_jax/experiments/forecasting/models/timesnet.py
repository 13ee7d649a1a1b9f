"""TimesNet (Wu et al., ICLR 2023): 1D series folded into 2D by their periods.

"TimesNet: Temporal 2D-Variation Modeling for General Time Series Analysis".
Restated from the Time-Series-Library definition that the BSA reference
carries (``models/TimesNet.py`` with ``layers/Embed.py`` and
``layers/Conv_Blocks.py``), as its long-term forecast runs:

1. Non-stationary normalization: each window's channel minus its mean over
   time (without gradient), divided by ``sqrt(var + 1e-5)`` (population
   variance, with gradient); no affine. The optional BSA filters this
   normalized (C, L) window, as for the iTransformer here.
2. Data embedding (d_model): a circular Conv1d over time (kernel 3, no bias,
   Kaiming-normal fan-in init) of the C values, plus the fixed sinusoidal
   positional embedding. The reference's time-feature embedding is left out
   (there are no time stamps here), and so is its dropout.
3. ``predict_linear``: a Linear along time L -> T = L + H.
4. `layers` TimesBlocks, each followed by one LayerNorm shared by all blocks.
   A TimesBlock on (B, T, D):

   * FFT_for_Period: real FFT over time; the amplitude averaged over the
     batch and the D features picks the `top_k` frequencies f (the zero
     frequency set to 0 first; ``jax.lax.top_k``, so ties go to the lower
     frequency); the period is ``T // f``. Each sample's weight for a period
     is its own amplitude at f averaged over the features.
   * For each of the k periods p: zero-pad the end of the series to a
     multiple of p (zeros, as in the BSA reference's copy; later
     Time-Series-Library versions repeat the series' last steps instead),
     fold it to a (T_pad / p, p) grid of D channels, apply
     Inception -> GELU -> Inception (each Inception: `num_kernels` Conv2d of
     kernel 1, 3, 5, ... with "same" zero padding, averaged; Kaiming-normal
     fan-out init, zero bias), unfold and keep the first T steps.
   * Sum of the k results weighted by the softmax of the sample's k weights,
     plus the block's input.
5. Projection D -> C, de-normalization (times the std, plus the mean), and
   the last H steps.

The selected frequencies are not differentiated (the reference moves them to
NumPy); the softmax weights are, through the FFT amplitudes. Note that the
samples of a batch interact: the periods are chosen from the batch's mean
spectrum, so a sample's forecast depends on the rest of its batch (as in the
reference, where it is 64 in training and validation and 1 at test).

Fixed shapes under ``jax.jit``: the periods depend on the data, but every
candidate is known statically: f in 1 .. T // 2 gives the period T // f, and
many f share a period (25 distinct periods for T = 192, 55 for T = 816).
Each distinct period is one branch of a ``jax.lax.switch``, and the switch
runs once per selected frequency inside a ``jax.lax.map`` over the k
frequencies; the blocks themselves run as a ``jax.lax.scan`` over their
stacked parameters. So the program holds each period's convolutions once,
whatever the number of blocks, compiles once for any data, and runs only the
k selected foldings. (A selected zero frequency, possible only when fewer
than k non-zero frequencies have a non-zero mean amplitude, makes the
reference divide by zero; here it takes the period T, as f = 1 does.)

Three things keep that fast on a CPU (``benchmarks/micro/timesnet_cost.py``
compares it with running every period and one-hot weights, also exact, and
3-4x slower per step): each Inception block is one merged convolution
(:class:`InceptionBlock`); the convolutions' gradients are written in the
forward's layout (:func:`conv_same`), since XLA's CPU backend runs JAX's own
transposed convolutions 20-60x slower inside control flow; and each branch
is rematerialized in the backward pass (``jax.checkpoint``), so that the
switch's residuals are its operands, shared by all branches, rather than the
union of every branch's intermediates.

The defaults are Time-Series-Library's ETTh1 setting (d_model 16, d_ff 32,
top_k 5, 2 layers, 6 kernels).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from grokfast_jax.experiments.forecasting.models._parts import (
  instance_normalize,
  sinusoid_table,
  spectral_module,
)
from grokfast_jax.experiments.mnist.model import torch_linear

# Time-Series-Library's ETTh1 TimesNet setting.
D_MODEL = 16
D_FF = 32
TOP_K = 5
LAYERS = 2
NUM_KERNELS = 6


@functools.cache
def period_branches(length: int) -> tuple[tuple[int, ...], np.ndarray]:
  """The distinct periods ``length // f`` over the frequencies f = 1 ..
  length // 2 (in decreasing order), and for every rFFT bin f = 0 ..
  length // 2 the index of its period in that tuple (bin 0 maps to f = 1's
  period, `length`)."""
  freqs = np.arange(length // 2 + 1)
  periods = length // np.maximum(freqs, 1)
  distinct = sorted(set(periods.tolist()), reverse=True)
  branch = np.searchsorted(-np.asarray(distinct), -periods).astype(np.int32)
  branch.flags.writeable = False  # cached
  return tuple(distinct), branch


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
  return jax.lax.conv_general_dilated(
    x, kernel, (1, 1), [(pad, pad)] * 2, dimension_numbers=_NHWC
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_same(x: jax.Array, kernel: jax.Array, pad: int) -> jax.Array:
  """Stride-1 2D convolution of (B, H, W, I) `x` with a (2 pad + 1)^2 HWIO
  `kernel`, zero padding `pad`: (B, H, W, O).

  Its gradients are written as two more convolutions in the same NHWC / HWIO
  layout. JAX's own transposes use other dimension orders, which XLA's CPU
  backend runs 20-60x slower inside a ``lax.cond`` or ``lax.scan`` (as here)
  than at the top level (jax-ml/jax#12868); the results are the same.
  """
  return _conv(x, kernel, pad)


def _conv_same_fwd(x, kernel, pad):
  return _conv(x, kernel, pad), (x, kernel)


def _conv_same_bwd(pad, residuals, dy):
  x, kernel = residuals
  # d/dx: correlate with the flipped kernel, in and out swapped.
  dx = _conv(dy, jnp.flip(kernel, (0, 1)).swapaxes(2, 3), pad)
  # d/dkernel: the padded input's I as batch, B as the contracted feature,
  # dy as a (H, W, B, O) kernel.
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  dk = _conv(xp.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), 0)
  return dx, dk.transpose(1, 2, 0, 3)


conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


def _bias(conv: nnx.Conv) -> jax.Array:
  assert conv.bias is not None
  return conv.bias[...]


class InceptionBlock(nnx.Module):
  """Inception_Block_V1's parameters: `num_kernels` Conv2d (kernel 2i + 1,
  zero padding i) whose outputs the reference averages.

  The convolutions share their centre, so their mean is one convolution
  (:meth:`merged`, applied by :func:`fold_conv`) whose kernel is the mean of
  the kernels, each zero-padded to the largest size (2 num_kernels - 1), with
  the mean bias: the same linear map at 121 rather than 286 taps per position
  for 6 kernels. The parameters stay the reference's, one Conv2d each. Init
  as the reference: weights Kaiming-normal (fan-out, ReLU gain), biases zero.
  """

  def __init__(
    self, in_features: int, out_features: int, num_kernels: int, rngs: nnx.Rngs
  ):
    init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
    self.kernels = nnx.List(
      [
        nnx.Conv(
          in_features,
          out_features,
          (2 * i + 1, 2 * i + 1),
          padding=i,
          kernel_init=init,
          bias_init=nnx.initializers.zeros_init(),
          rngs=rngs,
        )
        for i in range(num_kernels)
      ]
    )

  def merged(self) -> tuple[jax.Array, jax.Array]:
    """The one (2n - 1)^2 HWIO kernel and the bias equal to the mean of the
    n convolutions."""
    n = len(self.kernels)
    kernel = jnp.pad(
      self.kernels[0].kernel[...], [(n - 1, n - 1)] * 2 + [(0, 0)] * 2
    )
    bias = _bias(self.kernels[0])
    for i, conv in enumerate(self.kernels[1:], 1):
      pad = [(n - 1 - i, n - 1 - i)] * 2 + [(0, 0)] * 2
      kernel = kernel + jnp.pad(conv.kernel[...], pad)
      bias = bias + _bias(conv)
    return kernel / n, bias / n


def fold_conv(
  x: jax.Array, convs: tuple[tuple[jax.Array, jax.Array], ...], period: int
) -> jax.Array:
  """(B, T, D) `x` zero-padded to a multiple of `period`, folded to a
  (rows, period) grid, through ``conv2(gelu(conv1(.)))`` (`convs`: the two
  merged (kernel, bias) pairs), unfolded: (B, T, D)."""
  b, t, d = x.shape
  rows = -(-t // period)
  h = jnp.pad(x, ((0, 0), (0, rows * period - t), (0, 0)))
  h = h.reshape(b, rows, period, d)
  for i, (kernel, bias) in enumerate(convs):
    if i:
      h = jax.nn.gelu(h, approximate=False)
    h = cast(jax.Array, conv_same(h, kernel, kernel.shape[0] // 2)) + bias
  return h.reshape(b, rows * period, d)[:, :t]


class TimesBlock(nnx.Module):
  """One TimesBlock on (B, T, D) series; see the module docstring.

  Args:
    length: T, the series length it is built for.
    d_model, d_ff: the Inception blocks' widths (D -> d_ff -> D).
    top_k: periods per call.
    num_kernels: kernels per Inception block.
    rngs: NNX rngs.
  """

  def __init__(
    self,
    length: int,
    d_model: int,
    d_ff: int,
    top_k: int,
    num_kernels: int,
    rngs: nnx.Rngs,
  ):
    self.length = length
    self.top_k = top_k
    self.conv1 = InceptionBlock(d_model, d_ff, num_kernels, rngs)
    self.conv2 = InceptionBlock(d_ff, d_model, num_kernels, rngs)

  def select(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """FFT_for_Period on (B, T, D) `x`: the top-k rFFT bins (k,), without
    gradient, and the samples' softmax weights over them (B, k)."""
    amplitude = jnp.abs(jnp.fft.rfft(x, axis=1))  # (B, F, D)
    spectrum = jnp.mean(jnp.mean(amplitude, axis=0), axis=-1).at[0].set(0.0)
    _, top = jax.lax.top_k(jax.lax.stop_gradient(spectrum), self.top_k)
    return top, jax.nn.softmax(jnp.mean(amplitude, axis=-1)[:, top], axis=1)

  def __call__(self, x: jax.Array) -> jax.Array:
    periods, branch_of = period_branches(self.length)
    top, weights = self.select(x)
    # One branch per distinct period, rematerialized in the backward pass:
    # its residuals are then only its operands, which all branches share
    # (otherwise the cond's residuals are the union of every branch's).
    branches = [
      jax.checkpoint(functools.partial(fold_conv, period=p)) for p in periods
    ]
    convs = (self.conv1.merged(), self.conv2.merged())
    res = jax.lax.map(
      lambda i: jax.lax.switch(i, branches, x, convs),
      jnp.asarray(branch_of)[top],
    )  # (k, B, T, D)
    return jnp.einsum("kbtd,bk->btd", res, weights) + x


class TimesNet(nnx.Module):
  """TimesNet (Wu et al. 2023) for long-term forecasting; see the module
  docstring for the computation and how it follows the reference.

  Maps (B, C, L) windows to (B, C, H) forecasts. The samples of a batch are
  not independent (the periods come from the batch's mean spectrum).

  Args:
    d_model: embedding width D (even).
    d_ff: the Inception blocks' hidden width.
    top_k: periods per block.
    num_kernels: Conv2d kernels per Inception block (sizes 1, 3, 5, ...).
    layers: TimesBlocks.
    (channels, lookback, horizon, spectral, rngs: see the package docstring;
    the BSA filters the normalized window.)

  Raises:
    ValueError: a size below 1, an odd `d_model`, or `top_k` above the
      number of non-zero rFFT frequencies of L + H steps, (L + H) // 2.
  """

  def __init__(
    self,
    channels: int,
    lookback: int,
    horizon: int,
    *,
    d_model: int = D_MODEL,
    d_ff: int = D_FF,
    top_k: int = TOP_K,
    num_kernels: int = NUM_KERNELS,
    layers: int = LAYERS,
    spectral: Optional[Mapping[str, Any]] = None,
    rngs: nnx.Rngs,
  ):
    for name, value in (
      ("channels", channels),
      ("lookback", lookback),
      ("horizon", horizon),
      ("d_model", d_model),
      ("d_ff", d_ff),
      ("top_k", top_k),
      ("num_kernels", num_kernels),
      ("layers", layers),
    ):
      if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if d_model % 2:
      raise ValueError(
        f"d_model must be even (sine and cosine halves), got {d_model}"
      )
    length = lookback + horizon
    if top_k > length // 2:
      raise ValueError(
        f"top_k must be <= (lookback + horizon) // 2 = "
        f"{length // 2} (the non-zero frequencies), got "
        f"{top_k}"
      )
    self.lookback, self.horizon, self.d_model = lookback, horizon, d_model
    # TokenEmbedding's Conv1d(C, D, 3) as (tap, C, D), taps t-1, t, t+1.
    self.token = nnx.Param(
      nnx.initializers.variance_scaling(
        2.0, "fan_in", "normal", in_axis=-2, out_axis=-1
      )(rngs.params(), (3, channels, d_model), jnp.float32)
    )
    self.predict_linear = torch_linear(lookback, length, 1.0, rngs)
    self.blocks = nnx.List(
      [
        TimesBlock(length, d_model, d_ff, top_k, num_kernels, rngs)
        for _ in range(layers)
      ]
    )
    self.norm = nnx.LayerNorm(d_model, epsilon=1e-5, rngs=rngs)
    self.projection = torch_linear(d_model, channels, 1.0, rngs)
    self.spectral = spectral_module(channels, lookback, spectral, rngs)

  def embed(self, x: jax.Array) -> jax.Array:
    """(B, L, C) normalized windows -> (B, L, D) tokens."""
    taps = jnp.stack(
      [jnp.roll(x, 1, axis=1), x, jnp.roll(x, -1, axis=1)], axis=2
    )  # (B, L, 3, C): circular padding
    tokens = jnp.einsum("bljc,jcd->bld", taps, self.token[...])
    return tokens + sinusoid_table(x.shape[1], self.d_model)

  def __call__(self, x: jax.Array) -> jax.Array:
    """(B, C, L) windows -> (B, C, H) forecasts."""
    x, mean, std = instance_normalize(x)
    if self.spectral is not None:
      x = self.spectral(x)
    h = self.embed(jnp.swapaxes(x, 1, 2))  # (B, L, D)
    h = jnp.swapaxes(self.predict_linear(jnp.swapaxes(h, 1, 2)), 1, 2)
    # The blocks run as one lax.scan over their stacked parameters, so that
    # their period branches are compiled once, not once per block.
    graphdef, first = nnx.split(self.blocks[0])
    stacked = jax.tree.map(
      lambda *a: jnp.stack(a), first, *(nnx.state(b) for b in self.blocks[1:])
    )

    def layer(h, state):
      return self.norm(nnx.merge(graphdef, state)(h)), None

    h, _ = jax.lax.scan(layer, h, stacked)  # (B, T, D)
    out = jnp.swapaxes(self.projection(h), 1, 2)  # (B, C, T)
    return (out * std + mean)[..., -self.horizon :]
