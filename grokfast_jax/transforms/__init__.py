"""Transforms beyond the Grokfast filters: ⊥Grad, weight-norm bounds,
egalitarian gradient descent."""

from grokfast_jax.transforms._egalitarian import egalitarian
from grokfast_jax.transforms._orthograd import orthograd
from grokfast_jax.transforms._weight_norm import (
  ConstrainWeightNormState,
  constrain_weight_norm,
  project_weight_norm,
)

__all__ = [
  "ConstrainWeightNormState",
  "constrain_weight_norm",
  "egalitarian",
  "orthograd",
  "project_weight_norm",
]
