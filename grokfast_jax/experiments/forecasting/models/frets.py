"""FreTS (Yi et al., NeurIPS 2023): MLPs in the frequency domain.

"Frequency-domain MLPs are More Effective Learners in Time Series
Forecasting". Restated from the Time-Series-Library definition that the BSA
reference carries (``models/FreTS.py``), as that code actually runs:

1. Token embedding: each scalar of the (C, L) window is multiplied by one
   learnable vector of `embed_size` (N(0, 1) at init): (B, C, L, D).
2. Frequency temporal learner: real FFT along L (``norm="ortho"``), a
   "frequency-domain MLP" on the L // 2 + 1 bins, inverse real FFT back to
   length L (``norm="ortho"``).
3. Residual: the embedded tokens are added back.
4. Head, per channel: flatten (L * D) -> Linear -> LeakyReLU(0.01) ->
   Linear -> H.

The frequency-domain MLP takes complex weights W = R + iI and a complex bias
b = rb + i*ib (R, I: D x D; rb, ib: D; all 0.02 * N(0, 1) at init) and
computes, with X the spectrum,

    real = ReLU(Re X . R - Im X . I + rb)
    imag = ReLU(Im X . R + Re X . I + ib)

then softshrink(lambda = 0.01) on both parts (after the ReLU, max(v - 0.01,
0)). What "." is matters: the reference writes it as
``einsum('bijd,dd->bijd', x, r)``, and a subscript repeated within one
operand takes that operand's diagonal, so the product is ``x * diag(r)``, an
elementwise scaling of each embedding coordinate, not a D x D matrix
product. Only the diagonals of R and I are ever read (their
other entries get zero gradient). That is the default here (``dense=False``);
``dense=True`` uses the full matrix product of the paper's equations instead.

The inverse real FFT ignores the imaginary part of the zero-frequency bin
(and of the Nyquist bin for an even length), which the ReLU / bias usually
make non-zero: as PyTorch documents for ``irfft`` (and as NumPy and JAX's
CPU backend do), the imaginary parts of those bins are set to zero
explicitly before the transform, so no backend's handling of a non-Hermitian
input can change the result.

Channel learner: the reference also defines a frequency MLP across the C
channels (its own R1, I1, rb1, ib1), run first when
``channel_independence == '1'``. The setting is an int (0 in the BSA
reference, hard-coded; Time-Series-Library's command-line default 1) compared
with the *string* '1', so the channel learner never runs there, and the
model is channel-independent: every channel's forecast depends on its own
window only (weights shared). That is the default here
(``channel_mixing=False``, and the channel parameters are then not created);
``channel_mixing=True`` runs it (FFT along C, back to length C, as the
paper's FreTS does).

Initialization follows the reference: the embedding N(0, 1), the frequency
weights and biases 0.02 * N(0, 1) (R and I as full D x D matrices, as in
the reference, even where only their diagonals are read), the head's layers
PyTorch's ``nn.Linear`` default (weight and bias uniform in
+-1/sqrt(fan_in)). The reference's sizes are fixed: embed 128, hidden 256.

FreTS has no input normalization: the optional BSA filters the raw window
(:class:`~grokfast_jax.experiments.forecasting.models._parts.Forecaster`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from grokfast_jax.experiments.forecasting.models._parts import (
  Forecaster,
  spectral_module,
)
from grokfast_jax.experiments.mnist.model import torch_linear

# The reference's fixed settings.
EMBED_SIZE = 128
HIDDEN_SIZE = 256
SPARSITY_THRESHOLD = 0.01
INIT_SCALE = 0.02


def softshrink(x: jax.Array, lambd: float) -> jax.Array:
  """``x - lambd`` above `lambd`, ``x + lambd`` below ``-lambd``, else 0."""
  return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lambd, 0.0)


def hermitian_irfft(
  real: jax.Array, imag: jax.Array, n: int, axis: int
) -> jax.Array:
  """Orthonormal inverse real FFT of length `n` along `axis` of the bins
  ``real + i imag`` (``n // 2 + 1`` of them), ignoring the imaginary parts
  of the zero-frequency bin and, for even `n`, of the Nyquist bin."""
  bins = n // 2 + 1
  keep = jnp.ones((bins,), real.dtype).at[0].set(0.0)
  if n % 2 == 0:
    keep = keep.at[-1].set(0.0)
  keep = keep.reshape((bins,) + (1,) * (real.ndim - 1 - axis % real.ndim))
  return jnp.fft.irfft(
    jax.lax.complex(real, imag * keep), n=n, axis=axis, norm="ortho"
  )


class FrequencyMLP(nnx.Module):
  """One FreTS frequency-domain MLP layer along one axis of (..., D) tokens.

  Real FFT along `axis` (orthonormal), the complex layer of the module
  docstring (diagonal unless `dense`), ReLU, softshrink, inverse real FFT
  back to the axis' length.

  Args:
    embed_size: D.
    dense: full D x D complex product instead of the reference's diagonal.
    rngs: NNX rngs (weights and biases 0.02 * N(0, 1)).
  """

  def __init__(self, embed_size: int, *, dense: bool = False, rngs: nnx.Rngs):
    self.dense = dense

    def draw(*shape):
      return nnx.Param(
        INIT_SCALE * jax.random.normal(rngs.params(), shape, jnp.float32)
      )

    # Drawn in the reference's order: r, i, rb, ib.
    self.r = draw(embed_size, embed_size)
    self.i = draw(embed_size, embed_size)
    self.rb = draw(embed_size)
    self.ib = draw(embed_size)

  def __call__(self, x: jax.Array, axis: int) -> jax.Array:
    n = x.shape[axis]
    spec = jnp.fft.rfft(x, axis=axis, norm="ortho")
    if self.dense:
      r, i = self.r[...], self.i[...]
      mul = lambda v, w: v @ w
    else:
      r, i = jnp.diagonal(self.r[...]), jnp.diagonal(self.i[...])
      mul = jnp.multiply
    real = jax.nn.relu(mul(spec.real, r) - mul(spec.imag, i) + self.rb[...])
    imag = jax.nn.relu(mul(spec.imag, r) + mul(spec.real, i) + self.ib[...])
    real = softshrink(real, SPARSITY_THRESHOLD)
    imag = softshrink(imag, SPARSITY_THRESHOLD)
    return hermitian_irfft(real, imag, n, axis)


class FreTS(Forecaster):
  """FreTS (Yi et al. 2023): token embedding, frequency-domain MLPs, MLP head.

  See the module docstring for the computation and how it follows the
  reference. Maps (B, C, L) windows to (B, C, H) forecasts; with the
  defaults, channel-independent (weights shared by the channels).

  Args:
    embed_size: D, the embedding of each scalar (reference: 128).
    hidden_size: the head's hidden width (reference: 256).
    channel_mixing: also run the frequency MLP across channels, before the
      temporal one (the reference as run: off).
    dense: full D x D complex products in the frequency MLPs (the reference
      as run: diagonal, off).
    channels, lookback, horizon, spectral, rngs: see the package docstring
      (the BSA filters the raw window).
  """

  def __init__(
    self,
    channels: int,
    lookback: int,
    horizon: int,
    *,
    embed_size: int = EMBED_SIZE,
    hidden_size: int = HIDDEN_SIZE,
    channel_mixing: bool = False,
    dense: bool = False,
    spectral: Optional[Mapping[str, Any]] = None,
    rngs: nnx.Rngs,
  ):
    for name, value in (
      ("channels", channels),
      ("lookback", lookback),
      ("horizon", horizon),
      ("embed_size", embed_size),
      ("hidden_size", hidden_size),
    ):
      if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    self.embed_size = embed_size
    self.embeddings = nnx.Param(
      jax.random.normal(rngs.params(), (1, embed_size), jnp.float32)
    )
    self.channel = (
      FrequencyMLP(embed_size, dense=dense, rngs=rngs)
      if channel_mixing
      else None
    )
    self.temporal = FrequencyMLP(embed_size, dense=dense, rngs=rngs)
    self.fc1 = torch_linear(lookback * embed_size, hidden_size, 1.0, rngs)
    self.fc2 = torch_linear(hidden_size, horizon, 1.0, rngs)
    self.spectral = spectral_module(channels, lookback, spectral, rngs)

  def forecast(self, x: jax.Array) -> jax.Array:
    b, c, _ = x.shape
    tokens = x[..., None] * self.embeddings[...]  # (B, C, L, D)
    h = tokens
    if self.channel is not None:
      h = self.channel(h, axis=1)
    h = self.temporal(h, axis=2) + tokens
    h = jax.nn.leaky_relu(self.fc1(h.reshape(b, c, -1)), 0.01)
    return self.fc2(h)
