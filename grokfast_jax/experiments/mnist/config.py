"""Settings of the MNIST large-initialization experiment (Grokfast paper).

The paper's MNIST run (Lee et al. 2024, after Liu et al.'s Omnigrok) trains a
784-200-200-10 ReLU MLP whose initial weights are scaled by 8, on 1,000
training images with an MSE loss on one-hot targets and AdamW (lr 1e-3, batch
200). The baseline uses the reference script's weight decay 0.01; Grokfast-EMA
uses alpha 0.8, lamb 0.1 and weight decay 2.0. The paper reports 95% test
accuracy at 44,022 steps for the baseline and 2,001 steps for Grokfast-EMA.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

FILTERS = ("none", "ema", "ma")
THRESHOLD = 0.95  # test accuracy whose first crossing is reported
# Every test accuracy whose first crossing is reported. On real MNIST with
# 1,000 training images this MLP's best test accuracy is near 0.90, so 95% is
# seldom reached and the lower marks tell the runs apart.
THRESHOLDS = (0.85, 0.90, 0.95)
# Steps to 95% test accuracy reported in the paper (real MNIST, 1,000 images).
PAPER_STEPS_TO_95 = {"none": 44_022, "ema": 2_001}

# Per-filter defaults. "none" and "ema" are the paper's / reference script's
# MNIST settings. The paper has no MNIST run with Grokfast-MA: its window and
# lamb are the reference script's defaults and its weight decay is the EMA
# run's; treat them as a starting point, not a reproduction.
PAPER_DEFAULTS: dict[str, dict[str, float]] = {
    "none": {"weight_decay": 0.01},
    "ema": {"alpha": 0.8, "lamb": 0.1, "weight_decay": 2.0},
    "ma": {"window_size": 100, "lamb": 5.0, "weight_decay": 2.0},
}


@dataclasses.dataclass(frozen=True)
class MnistConfig:
  """One training run of the MNIST large-initialization experiment.

  Attributes:
    filter: gradient filter in front of AdamW: "none", "ema" or "ma".
    alpha: Grokfast-EMA momentum in [0, 1) (used by "ema").
    lamb: Grokfast amplification, >= 0 (used by "ema" and "ma").
    window_size: Grokfast-MA window, >= 1 (used by "ma").
    weight_decay: AdamW decoupled weight decay, >= 0.
    lr: AdamW learning rate, > 0.
    init_scale: factor applied to every initial weight and bias, > 0.
    hidden: widths of the hidden layers.
    train_size: number of training images: the first `train_size` of the
      training set, as in the reference (the same for every seed).
    batch_size: minibatch size; an epoch is `train_size // batch_size` steps
      (the remainder of each reshuffled epoch is dropped).
    seed: seeds the initialization and the shuffling.
    max_steps: optimization steps to run, a multiple of the steps per epoch.
    eval_every: evaluate train and test metrics every this many steps, a
      multiple of the steps per epoch.
  """

  filter: str = "ema"
  alpha: float = 0.8
  lamb: float = 0.1
  window_size: int = 100
  weight_decay: float = 2.0
  lr: float = 1e-3
  init_scale: float = 8.0
  hidden: tuple[int, ...] = (200, 200)
  train_size: int = 1000
  batch_size: int = 200
  seed: int = 0
  max_steps: int = 100_000
  eval_every: int = 100

  def __post_init__(self) -> None:
    """Validates the settings.

    Raises:
      ValueError: naming the first argument out of its allowed range.
    """
    if self.filter not in FILTERS:
      raise ValueError(f"filter must be one of {FILTERS}, got {self.filter!r}")
    if not 0.0 <= self.alpha < 1.0:
      raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")
    _check("lamb", self.lamb, self.lamb >= 0, ">= 0")
    _check("window_size", self.window_size, self.window_size >= 1, ">= 1")
    _check("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0")
    _check("lr", self.lr, self.lr > 0, "> 0")
    _check("init_scale", self.init_scale, self.init_scale > 0, "> 0")
    if not self.hidden or any(int(h) < 1 for h in self.hidden):
      raise ValueError(
          f"hidden must be non-empty widths >= 1, got {self.hidden}")
    _check("train_size", self.train_size, self.train_size >= 1, ">= 1")
    _check("batch_size", self.batch_size,
           1 <= self.batch_size <= self.train_size, "in [1, train_size]")
    spe = self.steps_per_epoch
    _check("eval_every", self.eval_every,
           self.eval_every >= 1 and self.eval_every % spe == 0,
           f"a positive multiple of the steps per epoch ({spe})")
    _check("max_steps", self.max_steps,
           self.max_steps >= 1 and self.max_steps % spe == 0,
           f"a positive multiple of the steps per epoch ({spe})")

  @property
  def steps_per_epoch(self) -> int:
    """Optimization steps in one epoch (full batches only)."""
    return self.train_size // self.batch_size

  @property
  def run_name(self) -> str:
    """A short label: "baseline", "grokfast-ema" or "grokfast-ma"."""
    return "baseline" if self.filter == "none" else f"grokfast-{self.filter}"

  @property
  def label(self) -> str:
    """The settings that tell runs apart, e.g. "alpha 0.8, lamb 0.1, wd 2"."""
    knobs = {"none": [],
             "ema": [f"alpha {self.alpha:g}", f"lamb {self.lamb:g}"],
             "ma": [f"window {self.window_size}", f"lamb {self.lamb:g}"]}
    return ", ".join(knobs[self.filter] + [f"wd {self.weight_decay:g}"])

  def to_dict(self) -> dict[str, Any]:
    """The settings as a JSON-friendly dict, without the unused filter knobs."""
    d = dataclasses.asdict(self)
    d["hidden"] = list(self.hidden)
    unused = {"none": ("alpha", "lamb", "window_size"), "ema": ("window_size",),
              "ma": ("alpha",)}[self.filter]
    for name in unused:
      del d[name]
    return d


def paper_config(filter: str = "ema",
                 **overrides: Optional[Any]) -> MnistConfig:
  """A config with the paper's settings for `filter`, then `overrides`.

  Overrides set to None are ignored, so parsed command-line options with no
  value given fall back to the paper's setting for the chosen filter.

  Args:
    filter: "none", "ema" or "ma".
    **overrides: any :class:`MnistConfig` field.

  Returns:
    The validated config.

  Raises:
    ValueError: unknown filter or an out-of-range setting.

  Example:
    >>> paper_config("none").weight_decay
    0.01
    >>> paper_config("ema", lamb=None, max_steps=500).lamb
    0.1
  """
  if filter not in FILTERS:
    raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
  fields = dict(PAPER_DEFAULTS[filter])
  fields.update({k: v for k, v in overrides.items() if v is not None})
  return MnistConfig(filter=filter, **fields)


def is_paper_setting(cfg: MnistConfig) -> bool:
  """Whether `cfg` is the paper's setting for its filter (seed, step count and
  evaluation period aside), so the paper's figures apply to it."""
  free = ("seed", "max_steps", "eval_every")
  mine, paper = cfg.to_dict(), paper_config(cfg.filter).to_dict()
  return all(mine[k] == paper[k] for k in mine if k not in free)


def _check(name: str, value: Any, ok: bool, allowed: str) -> None:
  if not ok:
    raise ValueError(f"{name} must be {allowed}, got {value}")
