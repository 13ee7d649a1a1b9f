"""The Grokfast paper's MNIST, QM9 and IMDb trainings restated in plain PyTorch.

A benchmark-only restatement, written from the published settings (see
``shared/notes/paper-experiments-fidelity.md``), of the reference training
that ``grokfast_jax.experiments.{mnist,qm9,imdb}`` reproduce in JAX. It reads
the same data through the same loaders and runs the same three runs per seed,
so the benchmark table can tell a gap in our fidelity (JAX and PyTorch
disagree) from a published claim that does not hold (both agree, and differ
from the paper):

* ``baseline``: no filter, the reference script's default weight decay;
* ``weight-decay``: no filter, the weight decay of the reference README;
* ``grokfast-ema``: Grokfast-EMA with the README's settings and weight decay.

Every task trains with ``torch.optim.AdamW``; Grokfast-EMA acts on ``p.grad``
between ``backward()`` (and, for IMDb, the gradient clipping) and
``optimizer.step()``: ``mu_1 = g_1``, ``mu_t = alpha * mu_{t-1} +
(1 - alpha) * g_t``, ``g_t <- g_t + lamb * mu_t``. Seeds go through
``torch.manual_seed``, which draws the initialization and then the batch
order, as the reference does (so the same seed draws other weights and
batches than the JAX runs; the data and the train / test split are shared).

MNIST: the first 1,000 training images (``mnist.data.train_subset``), pixels
in [0, 1]; ``Linear(784, 200)-ReLU-Linear(200, 200)-ReLU-Linear(200, 10)``,
PyTorch's default init with every parameter then multiplied by 8; mean MSE
against one-hot targets; AdamW lr 1e-3; batches of 200 from a loader
reshuffled every epoch (5 updates an epoch); train and test metrics on the
full 1,000 training and 10,000 test images every ``--eval-every`` updates.
Runs: baseline wd 0.01, weight-decay wd 2.0, grokfast-ema alpha 0.8 lamb 0.1
wd 2.0.

QM9: the first 100 characterized molecules (``qm9.data.load_molecules``),
split 50 / 50 by ``qm9.data.split``; two NNConv layers (PyTorch Geometric's
semantics, restated without it: edge networks Linear(4, 32)-ReLU-
Linear(32, in * out), root weight U(-1/sqrt(in), 1/sqrt(in)), zero bias,
messages summed at the target node), ReLU, global add pooling,
Linear(16, 32)-ReLU-Linear(32, 1), every parameter x 3; MSE of ``alpha``;
AdamW lr 1e-3; batches of 32 reshuffled every epoch, the last one (18) kept;
the test MSE after every epoch. Runs: baseline wd 0, weight-decay wd 0.01,
grokfast-ema alpha 0.9 lamb 1 wd 0.01.

IMDb: ``imdb.data.load_dataset`` (750 / 250 stratified, vocabulary 1,000,
``--seq-len`` tokens, left-padded); Embedding(1001, 64) -> LSTM(64, 256, 2
layers) -> Linear(256, 1) -> sigmoid on the last step, every parameter x 6;
``BCELoss``; ``clip_grad_norm_(5.0)``, then the filter, then AdamW lr 3e-4;
batches of 50 (15 updates an epoch); loss and accuracy on all 250
validation reviews after every epoch. Runs: baseline wd 1, weight-decay
wd 10, grokfast-ema alpha 0.98 lamb 2 wd 10.

Results go to ``OUT/<task>/seed<k>/<run>.json`` (IMDb: ``<run>-seq<L>.json``;
QM9 also ``<run>.npz`` with every epoch's losses); a run whose file exists is
skipped, so an interrupted benchmark resumes. One markdown table row per run
is printed. Timings are wall time and, as ``cpu_seconds_per_*``, the
process's CPU time (all threads), which other load on the machine disturbs
less.

The parity commands copy the JAX model's initial parameters into the
PyTorch model, train both for a few updates on the same minibatches and print
the largest relative differences of the outputs and the parameters, first in
float32, then with both in float64. In float32 they are rounding, magnified
by Adam wherever a gradient is zero up to rounding (1e-5 .. 1e-3 after 20
updates); in float64 equal computations agree to about 1e-13, and a
difference above 1e-9 fails the check (exit status 1)::

  python benchmarks/torch_paper_tasks.py mnist --seeds 0 --steps 20000 \\
      --runs baseline,weight-decay,grokfast-ema --out runs/torch_paper_tasks \\
      --threads 2
  python benchmarks/torch_paper_tasks.py mnist-parity
  python benchmarks/torch_paper_tasks.py qm9 --seeds 0 --epochs 5000
  python benchmarks/torch_paper_tasks.py qm9-parity
  python benchmarks/torch_paper_tasks.py imdb --seq-len 100 --steps 1005
  python benchmarks/torch_paper_tasks.py imdb-parity

PyTorch is an optional, benchmark-only dependency (``pip install torch``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grokfast_jax.experiments import common

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RUNS = ("baseline", "weight-decay", "grokfast-ema")
# Parity: float64 differences above this fail (equal computations agree to
# ~1e-13); float32 ones are shown against the looser one.
PARITY_TOLERANCE = 1e-9
FLOAT32_TOLERANCE = 1e-4


# ------------------------------------------------------------------ shared


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """The filter and weight decay that tell one task's three runs apart.

  Attributes:
    filter: "none" (plain AdamW) or "ema" (Grokfast-EMA before AdamW).
    weight_decay: AdamW's decoupled weight decay.
    alpha: Grokfast-EMA momentum (used by "ema").
    lamb: Grokfast-EMA amplification (used by "ema").
  """

  filter: str
  weight_decay: float
  alpha: float = 0.0
  lamb: float = 0.0

  @property
  def label(self) -> str:
    """E.g. "alpha 0.8, lamb 0.1, wd 2" or "wd 0.01"."""
    knobs = ([f"alpha {self.alpha:g}", f"lamb {self.lamb:g}"]
             if self.filter == "ema" else [])
    return ", ".join(knobs + [f"wd {self.weight_decay:g}"])

  def to_dict(self) -> dict[str, Any]:
    """The settings as a dict, without the filter knobs of a no-filter run."""
    d = dataclasses.asdict(self)
    if self.filter == "none":
      del d["alpha"], d["lamb"]
    return d


class GrokfastEMA:
  """Grokfast-EMA on the ``.grad`` of `params`; call after ``backward()``.

  The first call keeps the gradient as the average; later calls mix it in
  with weight ``1 - alpha``; every call then adds ``lamb`` times the average
  to the gradient, in place.
  """

  def __init__(self, params: Iterable[torch.Tensor], alpha: float,
               lamb: float):
    """Keeps the parameters that train (those with ``requires_grad``)."""
    self.params = [p for p in params if p.requires_grad]
    self.alpha, self.lamb = alpha, lamb
    self.avg: Optional[list[torch.Tensor]] = None

  @torch.no_grad()
  def __call__(self) -> None:
    """Filters the current gradients in place."""
    grads = [p.grad for p in self.params]
    if self.avg is None:
      self.avg = [g.clone() for g in grads]
    else:
      for avg, g in zip(self.avg, grads):
        avg.mul_(self.alpha).add_(g, alpha=1.0 - self.alpha)
    for avg, g in zip(self.avg, grads):
      g.add_(avg, alpha=self.lamb)


def make_optimizer(model: nn.Module, run: RunSettings, lr: float):
  """``(AdamW, filter or None)`` for `model` under the settings `run`."""
  optimizer = torch.optim.AdamW(model.parameters(), lr=lr,
                                weight_decay=run.weight_decay)
  grad_filter = (GrokfastEMA(model.parameters(), run.alpha, run.lamb)
                 if run.filter == "ema" else None)
  return optimizer, grad_filter


@torch.no_grad()
def scale_parameters_(model: nn.Module, factor: float) -> None:
  """Multiplies every parameter of `model` by `factor`, in place."""
  for p in model.parameters():
    p.mul_(factor)


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
  """``max |a - b| / max |b|`` (the largest error relative to `b`'s scale)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def save_json(path: Path, results: dict[str, Any]) -> None:
  """Writes `results` to `path` as strict JSON (NaN becomes null)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  text = json.dumps(common.to_json_safe(results), indent=2, allow_nan=False)
  path.write_text(text + "\n")


def environment() -> dict[str, Any]:
  """Versions and the thread count a timing depends on."""
  import platform
  return {"python": platform.python_version(), "torch": torch.__version__,
          "numpy": np.__version__, "torch_threads": torch.get_num_threads()}


def _fmt(value: Optional[float], spec: str, none: str = "never") -> str:
  return none if value is None else format(value, spec)


# ------------------------------------------------------------------- MNIST

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

  marks = {f"{t:g}": common.steps_to_threshold(history, "val_acc", t)[0]
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
  marks = " | ".join(f"{float(t):.0%}: {_fmt(s, ',')}"
                     for t, s in res["steps_to_val_acc"].items())
  return (f"| mnist | torch | {res['run']} | {res['label']} | {marks} | "
          f"best {res['best_val_acc']:.2%} at {res['best_val_acc_step']:,} | "
          f"final {res['final_val_acc']:.2%} at {res['final_step']:,} | "
          f"{res['seconds_per_1000_updates']:.1f} s "
          f"({_fmt(res.get('cpu_seconds_per_1000_updates'), '.1f', 'n/a')} "
          "CPU s) / 1k updates |")


def run_runs(args: argparse.Namespace, task: str,
             train_one: Callable[[int, str, Path], dict[str, Any]],
             describe: Callable[[dict[str, Any]], str],
             suffix: str = "") -> int:
  """Runs ``args.runs`` for every seed in ``args.seeds``, resumably.

  A run whose ``OUT/<task>/seed<k>/<run><suffix>.json`` exists is read back
  instead of trained (unless ``--force``); otherwise ``train_one(seed, name,
  path)`` trains it and returns its results, saved to that file. Each run's
  line is printed.
  """
  for seed in args.seeds:
    for name in args.runs:
      path = Path(args.out) / task / f"seed{seed}" / f"{name}{suffix}.json"
      if path.is_file() and not args.force:
        res = json.loads(path.read_text())
        print(f"(done already: {path})")
      else:
        res = train_one(seed, name, path)
        save_json(path, res)
      print(f"seed {seed} " + describe(res), flush=True)
  return 0


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

  Builds the JAX MLP as ``mnist.train`` does, copies its initial parameters
  into the PyTorch MLP (flax kernels are ``[in, out]``, torch weights
  ``[out, in]``), trains both for `args.updates` updates of the chosen run on
  the same minibatches (JAX: ``mnist.train.make_optimizer`` and a plain
  jitted step; PyTorch: this module's loop body), then compares the test-set
  logits and the parameters; in float32, then both in float64.
  """
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from grokfast_jax.experiments.mnist import config as config_lib
  from grokfast_jax.experiments.mnist import train as train_lib
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
        lin.weight.copy_(_from_jax(layer["kernel"]).T)
        lin.bias.copy_(_from_jax(layer["bias"]))

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


def _from_jax(value) -> torch.Tensor:
  """A writable torch copy of a JAX array or ``nnx`` variable."""
  if hasattr(value, "get_value"):
    value = value.get_value()
  elif hasattr(value, "value"):
    value = value.value
  return torch.from_numpy(np.array(value))


def run_parity(title: str, once: Callable[[str], dict[str, float]]) -> int:
  """Runs a parity check in float32, then in float64; prints both.

  Float32 shows what the real runs see. Its differences are rounding, but
  Adam divides each gradient by its running RMS, so a gradient that is zero
  up to rounding (summed contributions that cancel) gets a last-bit
  difference magnified into an update difference of up to ``lr``; after some
  updates float32 parameters can therefore differ by 1e-5 .. 1e-3 relative.
  Float64 leaves no room for that: both computations must agree there to the
  tolerance, which sets the exit status.

  Args:
    title: the first line printed.
    once: ``once(dtype)`` trains both implementations in `dtype`
      ("float32" or "float64") and returns named relative differences.

  Returns:
    0 if every float64 difference is within :data:`PARITY_TOLERANCE`, else 1
    (float32 ones are compared with :data:`FLOAT32_TOLERANCE` for
    information only).
  """
  import jax
  print(title)
  status = 0
  for dtype in ("float32", "float64"):
    if dtype == "float64":
      jax.config.update("jax_enable_x64", True)
    diffs = once(dtype)
    worst = max(diffs.values())
    tol = PARITY_TOLERANCE if dtype == "float64" else FLOAT32_TOLERANCE
    ok = worst <= tol
    print(f"  {dtype}:")
    for name, value in diffs.items():
      print(f"    max relative difference, {name}: {value:.2e}")
    note = "" if dtype == "float64" else " (informational)"
    print(f"    largest {worst:.2e}: {'within' if ok else 'ABOVE'} "
          f"{tol:g}{note}")
    if dtype == "float64" and not ok:
      status = 1
  print("parity " + ("OK" if status == 0 else "FAILED"))
  return status


# --------------------------------------------------------------------- QM9

QM9_RUNS = {
    "baseline": RunSettings("none", 0.0),
    "weight-decay": RunSettings("none", 0.01),
    "grokfast-ema": RunSettings("ema", 0.01, alpha=0.9, lamb=1.0),
}


@dataclasses.dataclass(frozen=True)
class Qm9Settings:
  """One QM9 run (defaults: the reference's).

  Attributes:
    run: the filter and weight decay.
    seed: seeds the split (numpy, as grokfast_jax's ``qm9.data.split``),
      then ``torch.manual_seed`` the initialization and batch order.
    epochs: training epochs (2 updates each with 50 training molecules).
    lr: AdamW learning rate.
    init_scale: factor on every initial parameter.
    size: molecules used, split 50 / 50.
    batch_size: molecules per update; the last, smaller batch is kept.
    log_every: keep a history entry every this many epochs (plus log-spaced
      early ones and the best); the lowest test MSE is taken over all.
  """

  run: RunSettings
  seed: int = 0
  epochs: int = 50_000
  lr: float = 1e-3
  init_scale: float = 3.0
  size: int = 100
  batch_size: int = 32
  log_every: int = 200

  def to_dict(self) -> dict[str, Any]:
    """The settings as one flat dict."""
    d = dataclasses.asdict(self)
    d.update(d.pop("run"))
    d.update(self.run.to_dict())
    return d


class NNConv(nn.Module):
  """Edge-conditioned convolution with PyTorch Geometric's ``NNConv``
  semantics (``aggr="add"``, root weight, bias)::

    x'_i = x_i @ W_root + sum_{j -> i} x_j @ reshape(edge_net(e_ji), [in, out])
           + b

  ``W_root`` is drawn from U(-1/sqrt(in), 1/sqrt(in)), the bias is zero, the
  edge network's layers have PyTorch's default initialization.
  """

  def __init__(self, in_channels: int, out_channels: int,
               edge_features: int = 4, edge_hidden: int = 32):
    super().__init__()
    self.in_channels, self.out_channels = in_channels, out_channels
    self.edge_net = nn.Sequential(
        nn.Linear(edge_features, edge_hidden), nn.ReLU(),
        nn.Linear(edge_hidden, in_channels * out_channels))
    bound = 1.0 / math.sqrt(in_channels)
    self.root = nn.Parameter(
        torch.empty(in_channels, out_channels).uniform_(-bound, bound))
    self.bias = nn.Parameter(torch.zeros(out_channels))

  def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
              edge_attr: torch.Tensor) -> torch.Tensor:
    """``[nodes, in]`` features -> ``[nodes, out]``; `edge_index` is
    ``[2, edges]`` (row 0 the source, row 1 the target)."""
    src, dst = edge_index
    weights = self.edge_net(edge_attr).view(-1, self.in_channels,
                                            self.out_channels)
    # x_j @ W_ji for every edge, as a broadcast product summed over `in`
    # (on CPU about 3x faster than the equal batched matmul).
    messages = (x[src].unsqueeze(-1) * weights).sum(1)
    summed = x.new_zeros(x.shape[0], self.out_channels).index_add_(
        0, dst, messages)
    return x @ self.root + summed + self.bias


