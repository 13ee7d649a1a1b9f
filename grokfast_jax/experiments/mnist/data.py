"""MNIST from local IDX or Keras-style npz files, or an offline digits stand-in.

Nothing here downloads anything. Give :func:`load_dataset` one of

* a directory holding the four standard IDX files (:data:`IDX_FILES`), each
  plain or gzipped (``.gz``); the ``train-images.idx3-ubyte`` spelling and
  torchvision's ``MNIST/raw`` sub-directory are found too;
* a Keras-style ``mnist.npz`` (keys ``x_train, y_train, x_test, y_test``), or a
  directory holding one;
* ``None``: scikit-learn's bundled 8x8 digits, clearly labelled as not MNIST
  (:func:`load_digits_fallback`).

Images come back as float32 in [0, 1] (MNIST pixel / 255, digits value / 16)
flattened to 784 features; labels as int32 in [0, 9].
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

PathLike = Union[str, os.PathLike]

MNIST_LABEL = "MNIST"
DIGITS_LABEL = "sklearn-digits-8x8 (offline fallback, not MNIST)"
IMAGE_SHAPE = (28, 28)

IDX_FILES = {
  "x_train": "train-images-idx3-ubyte",
  "y_train": "train-labels-idx1-ubyte",
  "x_test": "t10k-images-idx3-ubyte",
  "y_test": "t10k-labels-idx1-ubyte",
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {
  0x08: np.dtype(">u1"),
  0x09: np.dtype(">i1"),
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}
_DIGITS_TRAIN = 1000  # images of the fixed digits split used for training
_DIGITS_SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A train/test split of 28x28 digit images.

  Attributes:
    x_train: float32 ``[n_train, 784]`` in [0, 1].
    y_train: int32 ``[n_train]`` in [0, 9].
    x_test: float32 ``[n_test, 784]`` in [0, 1].
    y_test: int32 ``[n_test]`` in [0, 9].
    label: what the data is, e.g. "MNIST" or :data:`DIGITS_LABEL`; written to
      results and printed with them.
    source: where it was read from (a path, or "sklearn.datasets.load_digits").
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  label: str
  source: str = ""


def read_idx(path: PathLike) -> np.ndarray:
  """Reads one IDX file (plain, or gzipped when the name ends in ``.gz``).

  Args:
    path: the file.

  Returns:
    The array with the shape and dtype the header declares (native byte
    order).

  Raises:
    ValueError: bad magic number, unknown type byte, or a data section whose
      size does not match the header (truncated or trailing bytes).
  """
  path = Path(path)
  opener = gzip.open if path.name.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (gzip.BadGzipFile, EOFError) as e:
    raise ValueError(f"{path}: not a valid gzip file ({e})") from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
    raise ValueError(
      f"{path}: not an IDX file (magic number must start with two zero "
      f"bytes, got {raw[:4].hex() or 'an empty file'})"
    )
  type_byte, ndim = raw[2], raw[3]
  if type_byte not in _IDX_DTYPES:
    raise ValueError(f"{path}: unknown IDX type byte 0x{type_byte:02x}")
  if ndim < 1:
    raise ValueError(f"{path}: IDX header declares {ndim} dimensions")
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes)")
  shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
  dtype = _IDX_DTYPES[type_byte]
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - header != expected:
    raise ValueError(
      f"{path}: IDX data is {len(raw) - header} bytes but the header "
      f"{shape} of {dtype.name} needs {expected} (truncated or corrupt file)"
    )
  arr = np.frombuffer(raw, dtype, offset=header).reshape(shape)
  return arr.astype(dtype.newbyteorder("="))


def load_mnist_idx(directory: PathLike) -> Dataset:
  """Loads MNIST from a directory of the four IDX files.

  Args:
    directory: holds the files, or torchvision's ``MNIST/raw`` under it.

  Returns:
    The dataset, labelled "MNIST".

  Raises:
    ValueError: a missing file, a bad file, or unexpected shapes.
  """
  directory = Path(directory)
  arrays = {
    key: read_idx(_find_idx(directory, name)) for key, name in IDX_FILES.items()
  }
  return _from_arrays(arrays, source=str(directory))


def load_mnist_npz(path: PathLike) -> Dataset:
  """Loads MNIST from a Keras-style ``mnist.npz``.

  Args:
    path: the npz file, with keys ``x_train, y_train, x_test, y_test``.

  Returns:
    The dataset, labelled "MNIST".

  Raises:
    ValueError: missing keys or unexpected shapes.
  """
  path = Path(path)
  try:
    npz = np.load(path, allow_pickle=False)
  except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path}: cannot read as an npz archive ({e})") from e
  if not isinstance(npz, np.lib.npyio.NpzFile):
    raise ValueError(f"{path}: holds a single array, not an npz archive")
  with npz:
    missing = [k for k in NPZ_KEYS if k not in npz.files]
    if missing:
      raise ValueError(
        f"{path}: npz lacks keys {missing} (needs {list(NPZ_KEYS)}, "
        f"has {sorted(npz.files)})"
      )
    arrays = {k: np.asarray(npz[k]) for k in NPZ_KEYS}
  return _from_arrays(arrays, source=str(path))


def load_digits_fallback() -> Dataset:
  """scikit-learn's bundled 8x8 digits (1,797 images, shipped with it) as a
  28x28 stand-in for MNIST.

  Each image is upsampled by 3 (nearest neighbour) to 24x24 and zero-padded
  by 2 pixels to 28x28, so the model keeps MNIST's 784 inputs; values 0..16
  are scaled to [0, 1]. A fixed permutation (independent of any run seed)
  keeps 1,000 images for training and 797 for testing.

  Returns:
    The dataset, labelled :data:`DIGITS_LABEL`.
  """
  from sklearn.datasets import load_digits  # ships its data; no download

  digits: Any = load_digits()
  images = np.asarray(digits.images, np.float32) / 16.0
  images = np.kron(images, np.ones((1, 3, 3), np.float32))
  images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
  labels = np.asarray(digits.target, np.int32)
  perm = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(labels))
  train, test = perm[:_DIGITS_TRAIN], perm[_DIGITS_TRAIN:]
  flat = images.reshape(len(images), -1)
  return Dataset(
    flat[train],
    labels[train],
    flat[test],
    labels[test],
    DIGITS_LABEL,
    source="sklearn.datasets.load_digits",
  )


def load_dataset(path: Optional[PathLike] = None) -> Dataset:
  """MNIST from `path` (IDX directory, npz file or directory holding
  ``mnist.npz``), or the labelled offline digits stand-in when `path` is None.

  Args:
    path: where the data is, or None for :func:`load_digits_fallback`.

  Returns:
    The dataset.

  Raises:
    ValueError: `path` does not exist or holds no readable MNIST.
  """
  if path is None:
    return load_digits_fallback()
  path = Path(path).expanduser()
  if path.is_file():
    if path.suffix == ".npz":
      return load_mnist_npz(path)
    raise ValueError(
      f"data path {path} is a file but not an .npz; give a directory of "
      "IDX files or a Keras-style mnist.npz"
    )
  if not path.is_dir():
    raise ValueError(f"data path {path} does not exist")
  if (path / "mnist.npz").is_file() and not _has_idx(path):
    return load_mnist_npz(path / "mnist.npz")
  return load_mnist_idx(path)


def train_subset(dataset: Dataset, size: int) -> Dataset:
  """The first `size` training images, in file order (test set unchanged):
  the reference's ``Subset(train, range(train_points))``, the same images
  for every seed.

  Args:
    dataset: the full dataset.
    size: number of training images, in [1, len(dataset.x_train)].

  Returns:
    A dataset with the first `size` training images.

  Raises:
    ValueError: `size` out of range.

  Example:
    >>> ds = train_subset(load_digits_fallback(), 10)
    >>> ds.x_train.shape
    (10, 784)
  """
  check_train_size(dataset, size)
  return dataclasses.replace(
    dataset, x_train=dataset.x_train[:size], y_train=dataset.y_train[:size]
  )


def check_train_size(dataset: Dataset, size: int) -> None:
  """Raises a ValueError unless `size` is in [1, number of training images]."""
  n = len(dataset.y_train)
  if not 1 <= size <= n:
    raise ValueError(
      f"train_size must be in [1, {n}] for {dataset.label}, got {size}"
    )


def _has_idx(directory: Path) -> bool:
  try:
    _find_idx(directory, IDX_FILES["x_train"])
    return True
  except ValueError:
    return False


def _find_idx(directory: Path, name: str) -> Path:
  """The IDX file `name` under `directory`, in its usual spellings."""
  stems = (name, name.replace("-idx", ".idx"))
  for base in (directory, directory / "MNIST" / "raw"):
    for stem in stems:
      for candidate in (base / stem, base / f"{stem}.gz"):
        if candidate.is_file():
          return candidate
  raise ValueError(
    f"{directory}: no {name} (or {name}.gz); expected the four MNIST IDX "
    f"files {sorted(IDX_FILES.values())} or a Keras-style mnist.npz"
  )


def _from_arrays(arrays: dict[str, np.ndarray], source: str) -> Dataset:
  """Checks raw MNIST arrays and converts them to a :class:`Dataset`."""
  out = {}
  for split in ("train", "test"):
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
      raise ValueError(
        f"{source}: x_{split} must have shape [n, 28, 28], got {list(x.shape)}"
      )
    if y.ndim != 1 or len(y) != len(x):
      raise ValueError(
        f"{source}: y_{split} must have shape [{len(x)}], got {list(y.shape)}"
      )
    if len(y) and (y.min() < 0 or y.max() > 9):
      raise ValueError(
        f"{source}: y_{split} labels must be in [0, 9], got "
        f"[{y.min()}, {y.max()}]"
      )
    scale = 255.0 if np.issubdtype(x.dtype, np.integer) else 1.0
    out[f"x_{split}"] = (x.reshape(len(x), -1) / scale).astype(np.float32)
    out[f"y_{split}"] = y.astype(np.int32)
  return Dataset(**out, label=MNIST_LABEL, source=source)
