"""The Grokfast paper's IMDb training restated in plain PyTorch.

IMDb: ``imdb.data.load_dataset`` (750 / 250 stratified, vocabulary 1,000,
``--seq-len`` tokens, left-padded); Embedding(1001, 64) -> LSTM(64, 256, 2
layers) -> Linear(256, 1) -> sigmoid on the last step, every parameter x 6;
``BCELoss``; ``clip_grad_norm_(5.0)``, then the filter, then AdamW lr 3e-4;
batches of 50 (15 updates an epoch); loss and accuracy on all 250
validation reviews after every epoch. Runs: baseline wd 1, weight-decay
wd 10, grokfast-ema alpha 0.98 lamb 2 wd 10. What the three tasks share (the
runs, the filter, seeds, result files, the parity check) is in
:mod:`benchmarks.torch.common`::

  python -m benchmarks.torch.imdb run --seq-len 100 --steps 1005
  python -m benchmarks.torch.imdb parity

PyTorch is an optional, benchmark-only dependency (``pip install torch``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.torch import common
from benchmarks.torch.common import (DATA, RunSettings, environment, fmt,
                                     from_jax, make_optimizer,
                                     relative_difference, run_parity,
                                     run_runs, scale_parameters_)

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
          f"({fmt(res.get('cpu_seconds_per_1000_updates'), '.1f', 'n/a')} "
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

  Builds ``imdb.model.LSTMClassifier`` as ``imdb.training`` does (its LSTM
  parameters are in PyTorch's layout and gate order), copies them into
  :class:`LSTMClassifier` (the head's kernel transposed), trains both for
  `args.updates` updates of the chosen run on the same minibatches (JAX:
  ``imdb.training.make_optimizer``, clip -> filter -> AdamW, loss from the
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
  from grokfast_jax.experiments.imdb import training as train_lib

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
        value = from_jax(jvalue)
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


def build_parser() -> argparse.ArgumentParser:
  """``run`` and ``parity`` with IMDb's own options."""
  imdb_csv = DATA / "imdb" / "IMDB-Dataset.csv"
  parser, p, q = common.task_parser(
      __doc__.splitlines()[0], "IMDb runs (750 reviews, LSTM, init x 6)",
      f"IMDb CSV (default {imdb_csv})", run_imdb, imdb_parity, 10)
  p.add_argument("--steps", type=int, default=10_000,
                 help="updates, rounded up to whole epochs of 15")
  p.add_argument("--seq-len", type=int, default=500,
                 help="tokens per review (the reference's 500)")
  q.add_argument("--seq-len", type=int, default=50)
  return parser


def main(argv: Optional[list[str]] = None) -> int:
  return common.main(build_parser(), argv)


if __name__ == "__main__":
  sys.exit(main())
