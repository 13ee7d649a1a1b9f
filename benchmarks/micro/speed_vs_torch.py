"""Seconds per training step: grokfast_jax (JAX) vs PyTorch eager, side by side.

Both train the Grokfast algorithmic task (``x * y mod 97``, 2-block
transformer, Adam, Grokfast-EMA alpha 0.98 lamb 2, wd 0.005, batch 512) with
the same settings and the same training split, in one process:

- JAX: the epoch and validation of ``grokfast_jax.experiments.modular.task``
  (``build``'s pure functions, jitted: one ``lax.scan`` per epoch with the
  state donated, then the validation);
- PyTorch: ``benchmarks/torch/modular.py`` (eager, ``torch.optim.Adam``).

An epoch is 10 updates followed by its validation pass over the 4,656
validation equations; seconds per step = epoch seconds / 10. After one
untimed warm-up epoch each (JAX's includes compilation, reported on its own),
the two run in alternating rounds (each round runs `--epochs` epochs of one,
then of the other; the order flips every round), and the reported figure is
the median over rounds, so drift in the machine's load affects both alike.
The target of the project is JAX / PyTorch <= 0.8.

With ``--time-to-grok`` both are also trained from scratch to 95% validation
accuracy (one after the other; seconds counted from building the model, JAX
compilation included).

  flock /tmp/grokfast_timing.lock python -m benchmarks.micro.speed_vs_torch
  python -m benchmarks.micro.speed_vs_torch --rounds 9 --epochs 3 --time-to-grok

Needs PyTorch (``pip install torch==2.13.0``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import torch

from benchmarks.torch import modular as torch_modular
from grokfast_jax.experiments import harness
from grokfast_jax.experiments.modular import config as config_lib
from grokfast_jax.experiments.modular import task as modular_task

TARGET_RATIO = 0.8


def torch_config(cfg: config_lib.ModularConfig) -> torch_modular.TorchConfig:
  """The PyTorch settings equal to the JAX config `cfg`.

  Every TorchConfig field is a ModularConfig field of the same name and
  meaning, so each is copied from `cfg`.
  """
  return torch_modular.TorchConfig(**{
      f.name: getattr(cfg, f.name)
      for f in dataclasses.fields(torch_modular.TorchConfig)})


class JaxRunner:
  """Runs whole JAX epochs (training scan + validation), blocking on results."""

  def __init__(self, cfg: config_lib.ModularConfig):
    t0 = time.perf_counter()
    prog = modular_task.build(cfg, None, harness.Context())
    self.build_seconds = time.perf_counter() - t0
    self.train_epoch = jax.jit(prog.train_epoch, donate_argnums=0)
    self.evaluate = jax.jit(lambda state, d: prog.evaluate(state, d)[1])
    self.state, self.data = prog.state, prog.data
    self.steps_per_epoch = prog.steps_per_epoch
    self.epoch = 0
    self.val_acc = 0.0

  def run_epoch(self) -> None:
    self.epoch += 1
    self.state, m = self.train_epoch(self.state, jnp.int32(self.epoch),
                                     self.data)
    ev = self.evaluate(self.state, self.data)
    float(m["loss_sum"])
    self.val_acc = float(ev["val_acc"])


class TorchRunner:
  """Runs whole PyTorch epochs (training + validation)."""

  def __init__(self, cfg: config_lib.ModularConfig):
    t0 = time.perf_counter()
    self.trainer = torch_modular.TorchTrainer(torch_config(cfg))
    self.build_seconds = time.perf_counter() - t0
    self.steps_per_epoch = self.trainer.steps_per_epoch
    self.val_acc = 0.0

  def run_epoch(self) -> None:
    self.val_acc = self.trainer.run_epoch()["val_acc"]


def timed(fn: Callable[[], None], repeats: int) -> float:
  """Wall seconds of `repeats` calls of `fn`."""
  t0 = time.perf_counter()
  for _ in range(repeats):
    fn()
  return time.perf_counter() - t0


def measure(cfg: config_lib.ModularConfig, rounds: int,
            epochs: int) -> dict[str, Any]:
  """Per-step seconds of both implementations, alternating rounds.

  Args:
    cfg: the JAX settings (PyTorch gets the same).
    rounds: number of rounds (each runs both).
    epochs: epochs per implementation per round.

  Returns:
    Per-round seconds per step of each, the warm-up epochs, build times.
  """
  jx, tc = JaxRunner(cfg), TorchRunner(cfg)
  if jx.steps_per_epoch != tc.steps_per_epoch:
    raise RuntimeError(f"steps per epoch differ: JAX {jx.steps_per_epoch}, "
                       f"PyTorch {tc.steps_per_epoch}")
  spe = jx.steps_per_epoch
  jax_first = timed(jx.run_epoch, 1)
  torch_first = timed(tc.run_epoch, 1)
  per_step = {"jax": [], "torch": []}
  for r in range(rounds):
    order = [("jax", jx), ("torch", tc)]
    if r % 2:
      order.reverse()
    for name, runner in order:
      per_step[name].append(timed(runner.run_epoch, epochs) / (epochs * spe))
    print(f"round {r + 1}/{rounds}: JAX {per_step['jax'][-1] * 1e3:.1f} ms, "
          f"PyTorch {per_step['torch'][-1] * 1e3:.1f} ms per step",
          file=sys.stderr, flush=True)
  jax_median = statistics.median(per_step["jax"])
  return {
      "per_step": per_step,
      "jax_median": jax_median,
      "torch_median": statistics.median(per_step["torch"]),
      "round_ratios": [a / b for a, b in zip(per_step["jax"],
                                             per_step["torch"])],
      "jax_build_seconds": jx.build_seconds,
      "jax_first_epoch_seconds": jax_first,
      # The first epoch's excess over a steady epoch: compiling the epoch
      # scan and the validation.
      "jax_compile_seconds": jax_first - jax_median * spe,
      "torch_build_seconds": tc.build_seconds,
      "torch_first_epoch_seconds": torch_first,
      "final_val_acc": {"jax": jx.val_acc, "torch": tc.val_acc},
      "steps_trained": spe * (1 + rounds * epochs),
      "steps_per_epoch": spe,
  }


def time_to_grok(cfg: config_lib.ModularConfig,
                 max_steps: int) -> dict[str, Any]:
  """Steps and seconds to 95% val acc of each, from scratch, one after the other."""
  jax_cfg = config_lib.paper_config(
      cfg.filter, alpha=cfg.alpha, lamb=cfg.lamb,
      weight_decay=cfg.weight_decay, seed=cfg.seed, max_steps=max_steps,
      stop_at_target=True)
  j = modular_task.run(jax_cfg, progress=False)
  t = torch_modular.run(torch_config(cfg), max_steps, stop_at_target=True)
  return {"jax": (j["steps_to_val_acc_95"], j["seconds_to_val_acc_95"]),
          "torch": (t["steps_to_target"], t["seconds_to_target"])}


def _fmt(value, spec: str) -> str:
  return "n/a" if value is None else format(value, spec)


def report(cfg, m: dict[str, Any], grok, machine: str, load: tuple) -> str:
  """The markdown table of the measured figures."""
  ratio = m["jax_median"] / m["torch_median"]
  lines = [
      f"JAX vs PyTorch eager, x * y mod {cfg.p}, Grokfast-{cfg.filter.upper()}"
      f" (alpha {cfg.alpha:g}, lamb {cfg.lamb:g}, wd {cfg.weight_decay:g}), "
      f"batch {cfg.batch_size}, epoch = {m['steps_per_epoch']} updates + "
      "validation; median over "
      f"{len(m['per_step']['jax'])} alternating rounds.",
      "",
      f"Machine: {machine}; load average before / after: "
      f"{load[0]:.1f} / {load[1]:.1f}. JAX {jax.__version__} "
      f"({jax.default_backend()}), PyTorch {torch.__version__} with "
      f"torch.get_num_threads() = {torch.get_num_threads()}, Python "
      f"{platform.python_version()}.",
      "",
      "| | JAX (grokfast_jax) | PyTorch eager |",
      "|---|---|---|",
      f"| seconds per step (median) | {m['jax_median'] * 1e3:.1f} ms | "
      f"{m['torch_median'] * 1e3:.1f} ms |",
      "| seconds per step (min .. max over rounds) | "
      f"{min(m['per_step']['jax']) * 1e3:.1f} .. "
      f"{max(m['per_step']['jax']) * 1e3:.1f} ms | "
      f"{min(m['per_step']['torch']) * 1e3:.1f} .. "
      f"{max(m['per_step']['torch']) * 1e3:.1f} ms |",
      f"| build (data, init) | {m['jax_build_seconds']:.2f} s | "
      f"{m['torch_build_seconds']:.2f} s |",
      f"| first epoch (JAX: compile included) | "
      f"{m['jax_first_epoch_seconds']:.2f} s | "
      f"{m['torch_first_epoch_seconds']:.2f} s |",
      f"| compile (first epoch minus a steady one) | "
      f"{m['jax_compile_seconds']:.2f} s | - |",
      f"| val acc after {m['steps_trained']:,} steps | "
      f"{m['final_val_acc']['jax']:.3f} | "
      f"{m['final_val_acc']['torch']:.3f} |",
  ]
  if grok is not None:
    (js, jt), (ts, tt) = grok["jax"], grok["torch"]
    lines.append(f"| steps to 95% val acc | {_fmt(js, ',')} | "
                 f"{_fmt(ts, ',')} |")
    lines.append(f"| seconds to 95% val acc (from build; JAX compile incl.) "
                 f"| {_fmt(jt, '.1f')} | {_fmt(tt, '.1f')} |")
  lines += [
      "",
      f"Ratio JAX / PyTorch seconds per step: **{ratio:.3f}** (median of "
      f"per-round ratios {statistics.median(m['round_ratios']):.3f}); "
      f"target <= {TARGET_RATIO}: "
      f"**{'met' if ratio <= TARGET_RATIO else 'NOT met'}**.",
  ]
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=7,
                      help="alternating rounds (default 7)")
  parser.add_argument("--epochs", type=int, default=2,
                      help="epochs of each per round (default 2)")
  parser.add_argument("--filter", default="ema", choices=("none", "ema"))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--time-to-grok", action="store_true",
                      help="also train both from scratch to 95%% val acc")
  parser.add_argument("--max-steps", type=int, default=3000,
                      help="cap of the --time-to-grok runs (default 3000)")
  parser.add_argument("--torch-threads", type=int, default=None,
                      help="torch.set_num_threads (default: PyTorch's own)")
  parser.add_argument("--machine", default=f"{os.cpu_count()}-core CPU",
                      help="machine description for the report")
  args = parser.parse_args(argv)
  if args.rounds < 1 or args.epochs < 1:
    raise ValueError(f"--rounds and --epochs must be >= 1, got {args.rounds}"
                     f", {args.epochs}")
  if args.torch_threads is not None:
    if args.torch_threads < 1:
      raise ValueError(
          f"--torch-threads must be >= 1, got {args.torch_threads}")
    torch.set_num_threads(args.torch_threads)
  cfg = config_lib.paper_config(args.filter, seed=args.seed)
  load_before = os.getloadavg()[0]
  m = measure(cfg, args.rounds, args.epochs)
  grok = time_to_grok(cfg, args.max_steps) if args.time_to_grok else None
  print(report(cfg, m, grok, args.machine,
               (load_before, os.getloadavg()[0])))
  return 0


if __name__ == "__main__":
  sys.exit(main())
