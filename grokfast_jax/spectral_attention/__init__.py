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

from grokfast_jax.spectral_attention._kernels import METHODS
from grokfast_jax.spectral_attention._modules import (
  DEFAULT_ALPHAS,
  AnySpectral,
  BatchedSpectralAttention,
  SpectralAttention,
  SpectralState,
  ema_final,
  reset_all,
  warm_up,
)

__all__ = [
  "DEFAULT_ALPHAS",
  "METHODS",
  "AnySpectral",
  "BatchedSpectralAttention",
  "SpectralAttention",
  "SpectralState",
  "ema_final",
  "reset_all",
  "warm_up",
]
