"""Cost of TimesNet's data-dependent periods under jit: switch vs one-hot.

TimesNet folds each series by the periods of its top-k frequencies, which
depend on the data, while a jitted program needs static shapes. Two exact
designs, side by side (compile time, forward + backward step time, forward
time, compiled memory):

* ``switch`` (the model, :mod:`~grokfast_jax.experiments.forecasting.models.
  timesnet`): one ``lax.switch`` branch per distinct period T // f, run for
  the k selected frequencies inside a ``lax.map``; only k foldings run.
* ``onehot``: every distinct period's folding runs on every call and the k
  selected ones are summed with one-hot weights (zero for the others).

For each configuration both programs are compiled (timed: lower + compile),
then timed in interleaved rounds; the reported time is the median. Memory is
the compiled program's own estimate (temp + argument + output bytes). With
``--torch``, the reference's own way (``benchmarks/torch/timesnet.py``,
PyTorch eager, on the same parameters and inputs, as many threads as cores)
is timed too, and its loss compared. The machine may be shared: the load
average is printed per configuration.

Usage: python -m benchmarks.micro.timesnet_cost [--quick] [--rounds 3]
[--torch]
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

from benchmarks.micro.bsa_cost import interleaved_medians_ms, memory_bytes
from grokfast_jax.experiments.forecasting.models import timesnet

DESIGNS = ("switch", "onehot")


class OneHotTimesBlock(timesnet.TimesBlock):
  """The TimesBlock with every distinct period folded on every call."""

  def __call__(self, x):
    periods, branch_of = timesnet.period_branches(self.length)
    top, weights = self.select(x)
    onehot = jax.nn.one_hot(jnp.asarray(branch_of)[top], len(periods))
    per_period = weights @ onehot  # (B, P): the k weights, summed per period
    convs = (self.conv1.merged(), self.conv2.merged())
    out = x
    for j, period in enumerate(periods):
      out = out + (timesnet.fold_conv(x, convs, period)
                   * per_period[:, j, None, None])
    return out


def build(design, channels, lookback, horizon):
  model = timesnet.TimesNet(channels, lookback, horizon, rngs=nnx.Rngs(0))
  if design == "onehot":
    blocks = []
    for block in model.blocks:
      new = OneHotTimesBlock(block.length, model.d_model, timesnet.D_FF,
                             block.top_k, timesnet.NUM_KERNELS,
                             nnx.Rngs(0))
      nnx.update(new, nnx.state(block))
      blocks.append(new)
    model.blocks = nnx.List(blocks)
  return model


def time_torch(model, x, y, rounds):
  """Median ms of the PyTorch restatement's loss + backward (and forward),
  and its loss."""
  import torch

  from benchmarks.torch import timesnet as reference
  torch.set_num_threads(os.cpu_count())
  params = reference.params_from(model, requires_grad=True)
  tx = torch.tensor(np.asarray(x))
  ty = torch.tensor(np.asarray(y)).permute(0, 2, 1)
  kw = dict(lookback=model.lookback, horizon=model.horizon,
            top_k=timesnet.TOP_K, num_kernels=timesnet.NUM_KERNELS,
            layers=len(model.blocks))

  def step():
    loss = torch.mean((reference.forward(params, tx, **kw) - ty) ** 2)
    loss.backward()
    return loss.item()

  def forward():
    with torch.no_grad():
      reference.forward(params, tx, **kw)

  loss = step()
  times = {"step": [], "fwd": []}
  for _ in range(rounds):
    for name, fn in (("step", step), ("fwd", forward)):
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return ({k: 1e3 * statistics.median(v) for k, v in times.items()}, loss)


def run_config(batch, channels, lookback, horizon, rounds, with_torch):
  rng = np.random.default_rng(0)
  x = jnp.asarray(np.cumsum(rng.normal(size=(batch, channels, lookback)),
                            axis=-1) * 0.3, jnp.float32)
  y = jnp.asarray(rng.normal(size=(batch, channels, horizon)), jnp.float32)
  result = {"B": batch, "H": horizon,
            "periods": len(timesnet.period_branches(lookback + horizon)[0])}
  steps, forwards, losses = {}, {}, {}
  for design in DESIGNS:
    graphdef, params = nnx.split(build(design, channels, lookback, horizon))

    def loss(p, inputs, target, graphdef=graphdef):
      return jnp.mean((nnx.merge(graphdef, p)(inputs) - target) ** 2)

    start = time.perf_counter()
    step = jax.jit(jax.value_and_grad(loss)).lower(params, x, y).compile()
    result[design + "_compile_s"] = time.perf_counter() - start
    result[design + "_mb"] = memory_bytes(step) / 2**20
    forward = jax.jit(
        lambda p, inputs, graphdef=graphdef: nnx.merge(graphdef, p)(inputs)
    ).lower(params, x).compile()
    losses[design] = float(jax.block_until_ready(step(params, x, y))[0])
    jax.block_until_ready(forward(params, x))
    steps[design] = (step, (params, x, y))
    forwards[design] = (forward, (params, x))
  for design, ms in interleaved_medians_ms(steps, rounds).items():
    result[design + "_step_ms"] = ms
  for design, ms in interleaved_medians_ms(forwards, rounds).items():
    result[design + "_fwd_ms"] = ms
  result["loss_rel_diff"] = abs(losses["switch"] - losses["onehot"]) / abs(
      losses["switch"])
  if with_torch:
    ms, loss = time_torch(build("switch", channels, lookback, horizon), x, y,
                          rounds)
    result["torch_step_ms"], result["torch_fwd_ms"] = ms["step"], ms["fwd"]
    result["torch_loss_rel_diff"] = abs(loss - losses["switch"]) / abs(
        losses["switch"])
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="B = 16, H = 96 only, 2 rounds")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--horizons", type=str, default="96,720")
  parser.add_argument("--channels", type=int, default=7)
  parser.add_argument("--lookback", type=int, default=96)
  parser.add_argument("--torch", action="store_true",
                      help="also time the PyTorch restatement (eager)")
  args = parser.parse_args()
  horizons = [int(h) for h in args.horizons.split(",")]
  batch, rounds = args.batch, args.rounds
  if args.quick:
    batch, horizons, rounds = 16, [96], min(rounds, 2)
  device = jax.devices()[0]
  print("# TimesNet under jit: switch vs one-hot over the periods\n")
  print(f"JAX {jax.__version__} on {device.platform} ({device.device_kind}), "
        f"{platform.machine()}, {os.cpu_count()} CPU cores; C = "
        f"{args.channels}, L = {args.lookback}, d_model {timesnet.D_MODEL}, "
        f"d_ff {timesnet.D_FF}, top_k {timesnet.TOP_K}, {timesnet.LAYERS} "
        f"layers, {timesnet.NUM_KERNELS} kernels; step = jitted loss + "
        f"gradient; median of {rounds} interleaved rounds.\n", flush=True)
  print("| B | H | periods | design | compile s | step ms | forward ms | "
        "memory MB | load avg before/after |")
  print("|---|---|---|---|---|---|---|---|---|")
  for horizon in horizons:
    before = os.getloadavg()[0]
    r = run_config(batch, args.channels, args.lookback, horizon, rounds,
                   args.torch)
    after = os.getloadavg()[0]
    for design in DESIGNS:
      print(f"| {r['B']} | {r['H']} | {r['periods']} | {design} | "
            f"{r[design + '_compile_s']:.1f} | {r[design + '_step_ms']:.0f} | "
            f"{r[design + '_fwd_ms']:.0f} | {r[design + '_mb']:.0f} | "
            f"{before:.1f} / {after:.1f} |", flush=True)
    if args.torch:
      print(f"| {r['B']} | {r['H']} | {r['periods']} | pytorch eager | - | "
            f"{r['torch_step_ms']:.0f} | {r['torch_fwd_ms']:.0f} | - | "
            f"{before:.1f} / {os.getloadavg()[0]:.1f} |", flush=True)
    note = f"losses agree to {r['loss_rel_diff']:.1e} relative"
    if args.torch:
      note += f" (PyTorch: {r['torch_loss_rel_diff']:.1e})"
    print(f"<!-- H={horizon}: {note} -->", flush=True)


if __name__ == "__main__":
  main()
