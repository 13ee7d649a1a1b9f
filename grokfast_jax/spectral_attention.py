r"""Spectral Attention: a learnable low-/high-pass filter across training samples.

Spectral Attention (Kang et al., NeurIPS 2024) keeps exponential moving
averages (EMAs) of a feature over consecutive samples of a time series and
lets the network mix the low-pass (EMA) and high-pass (feature minus EMA)
parts with learnable per-position softmax weights. Inserted anywhere in a
forecaster (usually on its input window) it gives the model access to
long-range trends beyond the look-back window.

With the feature :math:`F_t \in \mathbb{R}^{C \times L}` of sample :math:`t`,
smoothing factors :math:`\alpha_1, \dots, \alpha_N` and EMAs
:math:`M_{i,t} = \alpha_i M_{i,t-1} + (1 - \alpha_i) F_t`, the components are

.. math::

  S = [F - M_N, \dots, F - M_1, \tfrac12 F, M_1, \dots, M_N]

and the output is :math:`2 \sum_k W_k \odot S_k` with
:math:`W = \mathrm{softmax}_k(\Theta)`, :math:`\Theta \in
\mathbb{R}^{C \times (2N+1) \times L}` initialised to
:math:`\Theta_{c,k,l} = -(N - k)^2 / 4` (:math:`k = 0, \dots, 2N`). The
initial weights are symmetric about :math:`k = N`, so the EMA terms cancel and
the module starts as the identity. Equivalently, the output is

.. math::

  (2 \textstyle\sum_{k<N} W_k + W_N) \odot F
  + \sum_{i=1}^N 2 (W_{N+i} - W_{N-i}) \odot M_i ,

which is how it is computed here.

Two modules:

* :class:`SpectralAttention` takes one sample per call (the reference's
  batch-size-1 ``Momentum``): the EMA is updated with the current sample and
  then used, :math:`M_t` includes :math:`F_t`.
* :class:`BatchedSpectralAttention` (BSA) takes a mini-batch of `B`
  consecutive samples in time order (the reference's ``Momentum_batch`` /
  ``Momentum_batch_learnable``). Sample `t` uses the EMA of the strictly
  earlier samples (sample 0 the carried state), unrolled inside the batch
  (by a blocked associative scan, channel chunk by channel chunk, or in
  closed form for short batches of few channels), so the loss of a later
  sample back-propagates into the features of earlier samples of the same
  batch (BPTT).

The carried EMA is a :class:`SpectralState` variable: part of
``nnx.state(module)`` (and so of checkpoints) but not an ``nnx.Param``, so
optimizers built with ``wrt=nnx.Param`` skip it. It never carries gradients.
Call ``reset()`` at epoch boundaries and :func:`warm_up` over the preceding
history before inference.

References:
  Bong Gyun Kang, Dongjun Lee, HyunGi Kim, DoHyun Chung, Sungroh Yoon,
  "Introducing Spectral Attention for Long-Range Dependency in Time Series
  Forecasting", NeurIPS 2024, arXiv:2410.20772.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence, Union

import jax
import jax.numpy as jnp
from flax import nnx

DEFAULT_ALPHAS = (0.9, 0.99, 0.999)

# The in-batch EMAs are float32 contractions (einsum) over up to B samples with
# weights down to (1 - alpha) alpha^B. At the backend's default precision a GPU
# contracts float32 in a reduced-precision mode and a TPU in bfloat16: on an
# H100 the closed form and the scan then drifted 2-3e-5 (relative) from the
# float32 recursion, against 1e-6 on CPU. Full float32 everywhere.
_PRECISION = jax.lax.Precision.HIGHEST


class SpectralState(nnx.Variable):
  """Carried (non-trainable) state of the Spectral Attention modules."""


def _check_positive_int(name: str, value: int) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{name} must be a positive int (>= 1), got {value!r}")
  return value


def _check_alphas(alphas: Sequence[float]) -> tuple[float, ...]:
  try:
    values = tuple(float(a) for a in alphas)
  except TypeError as e:
    raise ValueError(
        f"alphas must be a non-empty sequence of floats in (0, 1), got "
        f"{alphas!r}") from e
  if not values:
    raise ValueError("alphas must be a non-empty sequence of floats in (0, 1),"
                     " got an empty sequence")
  for a in values:
    if not (0.0 < a < 1.0) or math.isnan(a):
      raise ValueError(f"each of alphas must lie in (0, 1), got {alphas!r}")
  return values


def _initial_logits(channels: int, n: int, length: int) -> jax.Array:
  """Logits -(N - k)^2 / 4 for k = 0..2N, broadcast to (C, 2N+1, L)."""
  k = jnp.arange(2 * n + 1, dtype=jnp.float32)
  logits = -((n - k) ** 2) / 4.0
  return jnp.broadcast_to(logits[None, :, None], (channels, 2 * n + 1, length))


def _mix(logits: jax.Array, feature: jax.Array, emas: jax.Array) -> jax.Array:
  """2 * sum_k softmax(logits)_k * S_k, in the reduced form.

  Args:
    logits: (C, 2N+1, L).
    feature: (..., C, L).
    emas: (..., N, C, L), M_1..M_N matching `feature`'s leading axes.

  Returns:
    (..., C, L).
  """
  coef_f, coef_m = _mix_coefficients(logits)
  coef_m = jnp.swapaxes(coef_m, 0, 1)  # (N, C, L)
  out = coef_f * feature + jnp.sum(coef_m * emas, axis=-3)
  return out.astype(feature.dtype)


def _mix_coefficients(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The reduced mix's weights of F, (C, L), and of M_1..M_N, (C, N, L).

  Args:
    logits: (C, 2N+1, L).
  """
  n = (logits.shape[1] - 1) // 2
  w = jax.nn.softmax(logits, axis=1)  # (C, 2N+1, L)
  coef_f = 2.0 * jnp.sum(w[:, :n], axis=1) + w[:, n]  # (C, L)
  # Component N+i is M_i, component N-i is F - M_i (i = 1..N).
  coef_m = 2.0 * (w[:, n + 1:] - jnp.flip(w[:, :n], axis=1))  # (C, N, L)
  return coef_f, coef_m


