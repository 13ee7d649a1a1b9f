"""The Spectral Attention NNX modules, :func:`warm_up` and :func:`reset_all`.

Documented in :mod:`grokfast_jax.spectral_attention`; the numerical kernels
they call are in :mod:`grokfast_jax.spectral_attention._kernels`.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import jax
import jax.numpy as jnp
from flax import nnx

from grokfast_jax.spectral_attention._kernels import (
  METHODS,
  _batched_core,
  _resolve_method,
  _sequential_core,
)

DEFAULT_ALPHAS = (0.9, 0.99, 0.999)


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
      f"alphas must be a non-empty sequence of floats in (0, 1), got {alphas!r}"
    ) from e
  if not values:
    raise ValueError(
      "alphas must be a non-empty sequence of floats in (0, 1),"
      " got an empty sequence"
    )
  for a in values:
    if not (0.0 < a < 1.0) or math.isnan(a):
      raise ValueError(f"each of alphas must lie in (0, 1), got {alphas!r}")
  return values


def _initial_logits(channels: int, n: int, length: int) -> jax.Array:
  """Logits -(N - k)^2 / 4 for k = 0..2N, broadcast to (C, 2N+1, L)."""
  k = jnp.arange(2 * n + 1, dtype=jnp.float32)
  logits = -((n - k) ** 2) / 4.0
  return jnp.broadcast_to(logits[None, :, None], (channels, 2 * n + 1, length))


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

  def __init__(
    self,
    channels: int,
    length: int,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    rngs: nnx.Rngs,
  ):
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
      raise ValueError(
        f"x must have shape (channels, length) = "
        f"{(self.channels, self.length)}, got {x.shape}"
      )
    out, m = _sequential_core(
      self.logits[...],
      self.alpha_array(),
      self.ema[...],
      self.initialized[...],
      x,
    )
    self.ema[...] = m
    self.initialized[...] = jnp.array(True)
    return out


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
    scan otherwise (measured on CPU with ``benchmarks/micro/bsa_cost.py``).

  The output for sample `t` is the Spectral Attention mix of :math:`F_t` and
  :math:`E_{1..N,t}` (see :mod:`grokfast_jax.spectral_attention`); it is the
  identity at initialization. The state after the batch, :math:`E_B`, is
  carried to the next call without gradient; on the first call (or after
  :meth:`reset`) the carried state is the first sample's feature.

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

  def __init__(
    self,
    channels: int,
    length: int,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    learnable_alpha: bool = False,
    bptt: bool = True,
    method: str = "auto",
    rngs: nnx.Rngs,
  ):
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
        jnp.broadcast_to(theta[:, None], (n, channels))
      )
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
      raise ValueError(
        f"x must have shape (batch, channels, length) = "
        f"(B, {self.channels}, {self.length}), got {x.shape}"
      )
    method = _resolve_method(self.method, x.shape[0], self.channels)
    out, m = _batched_core(
      self.logits[...],
      self._alpha_logits(),
      self.ema[...],
      self.initialized[...],
      x,
      self.bptt,
      method,
    )
    self.ema[...] = m
    self.initialized[...] = jnp.array(True)
    return out


AnySpectral = Union[SpectralAttention, BatchedSpectralAttention]


def ema_final(
  alphas: jax.Array, history: jax.Array, initial: jax.Array
) -> jax.Array:
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
  if history.ndim != 3 or history.shape[1:] != (module.channels, module.length):
    raise ValueError(
      f"history must have shape (T, channels, length) = "
      f"(T, {module.channels}, {module.length}), got "
      f"{history.shape}"
    )
  if history.shape[0] == 0:
    return
  module.ema[...] = _warm_up_core(
    module.alpha_array(), module.ema[...], module.initialized[...], history
  )
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
