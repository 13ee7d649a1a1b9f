"""The Grokfast paper's MNIST training restated in plain PyTorch.

MNIST: the first 1,000 training images (``mnist.data.train_subset``), pixels
in [0, 1]; ``Linear(784, 200)-ReLU-Linear(200, 200)-ReLU-Linear(200, 10)``,
PyTorch's default init with every parameter then multiplied by 8; mean MSE
against one-hot targets; AdamW lr 1e-3; batches of 200 from a loader
reshuffled every epoch (5 updates an epoch); train and test metrics on the
full 1,000 training and 10,000 test images every ``--eval-every`` updates.
Runs: baseline wd 0.01, weight-decay wd 2.0, grokfast-ema alpha 0.8 lamb 0.1
wd 2.0. What the three tasks share (the runs, the filter, seeds, result
files, the parity check) is in :mod:`benchmarks.torch.common`::

  python -m benchmarks.torch.mnist run --seeds 0 --steps 20000 \\
      --runs baseline,weight-decay,grokfast-ema --out runs/torch_paper_tasks \\
      --threads 2
  python -m benchmarks.torch.mnist parity

PyTorch is an optional, benchmark-only dependency (``pip install torch``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.torch import common
from benchmarks.torch.common import (DATA, RunSettings, environment, fmt,
                                     from_jax, make_optimizer,
                                     relative_difference, run_parity,
                                     run_runs, scale_parameters_)
from grokfast_jax.experiments import common as exp_common

MNIST_RUNS = {
    "baseline": RunSettings("none", 0.01),
    "weight-decay": RunSettings("none", 2.0),
    "grokfast-ema": RunSettings("ema", 2.0, alpha=0.8, lamb=0.1),
}
MNIST_THRESHOLDS = (0.85, 0.90, 0.95)


@dataclasses.dataclass(frozen=True)
class MnistSettings:
  """One MNIST run (defaults: the reference's).

  Attributes:
    run: the filter and weight decay.
    seed: ``torch.manual_seed`` of the initialization and batch order.
    steps: updates to run.
    eval_every: evaluate every this many updates.
    lr: AdamW learning rate.
    init_scale: factor on every initial parameter.
    hidden: hidden widths.
    train_size: training images (the first of the training set).
    batch_size: images per update.
  """

  run: RunSettings
  seed: int = 0
  steps: int = 100_000
  eval_every: int = 100
  lr: float = 1e-3
  init_scale: float = 8.0
  hidden: tuple[int, ...] = (200, 200)
  train_size: int = 1000
  batch_size: int = 200

  def to_dict(self) -> dict[str, Any]:
    """The settings as one flat dict."""
    d = dataclasses.asdict(self)
    d.update(d.pop("run"))
    d.update(self.run.to_dict())
    d["hidden"] = list(self.hidden)
    return d


def mnist_model(hidden: Sequence[int] = (200, 200), in_features: int = 784,
                classes: int = 10) -> nn.Sequential:
  """The ReLU MLP with PyTorch's default initialization (not yet scaled)."""
  widths = [in_features, *hidden]
  layers: list[nn.Module] = []
  for n_in, n_out in zip(widths[:-1], widths[1:]):
    layers += [nn.Linear(n_in, n_out), nn.ReLU()]
  layers.append(nn.Linear(widths[-1], classes))
  return nn.Sequential(*layers)


def load_mnist(path: Path, train_size: int = 1000):
  """``(x_train, y_train, x_test, y_test, label)`` from grokfast_jax's loader.

  Args:
    path: the MNIST folder (IDX files) or npz.
    train_size: the first images of the training set to keep.

  Returns:
    float32 ``[n, 784]`` images in [0, 1] and int64 labels, as tensors, and
    the dataset's label ("MNIST").
  """
  from grokfast_jax.experiments.mnist import data as data_lib
  ds = data_lib.train_subset(data_lib.load_dataset(path), train_size)
  return (torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train).long(),
          torch.from_numpy(ds.x_test), torch.from_numpy(ds.y_test).long(),
          ds.label)


def mnist_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
  """``nn.MSELoss()`` (mean over all entries) against one-hot targets."""
  targets = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
  return F.mse_loss(logits, targets)


@torch.inference_mode()
def mnist_evaluate(model: nn.Module, x: torch.Tensor,
                   y: torch.Tensor) -> tuple[float, float]:
  """``(MSE, accuracy)`` of `model` on all of (x, y)."""
  logits = model(x)
  return (mnist_loss(logits, y).item(),
          (logits.argmax(-1) == y).double().mean().item())


