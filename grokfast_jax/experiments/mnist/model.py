"""The MNIST experiment's MLP (784-200-200-10, ReLU) with scaled initialization.

Initialization follows PyTorch's ``nn.Linear`` default, which the reference
code uses before multiplying every parameter by the init scale: weights and
biases both uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``. Scaling that by 8
puts the network far from the weight-norm "Goldilocks zone", which is what
makes this MNIST setting grok late (Liu et al., Omnigrok).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def torch_linear_init(fan_in: int, scale: float = 1.0) -> nnx.Initializer:
  """PyTorch's default ``nn.Linear`` initializer, times `scale`.

  Args:
    fan_in: the layer's input features.
    scale: factor applied to the samples.

  Returns:
    An initializer ``(key, shape, dtype) -> array`` drawing uniformly from
    ``scale * [-1/sqrt(fan_in), 1/sqrt(fan_in)]``.
  """
  bound = scale / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_linear(
  fan_in: int,
  fan_out: int,
  scale: float,
  rngs: nnx.Rngs,
  *,
  use_bias: bool = True,
) -> nnx.Linear:
  """An ``nnx.Linear`` whose weight and bias take PyTorch's default
  ``nn.Linear`` initialization times `scale` (:func:`torch_linear_init`)."""
  init = torch_linear_init(fan_in, scale)
  return nnx.Linear(
    fan_in,
    fan_out,
    use_bias=use_bias,
    kernel_init=init,
    bias_init=init,
    rngs=rngs,
  )


class MLP(nnx.Module):
  """A ReLU MLP whose initial parameters are PyTorch-default times `init_scale`.

  Example:
    >>> from flax import nnx
    >>> model = MLP(784, (200, 200), 10, init_scale=8.0, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 784))).shape
    (2, 10)
  """

  def __init__(
    self,
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    init_scale: float = 8.0,
    rngs: nnx.Rngs,
  ):
    """Builds the layers.

    Args:
      in_features: input width (784 for MNIST).
      hidden: hidden-layer widths, e.g. ``(200, 200)``.
      out_features: number of outputs (10 classes).
      init_scale: factor on every initial weight and bias, > 0.
      rngs: random streams for the initialization.

    Raises:
      ValueError: `init_scale` not positive.
    """
    if not init_scale > 0:
      raise ValueError(f"init_scale must be > 0, got {init_scale}")
    widths = [in_features, *hidden, out_features]
    self.layers = nnx.List(
      [
        torch_linear(n_in, n_out, init_scale, rngs)
        for n_in, n_out in itertools.pairwise(widths)
      ]
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps ``[batch, in_features]`` inputs to ``[batch, out_features]``."""
    for layer in self.layers[:-1]:
      x = jax.nn.relu(layer(x))
    return self.layers[-1](x)
