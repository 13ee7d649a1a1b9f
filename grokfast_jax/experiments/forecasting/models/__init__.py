"""Forecasters for the Spectral Attention experiments.

DLinear, RLinear, PatchTST, a small iTransformer, FreTS, Crossformer and
TimesNet.
All map input windows (B, C, L) to forecasts (B, C, H) and can carry a
:class:`~grokfast_jax.spectral_attention.BatchedSpectralAttention` on their
(C, L) input: as in the BSA reference, on the raw window for DLinear (and for
FreTS and Crossformer, which have no input normalization) and on the
instance-normalized window for the iTransformer (and for TimesNet, which
normalizes its input the same way); for RLinear and PatchTST (our choice) on
the raw window in front of the model, before RevIN, whose statistics are then those of the
filtered window, so that the BSA can move the level of the forecast as it does
for DLinear. The BSA starts as the identity, so a model built with it and
loaded with a base model's parameters (:func:`transfer_params`) predicts
exactly like the base model.

Every model is built as ``Model(channels, lookback, horizon, *, ...,
spectral=None, rngs)``: C series, input length L, forecast length H, then its
own sizes, `spectral` (None, or the keyword arguments of a
BatchedSpectralAttention to put on its input) and the NNX rngs.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from flax import nnx

from grokfast_jax.experiments.forecasting.models._parts import (
  EncoderLayer,
  Forecaster,
  RevIN,
  moving_average,
  spectral_module,
)
from grokfast_jax.experiments.forecasting.models.crossformer import Crossformer
from grokfast_jax.experiments.forecasting.models.frets import FreTS
from grokfast_jax.experiments.forecasting.models.linear import DLinear, RLinear
from grokfast_jax.experiments.forecasting.models.timesnet import (
  TOP_K,
  TimesNet,
)
from grokfast_jax.experiments.forecasting.models.transformer import (
  PATCH_LEN,
  PATCH_STRIDE,
  ITransformer,
  PatchTST,
  make_patches,
  patch_count,
)

__all__ = [
  "MODELS",
  "PATCH_LEN",
  "PATCH_STRIDE",
  "Crossformer",
  "DLinear",
  "EncoderLayer",
  "Forecaster",
  "FreTS",
  "ITransformer",
  "PatchTST",
  "RLinear",
  "RevIN",
  "TimesNet",
  "check_shapes",
  "make_model",
  "make_patches",
  "moving_average",
  "patch_count",
  "spectral_module",
  "transfer_params",
]

# Name -> class, in the order the paper lists them.
_CLASSES = {
  "dlinear": DLinear,
  "rlinear": RLinear,
  "frets": FreTS,
  "timesnet": TimesNet,
  "itransformer": ITransformer,
  "crossformer": Crossformer,
  "patchtst": PatchTST,
}
MODELS = tuple(_CLASSES)


def make_model(
  name: str,
  channels: int,
  lookback: int,
  horizon: int,
  *,
  seed: int = 0,
  spectral: Optional[Mapping[str, Any]] = None,
) -> nnx.Module:
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
  cls = _CLASSES[name]
  return cls(channels, lookback, horizon, spectral=spectral, rngs=rngs)


def check_shapes(name: str, lookback: int, horizon: int) -> None:
  """Raises ValueError if model `name` cannot take this look-back/horizon."""
  if name not in MODELS:
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")
  if lookback < 1 or horizon < 1:
    raise ValueError(
      f"lookback and horizon must be >= 1, got {lookback}, {horizon}"
    )
  if name == "patchtst" and patch_count(lookback, PATCH_LEN, PATCH_STRIDE) < 1:
    raise ValueError(
      f"lookback must be >= {PATCH_LEN - PATCH_STRIDE} for "
      f"patchtst (patch length {PATCH_LEN}, stride "
      f"{PATCH_STRIDE}), got {lookback}"
    )
  if name == "timesnet" and lookback + horizon < 2 * TOP_K:
    raise ValueError(
      f"lookback + horizon must be >= {2 * TOP_K} for timesnet (its "
      f"{TOP_K} periods come from the non-zero frequencies of the "
      f"lookback + horizon steps), got {lookback} + {horizon}"
    )


def transfer_params(source: nnx.Module, target: nnx.Module) -> None:
  """Copies every nnx.Param of `source` into `target` (matching paths).

  Used to start a Spectral Attention model from a trained base model: the
  target's extra (spectral) parameters keep their identity initialization.
  """
  nnx.update(target, nnx.state(source, nnx.Param))
