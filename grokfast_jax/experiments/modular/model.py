"""The decoder-only transformer of the Grokfast algorithmic task (Flax NNX).

Shape and initialization follow the PyTorch reference exactly, because the
initialization alone can double the steps to grok:

- token and position embeddings ``N(0, 1)`` (``torch.nn.Embedding``);
- every Linear ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weight and bias
  (``torch.nn.Linear``);
- attention input projection (q, k, v stacked, ``[3d, d]``) Xavier-uniform
  over the stacked matrix with zero bias; output projection Linear-default
  weight with zero bias (``torch.nn.MultiheadAttention``);
- LayerNorm scale 1, bias 0, eps 1e-5.

A block computes ``h = LN1(h); h = h + Attn(h); h = h + MLP(LN2(h))`` (the
first residual is added to the normalized stream). Only the last position's
logits are ever needed, so the last block runs its query, output projection
and MLP on the last position alone (keys and values still cover the whole
sequence): the result is identical to running every position and slicing.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from grokfast_jax.experiments.mnist.model import torch_linear_init

LN_EPS = 1e-5
_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jax.custom_jvp
def gelu(x: jax.Array) -> jax.Array:
  """Exact (erf) GELU, ``torch.nn.GELU()``'s default, with a cheap derivative.

  Same values as ``jax.nn.gelu(x, approximate=False)``; the hand-written
  derivative ``Phi(x) + x * phi(x)`` makes the backward pass evaluate one
  erf and one exp per element (autodiff of the erf form costs several).
  """
  return x * (0.5 + 0.5 * jax.lax.erf(x * _SQRT_HALF))


@gelu.defjvp
def _gelu_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  cdf = 0.5 + 0.5 * jax.lax.erf(x * _SQRT_HALF)
  pdf = jnp.exp(-0.5 * x * x) * _INV_SQRT_2PI
  return x * cdf, (cdf + x * pdf) * t


def linear(
  d_in: int,
  d_out: int,
  rngs: nnx.Rngs,
  *,
  use_bias: bool = True,
  kernel_init: Optional[nnx.Initializer] = None,
  zero_bias: bool = False,
) -> nnx.Linear:
  """An ``nnx.Linear`` initialized like ``torch.nn.Linear`` unless overridden."""
  bias_init = nnx.initializers.zeros if zero_bias else torch_linear_init(d_in)
  return nnx.Linear(
    d_in,
    d_out,
    use_bias=use_bias,
    kernel_init=kernel_init or torch_linear_init(d_in),
    bias_init=bias_init,
    rngs=rngs,
  )


class CausalSelfAttention(nnx.Module):
  """Multi-head causal self-attention like ``torch.nn.MultiheadAttention``."""

  def __init__(self, width: int, heads: int, rngs: nnx.Rngs):
    self.heads = heads
    # Stacked q/k/v projection: kernel [d, 3d]; Xavier over the whole matrix
    # (fan_in d, fan_out 3d) as PyTorch's in_proj_weight [3d, d].
    self.qkv = linear(
      width,
      3 * width,
      rngs,
      kernel_init=nnx.initializers.xavier_uniform(),
      zero_bias=True,
    )
    self.out = linear(width, width, rngs, zero_bias=True)

  def __call__(self, h: jax.Array, last_only: bool = False) -> jax.Array:
    """Attends over `h` ``[b, t, d]``; with `last_only`, queries only from t-1.

    Returns:
      ``[b, t, d]``, or ``[b, 1, d]`` with `last_only`.
    """
    b, t, d = h.shape
    nh, hd = self.heads, d // self.heads
    assert self.qkv.bias is not None
    w, bias = self.qkv.kernel[...], self.qkv.bias[...]
    kv = h @ w[:, d:] + bias[d:]
    k, v = jnp.split(kv.reshape(b, t, 2, nh, hd), 2, axis=2)
    k, v = k[:, :, 0], v[:, :, 0]  # [b, t, nh, hd]
    hq = h[:, -1:] if last_only else h
    q = (hq @ w[:, :d] + bias[:d]).reshape(b, hq.shape[1], nh, hd)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
    tq = hq.shape[1]
    # Query i (absolute position t - tq + i) sees keys 0..that position.
    allowed = jnp.arange(t)[None, :] <= (jnp.arange(tq) + (t - tq))[:, None]
    scores = jnp.where(allowed, scores, -jnp.inf)
    att = jax.nn.softmax(scores, axis=-1)
    y = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, tq, d)
    return self.out(y)


class Block(nnx.Module):
  """``h = LN1(h); h = h + Attn(h); h = h + MLP(LN2(h))``."""

  def __init__(self, width: int, heads: int, mlp_ratio: int, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(width, epsilon=LN_EPS, rngs=rngs)
    self.attn = CausalSelfAttention(width, heads, rngs)
    self.ln2 = nnx.LayerNorm(width, epsilon=LN_EPS, rngs=rngs)
    self.fc1 = linear(width, mlp_ratio * width, rngs)
    self.fc2 = linear(mlp_ratio * width, width, rngs)

  def __call__(self, h: jax.Array, last_only: bool = False) -> jax.Array:
    h = self.ln1(h)
    h = (h[:, -1:] if last_only else h) + self.attn(h, last_only)
    m = self.fc2(gelu(self.fc1(self.ln2(h))))
    return h + m


class Transformer(nnx.Module):
  """Decoder-only transformer returning the next-token logits.

  Example:
    >>> from flax import nnx
    >>> model = Transformer(vocab=99, seq_len=4, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((8, 4), jnp.int32)).shape
    (8, 99)
  """

  def __init__(
    self,
    vocab: int,
    seq_len: int,
    *,
    depth: int = 2,
    width: int = 128,
    heads: int = 4,
    mlp_ratio: int = 4,
    rngs: nnx.Rngs,
  ):
    """Builds the model.

    Args:
      vocab: number of token ids (p + 2 for the modular task).
      seq_len: number of positions (4: ``[x, op, y, =]``).
      depth: number of blocks.
      width: model width.
      heads: attention heads (must divide `width`).
      mlp_ratio: MLP hidden width over `width`.
      rngs: random streams for the initialization.
    """
    if width % heads:
      raise ValueError(
        f"width must be a multiple of heads, got {width}, {heads}"
      )
    normal = nnx.initializers.normal(stddev=1.0)
    self.tok = nnx.Embed(vocab, width, embedding_init=normal, rngs=rngs)
    self.pos = nnx.Embed(seq_len, width, embedding_init=normal, rngs=rngs)
    self.blocks = nnx.List(
      [Block(width, heads, mlp_ratio, rngs) for _ in range(depth)]
    )
    self.ln_f = nnx.LayerNorm(width, epsilon=LN_EPS, rngs=rngs)
    self.head = linear(width, vocab, rngs, use_bias=False)

  def __call__(
    self, tokens: jax.Array, all_positions: bool = False
  ) -> jax.Array:
    """Logits from int tokens ``[b, t]``.

    Args:
      tokens: token ids, ``[b, t]`` with ``t <= seq_len``.
      all_positions: return every position's logits ``[b, t, vocab]``
        instead of the last position's ``[b, vocab]``.

    Returns:
      The logits.
    """
    t = tokens.shape[1]
    h = self.tok(tokens) + self.pos(jnp.arange(t))[None]
    n = len(self.blocks)
    for i, block in enumerate(self.blocks):
      h = block(h, last_only=(not all_positions) and i == n - 1)
    logits = self.head(self.ln_f(h))
    return logits if all_positions else logits[:, -1]