class SpectralAttention(nnx.Module):
  r"""Spectral Attention over one sample per call (sequential form).

  Keeps :math:`N` EMAs of the incoming feature across calls,
  :math:`M_{i,t} = \alpha_i M_{i,t-1} + (1-\alpha_i) F_t` (the state is set to
  :math:`F_t` on the first call or after :meth:`reset`), and returns

  .. math::

    2 \sum_k \mathrm{softmax}_k(\Theta)_k \odot S_k, \qquad
    S = [F - M_N, \dots, F - M_1, \tfrac12 F, M_1, \dots, M_N],

  with :math:`M_{i,t}` including the current sample (as the reference's
  batch-size-1 module does). The gradient flows into the current feature
  only; the carried state is a constant (stop-gradient). At initialization the
  output equals the input.

  Deviation from the reference: on its first call the reference puts
  :math:`F` (not :math:`F/2`) in the middle slot and zeros in the high-pass
  slots, so its first output is :math:`(1 + W_N) F`; here every call uses the
  formula above, so the first output is exactly the identity at init.

  Args:
    channels: number of channels `C` (positive int).
    length: feature length `L` (positive int).
    alphas: smoothing factors, each in (0, 1); larger is a lower cut-off.
    rngs: an ``nnx.Rngs`` (unused: the init is deterministic; kept for the
      usual NNX constructor signature).

  Returns:
    Calling the module on a (C, L) array returns a (C, L) array.

  Raises:
    ValueError: `channels` or `length` not a positive int, `alphas` empty or
      outside (0, 1), or an input of the wrong shape.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from grokfast_jax.spectral_attention import SpectralAttention
    >>> sa = SpectralAttention(7, 96, rngs=nnx.Rngs(0))
    >>> y = sa(jnp.ones((7, 96)))  # identity at init
    >>> sa.reset()                 # e.g. at an epoch boundary

  References:
    Kang et al., "Introducing Spectral Attention for Long-Range Dependency in
    Time Series Forecasting", NeurIPS 2024, arXiv:2410.20772.
  """

  def __init__(self, channels: int, length: int, *,
               alphas: Sequence[float] = DEFAULT_ALPHAS, rngs: nnx.Rngs):
    del rngs
    self.channels = _check_positive_int("channels", channels)
    self.length = _check_positive_int("length", length)
    self.alphas = _check_alphas(alphas)
    n = len(self.alphas)
    self.logits = nnx.Param(_initial_logits(channels, n, length))
    self.ema = SpectralState(jnp.zeros((n, channels, length), jnp.float32))
    self.initialized = SpectralState(jnp.array(False))

  def alpha_array(self) -> jax.Array:
    """The smoothing factors as an (N, C) array."""
    a = jnp.asarray(self.alphas, jnp.float32)[:, None]
    return jnp.broadcast_to(a, (len(self.alphas), self.channels))

  def reset(self) -> None:
    """Forgets the carried EMAs; the next call restarts them from its input."""
    self.ema[...] = jnp.zeros_like(self.ema[...])
    self.initialized[...] = jnp.array(False)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Filters one sample.

    Args:
      x: the feature of the current sample, shape (channels, length).

    Returns:
      The filtered feature, shape (channels, length), dtype of `x`.
    """
    if x.shape != (self.channels, self.length):
      raise ValueError(f"x must have shape (channels, length) = "
                       f"{(self.channels, self.length)}, got {x.shape}")
    out, m = _sequential_core(self.logits[...], self.alpha_array(),
                              self.ema[...], self.initialized[...], x)
    self.ema[...] = m
    self.initialized[...] = jnp.array(True)
    return out


@jax.jit
def _sequential_core(logits, alphas, ema, initialized, x):
  """One sequential step: (output, new EMA state); jitted as one program."""
  f = x.astype(jnp.float32)
  prev = jnp.where(initialized, ema, jax.lax.stop_gradient(f)[None])
  a = alphas[:, :, None]  # (N, C, 1)
  m = a * prev + (1.0 - a) * f[None]
  return _mix(logits, f, m).astype(x.dtype), jax.lax.stop_gradient(m)


def _logit(p: float) -> float:
  return math.log(p) - math.log1p(-p)


class BatchedSpectralAttention(nnx.Module):
  r"""Batched Spectral Attention (BSA) over a mini-batch of consecutive samples.

  The batch axis holds `B` consecutive samples in time order (an unshuffled
  sliding-window loader). The EMA recursion is unrolled inside the batch:
  with the carried state :math:`M_0` and features
  :math:`F_0, \dots, F_{B-1}`, sample `t` uses the EMA of the strictly
  earlier samples,

  .. math::

    E_t = \alpha^t M_0 + \sum_{s < t} (1 - \alpha) \alpha^{t-1-s} F_s ,

  the solution of the first-order linear recurrence
  :math:`E_{t+1} = \alpha E_t + (1 - \alpha) F_t`, :math:`E_0 = M_0`.
  Two methods compute the same :math:`E_0, \dots, E_B` (to float32 rounding;
  neither divides by powers of :math:`\alpha`, so both stay accurate for
  :math:`\alpha` near 1 and batches of a thousand):

  * ``"closed"``: one (B+1) x B lower-triangular matrix product per smoothing
    factor and channel. O(B^2 N C L) work and an O(B^2 N C) kernel in memory
    (4.0 GB at B = 1024, N = 3, C = 321; 12.4 GB for forward + backward):
    fast only for short batches.
  * ``"scan"``: each sample is an affine map :math:`E \mapsto a E + b`
    (:math:`a = \alpha`, :math:`b = (1-\alpha) F_t`), and maps compose
    associatively, :math:`(a_2, b_2) \circ (a_1, b_1) = (a_2 a_1,
    a_2 b_1 + b_2)`. The batch is cut into blocks of K = 16 samples, closed
    form inside a block and ``jax.lax.associative_scan`` across blocks:
    O(B K N C L) work (linear in B) and O(log(B / K)) depth. The channels are
    independent, so they are filtered in chunks (``jax.lax.map``, each chunk
    recomputed in the backward pass by ``jax.checkpoint``) and mixed block by
    block: the (B, N, C, L) EMAs are never stored. On CPU the compiled
    forward + backward needs about four times the input's size (0.5 GB at
    B = 1024, C = 321, L = 96; 1.3 GB at C = 862), over 20x less than the
    closed form; on an H100, where the channels run in one chunk up to about
    that size, 1 GB at B = 1024, C = 321 (8x less than the closed form there).
  * ``"auto"`` (default) picks from the static shapes at trace time: the
    closed form for short batches of few channels (B <= 16 with C < 64), the
    scan otherwise (measured on CPU with ``benchmarks/bsa_cost.py``).

  The output for sample `t` is the Spectral Attention mix of :math:`F_t` and
  :math:`E_{1..N,t}` (see the module docstring); it is the identity at
  initialization. The state after the batch, :math:`E_B`, is carried to the
  next call without gradient; on the first call (or after :meth:`reset`) the
  carried state is the first sample's feature.

  With ``bptt=True`` the loss at sample `t` back-propagates into the features
  of the earlier samples of the same batch; ``bptt=False`` stops the gradient
  through the in-batch history (the current sample's own term keeps its
  gradient). With ``learnable_alpha=True`` the smoothing factors are
  :math:`\sigma(\theta)` per component and channel, :math:`\theta` an
  ``nnx.Param`` of shape (N, C) initialized to :math:`\mathrm{logit}(\alpha_i)`;
  they receive gradients through the in-batch EMA (also with ``bptt=False``;
  the reference detaches them too in that case).

  Feeding `2B` consecutive samples in one call gives the same outputs and
  final state as two calls of `B` (up to float rounding). Cost per call:
  see ``method`` above; the mix itself is O(B N C L).

  Args:
    channels: number of channels `C` (positive int).
    length: feature length `L` (positive int).
    alphas: smoothing factors, each in (0, 1).
    learnable_alpha: learn the smoothing factors (sigmoid-parametrized).
    bptt: back-propagate through the in-batch EMA history.
    method: how the in-batch EMA is computed, one of ``"auto"``,
      ``"closed"``, ``"scan"`` (same results; see above).
    rngs: an ``nnx.Rngs`` (unused: the init is deterministic).

  Returns:
    Calling the module on a (B, C, L) array returns a (B, C, L) array.

  Raises:
    ValueError: bad `channels`, `length`, `alphas` or `method`, or an input of
      the wrong shape.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from grokfast_jax.spectral_attention import BatchedSpectralAttention
    >>> bsa = BatchedSpectralAttention(7, 96, rngs=nnx.Rngs(0))
    >>> windows = jnp.ones((32, 7, 96))  # 32 consecutive input windows
    >>> y = bsa(windows)                 # identity at init
    >>> bsa.reset()                      # at the next epoch
    >>> long = BatchedSpectralAttention(7, 96, method="scan",
    ...                                 rngs=nnx.Rngs(0))
    >>> y = long(jnp.ones((1024, 7, 96)))  # linear in the batch size

  References:
    Kang et al., "Introducing Spectral Attention for Long-Range Dependency in
    Time Series Forecasting", NeurIPS 2024, arXiv:2410.20772.
  """

  def __init__(self, channels: int, length: int, *,
               alphas: Sequence[float] = DEFAULT_ALPHAS,
               learnable_alpha: bool = False, bptt: bool = True,
               method: str = "auto", rngs: nnx.Rngs):
    del rngs
    self.channels = _check_positive_int("channels", channels)
    self.length = _check_positive_int("length", length)
    self.alphas = _check_alphas(alphas)
    self.learnable_alpha = bool(learnable_alpha)
    self.bptt = bool(bptt)
    if not isinstance(method, str) or method not in METHODS:
      raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    self.method = method
    n = len(self.alphas)
    self.logits = nnx.Param(_initial_logits(channels, n, length))
    if self.learnable_alpha:
      theta = jnp.asarray([_logit(a) for a in self.alphas], jnp.float32)
      self.alpha_logits = nnx.Param(
          jnp.broadcast_to(theta[:, None], (n, channels)))
    else:
      self.alpha_logits = None
    self.ema = SpectralState(jnp.zeros((n, channels, length), jnp.float32))
    self.initialized = SpectralState(jnp.array(False))

  def _alpha_logits(self) -> jax.Array:
    """The (N, C) logits of the smoothing factors (fixed or learnable)."""
    if self.alpha_logits is not None:
      return self.alpha_logits[...]
    theta = jnp.asarray([_logit(a) for a in self.alphas], jnp.float32)
    return jnp.broadcast_to(theta[:, None], (len(self.alphas), self.channels))

  def alpha_array(self) -> jax.Array:
    """The current smoothing factors as an (N, C) array."""
    return jax.nn.sigmoid(self._alpha_logits())

  def reset(self) -> None:
    """Forgets the carried EMAs; the next call restarts them from its input."""
    self.ema[...] = jnp.zeros_like(self.ema[...])
    self.initialized[...] = jnp.array(False)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Filters a batch of consecutive samples.

    Args:
      x: features of `B` consecutive samples in time order, shape
        (B, channels, length).

    Returns:
      The filtered features, shape (B, channels, length), dtype of `x`.
    """
    if x.ndim != 3 or x.shape[1:] != (self.channels, self.length):
      raise ValueError(f"x must have shape (batch, channels, length) = "
                       f"(B, {self.channels}, {self.length}), got {x.shape}")
    method = _resolve_method(self.method, x.shape[0], self.channels)
    out, m = _batched_core(self.logits[...], self._alpha_logits(),
                           self.ema[...], self.initialized[...], x, self.bptt,
                           method)
    self.ema[...] = m
    self.initialized[...] = jnp.array(True)
    return out