def train_mnist(cfg: MnistSettings, data, *, name: str,
                verbose: bool = False) -> dict[str, Any]:
  """Trains one MNIST run; returns its settings, summary and history.

  Args:
    cfg: the run's settings.
    data: what :func:`load_mnist` returns.
    name: the run's name ("baseline", ...).
    verbose: print each evaluation to stderr.

  Returns:
    A JSON-ready dict: settings, steps_to_val_acc (first step at each of
    85 / 90 / 95% test accuracy, None if never), best_val_acc and its step,
    final metrics, total_seconds (evaluations included),
    train_seconds (updates only), seconds_per_1000_updates (updates only;
    wall time) and cpu_seconds_per_1000_updates (the process's CPU time,
    all threads: less sensitive to other load on the machine),
    history (step, train_loss, train_acc, val_loss, val_acc, seconds).
  """
  x_train, y_train, x_test, y_test, label = data
  t0 = time.perf_counter()
  torch.manual_seed(cfg.seed)
  model = mnist_model(cfg.hidden, x_train.shape[1])
  scale_parameters_(model, cfg.init_scale)
  optimizer, grad_filter = make_optimizer(model, cfg.run, cfg.lr)
  n = len(y_train)
  history: list[dict[str, Any]] = []
  train_seconds = train_cpu_seconds = 0.0

  def record(step: int) -> None:
    model.eval()
    train_loss, train_acc = mnist_evaluate(model, x_train, y_train)
    val_loss, val_acc = mnist_evaluate(model, x_test, y_test)
    model.train()
    history.append({"step": step, "train_loss": train_loss,
                    "train_acc": train_acc, "val_loss": val_loss,
                    "val_acc": val_acc, "seconds": time.perf_counter() - t0})
    if verbose:
      print(f"{name} step {step}: train acc {train_acc:.3f}, test acc "
            f"{val_acc:.3f}", file=sys.stderr, flush=True)

  def batches():  # a shuffling loader, cycled epoch after epoch
    while True:
      order = torch.randperm(n)
      for start in range(0, n, cfg.batch_size):
        idx = order[start:start + cfg.batch_size]
        yield x_train[idx], y_train[idx]

  record(0)
  loader = batches()
  step = 0
  while step < cfg.steps:
    t1, c1 = time.perf_counter(), time.process_time()
    for _ in range(min(cfg.eval_every, cfg.steps - step)):
      x, y = next(loader)
      loss = mnist_loss(model(x), y)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      if grad_filter is not None:
        grad_filter()
      optimizer.step()
      step += 1
    train_seconds += time.perf_counter() - t1
    train_cpu_seconds += time.process_time() - c1
    record(step)

  marks = {f"{t:g}": exp_common.steps_to_threshold(history, "val_acc", t)[0]
           for t in MNIST_THRESHOLDS}
  best = max(history, key=lambda h: h["val_acc"])
  last = history[-1]
  return {
      "experiment": "mnist-large-init", "implementation": "pytorch",
      "run": name, "label": cfg.run.label, "dataset": label,
      "settings": cfg.to_dict(), "steps_to_val_acc": marks,
      "best_val_acc": best["val_acc"], "best_val_acc_step": best["step"],
      "final_step": last["step"], "final_train_acc": last["train_acc"],
      "final_val_acc": last["val_acc"], "final_train_loss": last["train_loss"],
      "final_val_loss": last["val_loss"], "total_seconds": last["seconds"],
      "train_seconds": train_seconds,
      "seconds_per_1000_updates": 1000 * train_seconds / max(step, 1),
      "cpu_seconds_per_1000_updates": (1000 * train_cpu_seconds
                                       / max(step, 1)),
      "environment": environment(), "history": history,
  }


def describe_mnist(res: dict[str, Any]) -> str:
  """One line: steps to 85 / 90 / 95% test accuracy, best, final, speed."""
  marks = " | ".join(f"{float(t):.0%}: {fmt(s, ',')}"
                     for t, s in res["steps_to_val_acc"].items())
  return (f"| mnist | torch | {res['run']} | {res['label']} | {marks} | "
          f"best {res['best_val_acc']:.2%} at {res['best_val_acc_step']:,} | "
          f"final {res['final_val_acc']:.2%} at {res['final_step']:,} | "
          f"{res['seconds_per_1000_updates']:.1f} s "
          f"({fmt(res.get('cpu_seconds_per_1000_updates'), '.1f', 'n/a')} "
          "CPU s) / 1k updates |")


def run_mnist(args: argparse.Namespace) -> int:
  """``mnist``: the chosen runs for every seed."""
  data = load_mnist(Path(args.data or DATA / "mnist"))

  def train_one(seed: int, name: str, path: Path) -> dict[str, Any]:
    cfg = MnistSettings(MNIST_RUNS[name], seed=seed, steps=args.steps,
                        eval_every=args.eval_every)
    return train_mnist(cfg, data, name=name, verbose=args.verbose)

  return run_runs(args, "mnist", train_one, describe_mnist)


