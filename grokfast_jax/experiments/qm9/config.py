"""Settings of the QM9 polarizability experiment (Grokfast paper, Sec. 4).

The paper's QM9 run (Lee et al. 2024) trains a small message-passing network
(two NNConv layers, global add pooling, a two-layer head) whose initial
parameters are scaled by 3, on the first 100 characterized molecules of QM9
split 50 / 50, regressing the isotropic polarizability `alpha` (bohr^3, not
normalized) with an MSE loss and AdamW (lr 1e-3, batch 32, so 2 updates per
epoch) for 50,000 epochs, evaluating the 50 test molecules every epoch.

The reference script's default weight decay is 0 (the baseline); its README
command sets 0.01, and its Grokfast-EMA settings are alpha 0.9, lamb 1.0. The
README commands never pass the filter flag, so the published lowest validation
losses (0.00659 -> 0.00348) may owe their gap to the weight decay alone: the
``qm9-compare`` command therefore also runs the weight-decay-only control.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from grokfast_jax.experiments import settings

FILTERS = settings.GROKFAST_FILTERS
# Lowest validation MSE the paper reports (which run produced each number is
# ambiguous; see the module docstring).
PAPER_LOWEST_VAL_LOSS = {"baseline": 0.00659, "grokfast": 0.00348}
README_WEIGHT_DECAY = 0.01

# Per-filter defaults. "none" is the reference script's default (weight decay
# 0); "ema" is the README's Grokfast-EMA with its weight decay. The paper has
# no QM9 run with Grokfast-MA: its window and lamb are the reference script's
# defaults, a starting point rather than a reproduction.
PAPER_DEFAULTS: dict[str, dict[str, float]] = {
    "none": {"weight_decay": 0.0},
    "ema": {"alpha": 0.9, "lamb": 1.0, "weight_decay": README_WEIGHT_DECAY},
    "ma": {"window_size": 100, "lamb": 5.0,
           "weight_decay": README_WEIGHT_DECAY},
}


@dataclasses.dataclass(frozen=True)
class Qm9Config(settings.FilterSettingsMixin):
  """One training run of the QM9 polarizability experiment.

  Attributes:
    filter: gradient filter in front of AdamW: "none", "ema" or "ma".
    alpha: Grokfast-EMA momentum in [0, 1) (used by "ema").
    lamb: Grokfast amplification, >= 0 (used by "ema" and "ma").
    window_size: Grokfast-MA window, >= 1 (used by "ma").
    weight_decay: AdamW decoupled weight decay, >= 0.
    lr: AdamW learning rate, > 0.
    init_scale: factor applied to every initial parameter, > 0.
    size: molecules used, the first `size` characterized rows of the CSV,
      >= 2; a random half (`size // 2`, chosen by `seed`) trains, the rest
      are the test set.
    batch_size: minibatch size, in [1, size // 2]; each epoch reshuffles the
      training molecules and keeps the last, smaller batch.
    seed: seeds the split, the initialization and the shuffles.
    epochs: training epochs, >= 1 (each `updates_per_epoch` updates).
    chunk_epochs: epochs per jitted call, >= 1 (a second compilation serves a
      shorter last chunk when it does not divide `epochs`).
    log_every: keep a history entry every this many epochs, >= 1 (plus
      log-spaced early epochs and the best epoch; the lowest test MSE is
      taken over every epoch regardless).
  """

  filter: str = "ema"
  alpha: float = 0.9
  lamb: float = 1.0
  window_size: int = 100
  weight_decay: float = README_WEIGHT_DECAY
  lr: float = 1e-3
  init_scale: float = 3.0
  size: int = 100
  batch_size: int = 32
  seed: int = 0
  epochs: int = 50_000
  chunk_epochs: int = 500
  log_every: int = 200

  def __post_init__(self) -> None:
    """Validates the settings: the filter's and AdamW's
    (:func:`settings.check_optimizer_settings`), then the initialization, the
    molecules, the batch and the epoch counts.

    Raises:
      ValueError: naming the first argument out of its allowed range.
    """
    settings.check_optimizer_settings(self, FILTERS)
    check = settings.check
    check("init_scale", self.init_scale, self.init_scale > 0, "> 0")
    check("size", self.size, self.size >= 2, ">= 2")
    check("batch_size", self.batch_size,
          1 <= self.batch_size <= self.n_train,
          f"in [1, {self.n_train}] (the training molecules, size // 2)")
    for name in ("epochs", "chunk_epochs", "log_every"):
      value = getattr(self, name)
      check(name, value, value >= 1, ">= 1")

  @property
  def n_train(self) -> int:
    """Training molecules: half of `size`, rounded down."""
    return self.size // 2

  @property
  def n_test(self) -> int:
    """Test molecules: the rest of `size`."""
    return self.size - self.n_train

  @property
  def updates_per_epoch(self) -> int:
    """Optimizer updates per epoch (the last, smaller batch is kept)."""
    return math.ceil(self.n_train / self.batch_size)

  @property
  def max_steps(self) -> int:
    """Optimizer updates in the whole run."""
    return self.epochs * self.updates_per_epoch

  @property
  def run_name(self) -> str:
    """A short label: "baseline", "weight-decay", "grokfast-ema" or ...-ma."""
    if self.filter != "none":
      return f"grokfast-{self.filter}"
    return "baseline" if self.weight_decay == 0 else "weight-decay"

  def to_dict(self) -> dict[str, Any]:
    """The settings as a JSON-friendly dict, without the unused filter knobs,
    plus the derived counts (train / test molecules, updates)."""
    return self.filter_settings_dict(
        n_train=self.n_train, n_test=self.n_test,
        updates_per_epoch=self.updates_per_epoch, max_steps=self.max_steps)


def epochs_from_steps(max_steps: int, updates_per_epoch: int) -> int:
  """Whole epochs covering `max_steps` updates (rounded up).

  Args:
    max_steps: requested optimizer updates, >= 1.
    updates_per_epoch: updates in one epoch.

  Returns:
    ``ceil(max_steps / updates_per_epoch)``.

  Raises:
    ValueError: `max_steps` below 1.

  Example:
    >>> epochs_from_steps(100_000, 2), epochs_from_steps(5, 2)
    (50000, 3)
  """
  settings.check("max_steps", max_steps, max_steps >= 1, ">= 1")
  return math.ceil(max_steps / updates_per_epoch)


def paper_config(filter: str = "ema",
                 **overrides: Optional[Any]) -> Qm9Config:
  """:data:`PAPER_DEFAULTS` for `filter`, then the `overrides` that are not
  None, as a validated :class:`Qm9Config` (see
  :func:`settings.config_with_defaults`: options not given on the command line
  keep the paper's setting for the chosen filter).

  Example:
    >>> paper_config("none").weight_decay
    0.0
    >>> paper_config("ema", lamb=None, epochs=10).lamb
    1.0
  """
  return settings.config_with_defaults(Qm9Config, FILTERS, PAPER_DEFAULTS,
                                     filter, overrides)