def _ema_kernel(log_a: jax.Array, gain: jax.Array, k: int) -> jax.Array:
  """kernel[n, c, t, s] = (1 - a) a^(t-1-s) for s < t, else 0; (N, C, K+1, K).

  `log_a` and `gain` are (N, C) here, or (C, N) for a (C, N, K+1, K) kernel.
  Only powers alpha^j <= 1 appear (exp of j * log(alpha)), never a division
  by alpha^t.
  """
  t = jnp.arange(k + 1, dtype=jnp.float32)[:, None]  # (K+1, 1)
  s = jnp.arange(k, dtype=jnp.float32)[None, :]  # (1, K)
  lag = t - 1.0 - s  # (K+1, K); >= 0 where s < t
  causal = lag >= 0
  safe_lag = jnp.where(causal, lag, 0.0)
  kernel = gain[:, :, None, None] * jnp.exp(
      safe_lag[None, None] * log_a[:, :, None, None])
  return jnp.where(causal[None, None], kernel, 0.0)


def _unrolled_emas(theta: jax.Array, f: jax.Array, m0: jax.Array,
                   bptt: bool) -> tuple[jax.Array, jax.Array]:
  """In-batch EMAs in closed form: one (B+1) x B kernel per alpha and channel.

  alpha = sigmoid(theta); log(alpha) and 1 - alpha come from log_sigmoid and
  sigmoid(-theta), so alpha near 1 loses no precision to cancellation, and
  the kernel only holds powers alpha^k <= 1 (no division by alpha^t).

  Returns:
    (E_0..E_{B-1} of shape (B, N, C, L), E_B of shape (N, C, L)); E_t
    excludes sample t.
  """
  b = f.shape[0]
  log_a = jax.nn.log_sigmoid(theta)  # (N, C)
  gain = jax.nn.sigmoid(-theta)  # 1 - alpha
  kernel = _ema_kernel(log_a, gain, b)  # (N, C, B+1, B)
  t = jnp.arange(b + 1, dtype=jnp.float32)
  decay = jnp.exp(t[:, None, None] * log_a[None])  # (B+1, N, C)
  history = f if bptt else jax.lax.stop_gradient(f)
  emas = jnp.einsum("nctb,bcl->tncl", kernel, history,
                    precision=_PRECISION)
  emas = emas + decay[..., None] * m0[None]
  return emas[:-1], emas[-1]


