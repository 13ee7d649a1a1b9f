"""Settings of one forecasting run: base training, then BSA fine-tuning.

:class:`ForecastConfig` holds every setting of a run; those with a help text
are also flags of ``grokfast-jax forecast``, whose other flags (:data:`FLAGS`:
the file, its column and the control run) say what to run it on.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional

from grokfast_jax.experiments.forecasting.data import SPLITS
from grokfast_jax.experiments.forecasting.models import MODELS, check_shapes
from grokfast_jax.experiments.harness import Flag, option

PROTOCOLS = ("quick", "reference")
SCHEDULES = ("constant", "cosine")
CLIPS = ("value", "norm")
#: What ``--protocol reference`` sets (unless a flag sets it): the authors'
#: training as their code runs it (see the Spectral Attention guide).
REFERENCE = {
  "batch_size": 64,
  "lr": 3e-4,
  "weight_decay": 3e-5,
  "lr_decay": 0.9,
  "max_epochs": 30,
  "patience": None,
  "ft_batch_size": 256,
  "ft_epochs": 30,
  "ft_lr_spectral": 2.1e-2,
  "ft_lr_alpha": 1e-2,
  "ft_lr_base": 4.2e-4,
  "ft_weight_decay": 1e-4,
  "ft_decoupled_wd": False,
  "ft_schedule": "cosine",
  "ft_warmup_samples": 1000,
  "ft_clip": "norm",
  "alphas": (0.9, 0.99, 0.999, 0.9999),
  "learnable_alpha": True,
}
# The paper's splits: ETT files 0.6 / 0.2 / 0.2 of the rows, others
# 0.7 / 0.1 / 0.2.
ETT_RATIOS = (0.6, 0.2, 0.2)
OTHER_RATIOS = (0.7, 0.1, 0.2)


def is_ett(path: Any) -> bool:
  """Whether a file is one of the ETT data sets (its name starts "ETT")."""
  return Path(str(path)).name.lower().startswith("ett")


def data_defaults(path: Any, protocol: str = "quick") -> dict[str, Any]:
  """The settings a data file implies unless flags set them.

  The split ratios: 0.6 / 0.2 / 0.2 for an ETT file (named ``ETT*``),
  0.7 / 0.1 / 0.2 for any other, as in the paper. Under the reference
  protocol also the fine-tuning epochs: 30 for ETTh1, ETTh2 and Exchange
  (``ETTh*``, ``exchange*``), 20 for the others, as the reference runs them.

  Examples:
    >>> data_defaults("data/ETTh1.csv")
    {'ratios': (0.6, 0.2, 0.2)}
    >>> data_defaults("national_illness.csv", "reference")
    {'ratios': (0.7, 0.1, 0.2), 'ft_epochs': 20}
  """
  name = Path(str(path)).name.lower()
  out: dict[str, Any] = {"ratios": ETT_RATIOS if is_ett(path) else OTHER_RATIOS}
  if protocol == "reference":
    out["ft_epochs"] = 30 if name.startswith(("etth", "exchange")) else 20
  return out


def parse_ratios(text: str) -> tuple[float, float, float]:
  """``"0.7,0.1,0.2"`` -> (0.7, 0.1, 0.2) (the ``--ratios`` flag)."""
  try:
    ratios = tuple(float(t) for t in text.split(","))
  except ValueError:
    ratios = ()
  if len(ratios) != 3 or min(ratios) <= 0 or sum(ratios) > 1 + 1e-9:
    raise argparse.ArgumentTypeError(
      f"expected 3 positive fractions TRAIN,VAL,TEST summing to <= 1, got "
      f"{text!r}"
    )
  return ratios  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class ForecastConfig:
  """Everything that defines a run.

  The protocol follows the BSA reference (see :mod:`.training`): the base
  forecaster trained on shuffled windows, then fine-tuned with Batched
  Spectral Attention (identity at init) on consecutive windows, the BSA
  logits at `ft_lr_spectral`, the base weights at the much smaller
  `ft_lr_base`; each stage keeps its epoch of best validation MSE.

  Attributes:
    model: one of MODELS (the paper's seven: "dlinear", "rlinear",
      "frets", "timesnet", "itransformer", "crossformer", "patchtst").
    lookback: input length L.
    horizon: forecast length H.
    split: "ratio" (chronological `ratios`) or "ett" (12/4/4 months).
    ratios: train/val/test fractions for ``split="ratio"`` (the command's
      default: :func:`data_defaults`).
    max_rows: use only the first rows of the series (quick runs).
    seed: init and shuffling seed.
    protocol: "quick" (the defaults of this class) or "reference" (the
      authors' training, :data:`REFERENCE`; the command applies it to the
      settings no flag gives).
    batch_size: base-training batch size (shuffled).
    lr: base-training Adam learning rate.
    weight_decay: base-training L2 penalty added to the gradient (coupled,
      as torch's Adam ``weight_decay``).
    lr_decay: base-training learning rate multiplied by this after every
      epoch.
    max_epochs: base-training epochs at most (flag ``--epochs``).
    patience: stop base training after this many epochs without a better
      validation MSE (None: train every epoch).
    ft_batch_size: BSA fine-tuning batch size (consecutive samples).
    ft_epochs: BSA fine-tuning epochs.
    ft_lr_spectral: Adam learning rate of the BSA mixing logits.
    ft_lr_alpha: Adam learning rate of the BSA smoothing-factor logits (with
      `learnable_alpha`; None: `ft_lr_spectral`).
    ft_lr_base: learning rate of the base model's parameters.
    ft_weight_decay: weight decay of the base parameters.
    ft_decoupled_wd: AdamW's decoupled decay (True) or an L2 term added to
      the gradient before Adam (False, torch's Adam ``weight_decay``).
    ft_schedule: "constant" or "cosine" (to 0 at the last update, after a
      linear warm-up over `ft_warmup_samples` samples).
    ft_warmup_samples: samples of linear warm-up of the cosine schedule.
    ft_clip: clip the gradient at 1 by "value" or by global "norm".
    alphas: BSA smoothing factors.
    learnable_alpha: learn the smoothing factors.
    bptt: back-propagate through the in-batch EMA.
    eval_batch_size: batch size of evaluation streams.
  """

  model: str = option(
    "dlinear", "base forecaster (default dlinear)", choices=MODELS
  )
  lookback: int = option(96, "input length L (default 96)")
  horizon: int = option(96, "forecast length H (default 96)")
  split: str = option(
    "ratio",
    "'ratio': chronological 0.6/0.2/0.2 of the "
    "rows (default); 'ett': the ETTh 12/4/4-month borders",
    choices=SPLITS,
  )
  ratios: tuple[float, float, float] = option(
    ETT_RATIOS,
    "train,val,test fractions of the rows for the 'ratio' "
    "split (default: 0.6,0.2,0.2 for a file named ETT*, else 0.7,0.1,0.2)",
    parse=parse_ratios,
    metavar="TRAIN,VAL,TEST",
  )
  max_rows: Optional[int] = option(None, cli=False)
  seed: int = option(0, "init and shuffling seed (default 0)")
  protocol: str = option(
    "quick",
    "'quick' (default): short training, 3 fine-tuning epochs; "
    "'reference': the authors' training (30 base epochs at lr 3e-4 x 0.9 "
    "per epoch, fine-tuning all parameters for 30 or 20 epochs in batches "
    "of 256 with a cosine schedule, 4 learnable smoothing factors); flags "
    "given with it still apply",
    choices=PROTOCOLS,
  )
  batch_size: int = option(32, cli=False)
  lr: float = option(1e-3, cli=False)
  weight_decay: float = option(0.0, cli=False)
  lr_decay: float = option(1.0, cli=False)
  max_epochs: int = option(
    10,
    "base-training epochs at most (quick: default "
    "10, early stopping on the validation MSE with "
    "patience 3; reference: 30, no early stopping)",
    flag="--epochs",
    metavar="EPOCHS",
  )
  patience: Optional[int] = option(3, cli=False)
  ft_batch_size: int = option(64, cli=False)
  ft_epochs: int = option(
    3,
    "BSA fine-tuning epochs (quick: default 3; "
    "reference: 30 for ETTh* and exchange* files, else "
    "20)",
  )
  ft_lr_spectral: float = option(1e-2, cli=False)
  ft_lr_alpha: Optional[float] = option(None, cli=False)
  ft_lr_base: float = option(1e-5, cli=False)
  ft_weight_decay: float = option(1e-4, cli=False)
  ft_decoupled_wd: bool = option(True, cli=False)
  ft_schedule: str = option("constant", cli=False)
  ft_warmup_samples: int = option(0, cli=False)
  ft_clip: str = option("value", cli=False)
  alphas: tuple[float, ...] = option((0.9, 0.99, 0.999), cli=False)
  learnable_alpha: bool = option(False, cli=False)
  bptt: bool = option(True, cli=False)
  eval_batch_size: int = option(256, cli=False)

  def __post_init__(self):
    if self.model not in MODELS:
      raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
    if self.split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
    for name, allowed in (
      ("protocol", PROTOCOLS),
      ("ft_schedule", SCHEDULES),
      ("ft_clip", CLIPS),
    ):
      if getattr(self, name) not in allowed:
        raise ValueError(
          f"{name} must be one of {allowed}, got {getattr(self, name)!r}"
        )
    for name in (
      "lookback",
      "horizon",
      "batch_size",
      "max_epochs",
      "ft_batch_size",
      "eval_batch_size",
    ):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.patience is not None and self.patience < 1:
      raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
    if self.ft_warmup_samples < 0:
      raise ValueError(
        f"ft_warmup_samples must be >= 0, got {self.ft_warmup_samples}"
      )
    for name in ("weight_decay", "ft_weight_decay"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
    if not 0 < self.lr_decay <= 1:
      raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
    check_shapes(self.model, self.lookback, self.horizon)
    if self.ft_epochs < 0:
      raise ValueError(f"ft_epochs must be >= 0, got {self.ft_epochs}")
    for name in ("lr", "ft_lr_spectral", "ft_lr_base", "ft_lr_alpha"):
      value = getattr(self, name)
      if value is not None and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")

  def spectral_kwargs(self) -> dict:
    """Keyword arguments of BatchedSpectralAttention for this run."""
    return {
      "alphas": tuple(self.alphas),
      "learnable_alpha": self.learnable_alpha,
      "bptt": self.bptt,
    }


#: The command's flags that are not settings of the run (what to run it on
#: and which runs to make).
FLAGS = (
  Flag(
    "--data",
    "data",
    help="CSV file with a header row (required)",
    metavar="PATH",
  ),
  Flag(
    "--target",
    "target",
    help="the column to forecast, or 'all' (default) for every numeric column",
    metavar="COLUMN",
  ),
  Flag(
    "--control",
    "control",
    help="also fine-tune the base model WITHOUT "
    "BSA by the same protocol (separates BSA from the extra training)",
    switch=True,
  ),
  Flag(
    "--search",
    "search",
    help="the reference's learning-rate search: each fine-tuning rate in "
    "turn (base weights, BSA mixing, learned smoothing factors) at x0.7, x1 "
    "and x1.4, keeping the fine-tuning of lowest validation MSE, for BSA "
    "and the control alike (5-7 fine-tunings instead of 1)",
    switch=True,
  ),
)


def make_config(given: Mapping[str, Any]) -> ForecastConfig:
  """The run's settings from the command's flags, validated.

  A setting no flag gives comes from the data file (:func:`data_defaults`:
  the split ratios; under the reference protocol the fine-tuning epochs),
  then from the protocol (:data:`REFERENCE`), then from
  :class:`ForecastConfig`.

  Args:
    given: flag -> value of the flags given (config fields, and "data",
      "target" and "control" of :data:`FLAGS`).

  Raises:
    ValueError: naming the flag (``--data`` missing, ``--epochs`` < 1,
      ``--ft-epochs`` < 0, or a setting :class:`ForecastConfig` refuses).
  """
  if given.get("data") is None:
    raise ValueError("--data is required (a CSV file with a header row)")
  for flag, name, least in (
    ("--epochs", "max_epochs", 1),
    ("--ft-epochs", "ft_epochs", 0),
  ):
    if given.get(name, least) < least:
      raise ValueError(f"{flag} must be >= {least}, got {given[name]}")
  protocol = given.get("protocol", "quick")
  if protocol not in PROTOCOLS:
    raise ValueError(f"--protocol must be one of {PROTOCOLS}, got {protocol!r}")
  settings = {
    **(REFERENCE if protocol == "reference" else {}),
    **data_defaults(given["data"], protocol),
  }
  settings.update(
    (k, v) for k, v in given.items() if k not in {f.dest for f in FLAGS}
  )
  return ForecastConfig(**settings)
