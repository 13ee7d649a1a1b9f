"""Transforms beyond the Grokfast filters: ⊥Grad, weight-norm bounds."""

from grokfast_jax.transforms._orthograd import orthograd
from grokfast_jax.transforms._weight_norm import (
    ConstrainWeightNormState,
    constrain_weight_norm,
    project_weight_norm,
)

__all__ = [
    "ConstrainWeightNormState",
    "constrain_weight_norm",
    "orthograd",
    "project_weight_norm",
]