# Block length K of the "scan" method: closed form inside blocks of K samples,
# an associative scan across blocks. On CPU (forward + backward, B = 1024,
# C = 321) K = 8 and 16 timed alike and K = 32 was 20% slower.
_SCAN_BLOCK = 16

# Channel chunk size of the "scan" method, in float32 elements of one chunk's
# in-batch EMAs (N x B x channels x L): the channels are filtered one chunk at a
# time (``jax.lax.map``) and each chunk is recomputed in the backward pass
# (``jax.checkpoint``), so the temporaries scale with the chunk, not with C.
# 2^20 elements (4 MiB per EMA-sized temporary) measured fastest on CPU for
# B = 128-1024 and C = 7-321: 2^18 (one channel per chunk at B = 1024, L = 96)
# was 1.5x slower, 2^22 15-20% slower, and a single chunk for all channels up
# to 1.7x slower (B = 1024, C = 7) with up to 3.4x the memory (B = 1024,
# C = 321).
_SCAN_CHUNK_ELEMENTS = 1 << 20
# On a GPU (or TPU) the chunks run one after another as a device loop, and
# small chunks starve the device: on an H100 (forward + backward, L = 96)
# 2^20-element chunks were 5-7x slower than one chunk at B = 1024 (C = 321:
# 107 chunks, 13.7 vs 2.8 ms; C = 862: 431 chunks, 47.6 vs 7.0 ms) and 16-28x
# at B = 128; 2^26 (3-4 chunks at B = 1024) was 1.3-1.4x slower than one
# chunk, which is also not recomputed in the backward pass. 2^27 elements
# (512 MiB per EMA-sized temporary) keeps B = 1024, C = 321 in one chunk;
# larger inputs trade the recomputation of a few chunks for temporaries that
# stop growing with C. Not measured on a TPU.
_SCAN_CHUNK_ELEMENTS_ACCELERATOR = 1 << 27