class Qm9Net(nn.Module):
  """NNConv(11 -> 32) - ReLU - NNConv(32 -> 16) - ReLU - add pool -
  Linear(16, 32) - ReLU - Linear(32, 1)."""

  def __init__(self, node_features: int = 11, edge_features: int = 4):
    super().__init__()
    self.conv1 = NNConv(node_features, 32, edge_features)
    self.conv2 = NNConv(32, 16, edge_features)
    self.head1 = nn.Linear(16, 32)
    self.head2 = nn.Linear(32, 1)

  def forward(self, graph: "Graphs") -> torch.Tensor:
    """One prediction per molecule, ``[molecules]``."""
    h = F.relu(self.conv1(graph.x, graph.edge_index, graph.edge_attr))
    h = F.relu(self.conv2(h, graph.edge_index, graph.edge_attr))
    pooled = h.new_zeros(graph.n_graphs, h.shape[1]).index_add_(
        0, graph.node_graph, h)
    return self.head2(F.relu(self.head1(pooled))).view(-1)


@dataclasses.dataclass
class Graphs:
  """Molecules batched PyG-style: nodes and edges concatenated.

  Attributes:
    x: float ``[nodes, 11]``.
    edge_index: int64 ``[2, edges]``, offset to the batch's node numbering.
    edge_attr: float ``[edges, 4]``.
    node_graph: int64 ``[nodes]``, the molecule of each node.
    y: float ``[molecules]`` targets.
  """

  x: torch.Tensor
  edge_index: torch.Tensor
  edge_attr: torch.Tensor
  node_graph: torch.Tensor
  y: torch.Tensor

  @property
  def n_graphs(self) -> int:
    """Molecules in the batch."""
    return int(self.y.shape[0])

  def to(self, dtype: torch.dtype) -> "Graphs":
    """The batch with its float tensors cast to `dtype`."""
    return dataclasses.replace(self, x=self.x.to(dtype),
                               edge_attr=self.edge_attr.to(dtype),
                               y=self.y.to(dtype))


