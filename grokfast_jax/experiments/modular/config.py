"""Settings of one modular-arithmetic run, with the Grokfast paper's defaults."""

from __future__ import annotations

import dataclasses
from typing import Optional

FILTERS = ("none", "ema", "ma")

# Per-filter defaults of the Grokfast paper's algorithmic-task runs.
PAPER_DEFAULTS = {
    "none": {"alpha": 0.98, "lamb": 0.0, "window_size": 100,
             "weight_decay": 0.0},
    "ema": {"alpha": 0.98, "lamb": 2.0, "window_size": 100,
            "weight_decay": 0.005},
    "ma": {"alpha": 0.98, "lamb": 5.0, "window_size": 100,
           "weight_decay": 0.01},
}


MESHES = ("none", "dp", "fsdp")


@dataclasses.dataclass(frozen=True)
class ModularConfig:
  """Everything that defines a run (all of it is written to results.json).

  Attributes:
    op: operator of ``x op y mod p``: "*", "+", "-" or "/" (modular inverse).
    p: the prime modulus (>= 3).
    train_fraction: fraction of the equations used for training, in (0, 1).
    filter: gradient filter: "none", "ema" (Grokfast-EMA) or "ma"
      (Grokfast-MA).
    alpha: EMA momentum (filter "ema").
    lamb: amplification of the slow gradient ("ema" and "ma").
    window_size: moving-average window (filter "ma").
    weight_decay: weight decay; coupled L2 (added to the filtered gradient
      before Adam) unless `decoupled_wd`.
    decoupled_wd: use AdamW-style decoupled weight decay instead.
    seed: seed of the split, the initialization and the batch order.
    max_steps: optimizer updates to run at most (rounded up to whole epochs).
    stop_at_target: stop after the first evaluation reaching `target`.
    target: validation accuracy that counts as grokked.
    batch_size: examples per update (the last batch of an epoch is smaller).
    lr: Adam learning rate after warm-up.
    beta1, beta2, eps: Adam constants.
    warmup_steps: the learning rate is ``lr * min(update / warmup_steps, 1)``
      with ``update = 0`` for the first update.
    depth, width, heads, mlp_ratio: transformer shape.
    mesh: "none" (one device), "dp" (data parallel: params replicated, each
      batch split over the devices) or "fsdp" (params, optimizer and filter
      state split over the devices too).
    devices: how many devices the mesh uses; 0 for all of them.
  """

  op: str = "*"
  p: int = 97
  train_fraction: float = 0.5
  filter: str = "none"
  alpha: float = 0.98
  lamb: float = 0.0
  window_size: int = 100
  weight_decay: float = 0.0
  decoupled_wd: bool = False
  seed: int = 0
  max_steps: int = 3000
  stop_at_target: bool = False
  target: float = 0.95
  batch_size: int = 512
  lr: float = 1e-3
  beta1: float = 0.9
  beta2: float = 0.98
  eps: float = 1e-8
  warmup_steps: int = 10
  depth: int = 2
  width: int = 128
  heads: int = 4
  mlp_ratio: int = 4
  mesh: str = "none"
  devices: int = 0

  def __post_init__(self):
    if self.filter not in FILTERS:
      raise ValueError(f"filter must be one of {FILTERS}, got {self.filter!r}")
    for name in ("max_steps", "batch_size", "window_size", "depth", "width",
                 "heads", "mlp_ratio"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if self.warmup_steps < 0:
      raise ValueError(
          f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
    if self.width % self.heads:
      raise ValueError(
          f"width must be a multiple of heads, got {self.width} and "
          f"{self.heads}")
    if not self.weight_decay >= 0:
      raise ValueError(
          f"weight_decay must be >= 0, got {self.weight_decay!r}")
    if not 0 < self.target <= 1:
      raise ValueError(f"target must be in (0, 1], got {self.target!r}")
    if self.mesh not in MESHES:
      raise ValueError(f"mesh must be one of {MESHES}, got {self.mesh!r}")
    if not isinstance(self.devices, int) or self.devices < 0:
      raise ValueError(
          f"devices must be an int >= 0 (0: all), got {self.devices!r}")


def paper_config(filter: str = "none", *, alpha: Optional[float] = None,
                 lamb: Optional[float] = None,
                 window_size: Optional[int] = None,
                 weight_decay: Optional[float] = None,
                 **overrides) -> ModularConfig:
  """A :class:`ModularConfig` with the paper's defaults for `filter`.

  Args:
    filter: "none", "ema" or "ma".
    alpha, lamb, window_size, weight_decay: overrides; None keeps the paper's
      value for the filter (ema: alpha 0.98, lamb 2, wd 0.005; ma: window 100,
      lamb 5, wd 0.01; none: wd 0).
    **overrides: any other :class:`ModularConfig` field.

  Returns:
    The config.

  Example:
    >>> paper_config("ema", seed=1).weight_decay
    0.005
  """
  if filter not in FILTERS:
    raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
  d = dict(PAPER_DEFAULTS[filter])
  for name, value in (("alpha", alpha), ("lamb", lamb),
                      ("window_size", window_size),
                      ("weight_decay", weight_decay)):
    if value is not None:
      d[name] = value
  return ModularConfig(filter=filter, **d, **overrides)