def _default_chunk_elements() -> int:
  """The "scan" method's chunk budget for the default backend.

  Read when the BSA program is traced. ``jax.default_backend()`` is the
  process's backend, so a CPU computation forced on a GPU host (e.g. under
  ``jax.default_device``) gets the accelerator's larger chunks: the same
  result, with more memory.
  """
  if jax.default_backend() == "cpu":
    return _SCAN_CHUNK_ELEMENTS
  return _SCAN_CHUNK_ELEMENTS_ACCELERATOR


def _compose(first, second):
  """Composes two affine maps E -> A E + b, `first` applied first."""
  a1, b1 = first
  a2, b2 = second
  return a2 * a1, a2 * b1 + b2


def _block_emas(theta: jax.Array, h: jax.Array, m0: jax.Array,
                final_row: int
                ) -> tuple[list[jax.Array], jax.Array, jax.Array, jax.Array]:
  """In-batch EMAs of some channels, in blocks; the "scan" method's core.

  Args:
    theta: (c, N) alpha logits, alpha = sigmoid(theta).
    h: (c, K, nb, L) history: sample i * K + s at ``h[:, s, i]``; samples
      past the batch (padding of the last block) are zeros.
    m0: (c, N, L) state before sample 0.
    final_row: number of real samples in the last block (1..K).

  Returns:
    local: N arrays (c, K, nb, L), the EMA of the block's earlier samples
      from a zero start (sample s of block i excluded).
    starts: (c, N, nb, L), the EMA before each block's first sample.
    decay: (c, N, K), alpha^s.
    final: (c, N, L), the EMA after the last real sample.
    The EMA before sample i * K + s is local[n][:, s, i] + decay[:, n, s] *
    starts[:, n, i].
  """
  k, nb = h.shape[1], h.shape[2]
  log_a = jax.nn.log_sigmoid(theta)  # (c, N)
  gain = jax.nn.sigmoid(-theta)  # 1 - alpha
  kernel = _ema_kernel(log_a, gain, k)  # (c, N, K+1, K)
  # One product per smoothing factor, and the block ends apart: no slice of
  # an (N, K+1)-row product (whose gradient is a pad and an add of its whole
  # size); 20% faster forward + backward on CPU (B = 1024, C = 321).
  local = [jnp.einsum("cts,csil->ctil", kernel[:, i, :k], h,
                      precision=_PRECISION)
           for i in range(theta.shape[1])]
  block_end = jnp.einsum("cns,csil->cnil", kernel[:, :, k], h,
                         precision=_PRECISION)  # (c, N, nb, L)
  a_k = jnp.exp(k * log_a)  # alpha^K, (c, N)
  block_decay = jnp.broadcast_to(a_k[:, :, None, None], a_k.shape + (nb, 1))
  powers, sums = jax.lax.associative_scan(
      _compose, (block_decay, block_end), axis=2)
  ends = sums + powers * m0[:, :, None]  # E after each block
  starts = jnp.concatenate([m0[:, :, None], ends[:, :, :-1]], axis=2)
  j = jnp.arange(k, dtype=jnp.float32)
  decay = jnp.exp(j * log_a[..., None])  # (c, N, K)
  if final_row == k:
    final = ends[:, :, -1]
  else:  # the EMA before the last block's first padding sample
    final = (jnp.einsum("cns,csl->cnl", kernel[:, :, final_row], h[:, :, -1],
                        precision=_PRECISION)
             + jnp.exp(final_row * log_a)[..., None] * starts[:, :, -1])
  return local, starts, decay, final