def collate(molecules: Sequence[Any]) -> Graphs:
  """Batches ``qm9.data.Molecule`` objects into one :class:`Graphs`."""
  offsets = np.cumsum([0] + [m.n_nodes for m in molecules[:-1]])
  return Graphs(
      x=torch.from_numpy(np.concatenate([m.x for m in molecules])),
      edge_index=torch.from_numpy(np.concatenate(
          [m.edge_index.astype(np.int64) + o
           for m, o in zip(molecules, offsets)], axis=1)),
      edge_attr=torch.from_numpy(np.concatenate(
          [m.edge_attr for m in molecules])),
      node_graph=torch.from_numpy(np.concatenate(
          [np.full(m.n_nodes, k, np.int64)
           for k, m in enumerate(molecules)])),
      y=torch.tensor([m.y for m in molecules], dtype=torch.float32))


def load_qm9(path: Path, size: int = 100) -> list[Any]:
  """The first `size` characterized molecules, via ``qm9.data``."""
  from grokfast_jax.experiments.qm9 import data as data_lib
  return data_lib.load_molecules(path, size=size)


def train_qm9(cfg: Qm9Settings, molecules: Sequence[Any], *, name: str,
              verbose: bool = False) -> tuple[dict[str, Any], np.ndarray,
                                              np.ndarray]:
  """Trains one QM9 run.

  Args:
    cfg: the run's settings.
    molecules: `cfg.size` molecules (from :func:`load_qm9`).
    name: the run's name.
    verbose: print a line every `cfg.log_every` epochs to stderr.

  Returns:
    ``(results, train_loss, val_loss)``: the JSON-ready results (settings,
    min_val_loss / min_val_epoch over every epoch, final losses,
    total_seconds, seconds_per_1000_epochs (training and the per-epoch
    evaluation, as in the JAX runs; wall time), cpu_seconds_per_1000_epochs
    (the process's CPU time), a thinned history) and the full
    per-epoch curves. An epoch's train loss is the mean over its batches,
    each measured before its update and weighted by its size; its val loss
    the MSE over the test molecules after the epoch.
  """
  from grokfast_jax.experiments.qm9 import data as data_lib
  from grokfast_jax.experiments.qm9.train import history_epochs
  train_mols, test_mols = data_lib.split(molecules, cfg.seed)
  test = collate(test_mols)
  torch.manual_seed(cfg.seed)
  model = Qm9Net()
  scale_parameters_(model, cfg.init_scale)
  optimizer, grad_filter = make_optimizer(model, cfg.run, cfg.lr)
  n = len(train_mols)

  @torch.inference_mode()
  def mse(graphs: Graphs) -> float:
    return F.mse_loss(model(graphs), graphs.y).item()

  init_losses = (mse(collate(train_mols)), mse(test))
  train_curve = np.zeros(cfg.epochs, np.float32)
  val_curve = np.zeros(cfg.epochs, np.float32)
  t0, c0 = time.perf_counter(), time.process_time()
  for epoch in range(cfg.epochs):
    order = torch.randperm(n).tolist()
    total = 0.0
    for start in range(0, n, cfg.batch_size):
      batch = collate([train_mols[i] for i in order[start:start +
                                                      cfg.batch_size]])
      loss = F.mse_loss(model(batch), batch.y)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      if grad_filter is not None:
        grad_filter()
      optimizer.step()
      total += loss.item() * batch.n_graphs
    train_curve[epoch] = total / n
    val_curve[epoch] = mse(test)
    if verbose and (epoch + 1) % cfg.log_every == 0:
      print(f"{name} epoch {epoch + 1}: train MSE {train_curve[epoch]:.4g}, "
            f"val MSE {val_curve[epoch]:.4g}", file=sys.stderr, flush=True)
  seconds = time.perf_counter() - t0
  cpu_seconds = time.process_time() - c0

  upe = math.ceil(n / cfg.batch_size)
  finite = np.isfinite(val_curve)
  best = (int(np.argmin(np.where(finite, val_curve, np.inf))) + 1
          if finite.any() else None)
  keep = set(history_epochs(cfg.epochs, cfg.log_every))
  if best is not None:
    keep.add(best)
  history = []
  for epoch in sorted(keep):
    tl, vl = (init_losses if epoch == 0 else
              (float(train_curve[epoch - 1]), float(val_curve[epoch - 1])))
    history.append({"epoch": epoch, "step": epoch * upe, "train_loss": tl,
                    "val_loss": vl})
  results = {
      "experiment": "qm9-polarizability", "implementation": "pytorch",
      "run": name, "label": cfg.run.label, "settings": cfg.to_dict(),
      "train_gdb_ids": [m.gdb_id for m in train_mols],
      "test_gdb_ids": [m.gdb_id for m in test_mols],
      "min_val_loss": None if best is None else float(val_curve[best - 1]),
      "min_val_epoch": best,
      "min_val_step": None if best is None else best * upe,
      "final_epoch": cfg.epochs, "final_step": cfg.epochs * upe,
      "final_train_loss": float(train_curve[-1]),
      "final_val_loss": float(val_curve[-1]),
      "total_seconds": seconds,
      "seconds_per_1000_epochs": 1000 * seconds / cfg.epochs,
      "cpu_seconds_per_1000_epochs": 1000 * cpu_seconds / cfg.epochs,
      "environment": environment(), "history": history,
  }
  return results, train_curve, val_curve


