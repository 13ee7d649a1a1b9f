"""Cost of Batched Spectral Attention: closed-form vs scan in-batch EMA.

Times a jitted forward + backward of `BatchedSpectralAttention` (the gradient
of a scalar loss with respect to the input and the module's parameters) with
``method="closed"`` (a (B+1) x B kernel per smoothing factor and channel,
O(B^2 N C L) work) and ``method="scan"`` (blocked associative scan, O(B K N C
L) work, run on chunks of channels that are recomputed in the backward pass),
side by side in one run: for each configuration the two programs are compiled
first, then timed in interleaved rounds (closed, scan, closed, scan, ...), and
the reported time is the median over rounds.

Memory is the compiled program's own estimate, not a measured process peak:
``jax.jit(f).lower(...).compile().memory_analysis()``, temp + argument +
output bytes (the live buffers XLA plans for one call; generated code and
aliasing are not counted). Configurations whose closed form would need more
than ``--max-gb`` (the (B+1) x B x N x C float32 kernel, or the compiled
estimate if larger) are not compiled in closed form: the row prints
"skipped: closed form would need X GB" and the scan is still measured. The
default, 16 GB, runs the closed form at B = 1024 with C = 321 (12.4 GB
compiled estimate; mind the machine's RAM) and skips C = 862 (33 GB).

The machine may be shared: the load average (``os.getloadavg()``) is printed
before and after every configuration.

Usage: python -m benchmarks.micro.bsa_cost [--quick] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from grokfast_jax import spectral_attention as sa
from grokfast_jax.spectral_attention import _kernels

METHODS = ("closed", "scan")


def make_grad_fn(channels, length, method, x):
  """A jitted (params, x) -> grads of a scalar loss, and its arguments."""
  module = sa.BatchedSpectralAttention(channels, length, method=method,
                                       rngs=nnx.Rngs(0))
  # Random mixing logits, so no term cancels.
  module.logits[...] = jnp.asarray(
      np.random.default_rng(1).normal(size=module.logits[...].shape),
      jnp.float32)
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)

  def loss(p, inputs):
    out = nnx.merge(graphdef, p, rest, copy=True)(inputs)
    return jnp.mean(out ** 2)

  return jax.jit(jax.grad(loss, argnums=(0, 1))), (params, x)


def memory_bytes(compiled):
  ma = compiled.memory_analysis()
  if ma is None:
    return float("nan")
  return (ma.temp_size_in_bytes + ma.argument_size_in_bytes +
          ma.output_size_in_bytes)


def closed_kernel_bytes(batch, channels, n):
  """Bytes of the closed form's (N, C, B+1, B) float32 kernel."""
  return 4 * n * channels * (batch + 1) * batch


def features(batch, channels, length):
  """(B, C, L) float32 inputs: random walks along the batch (a time series)."""
  steps = np.random.default_rng(0).normal(size=(batch, channels, length))
  return jnp.asarray(np.cumsum(steps, axis=0) * 0.3, jnp.float32)


def interleaved_medians_ms(programs, rounds):
  """Median milliseconds of each program, timed in interleaved rounds.

  Args:
    programs: {name: (compiled, args)}; each round calls every program once,
      in order, and waits for its result.
    rounds: number of rounds.
  """
  times = {name: [] for name in programs}
  for _ in range(rounds):
    for name, (compiled, args) in programs.items():
      start = time.perf_counter()
      jax.block_until_ready(compiled(*args))
      times[name].append(time.perf_counter() - start)
  return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def run_config(batch, channels, length, rounds, max_bytes):
  """Times and sizes both methods at one (B, C); returns a result dict."""
  n = len(sa.DEFAULT_ALPHAS)
  x = features(batch, channels, length)
  result = {"B": batch, "C": channels,
            "auto": _kernels._resolve_method("auto", batch, channels)}
  programs = {}
  for method in METHODS:
    fn, args = make_grad_fn(channels, length, method, x)
    if method == "closed":
      kernel = closed_kernel_bytes(batch, channels, n)
      if kernel > max_bytes:  # do not even compile (XLA may constant-fold)
        result["skipped"] = kernel
        continue
    compiled = fn.lower(*args).compile()
    mem = memory_bytes(compiled)
    if method == "closed" and mem > max_bytes:
      result["skipped"] = mem
      continue
    result[method + "_mb"] = mem / 2**20
    try:
      jax.block_until_ready(compiled(*args))  # warm-up run
    except jax.errors.JaxRuntimeError as err:  # the device ran out of memory
      if "RESOURCE_EXHAUSTED" not in str(err):
        raise
      result[method + "_oom"] = True
      continue
    programs[method] = (compiled, args)
  for method, ms in interleaved_medians_ms(programs, rounds).items():
    result[method + "_ms"] = ms
  return result


