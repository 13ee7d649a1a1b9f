"""PyTorch eager version of the Grokfast algorithmic task (benchmark only).

An independent restatement, written from the published settings, of the
training that ``grokfast_jax.experiments.modular`` runs in JAX, so that the
two can be timed side by side (``python -m benchmarks.micro.speed_vs_torch``):

- data: ``x * y mod 97`` for x in [0, 96], y in [1, 96]; tokens
  ``[x, op, y, =]`` (op = 97, "=" = 98, vocabulary 99); a random 50/50 split
  (the same permutation, ``numpy.random.default_rng(seed)``, as the JAX
  experiment, so both train on the same examples);
- model: decoder-only transformer, 2 blocks of width 128, 4 heads, 4x GELU
  MLP, learned token and position embeddings, causal self-attention
  (``nn.MultiheadAttention``), block ``h = LN1(h); h = h + Attn(h);
  h = h + MLP(LN2(h))``, final LayerNorm, bias-free head, cross-entropy on
  the last position; PyTorch's default initialization;
- optimizer: Adam (lr 1e-3, betas (0.9, 0.98)) with L2 weight decay added to
  the gradient (``torch.optim.Adam(weight_decay=...)``) after the Grokfast
  filter, learning-rate factor ``min(update / 10, 1)`` (``LambdaLR``);
- Grokfast-EMA applied to ``p.grad`` between ``backward()`` and ``step()``:
  ``mu_1 = g_1``, ``mu_t = alpha * mu_{t-1} + (1 - alpha) * g_t``,
  ``g_t += lamb * mu_t``;
- batches of 512 reshuffled every epoch, the last partial batch kept (an
  epoch is 10 updates), validation on the whole validation split after each
  epoch.

PyTorch is an optional, benchmark-only dependency (``pip install
torch==2.13.0``). Run as a script for one training run:

  python -m benchmarks.torch.modular --filter ema --max-steps 3000 \\
      --stop-at-target
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass(frozen=True)
class TorchConfig:
  """Settings of one run (defaults: the paper's Grokfast-EMA run).

  Attributes:
    filter: "none" (plain Adam) or "ema" (Grokfast-EMA).
    alpha: EMA momentum.
    lamb: amplification of the slow gradient.
    weight_decay: coupled L2 weight decay of Adam.
    p: prime modulus.
    train_fraction: fraction of the equations used for training.
    seed: seed of the split, the initialization and the batch order.
    batch_size: examples per update.
    lr, beta1, beta2, eps: Adam constants.
    warmup_steps: learning-rate factor ``min(update / warmup_steps, 1)``.
    depth, width, heads, mlp_ratio: transformer shape.
  """

  filter: str = "ema"
  alpha: float = 0.98
  lamb: float = 2.0
  weight_decay: float = 0.005
  p: int = 97
  train_fraction: float = 0.5
  seed: int = 0
  batch_size: int = 512
  lr: float = 1e-3
  beta1: float = 0.9
  beta2: float = 0.98
  eps: float = 1e-8
  warmup_steps: int = 10
  depth: int = 2
  width: int = 128
  heads: int = 4
  mlp_ratio: int = 4

  def __post_init__(self):
    if self.filter not in ("none", "ema"):
      raise ValueError(f"filter must be 'none' or 'ema', got {self.filter!r}")
    if not 0 < self.train_fraction < 1:
      raise ValueError(
          f"train_fraction must be in (0, 1), got {self.train_fraction!r}")
    if self.batch_size < 1 or self.warmup_steps < 1:
      raise ValueError("batch_size and warmup_steps must be >= 1, got "
                       f"{self.batch_size}, {self.warmup_steps}")


# -------------------------------------------------------------------- data

def make_splits(p: int, train_fraction: float,
                seed: int) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                    tuple[torch.Tensor, torch.Tensor]]:
  """All ``[x, op, y, =] -> x * y mod p`` equations, split at random.

  Args:
    p: prime modulus.
    train_fraction: fraction of the equations for training.
    seed: seed of the split's permutation.

  Returns:
    ``((train_x, train_y), (val_x, val_y))``: int64 tensors ``[n, 4]`` and
    ``[n]``.
  """
  x = np.repeat(np.arange(p), p - 1)
  y = np.tile(np.arange(1, p), p)
  inputs = np.stack([x, np.full_like(x, p), y, np.full_like(x, p + 1)], 1)
  labels = (x * y) % p
  n = len(labels)
  n_train = min(max(int(round(train_fraction * n)), 1), n - 1)
  perm = np.random.default_rng(seed).permutation(n)
  tr, va = perm[:n_train], perm[n_train:]
  as_t = lambda a: torch.as_tensor(a, dtype=torch.long)
  return ((as_t(inputs[tr]), as_t(labels[tr])),
          (as_t(inputs[va]), as_t(labels[va])))


# ------------------------------------------------------------------- model

class Block(nn.Module):
  """``h = LN1(h); h = h + Attn(h); h = h + MLP(LN2(h))``."""

  def __init__(self, width: int, heads: int, mlp_ratio: int):
    super().__init__()
    self.ln1 = nn.LayerNorm(width)
    self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
    self.ln2 = nn.LayerNorm(width)
    self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                             nn.Linear(mlp_ratio * width, width))

  def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    h = self.ln1(h)
    a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
    h = h + a
    return h + self.mlp(self.ln2(h))


class Transformer(nn.Module):
  """Decoder-only transformer; returns the last position's logits."""

  def __init__(self, vocab: int, seq_len: int, depth: int, width: int,
               heads: int, mlp_ratio: int):
    super().__init__()
    self.tok = nn.Embedding(vocab, width)
    self.pos = nn.Embedding(seq_len, width)
    self.blocks = nn.ModuleList(
        [Block(width, heads, mlp_ratio) for _ in range(depth)])
    self.ln_f = nn.LayerNorm(width)
    self.head = nn.Linear(width, vocab, bias=False)
    # True above the diagonal: position i may not attend to j > i.
    self.register_buffer(
        "mask", torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1),
        persistent=False)

  def forward(self, tokens: torch.Tensor) -> torch.Tensor:
    t = tokens.shape[1]
    h = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))
    mask = self.mask[:t, :t]
    for block in self.blocks:
      h = block(h, mask)
    return self.head(self.ln_f(h))[:, -1]