def describe_qm9(res: dict[str, Any]) -> str:
  """One line: lowest and final test MSE, seconds per 1,000 epochs."""
  return (f"| qm9 | torch | {res['run']} | {res['label']} | lowest val MSE "
          f"{_fmt(res['min_val_loss'], '.4g', 'n/a')} at epoch "
          f"{_fmt(res['min_val_epoch'], ',', 'n/a')} | final "
          f"{res['final_val_loss']:.4g} at epoch {res['final_epoch']:,} | "
          f"{res['seconds_per_1000_epochs']:.1f} s "
          f"({_fmt(res.get('cpu_seconds_per_1000_epochs'), '.1f', 'n/a')} "
          "CPU s) / 1k epochs |")


def run_qm9(args: argparse.Namespace) -> int:
  """``qm9``: the chosen runs for every seed (every epoch's curves go to
  ``<run>.npz`` beside each result)."""
  molecules = load_qm9(Path(args.data or DATA / "qm9" / "qm9_first138.csv"))

  def train_one(seed: int, name: str, path: Path) -> dict[str, Any]:
    cfg = Qm9Settings(QM9_RUNS[name], seed=seed, epochs=args.epochs,
                      log_every=args.log_every)
    res, train_curve, val_curve = train_qm9(cfg, molecules, name=name,
                                            verbose=args.verbose)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path.with_suffix(".npz"), train_loss=train_curve,
                        val_loss=val_curve)
    return res

  return run_runs(args, "qm9", train_one, describe_qm9)


