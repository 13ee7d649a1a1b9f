"""Epochs to 95% in the EGD authors' setting: a one-hidden-layer MLP on
one-hot pairs, plain SGD, and what goes in front of it.

The setting of Pasand & Dohmatob (ICLR 2026)'s modular-arithmetic script:
``x`` and ``y`` one-hot (``2 n`` inputs), one hidden ReLU layer of 512 with
a bias, a linear read-out without one, He-normal weights
(``N(0, 2 / fan_in)``), cross-entropy plus ``0.5 * wd * (|W1|^2 + |W2|^2)``
in the loss (wd 1e-4), SGD at lr 0.7, batches of 512 (the last partial batch
of an epoch dropped), half of the pairs for training, the rest for test,
test accuracy after every epoch. A seed sets the split, the initialization
and the batch order. The pairs: every ``(x, y)`` in ``[0, n)^2`` (the
authors' data for ``*``), except ``y = 0`` for ``/``; ``s5`` composes the
120 permutations of five elements (the task's table).

Methods (each the library's transforms in front of ``optax.sgd(0.7)``; the
gradient they see includes the L2 term, as in the authors' code):

* ``sgd``: nothing in front.
* ``egd``: :func:`grokfast_jax.egalitarian` on the first layer's kernel
  (exact SVD, singular values clamped at 1e-6), as the authors apply it.
* ``egd-rsvd128``: the same from their randomized rank-128 sketch.
* ``grokfast-ema``, ``grokfast-ma``: :func:`grokfast_jax.grokfast_ema` and
  :func:`grokfast_jax.grokfast_ma` on every leaf, at their defaults.

All seeds of a cell train as one vmapped program. A cell reports the median
and range of the epochs (and updates) to 95% test accuracy over its seeds,
a seed that never got there counting as more than ``--max-epochs``.
Finished cells are appended to ``--json``; a cell already there is not run
again.

  OPENBLAS_NUM_THREADS=1 python -m benchmarks.studies.egd_mlp \\
      --json benchmarks/results/egd_mlp.jsonl

(One BLAS thread: on a small CPU shared with other jobs, LAPACK's threads
oversubscribe the cores and a 194 x 512 SVD took 20x longer here.)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import grokfast_jax as gj
from grokfast_jax.experiments.harness import _sweep
from grokfast_jax.experiments.modular import data as data_lib

OPS = ("*", "+", "-", "/", "x^2+xy+y^2", "s5")
METHODS = ("sgd", "egd", "egd-rsvd128", "grokfast-ema", "grokfast-ma")
HIDDEN, LR, WD, BATCH, P = 512, 0.7, 1e-4, 512, 97


def pairs(op: str, p: int = P) -> tuple[np.ndarray, np.ndarray, int]:
  """(x, y) pairs, their answers, and the number of values n."""
  n = data_lib.n_elements(op, p)
  x, y = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  x, y = x.ravel(), y.ravel()
  if op == "/":
    x, y = x[y != 0], y[y != 0]
  return np.stack([x, y], 1), data_lib.answers(op, x, y, p), n


def split(xy: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Train and test indices: half of a seeded permutation each."""
  perm = np.random.default_rng(seed).permutation(len(xy))
  k = len(xy) // 2
  return perm[:k], perm[k:]


def init(key: jax.Array, n: int) -> dict:
  k1, k2 = jax.random.split(key)
  return {
    "w1": jax.random.normal(k1, (2 * n, HIDDEN)) * math.sqrt(2 / (2 * n)),
    "b1": jnp.zeros((HIDDEN,)),
    "w2": jax.random.normal(k2, (HIDDEN, n)) * math.sqrt(2 / HIDDEN),
  }


def logits(params: dict, xy: jax.Array, n: int) -> jax.Array:
  # One-hot x in the first n inputs, y in the next n: rows of w1 picked.
  h = params["w1"][xy[:, 0]] + params["w1"][n + xy[:, 1]] + params["b1"]
  return jax.nn.relu(h) @ params["w2"]


def loss(params: dict, xy: jax.Array, y: jax.Array, n: int) -> jax.Array:
  ce = optax.softmax_cross_entropy_with_integer_labels(logits(params, xy, n), y)
  l2 = jnp.sum(params["w1"] ** 2) + jnp.sum(params["w2"] ** 2)
  return ce.mean() + 0.5 * WD * l2


def optimizer(method: str) -> optax.GradientTransformation:
  first_layer = {"w1": True, "b1": False, "w2": False}
  front = {
    "sgd": optax.identity(),
    "egd": gj.egalitarian(mask=first_layer),
    "egd-rsvd128": gj.egalitarian(rank=128, mask=first_layer),
    "grokfast-ema": gj.grokfast_ema(),
    "grokfast-ma": gj.grokfast_ma(),
  }[method]
  return optax.chain(front, optax.sgd(LR))


