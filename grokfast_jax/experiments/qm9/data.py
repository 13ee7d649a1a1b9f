"""QM9 molecules from a local CSV, featurized as molecular graphs with RDKit.

Nothing here downloads anything. :func:`load_molecules` reads a CSV with the
columns ``gdb_id, smiles, alpha, uncharacterized`` (for instance the first 138
molecules of QM9 shipped for tests), skips the uncharacterized molecules as
PyTorch Geometric's ``QM9`` does, and keeps the first `size` remaining ones.
The target is the isotropic polarizability ``alpha`` in bohr^3, not
normalized.

Each SMILES becomes a graph with explicit hydrogens (``Chem.MolFromSmiles``
then ``Chem.AddHs``; 3D positions are not used):

* per atom 11 features, in this order: one-hot of H, C, N, O, F (5); the
  atomic number (1, a float, not normalized); aromatic (1); one-hot of sp,
  sp2, sp3 hybridization (3; hydrogens have none, all zero); the number of
  attached hydrogens, counted as the atom's H neighbours in the explicit-H
  graph (1; hydrogens get 0);
* per bond two directed edges (both directions), each with a one-hot of
  single, double, triple, aromatic (4).

RDKit is needed only to featurize; it is imported lazily, and a missing RDKit
raises :class:`MissingExtraError` naming the ``chem`` extra. Only numpy is
imported at module level, so a PyTorch restatement can reuse this loader.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence, Union

import numpy as np

PathLike = Union[str, os.PathLike]

COLUMNS = ("gdb_id", "smiles", "alpha", "uncharacterized")
ELEMENTS = ("H", "C", "N", "O", "F")
HYBRIDIZATIONS = ("SP", "SP2", "SP3")
BOND_TYPES = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
NODE_FEATURES = 11
EDGE_FEATURES = 4
INSTALL_HINT = 'pip install "grokfast_jax[chem]"'


class MissingExtraError(ImportError, ValueError):
  """RDKit is not installed (the ``chem`` extra).

  Both an ImportError (what it is) and a ValueError (so that the command line
  reports it as one line with exit status 2).
  """


@dataclasses.dataclass(frozen=True)
class Molecule:
  """One featurized molecule.

  Attributes:
    gdb_id: its index in QM9 (``dsgdb9nsd_000001`` is 1).
    smiles: its SMILES, as read.
    x: float32 ``[n_nodes, 11]`` node features (hydrogens included).
    edge_index: int32 ``[2, n_edges]``; row 0 the sender (source) and row 1
      the receiver (target) of each directed edge, both directions of every
      bond, sorted by sender then receiver.
    edge_attr: float32 ``[n_edges, 4]`` bond-type one-hots.
    y: the target, ``alpha`` in bohr^3.
  """

  gdb_id: int
  smiles: str
  x: np.ndarray
  edge_index: np.ndarray
  edge_attr: np.ndarray
  y: float

  @property
  def n_nodes(self) -> int:
    """Atoms, hydrogens included."""
    return int(self.x.shape[0])

  @property
  def n_edges(self) -> int:
    """Directed edges (twice the bonds)."""
    return int(self.edge_index.shape[1])


def _chem():
  """Imports ``rdkit.Chem``, or raises :class:`MissingExtraError`."""
  try:
    from rdkit import Chem
  except ImportError as e:
    raise MissingExtraError(
      "featurizing SMILES needs RDKit, which is not installed; install the "
      f"chem extra: {INSTALL_HINT}",
      name="rdkit",
    ) from e
  return Chem


def featurize(smiles: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The explicit-hydrogen graph of a SMILES (features described above).

  Args:
    smiles: a SMILES string of a molecule made of H, C, N, O and F.

  Returns:
    ``(x, edge_index, edge_attr)``: float32 ``[n_nodes, 11]``, int32
    ``[2, n_edges]`` (sender row, receiver row; sorted by sender then
    receiver) and float32 ``[n_edges, 4]``.

  Raises:
    MissingExtraError: RDKit is not installed.
    ValueError: RDKit cannot parse `smiles`, or it holds an element other
      than H, C, N, O, F, or a bond other than single, double, triple or
      aromatic.

  Example:
    >>> x, edge_index, edge_attr = featurize("C")  # methane
    >>> x.shape, edge_index.shape, edge_attr.shape
    ((5, 11), (2, 8), (8, 4))
    >>> x[0].tolist()
    [0.0, 1.0, 0.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0, 1.0, 4.0]
  """
  Chem = _chem()
  from rdkit import rdBase

  with rdBase.BlockLogs():  # the error below says it; RDKit need not print
    mol = Chem.MolFromSmiles(smiles)
  if mol is None:
    raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}")
  mol = Chem.AddHs(mol)

  n = mol.GetNumAtoms()
  x = np.zeros((n, NODE_FEATURES), np.float32)
  for atom in mol.GetAtoms():
    i, symbol = atom.GetIdx(), atom.GetSymbol()
    if symbol not in ELEMENTS:
      raise ValueError(
        f"SMILES {smiles!r} holds the element {symbol}; only "
        f"{', '.join(ELEMENTS)} are featurized"
      )
    x[i, ELEMENTS.index(symbol)] = 1.0
    x[i, 5] = atom.GetAtomicNum()
    x[i, 6] = float(atom.GetIsAromatic())
    hybridization = str(atom.GetHybridization())
    if symbol != "H" and hybridization in HYBRIDIZATIONS:
      x[i, 7 + HYBRIDIZATIONS.index(hybridization)] = 1.0
    if symbol != "H":
      x[i, 10] = sum(nb.GetAtomicNum() == 1 for nb in atom.GetNeighbors())

  edges = []
  for bond in mol.GetBonds():
    kind = str(bond.GetBondType())
    if kind not in BOND_TYPES:
      raise ValueError(
        f"SMILES {smiles!r} holds a {kind} bond; only "
        f"{', '.join(b.lower() for b in BOND_TYPES)} bonds are featurized"
      )
    a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
    t = BOND_TYPES.index(kind)
    edges += [(a, b, t), (b, a, t)]
  edges.sort()
  edge_index = np.array(
    [[e[0] for e in edges], [e[1] for e in edges]], np.int32
  ).reshape(2, len(edges))
  edge_attr = np.zeros((len(edges), EDGE_FEATURES), np.float32)
  edge_attr[np.arange(len(edges)), [e[2] for e in edges]] = 1.0
  return x, edge_index, edge_attr


