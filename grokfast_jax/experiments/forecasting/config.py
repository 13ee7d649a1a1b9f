"""Settings of one forecasting run: base training, then BSA fine-tuning."""

from __future__ import annotations

import dataclasses
from typing import Optional

from grokfast_jax.experiments.forecasting.data import SPLITS
from grokfast_jax.experiments.forecasting.models import MODELS, check_shapes


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
