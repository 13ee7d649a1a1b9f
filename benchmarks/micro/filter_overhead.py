"""Per-step cost of the Grokfast filters in a jitted, donated training step.

Compares, side by side in one run, a training step of an MLP of about 1M
parameters with `optax.adamw` alone and with `grokfast_ema` or
`grokfast_ma(w)` chained in front of it. Parameters and optimizer state are
threaded from step to step and donated to the jitted step, as in training.
Configurations are timed in interleaved rounds (each round runs every
configuration for `--steps` steps), and the reported time is the median over
rounds, so slow drift of the machine affects all configurations alike.

Usage: python -m benchmarks.micro.filter_overhead [--rounds 7] [--steps 50]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import grokfast_jax as gj


def make_model(sizes, seed=0):
  rng = np.random.default_rng(seed)
  params = []
  for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
    bound = 1.0 / np.sqrt(fan_in)
    params.append({
        "w": jnp.asarray(rng.uniform(-bound, bound, (fan_in, fan_out)),
                         jnp.float32),
        "b": jnp.zeros((fan_out,), jnp.float32)})
  return params


def loss_fn(params, x, y):
  h = x
  for layer in params[:-1]:
    h = jax.nn.gelu(h @ layer["w"] + layer["b"])
  logits = h @ params[-1]["w"] + params[-1]["b"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_step(tx, donate=True):
  def step(params, opt_state, x, y):
    grads = jax.grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
  return jax.jit(step, donate_argnums=(0, 1) if donate else ())


def nbytes(tree):
  return sum(x.nbytes for x in jax.tree.leaves(tree))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--windows", default="10,100,1000")
  parser.add_argument("--no-undonated", action="store_true",
                      help="skip the MA row without donation")
  args = parser.parse_args()

  sizes = [512, 1024, 512, 10]
  params0 = make_model(sizes)
  n_params = sum(x.size for x in jax.tree.leaves(params0))
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(args.batch, sizes[0])), jnp.float32)
  y = jnp.asarray(rng.integers(0, sizes[-1], size=(args.batch,)), jnp.int32)

  adamw = lambda: optax.adamw(1e-3, weight_decay=0.005)
  windows = [int(w) for w in args.windows.split(",")]
  configs = {"adamw": (adamw(), True),
             "ema + adamw": (optax.chain(gj.grokfast_ema(), adamw()), True)}
  for w in windows:
    configs[f"ma(w={w}) + adamw"] = (
        optax.chain(gj.grokfast_ma(w), adamw()), True)
  if not args.no_undonated:
    w = 100
    configs[f"ma(w={w}) + adamw, NOT donated"] = (
        optax.chain(gj.grokfast_ma(w), adamw()), False)

  carries, steps, state_bytes = {}, {}, {}
  for name, (tx, donate) in configs.items():
    params = jax.tree.map(jnp.copy, params0)
    opt_state = tx.init(params)
    state_bytes[name] = nbytes(opt_state)
    steps[name] = make_step(tx, donate)
    params, opt_state = steps[name](params, opt_state, x, y)  # compile
    jax.block_until_ready((params, opt_state))
    carries[name] = (params, opt_state)

  times = {name: [] for name in configs}
  for _ in range(args.rounds):
    for name in configs:
      params, opt_state = carries[name]
      t0 = time.perf_counter()
      for _ in range(args.steps):
        params, opt_state = steps[name](params, opt_state, x, y)
      jax.block_until_ready((params, opt_state))
      times[name].append((time.perf_counter() - t0) / args.steps)
      carries[name] = (params, opt_state)

  med = {name: statistics.median(t) for name, t in times.items()}
  best = {name: min(t) for name, t in times.items()}
  print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"jax {jax.__version__}, {platform.processor() or platform.machine()}")
  print(f"model: MLP {'-'.join(map(str, sizes))}, {n_params:,} params, "
        f"batch {args.batch}; {args.rounds} rounds x {args.steps} steps\n")
  print("| configuration | ms / step (median) | ratio to adamw (median) "
        "| ms / step (min) | ratio to adamw (min) | optimizer state |")
  print("|---|---|---|---|---|---|")
  for name in configs:
    print(f"| {name} | {med[name] * 1e3:.3f} | "
          f"{med[name] / med['adamw']:.3f}x | {best[name] * 1e3:.3f} | "
          f"{best[name] / best['adamw']:.3f}x | "
          f"{state_bytes[name] / 2**20:.1f} MiB |")
  first, last = (f"ma(w={w}) + adamw" for w in (windows[0], windows[-1]))
  print(f"\nMA flatness, {last} / {first}: {med[last] / med[first]:.3f} "
        f"(median), {best[last] / best[first]:.3f} (min)")


if __name__ == "__main__":
  main()
