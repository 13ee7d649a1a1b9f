"""grokfast_jax: spectral gradient filters (Grokfast) as Optax transformations.

The filters amplify the slow component of each parameter's gradient over
training steps, ``g_hat = g + lamb * LowPass(g)``, and chain in front of any
Optax optimizer::

  tx = optax.chain(grokfast_jax.grokfast_ema(), optax.adamw(1e-3))
"""

from grokfast_jax.ema import GrokfastEmaState, grokfast_ema
from grokfast_jax.ma import GrokfastMaState, grokfast_ma

__version__ = "0.1.0"

__all__ = [
    "GrokfastEmaState",
    "GrokfastMaState",
    "grokfast_ema",
    "grokfast_ma",
]
