"""Equations ``x op y mod p`` (and compositions in S5) as token sequences,
and their train/val split.

The four operations of the Grokfast reference ("*", "+", "-", "/") pair
every x in [0, p) with every y in [1, p), as the reference does. The
polynomials of Power et al. (2022) pair all x, y in [0, p), as that paper
does. "s5" composes the 120 permutations of five elements (all 14,400
pairs; ``(x o y)(i) = x(y(i))``, permutations numbered in lexicographic
order); it ignores p.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import numpy as np

REFERENCE_OPS = ("*", "+", "-", "/")
POLYNOMIAL_OPS = {  # binary operations of Power et al. (2022)
  "x^2+y^2": lambda x, y: x * x + y * y,
  "x^2+xy+y^2": lambda x, y: x * x + x * y + y * y,
  "x^2+xy+y^2+x": lambda x, y: x * x + x * y + y * y + x,
  "x^3+xy": lambda x, y: x * x * x + x * y,
  "x^3+xy^2+y": lambda x, y: x * x * x + x * y * y + y,
}
OPS = REFERENCE_OPS + tuple(POLYNOMIAL_OPS) + ("s5",)
SEQ_LEN = 4  # [x, op, y, =]
S5_SIZE = 120


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


def n_elements(op: str, p: int) -> int:
  """How many values x, y and the answer take: 120 for "s5", else p."""
  return S5_SIZE if op == "s5" else p


def vocab_size(p: int, op: str = "*") -> int:
  """Tokens: the elements 0..n-1 (:func:`n_elements`), then the operator
  (n) and "=" (n + 1)."""
  return n_elements(op, p) + 2


@functools.lru_cache(maxsize=1)
def s5_table() -> np.ndarray:
  """(120, 120) int64: ``table[x, y]`` is the index of ``x o y``, the
  permutation ``i -> x(y(i))``, permutations in lexicographic order."""
  perms = list(itertools.permutations(range(5)))
  index = {q: i for i, q in enumerate(perms)}
  table = [
    [index[tuple(x[y[i]] for i in range(5))] for y in perms] for x in perms
  ]
  return np.asarray(table, np.int64)


def answers(op: str, x: np.ndarray, y: np.ndarray, p: int) -> np.ndarray:
  """``x op y mod p`` elementwise; "/" is ``x * y^-1 mod p`` (y != 0);
  "s5" composes permutation indices (p unused).

  Args:
    op: one of :data:`OPS`.
    x, y: integer arrays of residues (of permutation indices for "s5").
    p: prime modulus.

  Returns:
    The answers, int64 in [0, n - 1] (n: :func:`n_elements`).
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
  if op in POLYNOMIAL_OPS:
    return POLYNOMIAL_OPS[op](x % p, y % p) % p
  if op == "s5":
    return s5_table()[x, y]
  raise ValueError(f"op must be one of {OPS}, got {op!r}")


def make_equations(op: str = "*", p: int = 97) -> Split:
  """All equations ``x op y = ?``: x in [0, n) and y in [1, n) for the
  reference's four operations, y in [0, n) for the others (n:
  :func:`n_elements`).

  Args:
    op: one of :data:`OPS`.
    p: a prime >= 3 (unused by "s5").

  Returns:
    A :class:`Split` of sequences ``[x, op, y, =]`` (op is token n, "="
    token n + 1) and their answers, ordered by x then y: ``p * (p - 1)`` of
    them for the reference's operations, ``p * p`` for the polynomials,
    14,400 for "s5".

  Example:
    >>> make_equations("*", 97).inputs.shape
    (9312, 4)
    >>> make_equations("s5", 97).inputs.shape
    (14400, 4)
  """
  if op not in OPS:
    raise ValueError(f"op must be one of {OPS}, got {op!r}")
  p = check_p(p)
  n = n_elements(op, p)
  first_y = 1 if op in REFERENCE_OPS else 0
  x, y = np.meshgrid(np.arange(n), np.arange(first_y, n), indexing="ij")
  x, y = x.ravel(), y.ravel()
  inputs = np.stack([x, np.full_like(x, n), y, np.full_like(x, n + 1)], axis=1)
  return Split(inputs.astype(np.int32), answers(op, x, y, p).astype(np.int32))


def train_val_split(
  data: Split, train_fraction: float = 0.5, seed: int = 0
) -> tuple[Split, Split]:
  """A random split of `data`, the same for the same seed.

  Args:
    data: all equations.
    train_fraction: fraction in (0, 1) for training; the training split gets
      ``round(train_fraction * n)`` equations (at least 1, at most n - 1).
    seed: seed of the permutation.

  Returns:
    ``(train, val)``, disjoint and together the whole of `data`.
  """
  if not (isinstance(train_fraction, (float, int)) and 0 < train_fraction < 1):
    raise ValueError(
      f"train_fraction must be in (0, 1), got {train_fraction!r}"
    )
  n = len(data.labels)
  n_train = min(max(round(train_fraction * n), 1), n - 1)
  perm = np.random.default_rng(seed).permutation(n)
  tr, va = perm[:n_train], perm[n_train:]
  return (
    Split(data.inputs[tr], data.labels[tr]),
    Split(data.inputs[va], data.labels[va]),
  )


def make_splits(
  op: str = "*", p: int = 97, train_fraction: float = 0.5, seed: int = 0
) -> tuple[Split, Split]:
  """:func:`make_equations` then :func:`train_val_split`."""
  return train_val_split(make_equations(op, p), train_fraction, seed)