def _blocked(x: jax.Array, k: int) -> jax.Array:
  """(B, C, L) -> (C, K, nb, L), zero-padded to nb = ceil(B / K) blocks."""
  b, c, l = x.shape
  nb = -(-b // k)
  x = jnp.pad(x, ((0, nb * k - b), (0, 0), (0, 0))).reshape(nb, k, c, l)
  return jnp.transpose(x, (2, 1, 0, 3))


def _scan_emas(theta: jax.Array, f: jax.Array, m0: jax.Array, bptt: bool,
               block: int = _SCAN_BLOCK) -> tuple[jax.Array, jax.Array]:
  """The same EMAs as :func:`_unrolled_emas` in O(B K N C L) work.

  The recurrence E_{t+1} = a E_t + (1 - a) F_t is an affine map per sample,
  (A, b) = (a, (1 - a) F_t), and maps compose associatively as
  (A2, b2) o (A1, b1) = (A2 A1, A2 b1 + b2). The batch is cut into blocks of
  `block` samples (zero-padded at the end): inside a block the EMA from a
  zero start is the closed-form product with a K x K kernel, the blocks'
  maps (a^K, local EMA at the block end) are combined by
  ``jax.lax.associative_scan`` (O(log(B/K)) depth), and every sample adds
  a^j times its block's start state. ``block=1`` is a plain associative scan
  over samples. Powers of alpha come from exp(j log alpha) and from products
  inside the scan; nothing divides by alpha^t.

  The "scan" method itself (:func:`_scan_mix`) runs the same blocks per
  chunk of channels and mixes without materializing these EMAs; this
  function returns them (for tests and reference).

  Returns:
    (E_0..E_{B-1} of shape (B, N, C, L), E_B of shape (N, C, L)).
  """
  b, c, l = f.shape
  n = theta.shape[0]
  k = min(block, b)
  nb = -(-b // k)
  history = f if bptt else jax.lax.stop_gradient(f)
  local, starts, decay, final = _block_emas(
      theta.T, _blocked(history, k), jnp.swapaxes(m0, 0, 1),
      b - (nb - 1) * k)
  emas = (jnp.stack(local, axis=1)
          + decay[..., None, None] * starts[:, :, None])  # (C, N, K, nb, L)
  emas = jnp.transpose(emas, (3, 2, 1, 0, 4)).reshape(nb * k, n, c, l)
  return emas[:b], jnp.swapaxes(final, 0, 1)


def _chunk_channels(channels: int, per_channel: int, budget: int) -> int:
  """Channels per chunk of the "scan" method (`channels`: a single chunk).

  At most ``most = budget // per_channel`` channels (at least 1). Preferably
  the largest divisor of `channels` up to `most`, so that no padding channels
  are needed: padding costs two extra copies of the input in the compiled
  program (measured on CPU at B = 128-1024, C = 321-862: 1.5x the memory and
  4-17% slower than chunks of a divisor, even one giving 14x as many chunks).
  Not a single channel, though, nor a chunk under 1/16 of the budget (the
  per-chunk overhead: at B = 1024, C = 7, seven 1-channel chunks were 1.4x
  slower than three padded 3-channel ones); then ``ceil(channels / most)``
  even chunks, the last one padded.
  """
  if channels * per_channel <= budget:
    return channels
  most = max(1, budget // per_channel)
  divisor = next(d for d in range(most, 0, -1) if channels % d == 0)
  if divisor > 1 and 16 * divisor * per_channel >= budget:
    return divisor
  n_chunks = -(-channels // most)
  return -(-channels // n_chunks)


def _scan_mix(logits: jax.Array, theta: jax.Array, f: jax.Array,
              m0: jax.Array, bptt: bool, block: int = _SCAN_BLOCK,
              chunk_elements: int | None = None
              ) -> tuple[jax.Array, jax.Array]:
  """BSA outputs by the "scan" method, in chunks of channels.

  Everything is independent across channels (the EMAs, their mixing
  weights, the smoothing factors), so the channels are cut into chunks of
  about `chunk_elements` EMA elements (:func:`_chunk_channels`) and
  ``jax.lax.map`` runs the blocked scan of :func:`_scan_emas` and the mix on
  one chunk at a time; the chunk body is wrapped in ``jax.checkpoint``, so the
  backward pass keeps only each chunk's inputs and recomputes its EMAs. The
  (B, N, C, L) EMAs never exist for all channels at once, and the mix is
  applied per block without forming them for a chunk either: the output for
  sample i K + s is

    coef_f F + sum_n coef_m[n] (local[n, s, i] + a_n^s start[n, i]).

  Args:
    logits: (C, 2N+1, L) mixing logits.
    theta: (N, C) alpha logits.
    f: (B, C, L) float32 features.
    m0: (N, C, L) state before sample 0.
    bptt: whether the in-batch history carries gradients.
    block: block length K.
    chunk_elements: chunk budget in EMA elements (default: the backend's,
      :func:`_default_chunk_elements`).

  Returns:
    (outputs (B, C, L), E_B of shape (N, C, L)).
  """
  b, c, l = f.shape
  n = theta.shape[0]
  k = min(block, b)
  nb = -(-b // k)
  final_row = b - (nb - 1) * k
  coef_f, coef_m = _mix_coefficients(logits)  # (C, L), (C, N, L)
  if chunk_elements is None:
    chunk_elements = _default_chunk_elements()
  cc = _chunk_channels(c, n * nb * k * l, chunk_elements)
  n_chunks = -(-c // cc)
  cpad = n_chunks * cc - c

  def chunk(args):
    theta_c, coef_f_c, coef_m_c, m0_c, f_c = args  # f_c: (cc, K, nb, L)
    history = f_c if bptt else jax.lax.stop_gradient(f_c)
    local, starts, decay, final = _block_emas(theta_c, history, m0_c,
                                              final_row)
    out = coef_f_c[:, None, None] * f_c
    for i in range(n):  # an unrolled sum: one fused loop, no reduction
      out = out + coef_m_c[:, i, None, None] * (
          local[i] + decay[:, i, :, None, None] * starts[:, i, None])
    return out, final

  def chunked(x):  # (C, ...) -> (n_chunks, cc, ...)
    x = jnp.pad(x, ((0, cpad),) + ((0, 0),) * (x.ndim - 1))
    return x.reshape((n_chunks, cc) + x.shape[1:])

  fc = jnp.pad(f, ((0, 0), (0, cpad), (0, 0)))
  fc = _blocked(fc, k).reshape(n_chunks, cc, k, nb, l)
  args = (chunked(theta.T), chunked(coef_f), chunked(coef_m),
          chunked(jnp.swapaxes(m0, 0, 1)), fc)
  if n_chunks == 1:
    out, final = chunk(tuple(a[0] for a in args))
    out, final = out[None], final[None]
  else:
    out, final = jax.lax.map(jax.checkpoint(chunk), args)
  # (n_chunks, cc, K, nb, L) -> (B, C, L)
  out = jnp.transpose(out, (3, 2, 0, 1, 4)).reshape(nb * k, n_chunks * cc, l)
  final = jnp.swapaxes(final.reshape(n_chunks * cc, n, l)[:c], 0, 1)
  return out[:b, :c], final


METHODS = ("auto", "closed", "scan")


# "auto" uses the closed form only for B <= 16 with C < 64, the scan otherwise.
# Measured on CPU (benchmarks/bsa_cost.py, forward + backward, L = 96, N = 3,
# median of 21 interleaved rounds, with the channel-chunked scan): the closed
# form was 25-35% faster at B = 8-16 with C = 7-32 (under 2 ms either way),
# 10-25% faster at B = 24-32 with C = 21 and 10% faster at B = 8 with C = 64;
# the scan was faster at B >= 24 with C = 7, at B >= 64 with C = 21, at
# B >= 16 with C >= 64 and for every B with C >= 128 (2x at B = 16 and 3-4x at
# B = 32-96 with C = 321). The scan's memory was at most 15% above the closed
# form's (B = 32, C = 7-64) and far below it for longer batches (0.5 GB vs
# 12 GB at B = 1024, C = 321).
_AUTO_CLOSED_MAX_BATCH = 16
_AUTO_CLOSED_MAX_CHANNELS = 63


def _resolve_method(method: str, batch: int, channels: int) -> str:
  """The method "auto" stands for at these static sizes."""
  if method != "auto":
    return method
  if (batch <= _AUTO_CLOSED_MAX_BATCH
      and channels <= _AUTO_CLOSED_MAX_CHANNELS):
    return "closed"
  return "scan"


@functools.partial(jax.jit, static_argnums=(5, 6))
def _batched_core(logits, theta, ema, initialized, x, bptt, method):
  """One BSA call: (outputs, new EMA state); jitted as one program."""
  f = x.astype(jnp.float32)
  m0 = jnp.where(initialized, ema, jax.lax.stop_gradient(f[0])[None])
  if method == "closed":
    emas, final = _unrolled_emas(theta, f, m0, bptt)  # (B, N, C, L)
    out = _mix(logits, f, emas)
  else:
    out, final = _scan_mix(logits, theta, f, m0, bptt)
  return out.astype(x.dtype), jax.lax.stop_gradient(final)


AnySpectral = Union[SpectralAttention, BatchedSpectralAttention]


def ema_final(alphas: jax.Array, history: jax.Array,
              initial: jax.Array) -> jax.Array:
  """Runs the EMA recursion over `history` and returns the final state.

  Args:
    alphas: (N, C) smoothing factors.
    history: (T, C, L) consecutive features, oldest first.
    initial: (N, C, L) state before the first sample.

  Returns:
    (N, C, L): the state after the last sample (that sample included).
  """
  a = alphas[:, :, None]

  def step(m, f):
    return a * m + (1.0 - a) * f[None], None

  final, _ = jax.lax.scan(step, initial, history.astype(jnp.float32))
  return final


def warm_up(module: AnySpectral, history: jax.Array) -> None:
  """Advances a Spectral Attention module's EMAs over past features.

  Use it before inference so that the first forecast sees the long-range
  state it would have had in a continuous run: pass the features (what the
  module would receive) of the samples that precede the evaluation samples,
  oldest first. No output is computed and no gradient flows. If the module has
  no state yet (fresh or reset), the EMAs start from ``history[0]``.

  Args:
    module: a :class:`SpectralAttention` or :class:`BatchedSpectralAttention`.
    history: (T, channels, length) features in time order; T may be 0.

  Returns:
    None; the module's :class:`SpectralState` is updated in place.

  Raises:
    ValueError: `history` of the wrong shape.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from grokfast_jax.spectral_attention import (
    ...     BatchedSpectralAttention, warm_up)
    >>> bsa = BatchedSpectralAttention(7, 96, rngs=nnx.Rngs(0))
    >>> warm_up(bsa, jnp.zeros((500, 7, 96)))
  """
  if history.ndim != 3 or history.shape[1:] != (module.channels,
                                                module.length):
    raise ValueError(f"history must have shape (T, channels, length) = "
                     f"(T, {module.channels}, {module.length}), got "
                     f"{history.shape}")
  if history.shape[0] == 0:
    return
  module.ema[...] = _warm_up_core(module.alpha_array(), module.ema[...],
                                  module.initialized[...], history)
  module.initialized[...] = jnp.array(True)


@jax.jit
def _warm_up_core(alphas, ema, initialized, history):
  history = jax.lax.stop_gradient(history.astype(jnp.float32))
  initial = jnp.where(initialized, ema, history[0][None])
  return jax.lax.stop_gradient(ema_final(alphas, history, initial))


def reset_all(model: nnx.Module) -> None:
  """Calls ``reset()`` on every Spectral Attention module inside `model`.

  Args:
    model: any NNX module (or a Spectral Attention module itself).

  Returns:
    None.
  """
  for _, sub in nnx.iter_modules(model):
    if isinstance(sub, (SpectralAttention, BatchedSpectralAttention)):
      sub.reset()
