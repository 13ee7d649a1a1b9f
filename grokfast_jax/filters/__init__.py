"""Grokfast gradient filters (EMA, MA, any IIR) and their design helpers."""

from grokfast_jax.filters._design import (
  butterworth,
  ema_coefficients,
  frequency_response,
  lfilter_zi,
)
from grokfast_jax.filters._ema import GrokfastEmaState, grokfast_ema
from grokfast_jax.filters._iir import GrokfastIirState, grokfast_iir
from grokfast_jax.filters._ma import GrokfastMaState, grokfast_ma

__all__ = [
  "GrokfastEmaState",
  "GrokfastIirState",
  "GrokfastMaState",
  "butterworth",
  "ema_coefficients",
  "frequency_response",
  "grokfast_ema",
  "grokfast_iir",
  "grokfast_ma",
  "lfilter_zi",
]