def mnist_parity(args: argparse.Namespace) -> int:
  """``mnist-parity``: the JAX and PyTorch trainings from equal parameters.

  Builds the JAX MLP as ``mnist.training`` does, copies its initial parameters
  into the PyTorch MLP (flax kernels are ``[in, out]``, torch weights
  ``[out, in]``), trains both for `args.updates` updates of the chosen run on
  the same minibatches (JAX: ``mnist.training.make_optimizer`` and a plain
  jitted step; PyTorch: this module's loop body), then compares the test-set
  logits and the parameters; in float32, then both in float64.
  """
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from grokfast_jax.experiments.mnist import config as config_lib
  from grokfast_jax.experiments.mnist import training as train_lib
  from grokfast_jax.experiments.mnist.model import MLP

  run = MNIST_RUNS[args.run]
  jax_cfg = config_lib.paper_config(
      run.filter, weight_decay=run.weight_decay,
      **({"alpha": run.alpha, "lamb": run.lamb} if run.filter == "ema"
         else {}))
  x_train, y_train, x_test, _, label = load_mnist(
      Path(args.data or DATA / "mnist"))
  bs = jax_cfg.batch_size

  def once(dtype: str) -> dict[str, float]:
    tdtype = getattr(torch, dtype)
    init_key, _ = jax.random.split(jax.random.key(args.seed))
    jmodel = MLP(x_train.shape[1], jax_cfg.hidden, 10,
                 init_scale=jax_cfg.init_scale,
                 rngs=nnx.Rngs(params=init_key))
    graphdef, params = nnx.split(jmodel, nnx.Param)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    tmodel = mnist_model(jax_cfg.hidden, x_train.shape[1]).to(tdtype)
    linears = [m for m in tmodel if isinstance(m, nn.Linear)]
    layers = [params["layers"][k] for k in range(len(linears))]
    with torch.no_grad():
      for lin, layer in zip(linears, layers):
        lin.weight.copy_(from_jax(layer["kernel"]).T)
        lin.bias.copy_(from_jax(layer["bias"]))

    tx = train_lib.make_optimizer(jax_cfg)
    opt_state = tx.init(params)

    @jax.jit
    def jax_step(params, opt_state, x, y):
      grads = jax.grad(lambda p: train_lib.mse_loss(
          nnx.merge(graphdef, p)(x), y))(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    optimizer, grad_filter = make_optimizer(tmodel, run, jax_cfg.lr)
    rng = np.random.default_rng(args.seed)
    for _ in range(args.updates):
      idx = rng.permutation(len(y_train))[:bs]
      x, y = x_train[idx].to(tdtype), y_train[idx]
      params, opt_state = jax_step(params, opt_state, jnp.asarray(x.numpy()),
                                   jnp.asarray(y.numpy().astype(np.int32)))
      loss = mnist_loss(tmodel(x), y)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      if grad_filter is not None:
        grad_filter()
      optimizer.step()

    with torch.inference_mode():
      t_logits = tmodel(x_test.to(tdtype)).numpy()
    j_logits = np.asarray(nnx.merge(graphdef, params)(
        jnp.asarray(x_test.numpy().astype(dtype))))
    diffs = {"test logits": relative_difference(t_logits, j_logits)}
    layers = [params["layers"][k] for k in range(len(linears))]
    for k, (lin, layer) in enumerate(zip(linears, layers)):
      diffs[f"layer {k} weight"] = relative_difference(
          lin.weight.detach().numpy().T, np.asarray(layer["kernel"][...]))
      diffs[f"layer {k} bias"] = relative_difference(
          lin.bias.detach().numpy(), np.asarray(layer["bias"][...]))
    return diffs

  return run_parity(
      f"mnist-parity [{label}]: {args.run} ({run.label}), seed {args.seed}, "
      f"{args.updates} updates of batch {bs}", once)


def build_parser() -> argparse.ArgumentParser:
  """``run`` and ``parity`` with MNIST's own options."""
  parser, p, _ = common.task_parser(
      __doc__.splitlines()[0], "MNIST runs (1,000 images, init x 8)",
      f"MNIST folder (default {DATA / 'mnist'})", run_mnist, mnist_parity,
      20)
  p.add_argument("--steps", type=int, default=100_000)
  p.add_argument("--eval-every", type=int, default=100)
  return parser


def main(argv: Optional[list[str]] = None) -> int:
  return common.main(build_parser(), argv)


if __name__ == "__main__":
  sys.exit(main())
