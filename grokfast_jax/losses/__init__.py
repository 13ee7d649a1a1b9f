"""Losses: StableMax cross-entropy."""

from grokfast_jax.losses._stablemax import stablemax, stablemax_cross_entropy

__all__ = ["stablemax", "stablemax_cross_entropy"]