def fmt(value, digits=1):
  return "-" if value is None else f"{value:.{digits}f}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="B in {32, 128}, C in {7, 321}, 3 rounds")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--batches", type=str, default="16,32,128,512,1024")
  parser.add_argument("--channels", type=str, default="7,321,862")
  parser.add_argument("--length", type=int, default=96)
  parser.add_argument("--max-gb", type=float, default=16.0,
                      help="skip the closed form above this many GB "
                           "(B = 1024, C = 321 needs 12.4 GB)")
  args = parser.parse_args()
  batches = [int(b) for b in args.batches.split(",")]
  channels = [int(c) for c in args.channels.split(",")]
  rounds = args.rounds
  if args.quick:
    batches, channels, rounds = [32, 128], [7, 321], min(rounds, 3)

  print("# BSA cost: closed form vs scan (forward + backward, jitted)\n")
  device = jax.devices()[0]
  print(f"JAX {jax.__version__} on {device.platform} ({device.device_kind}), "
        f"{platform.machine()}, {os.cpu_count()} CPU cores; L = "
        f"{args.length}, N = {len(sa.DEFAULT_ALPHAS)} alphas "
        f"{sa.DEFAULT_ALPHAS}; scan block K = {_kernels._SCAN_BLOCK}, channel "
        f"chunks of <= {_kernels._default_chunk_elements()} EMA elements; "
        f"median of {rounds} interleaved rounds after compile + warm-up; "
        f"memory = compiled memory_analysis() temp + argument + output.\n")
  print(f"load average at the start (1, 5, 15 min): "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}\n", flush=True)
  rows = []
  for c in channels:
    for b in batches:
      load_before = os.getloadavg()
      r = run_config(b, c, args.length, rounds, args.max_gb * 1e9)
      r["load"] = (load_before[0], os.getloadavg()[0])
      rows.append(r)
      if "skipped" in r:
        print(f"B={b} C={c}: closed form skipped: closed form would need "
              f"{r['skipped'] / 1e9:.1f} GB", flush=True)
      print(f"B={b} C={c}: " + ", ".join(
          f"{k}={fmt(v, 2) if isinstance(v, float) else v}"
          for k, v in r.items() if k not in ("B", "C")), flush=True)

  print("\n| B | C | closed ms | scan ms | closed/scan time | closed MB | "
        "scan MB | closed/scan memory | auto | load avg (1 min) before/after |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    cm, sm = r.get("closed_ms"), r.get("scan_ms")
    cb, sb = r.get("closed_mb"), r.get("scan_mb")
    if "skipped" in r:
      closed_ms = (f"skipped: closed form would need "
                   f"{r['skipped'] / 1e9:.1f} GB")
      closed_mb = f"({r['skipped'] / 2**20:.0f})"
    else:
      closed_ms, closed_mb = fmt(cm), fmt(cb)
    if r.get("closed_oom"):
      closed_ms = "out of device memory"
    scan_ms = "out of device memory" if r.get("scan_oom") else fmt(sm)
    t_ratio = f"{cm / sm:.2f}x" if cm and sm else "-"
    m_ratio = f"{cb / sb:.2f}x" if cb and sb else "-"
    print(f"| {r['B']} | {r['C']} | {closed_ms} | {scan_ms} | {t_ratio} | "
          f"{closed_mb} | {fmt(sb)} | {m_ratio} | {r['auto']} | "
          f"{r['load'][0]:.1f} / {r['load'][1]:.1f} |")
  print(f"\nload average at the end (1, 5, 15 min): "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
  main()