def qm9_parity(args: argparse.Namespace) -> int:
  """``qm9-parity``: the JAX and PyTorch QM9 trainings from equal parameters.

  Builds ``qm9.model.Qm9Net`` as ``qm9.train`` does, copies its initial
  parameters into :class:`Qm9Net` (flax kernels transposed; the root weight
  is ``[in, out]`` in both), trains both for `args.updates` updates of the
  chosen run on the same minibatches of the seed's training split (JAX:
  ``qm9.train.make_optimizer``, padded batches from ``qm9.model.
  gather_batch``, a plain jitted step), then compares the test predictions
  and the parameters; in float32, then both in float64.
  """
  import jax
  import optax
  from flax import nnx

  from grokfast_jax.experiments.qm9 import config as config_lib
  from grokfast_jax.experiments.qm9 import data as data_lib
  from grokfast_jax.experiments.qm9 import model as model_lib
  from grokfast_jax.experiments.qm9 import train as train_lib

  run = QM9_RUNS[args.run]
  jax_cfg = config_lib.paper_config(
      run.filter, weight_decay=run.weight_decay,
      **({"alpha": run.alpha, "lamb": run.lamb} if run.filter == "ema"
         else {}))
  molecules = load_qm9(Path(args.data or DATA / "qm9" / "qm9_first138.csv"),
                       jax_cfg.size)
  train_mols, test_mols = data_lib.split(molecules, args.seed)
  packed = data_lib.pack(train_mols)
  bs = jax_cfg.batch_size
  capacity = data_lib.batch_capacity(train_mols, bs)
  rng = np.random.default_rng(args.seed)
  batches = [rng.permutation(len(train_mols))[:bs]
             for _ in range(args.updates)]

  def once(dtype: str) -> dict[str, float]:
    tdtype = getattr(torch, dtype)
    init_key, _ = jax.random.split(jax.random.key(args.seed))
    jmodel = model_lib.Qm9Net(init_scale=jax_cfg.init_scale,
                              rngs=nnx.Rngs(params=init_key))
    graphdef, params = nnx.split(jmodel, nnx.Param)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    tmodel = Qm9Net().to(tdtype)
    pairs = _qm9_pairs(tmodel, params)
    with torch.no_grad():
      for tparam, jvalue, transpose in pairs:
        value = _from_jax(jvalue)
        tparam.copy_(value.T if transpose else value)

    tx = train_lib.make_optimizer(jax_cfg)
    opt_state = tx.init(params)

    def cast(batch):
      return batch._replace(x=batch.x.astype(dtype),
                            edge_attr=batch.edge_attr.astype(dtype),
                            y=batch.y.astype(dtype))

    @jax.jit
    def jax_step(params, opt_state, batch):
      grads = jax.grad(lambda p: model_lib.masked_mse(
          nnx.merge(graphdef, p)(batch), batch))(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    optimizer, grad_filter = make_optimizer(tmodel, run, jax_cfg.lr)
    for idx in batches:
      jbatch = cast(model_lib.gather_batch(packed, idx.astype(np.int32),
                                           *capacity))
      params, opt_state = jax_step(params, opt_state, jbatch)
      tbatch = collate([train_mols[i] for i in idx]).to(tdtype)
      loss = F.mse_loss(tmodel(tbatch), tbatch.y)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      if grad_filter is not None:
        grad_filter()
      optimizer.step()

    with torch.inference_mode():
      t_pred = tmodel(collate(test_mols).to(tdtype)).numpy()
    test_batch = cast(train_lib.full_batch(test_mols))
    j_pred = np.asarray(nnx.merge(graphdef, params)(test_batch))
    diffs = {"test predictions": relative_difference(t_pred, j_pred)}
    for (tparam, jvalue, transpose), pname in zip(
        _qm9_pairs(tmodel, params), _QM9_PARAM_NAMES):
      t = tparam.detach().numpy()
      diffs[pname] = relative_difference(t.T if transpose else t,
                                         np.asarray(jvalue[...]))
    return diffs

  return run_parity(
      f"qm9-parity: {args.run} ({run.label}), seed {args.seed}, "
      f"{args.updates} updates of batch {bs}", once)


_QM9_PARAM_NAMES = tuple(
    f"{layer} {part}"
    for layer in ("conv1", "conv2")
    for part in ("edge_in weight", "edge_in bias", "edge_out weight",
                 "edge_out bias", "root", "bias")) + (
    "head1 weight", "head1 bias", "head2 weight", "head2 bias")


def _qm9_pairs(tmodel: Qm9Net, params) -> list[tuple[torch.Tensor, Any,
                                                      bool]]:
  """``(torch parameter, JAX leaf, transpose?)`` in ``_QM9_PARAM_NAMES``
  order."""
  pairs = []
  for conv in ("conv1", "conv2"):
    tconv, jconv = getattr(tmodel, conv), params[conv]
    for k, part in ((0, "edge_in"), (2, "edge_out")):
      pairs += [(tconv.edge_net[k].weight, jconv[part]["kernel"], True),
                (tconv.edge_net[k].bias, jconv[part]["bias"], False)]
    pairs += [(tconv.root, jconv["root"], False),
              (tconv.bias, jconv["bias"], False)]
  for head in ("head1", "head2"):
    pairs += [(getattr(tmodel, head).weight, params[head]["kernel"], True),
              (getattr(tmodel, head).bias, params[head]["bias"], False)]
  return pairs


# -------------------------------------------------------------------- IMDb

IMDB_RUNS = {
    "baseline": RunSettings("none", 1.0),
    "weight-decay": RunSettings("none", 10.0),
    "grokfast-ema": RunSettings("ema", 10.0, alpha=0.98, lamb=2.0),
}


@dataclasses.dataclass(frozen=True)
class ImdbSettings:
  """One IMDb run (defaults: the reference's).

  Attributes:
    run: the filter and weight decay.
    seed: seeds the stratified split (grokfast_jax's ``imdb.data``), then
      ``torch.manual_seed`` the initialization and batch order.
    steps: updates to run at least, rounded up to whole epochs (10,000 ->
      10,005: 667 epochs of 15).
    seq_len: tokens per review (the first, left-padded).
    lr: AdamW learning rate.
    clip_norm: ``clip_grad_norm_`` bound, applied before the filter.
    init_scale: factor on every initial parameter.
    vocab_size: vocabulary words (ids 1..vocab_size, 0 the padding).
    embed_dim, hidden, num_layers: the model's shape.
    size: CSV rows used (750 train / 250 validation).
    batch_size: reviews per update (the remainder of an epoch is dropped).
  """

  run: RunSettings
  seed: int = 0
  steps: int = 10_000
  seq_len: int = 500
  lr: float = 3e-4
  clip_norm: float = 5.0
  init_scale: float = 6.0
  vocab_size: int = 1000
  embed_dim: int = 64
  hidden: int = 256
  num_layers: int = 2
  size: int = 1000
  batch_size: int = 50

  def to_dict(self) -> dict[str, Any]:
    """The settings as one flat dict."""
    d = dataclasses.asdict(self)
    d.update(d.pop("run"))
    d.update(self.run.to_dict())
    return d


class LSTMClassifier(nn.Module):
  """Embedding -> stacked LSTM (zero initial state) -> Linear(H, 1) ->
  sigmoid, on the last time step: the probability of a positive review."""

  def __init__(self, num_embeddings: int = 1001, embed_dim: int = 64,
               hidden: int = 256, num_layers: int = 2):
    super().__init__()
    self.embedding = nn.Embedding(num_embeddings, embed_dim)
    self.lstm = nn.LSTM(embed_dim, hidden, num_layers=num_layers,
                        batch_first=True)
    self.head = nn.Linear(hidden, 1)

  def forward(self, tokens: torch.Tensor) -> torch.Tensor:
    """``[batch, time]`` ids -> ``[batch]`` probabilities."""
    out, _ = self.lstm(self.embedding(tokens))
    return torch.sigmoid(self.head(out[:, -1])).view(-1)


def load_imdb(path: Path, cfg: ImdbSettings):
  """``(x_train, y_train, x_val, y_val)`` tensors from ``imdb.data``."""
  from grokfast_jax.experiments.imdb import data as data_lib
  ds = data_lib.load_dataset(path, size=cfg.size, seed=cfg.seed,
                             vocab_size=cfg.vocab_size, seq_len=cfg.seq_len)
  as_t = lambda a: torch.from_numpy(np.asarray(a, np.int64))
  return (as_t(ds.x_train), as_t(ds.y_train).float(), as_t(ds.x_val),
          as_t(ds.y_val).float())


def imdb_update(model: nn.Module, optimizer, grad_filter, clip_norm: float,
                x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
  """One reference update: BCE, backward, clip, filter, AdamW step.

  Returns:
    The batch's ``(loss, accuracy)`` before the update.
  """
  prob = model(x)
  loss = F.binary_cross_entropy(prob, y)
  optimizer.zero_grad(set_to_none=True)
  loss.backward()
  nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
  if grad_filter is not None:
    grad_filter()
  optimizer.step()
  return loss.item(), (prob.detach().round() == y).double().mean().item()


def train_imdb(cfg: ImdbSettings, data, *, name: str,
               verbose: bool = False) -> dict[str, Any]:
  """Trains one IMDb run; returns its settings, summary and history.

  One history entry per epoch: the epoch's mean training loss and accuracy
  over its batches (each before its update) and the loss and accuracy on
  all validation reviews after it (batches of `cfg.batch_size`); entry 0 is
  the initial model's validation figures.
  """
  x_train, y_train, x_val, y_val = data
  t0, c0 = time.perf_counter(), time.process_time()
  torch.manual_seed(cfg.seed)
  model = LSTMClassifier(cfg.vocab_size + 1, cfg.embed_dim, cfg.hidden,
                         cfg.num_layers)
  scale_parameters_(model, cfg.init_scale)
  optimizer, grad_filter = make_optimizer(model, cfg.run, cfg.lr)
  n = len(y_train)
  spe = n // cfg.batch_size
  epochs = -(-cfg.steps // spe)

  @torch.inference_mode()
  def validate() -> tuple[float, float]:
    loss, hits = 0.0, 0.0
    for start in range(0, len(y_val), cfg.batch_size):
      x, y = x_val[start:start + cfg.batch_size], y_val[start:start +
                                                         cfg.batch_size]
      prob = model(x)
      loss += F.binary_cross_entropy(prob, y, reduction="sum").item()
      hits += (prob.round() == y).sum().item()
    return loss / len(y_val), hits / len(y_val)

  val_loss, val_acc = validate()
  history = [{"step": 0, "epoch": 0, "train_loss": None, "train_acc": None,
              "val_loss": val_loss, "val_acc": val_acc,
              "seconds": time.perf_counter() - t0}]
  for epoch in range(1, epochs + 1):
    order = torch.randperm(n)
    losses, accs = [], []
    for k in range(spe):
      idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size]
      loss, acc = imdb_update(model, optimizer, grad_filter, cfg.clip_norm,
                              x_train[idx], y_train[idx])
      losses.append(loss)
      accs.append(acc)
    val_loss, val_acc = validate()
    history.append({"step": epoch * spe, "epoch": epoch,
                    "train_loss": float(np.mean(losses)),
                    "train_acc": float(np.mean(accs)), "val_loss": val_loss,
                    "val_acc": val_acc,
                    "seconds": time.perf_counter() - t0})
    if verbose:
      print(f"{name} epoch {epoch}: train acc {np.mean(accs):.3f}, val acc "
            f"{val_acc:.3f}, val loss {val_loss:.4f}", file=sys.stderr,
            flush=True)
  trained = history[1:]
  best = max(trained, key=lambda h: h["val_acc"])
  lowest = min(trained, key=lambda h: h["val_loss"])
  last = history[-1]
  return {
      "experiment": "imdb-lstm", "implementation": "pytorch", "run": name,
      "label": cfg.run.label, "settings": cfg.to_dict(),
      "best_val_acc": best["val_acc"], "best_val_acc_step": best["step"],
      "min_val_loss": lowest["val_loss"],
      "min_val_loss_step": lowest["step"],
      "final_step": last["step"], "final_val_acc": last["val_acc"],
      "final_val_loss": last["val_loss"], "total_seconds": last["seconds"],
      "seconds_per_1000_updates": 1000 * last["seconds"] / last["step"],
      "cpu_seconds_per_1000_updates": (1000 * (time.process_time() - c0)
                                       / last["step"]),
      "environment": environment(), "history": history,
  }


def describe_imdb(res: dict[str, Any]) -> str:
  """One line: best val accuracy, lowest val loss, final, speed."""
  return (f"| imdb | torch | {res['run']} | {res['label']} | best val acc "
          f"{res['best_val_acc']:.3f} at {res['best_val_acc_step']:,} | "
          f"lowest val loss {res['min_val_loss']:.4f} at "
          f"{res['min_val_loss_step']:,} | final {res['final_val_acc']:.3f} "
          f"/ {res['final_val_loss']:.4f} at {res['final_step']:,} | "
          f"{res['seconds_per_1000_updates']:.1f} s "
          f"({_fmt(res.get('cpu_seconds_per_1000_updates'), '.1f', 'n/a')} "
          "CPU s) / 1k updates |")


def run_imdb(args: argparse.Namespace) -> int:
  """``imdb``: the chosen runs for every seed (the data are tokenized once
  per seed, when its first run needs them)."""
  csv_path = Path(args.data or DATA / "imdb" / "IMDB-Dataset.csv")
  data: dict[int, Any] = {}

  def train_one(seed: int, name: str, path: Path) -> dict[str, Any]:
    cfg = ImdbSettings(IMDB_RUNS[name], seed=seed, steps=args.steps,
                       seq_len=args.seq_len)
    if seed not in data:
      data[seed] = load_imdb(csv_path, cfg)
    return train_imdb(cfg, data[seed], name=name, verbose=args.verbose)

  return run_runs(args, "imdb", train_one, describe_imdb,
                  suffix=f"-seq{args.seq_len}")


def imdb_parity(args: argparse.Namespace) -> int:
  """``imdb-parity``: the JAX and PyTorch IMDb trainings from equal parameters.

  Builds ``imdb.model.LSTMClassifier`` as ``imdb.train`` does (its LSTM
  parameters are in PyTorch's layout and gate order), copies them into
  :class:`LSTMClassifier` (the head's kernel transposed), trains both for
  `args.updates` updates of the chosen run on the same minibatches (JAX:
  ``imdb.train.make_optimizer``, clip -> filter -> AdamW, loss from the
  logit; PyTorch: sigmoid, ``BCELoss``, ``clip_grad_norm_``, filter, AdamW),
  then compares the validation probabilities and the parameters; in float32,
  then both in float64. Known small differences: ``clip_grad_norm_`` divides
  by ``norm + 1e-6``, optax by ``norm``; ``BCELoss`` on the sigmoid loses
  precision where the sigmoid saturates.
  """
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  from grokfast_jax.experiments.imdb import config as config_lib
  from grokfast_jax.experiments.imdb import train as train_lib

  run = IMDB_RUNS[args.run]
  cfg = ImdbSettings(run, seed=args.seed, seq_len=args.seq_len)
  jax_cfg = config_lib.paper_config(
      run.filter, weight_decay=run.weight_decay, seed=args.seed,
      seq_len=args.seq_len,
      **({"alpha": run.alpha, "lamb": run.lamb} if run.filter == "ema"
         else {}))
  x_train, y_train, x_val, _ = load_imdb(
      Path(args.data or DATA / "imdb" / "IMDB-Dataset.csv"), cfg)
  bs = cfg.batch_size
  rng = np.random.default_rng(args.seed)
  batches = [rng.permutation(len(y_train))[:bs] for _ in range(args.updates)]

  def once(dtype: str) -> dict[str, float]:
    tdtype = getattr(torch, dtype)
    init_key, _ = jax.random.split(jax.random.key(args.seed))
    jmodel = train_lib.build_model(jax_cfg, init_key)
    # nnx.Embed computes in its `dtype`, float32 by default (nnx.Linear in
    # its inputs' dtype): in float64 the embedding gradient would otherwise
    # be rounded to float32.
    jmodel.embedding.dtype = jnp.dtype(dtype)
    graphdef, params = nnx.split(jmodel, nnx.Param)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    tmodel = LSTMClassifier(cfg.vocab_size + 1, cfg.embed_dim, cfg.hidden,
                            cfg.num_layers).to(tdtype)
    with torch.no_grad():
      for tparam, jvalue, transpose in _imdb_pairs(tmodel, params):
        value = _from_jax(jvalue)
        tparam.copy_(value.T if transpose else value)

    tx = train_lib.make_optimizer(jax_cfg)
    opt_state = tx.init(params)

    @jax.jit
    def jax_step(params, opt_state, x, y):
      grads = jax.grad(lambda p: jnp.mean(train_lib.bce_with_logits(
          nnx.merge(graphdef, p)(x), y)))(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    optimizer, grad_filter = make_optimizer(tmodel, run, cfg.lr)
    for idx in batches:
      x, y = x_train[idx], y_train[idx]
      params, opt_state = jax_step(params, opt_state,
                                   jnp.asarray(x.numpy().astype(np.int32)),
                                   jnp.asarray(y.numpy().astype(dtype)))
      imdb_update(tmodel, optimizer, grad_filter, cfg.clip_norm, x,
                  y.to(tdtype))

    with torch.inference_mode():
      t_prob = tmodel(x_val).numpy()
    j_prob = np.asarray(jax.nn.sigmoid(nnx.merge(graphdef, params)(
        jnp.asarray(x_val.numpy().astype(np.int32)))))
    diffs = {"validation probabilities": relative_difference(t_prob, j_prob)}
    for (tparam, jvalue, transpose), pname in zip(
        _imdb_pairs(tmodel, params), _imdb_names(cfg.num_layers)):
      t = tparam.detach().numpy()
      diffs[pname] = relative_difference(t.T if transpose else t,
                                         np.asarray(jvalue[...]))
    return diffs

  return run_parity(
      f"imdb-parity: {args.run} ({run.label}), seed {args.seed}, seq_len "
      f"{args.seq_len}, {args.updates} updates of batch {bs}", once)


def _imdb_names(num_layers: int) -> list[str]:
  names = ["embedding"]
  for k in range(num_layers):
    names += [f"lstm{k} {p}" for p in ("w_ih", "w_hh", "b_ih", "b_hh")]
  return names + ["head weight", "head bias"]


def _imdb_pairs(tmodel: LSTMClassifier,
                params) -> list[tuple[torch.Tensor, Any, bool]]:
  """``(torch parameter, JAX leaf, transpose?)`` in :func:`_imdb_names`
  order."""
  pairs = [(tmodel.embedding.weight, params["embedding"]["embedding"], False)]
  for k in range(tmodel.lstm.num_layers):
    layer = params["lstm"][k]
    for part in ("ih", "hh"):
      pairs.append((getattr(tmodel.lstm, f"weight_{part}_l{k}"),
                    layer[f"w_{part}"], False))
    for part in ("ih", "hh"):
      pairs.append((getattr(tmodel.lstm, f"bias_{part}_l{k}"),
                    layer[f"b_{part}"], False))
  return pairs + [(tmodel.head.weight, params["head"]["kernel"], True),
                  (tmodel.head.bias, params["head"]["bias"], False)]


# ------------------------------------------------------------ command line


def _seeds(text: str) -> list[int]:
  return [int(s) for s in text.split(",") if s.strip()]


def _runs(text: str) -> list[str]:
  runs = [r.strip() for r in text.split(",") if r.strip()]
  bad = [r for r in runs if r not in RUNS]
  if bad or not runs:
    raise argparse.ArgumentTypeError(
        f"runs must be among {', '.join(RUNS)}, got {text!r}")
  return runs


def _common_args(p: argparse.ArgumentParser, data_help: str) -> None:
  p.add_argument("--data", default=None, help=data_help)
  p.add_argument("--threads", type=int, default=None,
                 help="torch.set_num_threads (default: PyTorch's own)")


def _task_parsers(sub, name: str, what: str, data_help: str, run, parity,
                  parity_updates: int):
  """Adds the `name` (runs) and `name`-parity subcommands and returns both
  parsers, for the task's own options."""
  p = sub.add_parser(name, help=what)
  _common_args(p, data_help)
  p.add_argument("--seeds", type=_seeds, default=[0])
  p.add_argument("--runs", type=_runs, default=list(RUNS))
  p.add_argument("--out", default="runs/torch_paper_tasks")
  p.add_argument("--force", action="store_true",
                 help="run again even where a result file exists")
  p.add_argument("--verbose", action="store_true")
  p.set_defaults(func=run)
  q = sub.add_parser(f"{name}-parity",
                     help=f"JAX vs PyTorch {what.split()[0]} from equal "
                     "parameters")
  _common_args(q, data_help)
  q.add_argument("--run", choices=RUNS, default="grokfast-ema")
  q.add_argument("--seed", type=int, default=0)
  q.add_argument("--updates", type=int, default=parity_updates)
  q.set_defaults(func=parity)
  return p, q


def build_parser() -> argparse.ArgumentParser:
  """The command line: one subcommand per task and per parity check."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)

  p, _ = _task_parsers(sub, "mnist", "MNIST runs (1,000 images, init x 8)",
                       f"MNIST folder (default {DATA / 'mnist'})", run_mnist,
                       mnist_parity, 20)
  p.add_argument("--steps", type=int, default=100_000)
  p.add_argument("--eval-every", type=int, default=100)

  qm9_csv = DATA / "qm9" / "qm9_first138.csv"
  p, _ = _task_parsers(sub, "qm9", "QM9 runs (100 molecules, init x 3)",
                       f"QM9 CSV (default {qm9_csv})", run_qm9, qm9_parity, 20)
  p.add_argument("--epochs", type=int, default=50_000)
  p.add_argument("--log-every", type=int, default=200,
                 help="history entry every this many epochs (the full "
                 "curves go to <run>.npz)")

  imdb_csv = DATA / "imdb" / "IMDB-Dataset.csv"
  p, q = _task_parsers(sub, "imdb", "IMDb runs (750 reviews, LSTM, init x 6)",
                       f"IMDb CSV (default {imdb_csv})", run_imdb,
                       imdb_parity, 10)
  p.add_argument("--steps", type=int, default=10_000,
                 help="updates, rounded up to whole epochs of 15")
  p.add_argument("--seq-len", type=int, default=500,
                 help="tokens per review (the reference's 500)")
  q.add_argument("--seq-len", type=int, default=50)
  return parser


def main(argv: Optional[list[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  if args.threads is not None:
    if args.threads < 1:
      raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
