"""The Grokfast paper's QM9 training restated in plain PyTorch.

QM9: the first 100 characterized molecules (``qm9.data.load_molecules``),
split 50 / 50 by ``qm9.data.split``; two NNConv layers (PyTorch Geometric's
semantics, restated without it: edge networks Linear(4, 32)-ReLU-
Linear(32, in * out), root weight U(-1/sqrt(in), 1/sqrt(in)), zero bias,
messages summed at the target node), ReLU, global add pooling,
Linear(16, 32)-ReLU-Linear(32, 1), every parameter x 3; MSE of ``alpha``;
AdamW lr 1e-3; batches of 32 reshuffled every epoch, the last one (18) kept;
the test MSE after every epoch. Runs: baseline wd 0, weight-decay wd 0.01,
grokfast-ema alpha 0.9 lamb 1 wd 0.01. What the three tasks share (the runs,
the filter, seeds, result files, the parity check) is in
:mod:`benchmarks.torch.common`::

  python -m benchmarks.torch.qm9 run --seeds 0 --epochs 5000
  python -m benchmarks.torch.qm9 parity

PyTorch is an optional, benchmark-only dependency (``pip install torch``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
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
  from grokfast_jax.experiments.qm9.training import history_epochs
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
          f"{fmt(res['min_val_loss'], '.4g', 'n/a')} at epoch "
          f"{fmt(res['min_val_epoch'], ',', 'n/a')} | final "
          f"{res['final_val_loss']:.4g} at epoch {res['final_epoch']:,} | "
          f"{res['seconds_per_1000_epochs']:.1f} s "
          f"({fmt(res.get('cpu_seconds_per_1000_epochs'), '.1f', 'n/a')} "
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

  Builds ``qm9.model.Qm9Net`` as ``qm9.training`` does, copies its initial
  parameters into :class:`Qm9Net` (flax kernels transposed; the root weight
  is ``[in, out]`` in both), trains both for `args.updates` updates of the
  chosen run on the same minibatches of the seed's training split (JAX:
  ``qm9.training.make_optimizer``, padded batches from ``qm9.model.
  gather_batch``, a plain jitted step), then compares the test predictions
  and the parameters; in float32, then both in float64.
  """
  import jax
  import optax
  from flax import nnx

  from grokfast_jax.experiments.qm9 import config as config_lib
  from grokfast_jax.experiments.qm9 import data as data_lib
  from grokfast_jax.experiments.qm9 import model as model_lib
  from grokfast_jax.experiments.qm9 import training as train_lib

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
        value = from_jax(jvalue)
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
    test_batch = cast(model_lib.full_batch(test_mols))
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


def build_parser() -> argparse.ArgumentParser:
  """``run`` and ``parity`` with QM9's own options."""
  qm9_csv = DATA / "qm9" / "qm9_first138.csv"
  parser, p, _ = common.task_parser(
      __doc__.splitlines()[0], "QM9 runs (100 molecules, init x 3)",
      f"QM9 CSV (default {qm9_csv})", run_qm9, qm9_parity, 20)
  p.add_argument("--epochs", type=int, default=50_000)
  p.add_argument("--log-every", type=int, default=200,
                 help="history entry every this many epochs (the full "
                 "curves go to <run>.npz)")
  return parser


def main(argv: Optional[list[str]] = None) -> int:
  return common.main(build_parser(), argv)


if __name__ == "__main__":
  sys.exit(main())
