"""A plain NumPy statement of the Grokfast filters' semantics (float64).

Written from the specification, one step at a time and with no cleverness,
so the JAX transforms can be checked against it: a deque for the MA window
and a fresh sum every step, as the PyTorch reference does.
"""

from __future__ import annotations

import collections
from typing import Callable, Union

import numpy as np

Hyper = Union[float, Callable[[int], float]]


def _at(h: Hyper, count: int) -> float:
  return float(h(count)) if callable(h) else float(h)


def ema(grads: list[np.ndarray], alpha: Hyper = 0.98,
        lamb: Hyper = 2.0) -> list[np.ndarray]:
  """Outputs of Grokfast-EMA for a sequence of gradients of one leaf."""
  outs, mu = [], None
  for count, g in enumerate(grads):
    g = np.asarray(g, np.float64)
    a = _at(alpha, count)
    mu = g.copy() if mu is None else a * mu + (1 - a) * g
    outs.append(g + _at(lamb, count) * mu)
  return outs


def ma(grads: list[np.ndarray], window_size: int = 100, lamb: Hyper = 5.0,
       filter_type: str = "mean", warmup: bool = True) -> list[np.ndarray]:
  """Outputs of Grokfast-MA for a sequence of gradients of one leaf."""
  window = collections.deque(maxlen=window_size)
  outs = []
  for count, g in enumerate(grads):
    g = np.asarray(g, np.float64)
    window.append(g)
    if warmup and len(window) < window_size:
      outs.append(g)
      continue
    total = np.sum(np.stack(window), axis=0)
    avg = total / len(window) if filter_type == "mean" else total
    outs.append(g + _at(lamb, count) * avg)
  return outs
