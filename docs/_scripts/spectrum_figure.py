"""Draws the gradient-spectrum figure of the "How the filters work" guide.

Trains a small MLP on ``x + y mod 23`` (half of the pairs, minibatches of
64, Adam lr 1e-3) for 2,048 updates with :func:`grokfast_jax.record_gradients`
first in the chain (so it records raw gradients), then plots the mean power
spectrum of 64 recorded coordinates with :func:`grokfast_jax.plot_spectrum`,
and over it the power gain of the EMA low-pass at alpha 0.9 and 0.98 and of
the whole Grokfast-EMA transform ``g + lamb * EMA(g)`` (alpha 0.98, lamb 2).

The Sphinx build runs it (docs/conf.py); by hand:

  .venv/bin/python docs/_scripts/spectrum_figure.py docs/_generated/spectrum.png

It takes a few seconds on a CPU.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import grokfast_jax as gj

P = 23
STEPS = 2048
BATCH = 64
ALPHA, LAMB = 0.98, 2.0


def main(out: str) -> None:
  pairs = np.array([(x, y) for x in range(P) for y in range(P)])
  rng = np.random.default_rng(0)
  rng.shuffle(pairs)
  train = jnp.asarray(pairs[: len(pairs) // 2])

  def features(xy):
    return jnp.concatenate([jax.nn.one_hot(xy[:, 0], P),
                            jax.nn.one_hot(xy[:, 1], P)], axis=-1)

  def init(key):
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (2 * P, 128)) / jnp.sqrt(2 * P),
            "b1": jnp.zeros(128),
            "w2": jax.random.normal(k2, (128, P)) / jnp.sqrt(128.0),
            "b2": jnp.zeros(P)}

  def loss_fn(params, xy):
    h = jax.nn.relu(features(xy) @ params["w1"] + params["b1"])
    logits = h @ params["w2"] + params["b2"]
    labels = (xy[:, 0] + xy[:, 1]) % P
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, labels).mean()

  params = init(jax.random.key(0))
  tx = optax.chain(gj.record_gradients(num_coords=64, buffer_size=STEPS),
                   optax.adam(1e-3))
  opt_state = tx.init(params)

  def step(carry, key):
    params, opt_state = carry
    idx = jax.random.randint(key, (BATCH,), 0, train.shape[0])
    grads = jax.grad(loss_fn)(params, train[idx])
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  keys = jax.random.split(jax.random.key(1), STEPS)
  (params, opt_state), _ = jax.jit(
      lambda c: jax.lax.scan(step, c, keys))((params, opt_state))

  freqs, power = gj.gradient_spectrum(opt_state[0])
  b_ema, a_ema = gj.ema_coefficients(ALPHA)
  # The whole transform, g + lamb * EMA(g): H = 1 + lamb * H_ema.
  b_all = np.array([1.0 + LAMB * b_ema[0], -ALPHA])
  gj.plot_spectrum(
      freqs, power, out,
      filters={"EMA, alpha 0.9": gj.ema_coefficients(0.9),
               f"EMA, alpha {ALPHA}": (b_ema, a_ema),
               f"g + {LAMB:g} EMA(g), alpha {ALPHA}": (b_all, a_ema)},
      title=f"raw gradients of an MLP on x + y mod {P} ({STEPS} Adam steps)")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "spectrum.png")