def load_molecules(path: PathLike, size: int = 100) -> list[Molecule]:
  """The first `size` characterized molecules of a QM9 CSV, featurized.

  Rows whose ``uncharacterized`` is 1 are skipped (as PyTorch Geometric's
  ``QM9`` does); reading stops at the `size`-th kept row, so later rows are
  not checked.

  Args:
    path: a CSV with the columns ``gdb_id, smiles, alpha, uncharacterized``
      (others are ignored).
    size: molecules to keep, >= 1.

  Returns:
    The molecules in file order.

  Raises:
    ValueError: naming the file (and the 1-based data row, with its line in
      the file) when the file is missing or empty, lacks a column, has a
      non-integer ``gdb_id``, a non-numeric or non-finite ``alpha``, an
      ``uncharacterized`` other than 0 or 1, a SMILES RDKit cannot parse or
      featurize, or fewer than `size` characterized rows.
    MissingExtraError: RDKit is not installed.

  Example:
    >>> mols = load_molecules("qm9_first138.csv", size=100)  # doctest: +SKIP
    >>> mols[0].gdb_id, mols[0].smiles, mols[0].y  # doctest: +SKIP
    (1, 'C', 13.21)
  """
  path = Path(path).expanduser()
  if not 1 <= size:
    raise ValueError(f"size must be >= 1, got {size}")
  if not path.exists():
    raise ValueError(f"{path}: no such file (give the QM9 CSV with --data)")
  if not path.is_file():
    raise ValueError(f"{path}: not a file (give the QM9 CSV with --data)")
  molecules: list[Molecule] = []
  skipped = 0
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
      raise ValueError(
        f"{path}: empty file (expected a CSV with the columns "
        f"{', '.join(COLUMNS)})"
      )
    names = [h.strip() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
      raise ValueError(
        f"{path}: missing column{'s' if len(missing) > 1 else ''} "
        f"{', '.join(missing)} (the header has {', '.join(names)}; "
        f"expected {', '.join(COLUMNS)})"
      )
    col = {c: names.index(c) for c in COLUMNS}
    row = 0
    for record in reader:
      if not record or not any(v.strip() for v in record):
        continue  # blank line
      row += 1
      where = f"{path}: row {row} (line {reader.line_num})"
      if len(record) < len(names):
        raise ValueError(
          f"{where}: {len(record)} fields, the header has {len(names)}"
        )
      values = {c: record[i].strip() for c, i in col.items()}
      if _parse_flag(values["uncharacterized"], where):
        skipped += 1
        continue
      gdb_id = _parse_int(values["gdb_id"], "gdb_id", where)
      alpha = _parse_float(values["alpha"], "alpha", where)
      try:
        x, edge_index, edge_attr = featurize(values["smiles"])
      except MissingExtraError:
        raise
      except ValueError as e:
        raise ValueError(f"{where}, gdb_id {gdb_id}: {e}") from e
      molecules.append(
        Molecule(gdb_id, values["smiles"], x, edge_index, edge_attr, alpha)
      )
      if len(molecules) == size:
        return molecules
  raise ValueError(
    f"{path}: only {len(molecules)} usable (characterized) molecules "
    f"({skipped} uncharacterized skipped), but size is {size}"
  )


def split(
  molecules: Sequence[Molecule], seed: int
) -> tuple[list[Molecule], list[Molecule]]:
  """A random 50 / 50 split: ``len // 2`` training molecules, the rest test.

  The permutation is numpy's ``default_rng(seed).permutation`` (the reference
  uses PyTorch's generator, so the same seed picks different molecules).

  Args:
    molecules: at least 2 molecules.
    seed: picks the split.

  Returns:
    ``(train, test)`` lists, each in permutation order.

  Raises:
    ValueError: fewer than 2 molecules.

  Example:
    >>> train, test = split(list(range(5)), seed=0)  # doctest: +SKIP
    >>> len(train), len(test)  # doctest: +SKIP
    (2, 3)
  """
  n = len(molecules)
  if n < 2:
    raise ValueError(f"split needs at least 2 molecules, got {n}")
  order = np.random.default_rng(seed).permutation(n)
  n_train = n // 2
  return (
    [molecules[i] for i in order[:n_train]],
    [molecules[i] for i in order[n_train:]],
  )


class PackedGraphs(NamedTuple):
  """Molecules concatenated into flat arrays, from which batches are gathered.

  Attributes:
    x: float32 ``[total_nodes, 11]``.
    edge_attr: float32 ``[total_edges, 4]``.
    senders: int32 ``[total_edges]``, node index within its molecule.
    receivers: int32 ``[total_edges]``, node index within its molecule.
    node_start: int32 ``[n_molecules]``, first row of each molecule in `x`.
    n_nodes: int32 ``[n_molecules]``.
    edge_start: int32 ``[n_molecules]``, first row of each molecule in
      `edge_attr`.
    n_edges: int32 ``[n_molecules]``.
    y: float32 ``[n_molecules]`` targets.
    edge_type: int32 ``[total_edges]``, row of each edge's features in
      `edge_table`.
    edge_table: float32 ``[n_types, 4]``, the distinct rows of `edge_attr`
      (``edge_attr == edge_table[edge_type]``), so that a network can run
      its edge net once per distinct edge feature vector.
  """

  x: Any
  edge_attr: Any
  senders: Any
  receivers: Any
  node_start: Any
  n_nodes: Any
  edge_start: Any
  n_edges: Any
  y: Any
  edge_type: Any
  edge_table: Any


def pack(molecules: Sequence[Molecule]) -> PackedGraphs:
  """Concatenates `molecules` into a :class:`PackedGraphs` of numpy arrays.

  Args:
    molecules: at least one molecule.

  Returns:
    The packed arrays (edge endpoints stay local to their molecule).

  Raises:
    ValueError: no molecules.
  """
  if not molecules:
    raise ValueError("pack needs at least one molecule")
  n_nodes = np.array([m.n_nodes for m in molecules], np.int32)
  n_edges = np.array([m.n_edges for m in molecules], np.int32)
  edge_attr = np.concatenate(
    [m.edge_attr.reshape(-1, EDGE_FEATURES) for m in molecules]
  ).astype(np.float32)
  if len(edge_attr):
    table, edge_type = np.unique(edge_attr, axis=0, return_inverse=True)
  else:
    table = np.zeros((1, EDGE_FEATURES), np.float32)
    edge_type = np.zeros(0, np.int64)
  return PackedGraphs(
    x=np.concatenate([m.x for m in molecules]).astype(np.float32),
    edge_attr=edge_attr,
    senders=np.concatenate([m.edge_index[0] for m in molecules]).astype(
      np.int32
    ),
    receivers=np.concatenate([m.edge_index[1] for m in molecules]).astype(
      np.int32
    ),
    node_start=(np.cumsum(n_nodes) - n_nodes).astype(np.int32),
    n_nodes=n_nodes,
    edge_start=(np.cumsum(n_edges) - n_edges).astype(np.int32),
    n_edges=n_edges,
    y=np.array([m.y for m in molecules], np.float32),
    edge_type=edge_type.reshape(-1).astype(np.int32),
    edge_table=table.astype(np.float32),
  )


def batch_capacity(
  molecules: Sequence[Molecule], batch_size: int
) -> tuple[int, int]:
  """Node and edge counts that hold any `batch_size` of `molecules`.

  Args:
    molecules: the pool batches are drawn from.
    batch_size: molecules per batch.

  Returns:
    ``(max_nodes, max_edges)``: the sums of the `batch_size` largest node
    and edge counts.
  """
  nodes = sorted((m.n_nodes for m in molecules), reverse=True)
  edges = sorted((m.n_edges for m in molecules), reverse=True)
  return sum(nodes[:batch_size]), sum(edges[:batch_size])


def describe_source(
  path: PathLike, molecules: Sequence[Molecule]
) -> dict[str, Any]:
  """Where the data came from, for the results file.

  Args:
    path: the CSV read.
    molecules: the molecules kept from it.

  Returns:
    ``{"path", "sha256", "n_molecules", "gdb_ids": [first, last]}``.
  """
  path = Path(path).expanduser()
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  ids = [m.gdb_id for m in molecules]
  return {
    "path": str(path),
    "sha256": digest,
    "n_molecules": len(ids),
    "gdb_ids": [min(ids), max(ids)] if ids else None,
  }


def _parse_flag(value: str, where: str) -> bool:
  try:
    flag = float(value)
  except ValueError:
    flag = math.nan
  if flag not in (0.0, 1.0):
    raise ValueError(f"{where}: uncharacterized must be 0 or 1, got {value!r}")
  return flag == 1.0


def _parse_int(value: str, name: str, where: str) -> int:
  try:
    return int(value)
  except ValueError:
    raise ValueError(
      f"{where}: {name} must be an integer, got {value!r}"
    ) from None


def _parse_float(value: str, name: str, where: str) -> float:
  try:
    number = float(value)
  except ValueError:
    number = math.nan
  if not math.isfinite(number):
    raise ValueError(f"{where}: {name} must be a finite number, got {value!r}")
  return number
