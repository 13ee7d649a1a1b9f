"""What the PyTorch restatements of the paper's tasks share.

The Grokfast paper's MNIST, QM9 and IMDb trainings are restated in plain
PyTorch, one module per task (:mod:`benchmarks.torch.mnist`,
:mod:`benchmarks.torch.qm9`, :mod:`benchmarks.torch.imdb`): benchmark-only
restatements, written from the published settings (see
``shared/notes/paper-experiments-fidelity.md``), of the reference training
that ``grokfast_jax.experiments.{mnist,qm9,imdb}`` reproduce in JAX. Each
reads the same data through the same loaders and runs the same three runs
per seed, so the benchmark table can tell a gap in our fidelity (JAX and
PyTorch disagree) from a published claim that does not hold (both agree, and
differ from the paper):

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

Each task module is a command with two subcommands. ``run`` trains the
chosen runs for every seed; results go to ``OUT/<task>/seed<k>/<run>.json``
(IMDb: ``<run>-seq<L>.json``; QM9 also ``<run>.npz`` with every epoch's
losses); a run whose file exists is skipped, so an interrupted benchmark
resumes. One markdown table row per run is printed. Timings are wall time
and, as ``cpu_seconds_per_*``, the process's CPU time (all threads), which
other load on the machine disturbs less.

``parity`` copies the JAX model's initial parameters into the PyTorch model,
trains both for a few updates on the same minibatches and prints the largest
relative differences of the outputs and the parameters, first in float32,
then with both in float64. In float32 they are rounding, magnified by Adam
wherever a gradient is zero up to rounding (1e-5 .. 1e-3 after 20 updates);
in float64 equal computations agree to about 1e-13, and a difference above
1e-9 fails the check (exit status 1)::

  python -m benchmarks.torch.mnist run --seeds 0 --steps 20000 \\
      --runs baseline,weight-decay,grokfast-ema --out runs/torch_paper_tasks \\
      --threads 2
  python -m benchmarks.torch.mnist parity
  python -m benchmarks.torch.qm9 run --seeds 0 --epochs 5000
  python -m benchmarks.torch.qm9 parity
  python -m benchmarks.torch.imdb run --seq-len 100 --steps 1005
  python -m benchmarks.torch.imdb parity

PyTorch is an optional, benchmark-only dependency (``pip install torch``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
from torch import nn

from grokfast_jax.experiments import common as exp_common

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
RUNS = ("baseline", "weight-decay", "grokfast-ema")
# Parity: float64 differences above this fail (equal computations agree to
# ~1e-13); float32 ones are shown against the looser one.
PARITY_TOLERANCE = 1e-9
FLOAT32_TOLERANCE = 1e-4


# ------------------------------------------------------------------ runs


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
  text = json.dumps(exp_common.to_json_safe(results), indent=2, allow_nan=False)
  path.write_text(text + "\n")


def environment() -> dict[str, Any]:
  """Versions and the thread count a timing depends on."""
  return {"python": platform.python_version(), "torch": torch.__version__,
          "numpy": np.__version__, "torch_threads": torch.get_num_threads()}


def fmt(value: Optional[float], spec: str, none: str = "never") -> str:
  """`value` formatted by `spec`, or `none` for None."""
  return none if value is None else format(value, spec)


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


# ---------------------------------------------------------------- parity


def from_jax(value) -> torch.Tensor:
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


def task_parser(description: str, what: str, data_help: str,
                run: Callable[[argparse.Namespace], int],
                parity: Callable[[argparse.Namespace], int],
                parity_updates: int):
  """One task's command line: ``run`` (the chosen runs for every seed) and
  ``parity`` (JAX vs PyTorch from equal parameters).

  Returns:
    ``(parser, run_parser, parity_parser)``, the last two for the task's own
    options.
  """
  parser = argparse.ArgumentParser(description=description)
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("run", help=what)
  _common_args(p, data_help)
  p.add_argument("--seeds", type=_seeds, default=[0])
  p.add_argument("--runs", type=_runs, default=list(RUNS))
  p.add_argument("--out", default="runs/torch_paper_tasks")
  p.add_argument("--force", action="store_true",
                 help="run again even where a result file exists")
  p.add_argument("--verbose", action="store_true")
  p.set_defaults(func=run)
  q = sub.add_parser("parity", help="JAX vs PyTorch from equal parameters")
  _common_args(q, data_help)
  q.add_argument("--run", choices=RUNS, default="grokfast-ema")
  q.add_argument("--seed", type=int, default=0)
  q.add_argument("--updates", type=int, default=parity_updates)
  q.set_defaults(func=parity)
  return parser, p, q


def main(parser: argparse.ArgumentParser,
         argv: Optional[list[str]] = None) -> int:
  """Parses `argv` with a task's `parser` and runs its subcommand."""
  args = parser.parse_args(argv)
  if args.threads is not None:
    if args.threads < 1:
      raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
  return args.func(args)
