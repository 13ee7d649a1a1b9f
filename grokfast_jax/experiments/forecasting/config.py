"""Settings of one forecasting run: base training, then BSA fine-tuning.

:class:`ForecastConfig` holds every setting of a run; those with a help text
are also flags of ``grokfast-jax forecast``, whose other flags (:data:`FLAGS`:
the file, its column and the control run) say what to run it on.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from grokfast_jax.experiments.forecasting.data import SPLITS
from grokfast_jax.experiments.forecasting.models import MODELS, check_shapes
from grokfast_jax.experiments.harness import Flag, option


@dataclasses.dataclass(frozen=True)
class ForecastConfig:
  """Everything that defines a run.

  The protocol follows the BSA reference (see :mod:`.training`): the base
  forecaster trained on shuffled windows, then fine-tuned with Batched
  Spectral Attention (identity at init) on consecutive windows, the BSA
  logits at `ft_lr_spectral`, the base weights at the much smaller
  `ft_lr_base`; each stage keeps its epoch of best validation MSE.

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
    max_epochs: base-training epochs at most (flag ``--epochs``).
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

  model: str = option("dlinear", "base forecaster (default dlinear)",
                      choices=MODELS)
  lookback: int = option(96, "input length L (default 96)")
  horizon: int = option(96, "forecast length H (default 96)")
  split: str = option("ratio", "'ratio': chronological 0.6/0.2/0.2 of the "
                      "rows (default); 'ett': the ETTh 12/4/4-month borders",
                      choices=SPLITS)
  ratios: tuple[float, float, float] = option((0.6, 0.2, 0.2), cli=False)
  max_rows: Optional[int] = option(None, cli=False)
  seed: int = option(0, "init and shuffling seed (default 0)")
  batch_size: int = option(32, cli=False)
  lr: float = option(1e-3, cli=False)
  max_epochs: int = option(10, "base-training epochs at most (early stopping "
                           "on the validation MSE, patience 3; default 10)",
                           flag="--epochs", metavar="EPOCHS")
  patience: int = option(3, cli=False)
  ft_batch_size: int = option(64, cli=False)
  ft_epochs: int = option(3, "BSA fine-tuning epochs (default 3)")
  ft_lr_spectral: float = option(1e-2, cli=False)
  ft_lr_base: float = option(1e-5, cli=False)
  ft_weight_decay: float = option(1e-4, cli=False)
  alphas: tuple[float, ...] = option((0.9, 0.99, 0.999), cli=False)
  learnable_alpha: bool = option(False, cli=False)
  bptt: bool = option(True, cli=False)
  eval_batch_size: int = option(256, cli=False)

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


# The command's flags that are not settings of the run.
FLAGS = (
    Flag("--data", "data", help="CSV file with a header row (required)",
         metavar="PATH"),
    Flag("--target", "target", help="the column to forecast, or 'all' "
         "(default) for every numeric column", metavar="COLUMN"),
    Flag("--control", "control", help="also fine-tune the base model WITHOUT "
         "BSA by the same protocol (separates BSA from the extra training)",
         switch=True),
)


def make_config(given: Mapping[str, Any]) -> ForecastConfig:
  """The run's settings from the command's flags, validated.

  Args:
    given: flag -> value of the flags given (config fields, and "data",
      "target" and "control" of :data:`FLAGS`).

  Raises:
    ValueError: naming the flag (``--data`` missing, ``--epochs`` < 1,
      ``--ft-epochs`` < 0, or a setting :class:`ForecastConfig` refuses).
  """
  if given.get("data") is None:
    raise ValueError("--data is required (a CSV file with a header row)")
  for flag, name, least in (("--epochs", "max_epochs", 1),
                            ("--ft-epochs", "ft_epochs", 0)):
    if given.get(name, least) < least:
      raise ValueError(f"{flag} must be >= {least}, got {given[name]}")
  return ForecastConfig(**{k: v for k, v in given.items()
                           if k not in {f.dest for f in FLAGS}})
