"""DLinear and RLinear: linear maps from the look-back to the horizon."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
from flax import nnx

from grokfast_jax.experiments.forecasting.models._parts import (
  Forecaster,
  RevIN,
  moving_average,
  spectral_module,
)


class DLinear(Forecaster):
  """DLinear (Zeng et al. 2023): trend + seasonal linear maps, shared by channels.

  Args:
    kernel: moving-average width of the trend/seasonal decomposition.
    channels, lookback, horizon, spectral, rngs: see the module docstring.
  """

  def __init__(
    self,
    channels: int,
    lookback: int,
    horizon: int,
    *,
    kernel: int = 25,
    spectral: Optional[Mapping[str, Any]] = None,
    rngs: nnx.Rngs,
  ):
    self.kernel = kernel
    init = nnx.initializers.constant(1.0 / lookback)
    self.seasonal = nnx.Linear(lookback, horizon, kernel_init=init, rngs=rngs)
    self.trend = nnx.Linear(lookback, horizon, kernel_init=init, rngs=rngs)
    self.spectral = spectral_module(channels, lookback, spectral, rngs)

  def forecast(self, x: jax.Array) -> jax.Array:
    trend = moving_average(x, self.kernel)
    return self.seasonal(x - trend) + self.trend(trend)


class RLinear(Forecaster):
  """RLinear (Li et al. 2023): RevIN and one linear map L -> H.

  The map is shared by the channels (channel independence): each channel's
  forecast depends on its own window only. Dropout is left out. Args: see
  the module docstring (the BSA filters the raw window, before RevIN).
  """

  def __init__(
    self,
    channels: int,
    lookback: int,
    horizon: int,
    *,
    spectral: Optional[Mapping[str, Any]] = None,
    rngs: nnx.Rngs,
  ):
    self.revin = RevIN(channels)
    self.linear = nnx.Linear(lookback, horizon, rngs=rngs)
    self.spectral = spectral_module(channels, lookback, spectral, rngs)

  def forecast(self, x: jax.Array) -> jax.Array:
    return self.linear(x)
