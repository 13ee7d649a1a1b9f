"""Settings of one forecasting run: base training, then BSA fine-tuning.

:class:`ForecastConfig` holds every setting of a run; :class:`CommandConfig`
the ``grokfast-jax forecast`` flags (its fields are the flags), which fill
some of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from grokfast_jax.experiments.forecasting.data import SPLITS
from grokfast_jax.experiments.forecasting.models import MODELS, check_shapes
from grokfast_jax.experiments.harness import option


@dataclasses.dataclass(frozen=True)
class ForecastConfig:
  """Everything that defines a run.

  The protocol follows the BSA reference: train the base forecaster on
  shuffled windows with early stopping on the validation MSE, then insert
  Batched Spectral Attention on its input (identity at init), fine-tune on
  consecutive unshuffled windows (the BSA logits at `ft_lr_spectral`, the base
  weights at the much smaller `ft_lr_base`, the EMA state reset every epoch)
  and keep the fine-tuning epoch with the best validation MSE. Evaluation of a
  BSA model first warms its state up over all earlier windows of the series.

  Attributes:
    model: one of MODELS ("dlinear", "rlinear", "patchtst", "itransformer").
    lookback: input length L.
    horizon: forecast length H.
    split: "ratio" (chronological `ratios`) or "ett" (12/4/4 months).
    ratios: train/val/test fractions for ``split="ratio"``.
    max_rows: use only the first rows of the series (quick runs).
    seed: init and shuffling seed.
    batch_size: base-training batch size (shuffled).
    lr: base-training Adam learning rate.
    max_epochs: base-training epochs at most.
    patience: stop base training after this many epochs without a better
      validation MSE.
    ft_batch_size: BSA fine-tuning batch size (consecutive samples).
    ft_epochs: BSA fine-tuning epochs.
    ft_lr_spectral: Adam learning rate of the BSA parameters.
    ft_lr_base: AdamW learning rate of the base model's parameters.
    ft_weight_decay: AdamW weight decay of the base parameters.
    alphas: BSA smoothing factors.
    learnable_alpha: learn the smoothing factors.
    bptt: back-propagate through the in-batch EMA.
    eval_batch_size: batch size of evaluation streams.
  """

  model: str = "dlinear"
  lookback: int = 96
  horizon: int = 96
  split: str = "ratio"
  ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)
  max_rows: Optional[int] = None
  seed: int = 0
  batch_size: int = 32
  lr: float = 1e-3
  max_epochs: int = 10
  patience: int = 3
  ft_batch_size: int = 64
  ft_epochs: int = 3
  ft_lr_spectral: float = 1e-2
  ft_lr_base: float = 1e-5
  ft_weight_decay: float = 1e-4
  alphas: tuple[float, ...] = (0.9, 0.99, 0.999)
  learnable_alpha: bool = False
  bptt: bool = True
  eval_batch_size: int = 256

  def __post_init__(self):
    if self.model not in MODELS:
      raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
    if self.split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
    for name in ("lookback", "horizon", "batch_size", "max_epochs",
                 "patience", "ft_batch_size", "eval_batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    check_shapes(self.model, self.lookback, self.horizon)
    if self.ft_epochs < 0:
      raise ValueError(f"ft_epochs must be >= 0, got {self.ft_epochs}")
    for name in ("lr", "ft_lr_spectral", "ft_lr_base"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

  def spectral_kwargs(self) -> dict:
    """Keyword arguments of BatchedSpectralAttention for this run."""
    return {"alphas": tuple(self.alphas),
            "learnable_alpha": self.learnable_alpha, "bptt": self.bptt}


_DEFAULTS = ForecastConfig()


@dataclasses.dataclass(frozen=True)
class CommandConfig:
  """The settings of the ``forecast`` command; each field is its flag."""

  data: Optional[str] = option(None, "CSV file with a header row "
                               "(required)", metavar="PATH")
  target: str = option("all", "the column to forecast, or 'all' (default) "
                       "for every numeric column", metavar="COLUMN")
  model: str = option(_DEFAULTS.model, "base forecaster (default "
                      f"{_DEFAULTS.model})", choices=MODELS)
  lookback: int = option(_DEFAULTS.lookback, "input length L (default "
                         f"{_DEFAULTS.lookback})")
  horizon: int = option(_DEFAULTS.horizon, "forecast length H (default "
                        f"{_DEFAULTS.horizon})")
  split: str = option(_DEFAULTS.split, "'ratio': chronological 0.6/0.2/0.2 "
                      "of the rows (default); 'ett': the ETTh 12/4/4-month "
                      "borders", choices=SPLITS)
  seed: int = option(_DEFAULTS.seed, "init and shuffling seed (default "
                     f"{_DEFAULTS.seed})")
  epochs: int = option(_DEFAULTS.max_epochs, "base-training epochs at most "
                       "(early stopping on the validation MSE, patience "
                       f"{_DEFAULTS.patience}; default "
                       f"{_DEFAULTS.max_epochs})")
  ft_epochs: int = option(_DEFAULTS.ft_epochs, "BSA fine-tuning epochs "
                          f"(default {_DEFAULTS.ft_epochs})")
  control: bool = option(False, "also fine-tune the base model WITHOUT BSA "
                         "by the same protocol (separates BSA from the extra "
                         "training)")

  def run_config(self) -> ForecastConfig:
    """The run's :class:`ForecastConfig` (validated)."""
    return ForecastConfig(model=self.model, lookback=self.lookback,
                          horizon=self.horizon, split=self.split,
                          seed=self.seed, max_epochs=self.epochs,
                          ft_epochs=self.ft_epochs)


def make_command_config(given: Mapping[str, Any]) -> CommandConfig:
  """The command's settings from the flags given, validated.

  Raises:
    ValueError: naming the flag (``--data`` missing, ``--epochs`` < 1,
      ``--ft-epochs`` < 0, or a setting :class:`ForecastConfig` refuses).
  """
  cmd = CommandConfig(**given)
  if cmd.data is None:
    raise ValueError("--data is required (a CSV file with a header row)")
  if cmd.epochs < 1:
    raise ValueError(f"--epochs must be >= 1, got {cmd.epochs}")
  if cmd.ft_epochs < 0:
    raise ValueError(f"--ft-epochs must be >= 0, got {cmd.ft_epochs}")
  cmd.run_config()
  return cmd