# ----------------------------------------------------------------- filter

class GrokfastEMA:
  """Grokfast-EMA on ``p.grad``: call between ``backward()`` and ``step()``.

  ``mu_1 = g_1``; ``mu_t = alpha * mu_{t-1} + (1 - alpha) * g_t``; the
  gradient becomes ``g_t + lamb * mu_t``.
  """

  def __init__(self, params, alpha: float = 0.98, lamb: float = 2.0):
    self.params = [q for q in params if q.requires_grad]
    self.alpha, self.lamb = alpha, lamb
    self.mu: Optional[list[torch.Tensor]] = None

  @torch.no_grad()
  def __call__(self) -> None:
    grads = [q.grad for q in self.params]
    if self.mu is None:
      self.mu = [g.detach().clone() for g in grads]
    else:
      for mu, g in zip(self.mu, grads):
        mu.mul_(self.alpha).add_(g, alpha=1.0 - self.alpha)
    for mu, g in zip(self.mu, grads):
      g.add_(mu, alpha=self.lamb)


# ---------------------------------------------------------------- trainer

class TorchTrainer:
  """One run's model, optimizer, filter and data; trains epoch by epoch.

  Example:
    >>> trainer = TorchTrainer(TorchConfig(p=11))
    >>> entry = trainer.run_epoch()
    >>> entry["step"], trainer.steps_per_epoch
    (1, 1)
  """

  def __init__(self, cfg: TorchConfig):
    """Builds data, model (seeded by ``cfg.seed``), Adam and the filter."""
    self.cfg = cfg
    (self.train_x, self.train_y), (self.val_x, self.val_y) = make_splits(
        cfg.p, cfg.train_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)
    self.model = Transformer(cfg.p + 2, 4, cfg.depth, cfg.width, cfg.heads,
                             cfg.mlp_ratio)
    self.optimizer = torch.optim.Adam(
        self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps, weight_decay=cfg.weight_decay)
    warmup = cfg.warmup_steps
    self.scheduler = torch.optim.lr_scheduler.LambdaLR(
        self.optimizer, lambda update: min(update / warmup, 1.0))
    self.grad_filter = (GrokfastEMA(self.model.parameters(), cfg.alpha,
                                    cfg.lamb)
                        if cfg.filter == "ema" else None)
    self.generator = torch.Generator().manual_seed(cfg.seed + 1)
    n = len(self.train_y)
    self.batch_size = min(cfg.batch_size, n)
    self.steps_per_epoch = math.ceil(n / self.batch_size)
    self.step = 0
    self.epoch = 0

  def train_epoch(self) -> tuple[float, float]:
    """One reshuffled pass over the training split.

    Returns:
      ``(mean loss, accuracy)`` over the epoch, each batch measured before
      its update.
    """
    self.model.train()
    n = len(self.train_y)
    perm = torch.randperm(n, generator=self.generator)
    loss_sum, correct = 0.0, 0
    for start in range(0, n, self.batch_size):
      idx = perm[start:start + self.batch_size]
      x, y = self.train_x[idx], self.train_y[idx]
      logits = self.model(x)
      loss = F.cross_entropy(logits, y)
      self.optimizer.zero_grad(set_to_none=True)
      loss.backward()
      if self.grad_filter is not None:
        self.grad_filter()
      self.optimizer.step()
      self.scheduler.step()
      self.step += 1
      loss_sum += loss.item() * len(idx)
      correct += int((logits.detach().argmax(-1) == y).sum())
    self.epoch += 1
    return loss_sum / n, correct / n

  @torch.inference_mode()
  def evaluate(self) -> tuple[float, float]:
    """``(mean loss, accuracy)`` on the validation split, batches of 512."""
    self.model.eval()
    n = len(self.val_y)
    loss_sum, correct = 0.0, 0
    for start in range(0, n, self.batch_size):
      x = self.val_x[start:start + self.batch_size]
      y = self.val_y[start:start + self.batch_size]
      logits = self.model(x)
      loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
      correct += int((logits.argmax(-1) == y).sum())
    return loss_sum / n, correct / n

  def run_epoch(self) -> dict[str, Any]:
    """Trains one epoch, then validates; returns the history entry."""
    train_loss, train_acc = self.train_epoch()
    val_loss, val_acc = self.evaluate()
    return {"step": self.step, "epoch": self.epoch, "train_loss": train_loss,
            "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc}


def run(cfg: TorchConfig, max_steps: int, *, stop_at_target: bool = False,
        target: float = 0.95, verbose: bool = False) -> dict[str, Any]:
  """Trains whole epochs up to `max_steps` updates (or to `target`).

  Args:
    cfg: the settings.
    max_steps: updates to run at most (rounded up to whole epochs).
    stop_at_target: stop after the first validation reaching `target`.
    target: validation accuracy that counts as grokked.
    verbose: print one line per 10 epochs.

  Returns:
    ``{"settings", "history", "steps_to_target", "seconds_to_target",
    "seconds_total", "torch_threads"}``; `seconds` in the history count from
    the start of the run (building the model included).
  """
  t0 = time.perf_counter()
  trainer = TorchTrainer(cfg)
  history, hit = [], None
  while trainer.step < max_steps:
    entry = trainer.run_epoch()
    entry["seconds"] = time.perf_counter() - t0
    history.append(entry)
    if verbose and entry["epoch"] % 10 == 0:
      print(f"step {entry['step']}: train acc {entry['train_acc']:.3f}, "
            f"val acc {entry['val_acc']:.3f}", file=sys.stderr, flush=True)
    if hit is None and entry["val_acc"] >= target:
      hit = entry
      if stop_at_target:
        break
  return {"settings": dataclasses.asdict(cfg), "history": history,
          "steps_to_target": None if hit is None else hit["step"],
          "seconds_to_target": None if hit is None else hit["seconds"],
          "seconds_total": history[-1]["seconds"] if history else 0.0,
          "torch_threads": torch.get_num_threads()}


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--filter", default="ema", choices=("none", "ema"))
  parser.add_argument("--alpha", type=float, default=0.98)
  parser.add_argument("--lamb", type=float, default=2.0)
  parser.add_argument("--weight-decay", type=float, default=None,
                      help="default: 0.005 with ema, 0 with none")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--max-steps", type=int, default=3000)
  parser.add_argument("--stop-at-target", action="store_true")
  args = parser.parse_args(argv)
  wd = args.weight_decay
  if wd is None:
    wd = 0.005 if args.filter == "ema" else 0.0
  cfg = TorchConfig(filter=args.filter, alpha=args.alpha, lamb=args.lamb,
                    weight_decay=wd, seed=args.seed)
  result = run(cfg, args.max_steps, stop_at_target=args.stop_at_target,
               verbose=True)
  last = result["history"][-1]
  if result["steps_to_target"] is not None:
    print(f"torch {cfg.filter}: 95% val acc at step "
          f"{result['steps_to_target']:,} in "
          f"{result['seconds_to_target']:.1f} s")
  print(f"torch {cfg.filter}: final val acc {last['val_acc']:.3f} at step "
        f"{last['step']:,}, {result['seconds_total']:.1f} s, "
        f"{result['torch_threads']} threads")
  return 0


if __name__ == "__main__":
  sys.exit(main())
