"""Sharded training step with Grokfast filters: 8 simulated devices vs 1.

Runs a jitted, donated training step of an MLP with `optax.chain(filter,
adamw)` on a `jax.sharding.Mesh` of 8 simulated CPU devices, data-parallel
(params replicated, batch split) and FSDP-style (params and filter state
split over the devices), and on 1 device. Prints per-device bytes of the
filter state, XLA's per-device memory estimate of the compiled step
(arguments + outputs + temporaries, not aliased), the collectives in the
compiled step with and without the filter (the filter must add none), and
the step time, measured side by side in one run.

The 8 devices share this machine's cores, so step times compare the layouts'
overheads, not the speed-up of real chips.

Usage: python -m benchmarks.micro.sharded_step [--filter ema|ma] [--window 100]
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8")

import argparse  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import grokfast_jax as gj  # noqa: E402

SIZES = [512, 1024, 512, 16]


def init_params(seed=0):
  rng = np.random.default_rng(seed)
  return [{"w": rng.uniform(-1, 1, (i, o)).astype(np.float32) / np.sqrt(i),
           "b": np.zeros((o,), np.float32)}
          for i, o in zip(SIZES[:-1], SIZES[1:])]


def loss_fn(params, x, y):
  h = x
  for layer in params[:-1]:
    h = jax.nn.gelu(h @ layer["w"] + layer["b"])
  logits = h @ params[-1]["w"] + params[-1]["b"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def collectives(hlo: str) -> dict[str, int]:
  names = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute",
           "all-to-all")
  return {n: len(re.findall(rf"\b{n}(-start)?\(", hlo)) for n in names
          if re.search(rf"\b{n}(-start)?\(", hlo)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--filter", choices=["ema", "ma"], default="ma")
  parser.add_argument("--window", type=int, default=100)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()

  make_filter = (gj.grokfast_ema if args.filter == "ema"
                 else lambda: gj.grokfast_ma(args.window))
  devices = jax.devices()
  mesh8 = jax.make_mesh((8,), ("d",))
  mesh1 = jax.sharding.Mesh(np.array(devices[:1]), ("d",))
  rng = np.random.default_rng(1)
  x = rng.normal(size=(args.batch, SIZES[0])).astype(np.float32)
  y = rng.integers(0, SIZES[-1], size=(args.batch,)).astype(np.int32)
  host = init_params()

  def param_specs(fsdp):
    return [{"w": P("d", None) if fsdp else P(), "b": P()} for _ in host]

  layouts = {"1 device": (mesh1, False), "8 devices, data parallel":
             (mesh8, False), "8 devices, FSDP": (mesh8, True)}
  rows, runs = [], {}
  for layout, (mesh, fsdp) in layouts.items():
    for with_filter in (False, True):
      tx = optax.adamw(1e-3)
      if with_filter:
        tx = optax.chain(make_filter(), tx)
      specs = param_specs(fsdp)
      params = jax.tree.map(
          lambda a, s: jax.device_put(a, NamedSharding(mesh, s)), host, specs)
      opt_state = tx.init(params)
      data_sharding = NamedSharding(mesh, P("d"))
      xb, yb = (jax.device_put(x, data_sharding),
                jax.device_put(y, data_sharding))

      def step(params, opt_state, x, y, tx=tx):
        grads = jax.grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

      jitted = jax.jit(step, donate_argnums=(0, 1))
      compiled = jitted.lower(params, opt_state, xb, yb).compile()
      mem = compiled.memory_analysis()
      filter_bytes = 0
      if with_filter:
        shards = [s.data.nbytes for leaf in jax.tree.leaves(opt_state[0])
                  for s in leaf.addressable_shards
                  if s.device == mesh.devices.flat[0]]
        filter_bytes = sum(shards)
      params, opt_state = jitted(params, opt_state, xb, yb)
      jax.block_until_ready(params)
      runs[(layout, with_filter)] = [jitted, params, opt_state, xb, yb, []]
      rows.append((layout, with_filter, filter_bytes, mem,
                   collectives(compiled.as_text())))

  for _ in range(args.rounds):
    for run in runs.values():
      jitted, params, opt_state, xb, yb, times = run
      t0 = time.perf_counter()
      for _ in range(args.steps):
        params, opt_state = jitted(params, opt_state, xb, yb)
      jax.block_until_ready(params)
      times.append((time.perf_counter() - t0) / args.steps)
      run[1], run[2] = params, opt_state

  n_params = sum(a.size for a in jax.tree.leaves(host))
  name = "grokfast_ema" if args.filter == "ema" else (
      f"grokfast_ma(window_size={args.window})")
  print(f"jax {jax.__version__}, {len(devices)} simulated CPU devices; MLP "
        f"{'-'.join(map(str, SIZES))} ({n_params:,} params), batch "
        f"{args.batch}; filter {name} + adamw\n")
  print("| layout | filter | filter state / device | XLA memory / device "
        "(args + out + temp) | collectives in the step | ms / step (median) |")
  print("|---|---|---|---|---|---|")
  for layout, with_filter, fbytes, mem, coll in rows:
    total = (mem.argument_size_in_bytes + mem.output_size_in_bytes +
             mem.temp_size_in_bytes - mem.alias_size_in_bytes)
    ms = statistics.median(runs[(layout, with_filter)][5]) * 1e3
    coll_s = ", ".join(f"{k} x{v}" for k, v in coll.items()) or "none"
    print(f"| {layout} | {'yes' if with_filter else 'no'} | "
          f"{fbytes / 2**20:.1f} MiB | {total / 2**20:.1f} MiB | {coll_s} | "
          f"{ms:.2f} |")


if __name__ == "__main__":
  main()
