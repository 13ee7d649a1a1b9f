"""grokfast_jax: spectral gradient filters (Grokfast) as Optax transformations.

The filters amplify the slow component of each parameter's gradient over
training steps, ``g_hat = g + lamb * LowPass(g)``, and chain in front of any
Optax optimizer::

  tx = optax.chain(grokfast_jax.grokfast_ema(), optax.adamw(1e-3))

Subpackages: :mod:`grokfast_jax.filters` (Grokfast-EMA, -MA, -IIR and filter
design), :mod:`grokfast_jax.transforms` (⊥Grad, weight-norm constraints,
egalitarian gradient descent),
:mod:`grokfast_jax.losses` (StableMax cross-entropy) and the analysis tool
:mod:`grokfast_jax.spectrum`. Every public name is exported here.
"""

from grokfast_jax import filters, losses, spectrum, transforms  # noqa: F401 (the subpackages are part of the namespace)
from grokfast_jax.filters import (
  GrokfastEmaState,
  GrokfastIirState,
  GrokfastMaState,
  butterworth,
  ema_coefficients,
  frequency_response,
  grokfast_ema,
  grokfast_iir,
  grokfast_ma,
  lfilter_zi,
)
from grokfast_jax.losses import stablemax, stablemax_cross_entropy
from grokfast_jax.spectrum import (
  RecordGradientsState,
  SampledCoordinates,
  gradient_history,
  gradient_spectrum,
  plot_spectrum,
  record_gradients,
)
from grokfast_jax.transforms import (
  ConstrainWeightNormState,
  constrain_weight_norm,
  egalitarian,
  orthograd,
  project_weight_norm,
)

# The one place the version is written; pyproject.toml reads it from here.
__version__ = "0.1.0"

__all__ = [
  "ConstrainWeightNormState",
  "GrokfastEmaState",
  "GrokfastIirState",
  "GrokfastMaState",
  "RecordGradientsState",
  "SampledCoordinates",
  "butterworth",
  "constrain_weight_norm",
  "egalitarian",
  "ema_coefficients",
  "frequency_response",
  "gradient_history",
  "gradient_spectrum",
  "grokfast_ema",
  "grokfast_iir",
  "grokfast_ma",
  "lfilter_zi",
  "orthograd",
  "plot_spectrum",
  "project_weight_norm",
  "record_gradients",
  "stablemax",
  "stablemax_cross_entropy",
]
