"""Tunes the BSA "scan" method's block length and channel-chunk budget.

Times a jitted forward + backward (gradient of mean(out**2) with respect to
the mixing logits, the alpha logits and the input) of the closed form and of
the scan at several block lengths K and chunk budgets (float32 EMA elements
per chunk; "all" = one chunk), side by side: every variant is compiled and
warmed up first, then all are timed in interleaved rounds and the median is
printed. Use it to pick `_SCAN_BLOCK` and the chunk budgets for a backend
(`_SCAN_CHUNK_ELEMENTS`, `_SCAN_CHUNK_ELEMENTS_ACCELERATOR`), all in
`grokfast_jax/spectral_attention/_kernels.py`.

Usage: python -m benchmarks.micro.bsa_scan_tuning [--batches 128,1024]
       [--channels 7,321] [--blocks 16,64] [--chunks 20,23,26,all]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from grokfast_jax import spectral_attention as sa
from grokfast_jax.spectral_attention import _kernels

from benchmarks.micro import bsa_cost


def grad_fn(method, block, chunk):
  def loss(logits, theta, f):
    m0 = jax.lax.stop_gradient(f[0])[None].repeat(theta.shape[0], 0)
    if method == "closed":
      emas, _ = _kernels._unrolled_emas(theta, f, m0, True)
      out = _kernels._mix(logits, f, emas)
    else:
      out, _ = _kernels._scan_mix(logits, theta, f, m0, True, block=block,
                                  chunk_elements=chunk)
    return jnp.mean(out ** 2)
  return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batches", default="128,512,1024")
  parser.add_argument("--channels", default="7,321,862")
  parser.add_argument("--blocks", default="16,64")
  parser.add_argument("--chunks", default="20,23,26,all",
                      help="log2 of the chunk budget, or 'all'")
  parser.add_argument("--length", type=int, default=96)
  parser.add_argument("--rounds", type=int, default=10)
  parser.add_argument("--max-closed-gb", type=float, default=16.0)
  args = parser.parse_args()
  n = len(sa.DEFAULT_ALPHAS)
  device = jax.devices()[0]
  print(f"JAX {jax.__version__} on {device.platform} ({device.device_kind}); "
        f"L = {args.length}, N = {n}; median of {args.rounds} interleaved "
        f"rounds (ms)")
  variants = [("closed", "closed", None, None)]  # (name, method, K, budget)
  for k in (int(v) for v in args.blocks.split(",")):
    for c in args.chunks.split(","):
      budget = 1 << 62 if c == "all" else 1 << int(c)
      variants.append((f"K{k}/" + ("all" if c == "all" else f"2^{c}"),
                       "scan", k, budget))
  for c in (int(v) for v in args.channels.split(",")):
    for b in (int(v) for v in args.batches.split(",")):
      f = bsa_cost.features(b, c, args.length)
      logits = jnp.asarray(np.random.default_rng(1).normal(
          size=(c, 2 * n + 1, args.length)), jnp.float32)
      theta = jnp.asarray(np.log(np.array(sa.DEFAULT_ALPHAS) /
                                 (1 - np.array(sa.DEFAULT_ALPHAS))),
                          jnp.float32)[:, None].repeat(c, 1)
      fn_args = (logits, theta, f)
      programs = {}
      for name, method, k, budget in variants:
        if method == "closed":
          if bsa_cost.closed_kernel_bytes(b, c, n) > args.max_closed_gb * 1e9:
            continue
        else:  # the number of chunks this budget gives
          kk = min(k, b)
          cc = _kernels._chunk_channels(
              c, n * -(-b // kk) * kk * args.length, budget)
          name += f"({-(-c // cc)}ch)"
        compiled = grad_fn(method, k, budget).lower(*fn_args).compile()
        jax.block_until_ready(compiled(*fn_args))  # warm-up
        programs[name] = (compiled, fn_args)
      medians = bsa_cost.interleaved_medians_ms(programs, args.rounds)
      print(f"B={b} C={c}: " + "  ".join(
          f"{name}={ms:.2f}" for name, ms in medians.items()), flush=True)

if __name__ == "__main__":
  main()
