"""Equations ``x op y mod p`` as token sequences, and their train/val split."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

OPS = ("*", "+", "-", "/")
SEQ_LEN = 4  # [x, op, y, =]


class Split(NamedTuple):
  """Inputs (int32 ``[n, 4]`` token ids) and labels (int32 ``[n]``)."""

  inputs: np.ndarray
  labels: np.ndarray


def _is_prime(n: int) -> bool:
  if n < 2:
    return False
  i = 2
  while i * i <= n:
    if n % i == 0:
      return False
    i += 1
  return True


def check_p(p: int) -> int:
  """Returns `p` if it is a prime >= 3, else raises ValueError."""
  if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
    raise ValueError(f"p must be a prime int >= 3, got {p!r}")
  if p < 3 or not _is_prime(int(p)):
    raise ValueError(f"p must be a prime >= 3, got {p}")
  return int(p)


def vocab_size(p: int) -> int:
  """Tokens: residues 0..p-1, then the operator (p) and "=" (p + 1)."""
  return p + 2


def answers(op: str, x: np.ndarray, y: np.ndarray, p: int) -> np.ndarray:
  """``x op y mod p`` elementwise; "/" is ``x * y^-1 mod p`` (y != 0).

  Args:
    op: one of "*", "+", "-", "/".
    x, y: integer arrays of residues.
    p: prime modulus.

  Returns:
    The answers, int64 in [0, p - 1].
  """
  x = np.asarray(x, np.int64)
  y = np.asarray(y, np.int64)
  if op == "*":
    return (x * y) % p
  if op == "+":
    return (x + y) % p
  if op == "-":
    return (x - y) % p
  if op == "/":
    if np.any(y % p == 0):
      raise ValueError("y must be nonzero mod p for op '/'")
    inverse = np.array([pow(int(v), p - 2, p) for v in range(p)], np.int64)
    return (x * inverse[y % p]) % p
  raise ValueError(f"op must be one of {OPS}, got {op!r}")


def make_equations(op: str = "*", p: int = 97) -> Split:
  """All equations ``x op y = ?`` for x in [0, p-1] and y in [1, p-1].

  Args:
    op: one of "*", "+", "-", "/".
    p: a prime >= 3.

  Returns:
    A :class:`Split` of ``p * (p - 1)`` sequences ``[x, op, y, =]`` (op is
    token p, "=" token p + 1) and their answers, ordered by x then y.

  Example:
    >>> make_equations("*", 97).inputs.shape
    (9312, 4)
  """
  if op not in OPS:
    raise ValueError(f"op must be one of {OPS}, got {op!r}")
  p = check_p(p)
  x, y = np.meshgrid(np.arange(p), np.arange(1, p), indexing="ij")
  x, y = x.ravel(), y.ravel()
  inputs = np.stack(
      [x, np.full_like(x, p), y, np.full_like(x, p + 1)], axis=1)
  return Split(inputs.astype(np.int32), answers(op, x, y, p).astype(np.int32))


def train_val_split(data: Split, train_fraction: float = 0.5,
                    seed: int = 0) -> tuple[Split, Split]:
  """A random split of `data`, the same for the same seed.

  Args:
    data: all equations.
    train_fraction: fraction in (0, 1) for training; the training split gets
      ``round(train_fraction * n)`` equations (at least 1, at most n - 1).
    seed: seed of the permutation.

  Returns:
    ``(train, val)``, disjoint and together the whole of `data`.
  """
  if not (isinstance(train_fraction, (float, int))
          and 0 < train_fraction < 1):
    raise ValueError(
        f"train_fraction must be in (0, 1), got {train_fraction!r}")
  n = len(data.labels)
  n_train = min(max(int(round(train_fraction * n)), 1), n - 1)
  perm = np.random.default_rng(seed).permutation(n)
  tr, va = perm[:n_train], perm[n_train:]
  return (Split(data.inputs[tr], data.labels[tr]),
          Split(data.inputs[va], data.labels[va]))


def make_splits(op: str = "*", p: int = 97, train_fraction: float = 0.5,
                seed: int = 0) -> tuple[Split, Split]:
  """:func:`make_equations` then :func:`train_val_split`."""
  return train_val_split(make_equations(op, p), train_fraction, seed)
