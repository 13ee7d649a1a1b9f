"""Run by tests/test_sharding.py in a subprocess with 8 simulated CPU devices.

XLA's host device count must be set before JAX starts, so these checks run in
a fresh interpreter and print their findings as JSON for the test to assert.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import grokfast_jax as gj  # noqa: E402

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter",
               "collective-permute", "all-to-all")
FILTERS = {"ema": lambda: gj.grokfast_ema(0.9, 2.0),
           "ma": lambda: gj.grokfast_ma(5, 2.0),
           "iir": lambda: gj.grokfast_iir(*gj.butterworth(3, 0.1), 2.0)}


def layouts(mesh):
  return {
      # Data parallel: params replicated on every device.
      "dp": {"w": P(), "b": P(), "s": P()},
      # Fully sharded: each matrix split over the 8 devices.
      "fsdp": {"w": P("d", None), "b": P("d"), "s": P()},
  }


def spec_of(x):
  """The partition spec of `x`, padded with None (replicated) to its rank."""
  if not isinstance(x.sharding, NamedSharding):
    return "single" if len(x.sharding.device_set) == 1 else str(x.sharding)
  spec = tuple(x.sharding.spec)
  return spec + (None,) * (x.ndim - len(spec))


def main():
  mesh = jax.make_mesh((8,), ("d",))
  rng = np.random.default_rng(0)
  host = {"w": rng.normal(size=(16, 24)).astype(np.float32),
          "b": rng.normal(size=(24,)).astype(np.float32),
          "s": np.float32(0.5)}
  grads = [jax.tree.map(lambda x: (rng.normal(size=np.shape(x)) + 0.2)
                        .astype(np.float32), host) for _ in range(12)]
  report = {"devices": jax.device_count()}
  for layout, specs in layouts(mesh).items():
    shard = {k: NamedSharding(mesh, v) for k, v in specs.items()}
    put = lambda tree: {k: jax.device_put(v, shard[k]) for k, v in tree.items()}
    for name, make in FILTERS.items():
      tx = make()
      params = put(host)
      state = tx.init(params)
      leaf_specs = lambda st: {
          f: {k: spec_of(v) for k, v in getattr(st, f).items()}
          for f in st._fields if f != "count"}
      init_specs = leaf_specs(state)

      update = jax.jit(tx.update, donate_argnums=(1,))
      hlo = update.lower(put(grads[0]), state, params).compile().as_text()
      outs = []
      for g in grads:
        out, state = update(put(g), state, params)
        outs.append({k: np.asarray(v) for k, v in out.items()})

      # The same updates on one device.
      tx1 = make()
      params1 = jax.device_put(host, jax.devices()[0])
      state1 = tx1.init(params1)
      update1 = jax.jit(tx1.update)
      max_diff = 0.0
      for g, o in zip(grads, outs):
        out1, state1 = update1(jax.device_put(g, jax.devices()[0]), state1,
                               params1)
        for k in o:
          max_diff = max(max_diff, float(np.max(np.abs(np.asarray(out1[k]) -
                                                       o[k]))))
      report[f"{layout}/{name}"] = {
          "param_specs": {k: spec_of(v) for k, v in params.items()},
          "init_specs": init_specs,
          "final_specs": leaf_specs(state),
          "collectives": [c for c in COLLECTIVES if c in hlo],
          "max_diff_vs_single_device": max_diff,
      }
  json.dump(report, sys.stdout)


if __name__ == "__main__":
  main()
