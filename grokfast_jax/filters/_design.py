r"""Designing gradient filters: coefficients and responses, in NumPy.

A Grokfast filter treats each parameter's gradient over training steps as a
discrete-time signal. These helpers give the coefficients ``(b, a)`` of a
linear filter

.. math::

  \sum_{k=0}^{N} a_k y_{t-k} = \sum_{k=0}^{M} b_k g_{t-k}

for :func:`grokfast_jax.grokfast_iir`, and its frequency response. They run on
the host in float64 at construction time, never inside a jitted step, and use
the conventions of :mod:`scipy.signal` (which the library does not need).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import numpy.typing as npt


def _as_coefficients(name: str, value: Any) -> np.ndarray:
  """`value` as a finite, non-empty, 1-D float64 array, or a ValueError."""
  try:
    arr = np.asarray(value, dtype=np.float64)
  except Exception as e:  # tracers, strings, ragged lists, ...
    raise ValueError(
      f"{name} must be a static 1-D sequence of finite floats (with "
      f"optax.inject_hyperparams pass static_args=('b', 'a')), got "
      f"{value!r}"
    ) from e
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(
      f"{name} must be a non-empty 1-D sequence of floats, got shape "
      f"{arr.shape}"
    )
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} must hold finite floats, got {arr.tolist()}")
  return arr


def normalize_coefficients(
  b: npt.ArrayLike, a: npt.ArrayLike, *, check_stable: bool = True
) -> tuple[np.ndarray, np.ndarray]:
  """Validated ``(b, a)`` divided by ``a[0]`` and zero-padded to one length.

  Args:
    b: numerator (feed-forward) coefficients, a 1-D sequence of floats.
    a: denominator (feedback) coefficients, a 1-D sequence of floats with
      ``a[0] != 0``.
    check_stable: raise unless all poles lie strictly inside the unit circle.

  Returns:
    Two float64 arrays of length ``max(len(a), len(b))`` with ``a[0] == 1``.

  Raises:
    ValueError: not finite 1-D sequences, ``a[0] == 0``, or an unstable
      filter (a pole on or outside the unit circle); the message names the
      argument.
  """
  b_raw = _as_coefficients("b", b)
  a_raw = _as_coefficients("a", a)
  if a_raw[0] == 0.0:
    raise ValueError(f"a[0] must be nonzero, got a = {a_raw.tolist()}")
  b_n, a_n = b_raw / a_raw[0], a_raw / a_raw[0]
  if not np.all(np.isfinite(b_n)) or not np.all(np.isfinite(a_n)):
    raise ValueError(
      f"a[0] is too small to normalize by, got a = {a_n.tolist()}"
    )
  poles = (
    np.roots(a_n) if check_stable and np.any(a_n[1:] != 0.0) else (np.zeros(0))
  )
  if poles.size and np.max(np.abs(poles)) >= 1.0:
    raise ValueError(
      f"a must give a stable filter (all poles strictly inside the unit "
      f"circle), got a = {a_n.tolist()} with pole magnitudes "
      f"{np.abs(poles).round(6).tolist()}"
    )
  n = max(len(a_n), len(b_n))
  return np.pad(b_n, (0, n - len(b_n))), np.pad(a_n, (0, n - len(a_n)))


def lfilter_zi(b: npt.ArrayLike, a: npt.ArrayLike) -> np.ndarray:
  r"""Initial delay state of the steady-state response to a unit step.

  As :func:`scipy.signal.lfilter_zi`: the direct-form-II-transposed state
  :math:`z` with :math:`z = A z + B` for a constant input 1, that is
  :math:`(I - C^\top) z = b_{1:} - a_{1:} b_0` with :math:`C` the companion
  matrix of `a` (after normalizing by ``a[0]``). Scaled by a constant input
  :math:`x`, ``lfilter_zi(b, a) * x`` starts the filter as if it had always
  seen :math:`x`.

  Args:
    b: numerator coefficients.
    a: denominator coefficients, ``a[0] != 0``, a stable filter.

  Returns:
    A float64 array of length ``max(len(a), len(b)) - 1``.

  Example:
    >>> import grokfast_jax as gj
    >>> gj.lfilter_zi([0.1], [1.0, -0.9])
    array([0.9])
  """
  b_n, a_n = normalize_coefficients(b, a)
  n = len(a_n)
  if n == 1:
    return np.zeros(0)
  companion = np.zeros((n - 1, n - 1))
  companion[0] = -a_n[1:]
  companion[np.arange(1, n - 1), np.arange(n - 2)] = 1.0
  rhs = b_n[1:] - a_n[1:] * b_n[0]
  return np.linalg.solve(np.eye(n - 1) - companion.T, rhs)


def ema_coefficients(alpha: float) -> tuple[np.ndarray, np.ndarray]:
  r"""Coefficients of the exponential moving average of Grokfast-EMA.

  :math:`y_t = \alpha y_{t-1} + (1 - \alpha) g_t`, so
  ``b = [1 - alpha]`` and ``a = [1, -alpha]``.

  Args:
    alpha: EMA momentum in [0, 1).

  Returns:
    ``(b, a)`` as float64 arrays.

  Raises:
    ValueError: `alpha` outside [0, 1).

  Example:
    >>> import grokfast_jax as gj
    >>> b, a = gj.ema_coefficients(0.98)
    >>> [round(float(x), 6) for x in b], a.tolist()
    ([0.02], [1.0, -0.98])
  """
  x = float(alpha)
  if not (math.isfinite(x) and 0.0 <= x < 1.0):
    raise ValueError(f"alpha must be a finite number in [0, 1), got {alpha!r}")
  return np.array([1.0 - x]), np.array([1.0, -x])


def butterworth(order: int, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
  r"""Digital Butterworth low-pass coefficients, as ``scipy.signal.butter``.

  The analog prototype's poles :math:`p_k = -e^{i\pi m/(2N)}`,
  :math:`m = -N+1, -N+3, \dots, N-1`, are scaled to the pre-warped cut-off
  :math:`\omega_c = 4 \tan(\pi f_c / 2)` and mapped by the bilinear transform
  :math:`z = (4 + s) / (4 - s)` (sample rate 2), with :math:`N` zeros at
  :math:`z = -1` and the gain set so that :math:`H(1) = 1`.

  Args:
    order: filter order :math:`N`, an int >= 1.
    cutoff: the -3 dB frequency as a fraction of the Nyquist frequency, in
      (0, 1) (so 0.1 is 0.05 cycles per step), as in ``scipy.signal.butter``.

  Returns:
    ``(b, a)``: float64 arrays of length ``order + 1``, ``a[0] == 1``.

  Raises:
    ValueError: `order` not an int >= 1 or `cutoff` outside (0, 1).

  Example:
    >>> import numpy as np, grokfast_jax as gj
    >>> b, a = gj.butterworth(2, 0.1)
    >>> np.round(a, 4).tolist()
    [1.0, -1.561, 0.6414]
    >>> round(float(b.sum() / a.sum()), 6)  # unit gain at frequency 0
    1.0

  References:
    S. Butterworth, On the Theory of Filter Amplifiers, Wireless Engineer 7,
    1930; ``scipy.signal.butter``.
  """
  if (
    isinstance(order, bool)
    or not isinstance(order, numbers.Integral)
    or (order < 1)
  ):
    raise ValueError(f"order must be an int >= 1, got {order!r}")
  c = float(cutoff)
  if not (math.isfinite(c) and 0.0 < c < 1.0):
    raise ValueError(
      f"cutoff must be a finite number in (0, 1) (a fraction of the Nyquist "
      f"frequency), got {cutoff!r}"
    )
  n = int(order)
  m = np.arange(-n + 1, n, 2)
  poles = -np.exp(1j * np.pi * m / (2 * n))  # analog prototype, gain 1
  fs2 = 4.0  # 2 * sample rate, with the sample rate 2 (Nyquist = 1)
  warped = fs2 * math.tan(math.pi * c / 2.0)
  poles = poles * warped
  gain = warped**n
  z_poles = (fs2 + poles) / (fs2 - poles)
  gain = gain * np.real(1.0 / np.prod(fs2 - poles))
  b = gain * np.real(np.poly(-np.ones(n)))
  a = np.real(np.poly(z_poles))
  return b, a


def _response_at(b: np.ndarray, a: np.ndarray, freqs: np.ndarray) -> np.ndarray:
  """H(e^{2 pi i f}) at frequencies `freqs` in cycles per step."""
  z = np.exp(-2j * np.pi * np.asarray(freqs, np.float64))
  return np.polyval(b[::-1], z) / np.polyval(a[::-1], z)


def frequency_response(
  b: npt.ArrayLike, a: npt.ArrayLike, n: int = 512
) -> tuple[np.ndarray, np.ndarray]:
  r"""Frequency response of a filter, as ``scipy.signal.freqz(b, a, n)``.

  .. math::

    H(f) = \frac{\sum_k b_k e^{-2\pi i f k}}{\sum_k a_k e^{-2\pi i f k}},
    \qquad f = \frac{j}{2n}, \ j = 0, \dots, n - 1 .

  Args:
    b: numerator coefficients.
    a: denominator coefficients, ``a[0] != 0`` (stability is not required).
    n: number of frequencies, an int >= 1, evenly spaced over
      [0, 0.5) cycles per step (0.5 is the Nyquist frequency, left out as
      ``freqz`` does).

  Returns:
    ``(freqs, response)``: frequencies in cycles per step (float64, shape
    ``[n]``) and the complex response at them (complex128, shape ``[n]``).
    ``abs(response) ** 2`` is the power gain.

  Example:
    >>> import numpy as np, grokfast_jax as gj
    >>> f, h = gj.frequency_response(*gj.ema_coefficients(0.9), n=4)
    >>> f.tolist()
    [0.0, 0.125, 0.25, 0.375]
    >>> round(float(abs(h[0])), 6)
    1.0
  """
  if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
    raise ValueError(f"n must be an int >= 1, got {n!r}")
  b_n, a_n = normalize_coefficients(b, a, check_stable=False)
  freqs = np.arange(int(n)) / (2.0 * int(n))
  return freqs, _response_at(b_n, a_n, freqs)