def run_cell(
  op: str, method: str, seeds: list[int], max_epochs: int, progress: bool = True
) -> dict:
  """One cell: every seed of `seeds` for up to `max_epochs` epochs."""
  xy, ans, n = pairs(op)
  splits = [split(xy, s) for s in seeds]
  tr = np.stack([t for t, _ in splits])
  te = np.stack([v for _, v in splits])
  xy_d, ans_d = jnp.asarray(xy), jnp.asarray(ans)
  n_batches = tr.shape[1] // BATCH
  tx = optimizer(method)

  def member_init(key):
    params = init(key, n)
    return params, tx.init(params)

  def member_epoch(carry, tr_idx, key):
    order = jax.random.permutation(key, tr_idx)[: n_batches * BATCH]

    def step(carry, idx):
      params, opt = carry
      g = jax.grad(loss)(params, xy_d[idx], ans_d[idx], n)
      upd, opt = tx.update(g, opt, params)
      return (optax.apply_updates(params, upd), opt), None

    carry, _ = jax.lax.scan(step, carry, order.reshape(n_batches, BATCH))
    return carry

  def member_acc(params, te_idx):
    pred = jnp.argmax(logits(params, xy_d[te_idx], n), -1)
    return jnp.mean(pred == ans_d[te_idx])

  init_all = jax.jit(jax.vmap(member_init))
  epoch_all = jax.jit(jax.vmap(member_epoch))
  acc_all = jax.jit(jax.vmap(member_acc))
  keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])
  keys = jax.random.wrap_key_data(keys)
  carry = init_all(keys)
  tr_d, te_d = jnp.asarray(tr), jnp.asarray(te)
  reached: list = [None] * len(seeds)
  best = np.zeros(len(seeds))
  t0 = time.perf_counter()
  for epoch in range(1, max_epochs + 1):
    ekeys = jax.vmap(lambda k, e=epoch: jax.random.fold_in(k, e))(keys)
    carry = epoch_all(carry, tr_d, ekeys)
    acc = np.asarray(acc_all(carry[0], te_d))
    best = np.maximum(best, acc)
    for i, a in enumerate(acc):
      if reached[i] is None and a >= 0.95:
        reached[i] = epoch
    if all(r is not None for r in reached):
      break
    if progress and epoch % 25 == 0:
      print(f"  {op} {method} epoch {epoch}: test acc {np.round(acc, 3)}, "
            f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
  seconds = time.perf_counter() - t0
  median = _sweep.median_of(reached)
  return {
    "op": op,
    "method": method,
    "seeds": seeds,
    "max_epochs": max_epochs,
    "updates_per_epoch": n_batches,
    "epochs_to_95": reached,
    "median_epochs": median,
    "reached": sum(r is not None for r in reached),
    "best_test_acc": [round(float(b), 4) for b in best],
    "epochs_run": epoch,
    "seconds": round(seconds, 1),
  }


def fmt_cell(c: dict) -> str:
  r = [e for e in c["epochs_to_95"] if e is not None]
  upe = c["updates_per_epoch"]
  if c["median_epochs"] is None:
    med = f"never (>{c['max_epochs']})" if not r else f">{c['max_epochs']}"
  else:
    med = f"{c['median_epochs']:g} ({c['median_epochs'] * upe:g} updates)"
  span = f"{min(r)}-{max(r)}" if r else "-"
  if r and len(r) < len(c["epochs_to_95"]):
    span += f", >{c['max_epochs']}"
  return (
    f"| `{c['op']}` | {c['method']} | {med} | {span} | "
    f"{c['reached']}/{len(c['seeds'])} | {max(c['best_test_acc']):.3f} | "
    f"{c['seconds']:.0f} |"
  )


def main(argv: list[str] | None = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
  ap.add_argument("--methods", nargs="+", default=list(METHODS),
                  choices=METHODS)
  ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
  ap.add_argument("--max-epochs", type=int, default=300)
  ap.add_argument("--json", type=Path, default=None,
                  help="append each finished cell here; skip cells there")
  args = ap.parse_args(argv)
  done = {}
  if args.json and args.json.exists():
    for line in args.json.read_text().splitlines():
      c = json.loads(line)
      done[(c["op"], c["method"], tuple(c["seeds"]), c["max_epochs"])] = c
  cells = []
  for op in args.ops:
    for method in args.methods:
      key = (op, method, tuple(args.seeds), args.max_epochs)
      if key in done:
        cell = done[key]
      else:
        cell = run_cell(op, method, args.seeds, args.max_epochs)
        if args.json:
          with args.json.open("a") as f:
            f.write(json.dumps(cell) + "\n")
      cells.append(cell)
      print(fmt_cell(cell), flush=True)
  print()
  print("| task | method | median epochs to 95% | range | reached | "
        "best test acc | seconds |")
  print("|---|---|---|---|---|---|---|")
  for c in cells:
    print(fmt_cell(c))
  print(f"\n{jax.devices()[0].platform}, {jax.__version__}")


if __name__ == "__main__":
  main()
