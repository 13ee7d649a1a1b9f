"""Run by test_multidevice.py in a subprocess with 8 simulated CPU devices.

Trains the same small run on one device, data parallel and FSDP, and prints
the histories and where the params and the filter state ended up, as JSON.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8")

import jax  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402

from grokfast_jax.experiments.modular import config as config_lib  # noqa: E402
from grokfast_jax.experiments import harness  # noqa: E402
from grokfast_jax.experiments.modular import task as train_lib  # noqa: E402


def spec(x):
  if not isinstance(x.sharding, NamedSharding):
    return "single"
  s = tuple(x.sharding.spec)
  return [str(a) for a in s + (None,) * (x.ndim - len(s))]


def main():
  report = {"devices": jax.device_count()}
  for mesh in ("none", "dp", "fsdp"):
    cfg = config_lib.paper_config(
        "ma", window_size=5, p=11, batch_size=16, depth=1, width=32, heads=2,
        max_steps=24, mesh=mesh)
    run = harness.train(train_lib.TASK, cfg, progress=False)
    result, (params, opt_state) = run.results, run.state
    kernel = params["blocks"][0]["fc1"]["kernel"]
    window = opt_state[0].window["blocks"][0]["fc1"]["kernel"]
    report[mesh] = {
        "history": [{k: h[k] for k in ("train_loss", "val_loss", "val_acc")}
                    for h in result["history"]],
        "kernel_shape": list(kernel.shape),
        "kernel_spec": spec(kernel),
        "window_spec": spec(window),
        "window_bytes_per_device": window.addressable_shards[0].data.nbytes,
        "window_bytes": window.nbytes,
    }
  json.dump(report, sys.stdout)


if __name__ == "__main__":
  main()
