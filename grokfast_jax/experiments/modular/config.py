"""Settings of one modular-arithmetic run, with the Grokfast paper's defaults."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

from grokfast_jax.experiments import settings
from grokfast_jax.experiments.harness import option
from grokfast_jax.experiments.modular import data as data_lib

FILTERS = ("none", "ema", "ma", "iir")
OPTIMIZERS = ("adam", "adamw", "lion", "muon")
LOSSES = ("ce", "stablemax")
# How --max-weight-norm measures a [in, out] kernel: "row" (axis 0, the
# incoming weights of each output unit: PyTorch's weight rows), "column"
# (axis 1, the outgoing weights of each input) or "matrix" (Frobenius).
WEIGHT_NORM_AXES = {"row": 0, "column": 1, "matrix": None}
# Which leaves `max_weight_norm` bounds: the blocks' Linear kernels, or every
# leaf as the Clip-to-Grok reference does (see modular/optimizers.py).
WEIGHT_NORM_SCOPES = ("blocks", "all")

# Per-filter defaults of the Grokfast paper's algorithmic-task runs (the IIR
# filter, not in the paper, takes EMA's).
PAPER_DEFAULTS = {
  "none": {"alpha": 0.98, "lamb": 0.0, "window_size": 100, "weight_decay": 0.0},
  "ema": {
    "alpha": 0.98,
    "lamb": 2.0,
    "window_size": 100,
    "weight_decay": 0.005,
  },
  "ma": {"alpha": 0.98, "lamb": 5.0, "window_size": 100, "weight_decay": 0.01},
  "iir": {
    "alpha": 0.98,
    "lamb": 2.0,
    "window_size": 100,
    "weight_decay": 0.005,
  },
}

# Fields added after checkpoints were first written. At their defaults they
# are left out of a checkpoint's settings (see `checkpoint_settings`), so
# checkpoints of earlier versions still resume.
NEW_FIELDS = (
  "optimizer",
  "orthograd",
  "loss",
  "max_weight_norm",
  "weight_norm_axis",
  "iir_order",
  "iir_cutoff",
  "record_spectrum",
  "weight_norm_scope",
  "egd",
)
# Fields that label a run or say how long it goes on, not what it trains.
UNCHECKED_FIELDS = ("recipe", "after_target")


MESHES = ("none", "dp", "fsdp")
_TASK = "task"
_METHOD = "training method (default: the paper's Adam; flags override --recipe)"
_SHAPE = "model shape (defaults: the paper's 2 blocks, width 128, 4 heads)"


@dataclasses.dataclass(frozen=True)
class ModularConfig:
  """Everything that defines a run (all of it is written to results.json).

  Attributes:
    op: the operation (:data:`data.OPS`): ``x op y mod p`` for "*", "+",
      "-" and "/" (modular inverse), a polynomial of Power et al. (2022)
      mod p such as "x^2+xy+y^2", or "s5" (composition in S5).
    p: the prime modulus (>= 3; unused by "s5").
    train_fraction: fraction of the equations used for training, in (0, 1).
    filter: gradient filter: "none", "ema" (Grokfast-EMA), "ma"
      (Grokfast-MA) or "iir" (Grokfast-IIR with a Butterworth low-pass).
    alpha: EMA momentum (filter "ema").
    lamb: amplification of the slow gradient ("ema", "ma" and "iir").
    window_size: moving-average window (filter "ma").
    weight_decay: weight decay. With "adam", coupled L2 (added to the
      filtered gradient before Adam) unless `decoupled_wd`; "adamw", "lion"
      and "muon" decay decoupled (times the learning rate), as Optax's own.
    decoupled_wd: use AdamW-style decoupled weight decay with "adam".
    seed: seed of the split, the initialization and the batch order.
    max_steps: optimizer updates to run at most (rounded up to whole epochs).
    stop_at_target: stop after the first evaluation reaching `target`.
    target: validation accuracy that counts as grokked.
    batch_size: examples per update (the last batch of an epoch is smaller).
    lr: learning rate after warm-up (every optimizer).
    beta1, beta2, eps: Adam constants; Lion's two betas; Muon's Adam
      fallback's (Muon's own momentum is Optax's 0.95). Lion has no eps.
    warmup_steps: the learning rate is ``lr * min(update / warmup_steps, 1)``
      with ``update = 0`` for the first update.
    depth, width, heads, mlp_ratio: transformer shape.
    mesh, devices: "none" (one device), "dp" (params replicated, batches
      split) or "fsdp" (params and optimizer state split too), over
      `devices` devices (0: all).
    optimizer: "adam" (the paper's), "adamw", "lion" or "muon" (see
      :mod:`~grokfast_jax.experiments.modular.optimizers`).
    orthograd: apply ⊥Grad to the raw gradient, before the filter.
    egd: egalitarian gradient descent (:func:`grokfast_jax.egalitarian`) on
      the raw gradients of the blocks' Linear kernels, first in the chain.
    loss: "ce" (softmax cross-entropy) or "stablemax" (StableMax
      cross-entropy), for training and the validation loss alike.
    max_weight_norm, weight_norm_axis, weight_norm_scope: bound the norm of
      weight rows by `max_weight_norm` (None: off), measured as
      `WEIGHT_NORM_AXES` says, on the leaves of `WEIGHT_NORM_SCOPES` ("all"
      needs axis "row"; see the optimizers module).
    iir_order, iir_cutoff: the Butterworth low-pass of filter "iir" (cutoff
      as a fraction of the Nyquist frequency; the default 0.0064, 0.0032
      cycles a step, is the -3 dB point of EMA alpha 0.98).
    record_spectrum: record 64 raw-gradient coordinates every update (the
      last 4096) and report their power spectrum.
    after_target: with `stop_at_target`, go on for this many more updates
      (rounded up to whole epochs, within `max_steps`) after first
      reaching `target`.
    recipe: the name of the recipe the settings came from (a label; see
      :mod:`~grokfast_jax.experiments.modular.recipes`), or None.
  """

  op: str = option(
    "*",
    "operation: x op y mod p ('/' uses the modular "
    "inverse of y; default '*'), a polynomial of Power et al. "
    "mod p, or s5 (composition of the permutations of 5 "
    "elements; p unused)",
    choices=data_lib.OPS,
    group=_TASK,
  )
  p: int = option(97, "prime modulus >= 3 (default 97)", group=_TASK)
  train_fraction: float = option(
    0.5,
    "fraction of equations for training, in (0, 1) (default 0.5)",
    group=_TASK,
  )
  filter: str = option(
    "none", "gradient filter (default: the recipe's, else ema)", choices=FILTERS
  )
  alpha: float = option(0.98, "EMA momentum (default 0.98)")
  lamb: float = option(0.0, "amplification (default: ema 2, ma 5, iir 2)")
  window_size: int = option(100, "MA window (default 100)")
  weight_decay: float = option(
    0.0, "weight decay (default: none 0, ema 0.005, ma 0.01)"
  )
  decoupled_wd: bool = option(
    False,
    "AdamW-style decoupled weight decay "
    "instead of coupled L2 added to the gradient",
  )
  seed: int = option(0, "seed (default 0)", group=_TASK)
  max_steps: int = option(
    3000,
    "updates to run, rounded up to whole epochs (default 3000; compare: 2000)",
  )
  stop_at_target: bool = option(
    False, "stop at the first evaluation with val acc >= 95%%"
  )
  target: float = option(0.95, cli=False)
  batch_size: int = option(512, cli=False)
  lr: float = option(
    1e-3,
    "learning rate after the 10-update warm-up (default 1e-3, the paper's)",
    group=_METHOD,
  )
  beta1: float = option(0.9, cli=False)
  beta2: float = option(0.98, cli=False)
  eps: float = option(1e-8, cli=False)
  warmup_steps: int = option(10, cli=False)
  depth: int = option(2, group=_SHAPE)
  width: int = option(128, group=_SHAPE)
  heads: int = option(4, group=_SHAPE)
  mlp_ratio: int = option(4, cli=False)
  mesh: str = option("none", cli=False)
  devices: int = option(0, cli=False)
  optimizer: str = option(
    "adam",
    "adam (default: the paper's, coupled L2), adamw, lion, muon "
    "(Muon on the blocks' kernels, AdamW on the rest)",
    choices=OPTIMIZERS,
    group=_METHOD,
  )
  orthograd: bool = option(
    False, "⊥Grad on the raw gradient, before the filter", group=_METHOD
  )
  egd: bool = option(
    False,
    "egalitarian gradient descent: each gradient of "
    "the blocks' Linear kernels whitened, (G G^T)^(-1/2) G, "
    "first in the chain",
    group=_METHOD,
  )
  loss: str = option(
    "ce",
    "ce (default) or stablemax cross-entropy",
    choices=LOSSES,
    group=_METHOD,
  )
  max_weight_norm: Optional[float] = option(
    None,
    "bound the norm of every weight row of the blocks' Linear "
    "kernels by X (initial params projected, each update projected last; "
    "embeddings, head, biases and LayerNorms free)",
    metavar="X",
    group=_METHOD,
  )
  weight_norm_axis: str = option(
    "row",
    "row (default: each output unit's incoming weights, axis 0 of "
    "a Flax [in, out] kernel), column (axis 1) or matrix (the whole "
    "kernel)",
    choices=tuple(WEIGHT_NORM_AXES),
    group=_METHOD,
  )
  weight_norm_scope: str = option(
    "blocks",
    "blocks (default: the blocks' Linear kernels) or all (the "
    "Clip-to-Grok reference: every leaf's rows set to norm X at init, "
    "every leaf but the token embeddings and the head clipped after each "
    "update)",
    choices=WEIGHT_NORM_SCOPES,
    group=_METHOD,
  )
  iir_order: int = option(
    2,
    "Butterworth order of --filter iir (default 2)",
    flag="--order",
    group=_METHOD,
  )
  iir_cutoff: float = option(
    0.0064,
    "Butterworth cutoff of --filter iir, a fraction of the "
    "Nyquist frequency in (0, 1) (default 0.0064)",
    flag="--cutoff",
    group=_METHOD,
  )
  record_spectrum: bool = option(
    False,
    "record raw-gradient coordinates; write OUT/spectrum.png and "
    "the spectrum in results.json",
    group=_METHOD,
  )
  after_target: int = option(
    0,
    "with --stop-at-target, go on N more updates after first reaching "
    "95%% (default 0)",
    metavar="N",
  )
  recipe: Optional[str] = option(
    None, "start from a named recipe (flags override it)", group=_METHOD
  )

  def __post_init__(self):
    for name, allowed in (
      ("op", data_lib.OPS),
      ("filter", FILTERS),
      ("optimizer", OPTIMIZERS),
      ("loss", LOSSES),
      ("weight_norm_axis", tuple(WEIGHT_NORM_AXES)),
      ("weight_norm_scope", WEIGHT_NORM_SCOPES),
      ("mesh", MESHES),
    ):
      if getattr(self, name) not in allowed:
        raise ValueError(
          f"{name} must be one of {allowed}, got {getattr(self, name)!r}"
        )
    _check_number("lr", self.lr, 0.0, math.inf, lo_open=True)
    for name in ("beta1", "beta2"):
      _check_number(name, getattr(self, name), 0.0, 1.0)
    _check_number("iir_cutoff", self.iir_cutoff, 0.0, 1.0, lo_open=True)
    if self.max_weight_norm is not None:
      _check_number(
        "max_weight_norm", self.max_weight_norm, 0.0, math.inf, lo_open=True
      )
    if self.weight_norm_scope == "all" and self.weight_norm_axis != "row":
      raise ValueError(
        f"weight_norm_scope 'all' bounds PyTorch-style rows of every leaf; "
        f"it needs weight_norm_axis 'row', got {self.weight_norm_axis!r}"
      )
    if self.decoupled_wd and self.optimizer != "adam":
      raise ValueError(
        f"decoupled_wd applies to optimizer 'adam' only ({self.optimizer!r} "
        f"always decays decoupled)"
      )
    if not isinstance(self.after_target, int) or self.after_target < 0:
      raise ValueError(
        f"after_target must be an int >= 0, got {self.after_target!r}"
      )
    if self.after_target and not self.stop_at_target:
      raise ValueError("after_target needs stop_at_target (--stop-at-target)")
    for name in (
      "max_steps",
      "batch_size",
      "window_size",
      "depth",
      "width",
      "heads",
      "mlp_ratio",
      "iir_order",
    ):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if self.warmup_steps < 0:
      raise ValueError(
        f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}"
      )
    if self.width % self.heads:
      raise ValueError(
        f"width must be a multiple of heads, got {self.width} and {self.heads}"
      )
    if not self.weight_decay >= 0:
      raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
    if not 0 < self.target <= 1:
      raise ValueError(f"target must be in (0, 1], got {self.target!r}")
    if not isinstance(self.devices, int) or self.devices < 0:
      raise ValueError(
        f"devices must be an int >= 0 (0: all), got {self.devices!r}"
      )

  def should_stop(self, history: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a run with this `history` is done before `max_steps`.

    With `stop_at_target`: once the last entry is `after_target` or more
    updates past the first entry whose val acc reached `target`.
    """
    if not self.stop_at_target:
      return False
    first = next(
      (h["step"] for h in history if h["val_acc"] >= self.target), None
    )
    return first is not None and history[-1]["step"] >= (
      first + self.after_target
    )


def _check_number(
  name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False
) -> None:
  """Raise a ValueError naming `name` unless lo <(=) value < hi."""
  ok = (
    isinstance(value, (int, float))
    and not isinstance(value, bool)
    and math.isfinite(value)
    and (value > lo if lo_open else value >= lo)
    and value < hi
  )
  if not ok:
    raise ValueError(
      f"{name} must be a number in {'(' if lo_open else '['}"
      f"{lo:g}, {hi:g}), got {value!r}"
    )


def checkpoint_settings(cfg: ModularConfig) -> dict[str, Any]:
  """The settings a checkpoint stores and a resume compares.

  Every field but the labels (`UNCHECKED_FIELDS`), with the fields added
  later (`NEW_FIELDS`) left out while at their defaults: a default run's
  settings are those of the earlier versions, whose checkpoints it resumes.
  """
  d = dataclasses.asdict(cfg)
  defaults = ModularConfig()
  for name in UNCHECKED_FIELDS:
    d.pop(name)
  for name in NEW_FIELDS:
    if d[name] == getattr(defaults, name):
      d.pop(name)
  return d


def paper_config(filter: str = "none", **overrides: Any) -> ModularConfig:
  """A :class:`ModularConfig` with the paper's defaults for `filter`.

  Args:
    filter: "none", "ema", "ma" or "iir".
    **overrides: any :class:`ModularConfig` field; None keeps the paper's
      value for the filter (ema and iir: alpha 0.98, lamb 2, wd 0.005; ma:
      window 100, lamb 5, wd 0.01; none: wd 0) or the field's default.

  Returns:
    The config.

  Example:
    >>> paper_config("ema", seed=1).weight_decay
    0.005
  """
  return settings.config_with_defaults(
    ModularConfig, FILTERS, PAPER_DEFAULTS, filter, overrides
  )
