"""IMDb reviews from a local CSV, tokenized as the Grokfast reference does.

Nothing here downloads anything. :func:`load_dataset` reads the first `size`
rows of a ``review,sentiment`` CSV (the widely used 50,000-row "IMDB Dataset"
built from Maas et al.'s Large Movie Review Dataset, or any file in that
format; labels ``positive`` / ``negative``), then

1. splits them, stratified by label and seeded by the run's seed, into
   ``ceil(size / 4)`` validation and the rest training reviews (250 / 750 of
   1,000; see :func:`stratified_split`);
2. tokenizes every review (:func:`tokenize`): lowercase, split on whitespace,
   from each word remove every non-word character, then whitespace, then
   digits (``it's`` -> ``its``, ``<br`` -> ``br``, ``10/10`` -> empty), and
   drop the cleaned word if it is empty or a stop word;
3. builds the vocabulary from the training reviews only: the `vocab_size`
   most frequent words, ties in the order of first occurrence, ids 1.. by
   rank, 0 for padding (:func:`build_vocab`);
4. encodes each review as the ids of its in-vocabulary words, keeps the first
   `seq_len` and left-pads with 0 (:func:`encode`).

Stop words: by default the packaged ``stopwords-en.txt``, the English list of
NLTK's stopwords corpus (``nltk_data`` ``corpora/stopwords/english``) as it
stood before February 2025: 179 words, one per line, after Porter's and the
Snowball project's lists (19 pronoun contractions were added to NLTK's list in
2025; the Grokfast reference used the 179-word version). NLTK distributes its
corpora as redistributable; the stopwords corpus itself names no author,
copyright or license (see nltk/nltk issue 2501). Any other list, one word per
line, can be passed as `stopwords`.

Every error in the input is a ValueError naming the file and, where it
applies, the 1-based data row and the line it starts on.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import importlib.resources
import math
import os
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, os.PathLike]

LABELS = {"negative": 0, "positive": 1}
STOPWORDS_RESOURCE = "stopwords-en.txt"
PACKAGED_STOPWORDS = "packaged NLTK English stop words (179)"
PAD_ID = 0
_PACKAGE = "grokfast_jax.experiments.imdb"

_NON_WORD = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Encoded training and validation reviews.

  Attributes:
    x_train: int32 ``[n_train, seq_len]`` token ids, left-padded with 0.
    y_train: int32 ``[n_train]``, 1 positive, 0 negative.
    x_val: int32 ``[n_val, seq_len]``.
    y_val: int32 ``[n_val]``.
    vocab: the vocabulary words by rank (word ``vocab[k]`` has id ``k + 1``);
      shorter than `vocab_size` when the training reviews have fewer distinct
      words.
    train_rows: 0-based CSV data rows of the training reviews (CSV order).
    val_rows: 0-based CSV data rows of the validation reviews (CSV order).
    source: the CSV path.
    stopwords_source: the stop-word file, or :data:`PACKAGED_STOPWORDS`.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  vocab: tuple[str, ...]
  train_rows: np.ndarray
  val_rows: np.ndarray
  source: str
  stopwords_source: str


# ------------------------------------------------------------------ reading


def read_csv(path: PathLike, size: int) -> tuple[list[str], np.ndarray]:
  """Reads the first `size` data rows of a ``review,sentiment`` CSV.

  The header must name the columns ``review`` and ``sentiment`` (any order,
  other columns ignored); quoted fields may hold commas and line breaks.
  Blank lines are skipped. Rows after the first `size` are not read.

  Args:
    path: the CSV file (UTF-8, an optional byte-order mark).
    size: data rows to read, >= 1.

  Returns:
    ``(reviews, labels)``: `size` review strings and int32 labels (1 for
    ``positive``, 0 for ``negative``).

  Raises:
    ValueError: a missing, unreadable or empty file, a header without
      ``review`` or ``sentiment``, a row lacking a field or with a label other
      than positive / negative (naming the row and its line), or fewer than
      `size` rows.
  """
  path = Path(path).expanduser()
  if not path.exists():
    raise ValueError(f"data file {path} does not exist")
  if not path.is_file():
    raise ValueError(f"data path {path} is not a file")
  reviews: list[str] = []
  labels: list[int] = []
  reader = None
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      reader = csv.reader(f)
      header = next(reader, None)
      if header is None:
        raise ValueError(
          f"{path} is empty (expected a header line "
          "'review,sentiment' and data rows)"
        )
      names = [name.strip() for name in header]
      missing = [c for c in ("review", "sentiment") if c not in names]
      if missing:
        raise ValueError(
          f"{path}, line 1: header lacks column(s) {missing}; expected "
          f"'review' and 'sentiment', got {names}"
        )
      i_review, i_label = names.index("review"), names.index("sentiment")
      need = max(i_review, i_label) + 1
      line = reader.line_num + 1
      while len(reviews) < size:
        row = next(reader, None)
        if row is None:
          break
        start, line = line, reader.line_num + 1
        if not row:
          continue  # a blank line
        where = f"{path}, row {len(reviews) + 1} (line {start})"
        if len(row) < need:
          raise ValueError(
            f"{where}: {len(row)} field(s), expected at least "
            f"{need} (review and sentiment)"
          )
        value = row[i_label].strip()
        if value not in LABELS:
          raise ValueError(
            f"{where}: unknown sentiment {value!r} (expected "
            "'positive' or 'negative')"
          )
        reviews.append(row[i_review])
        labels.append(LABELS[value])
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not UTF-8 text ({e})") from e
  except csv.Error as e:
    raise ValueError(
      f"{path}: malformed CSV near line {reader.line_num if reader else 1} ({e})"
    ) from e
  except OSError as e:
    raise ValueError(f"cannot read data file {path} ({e})") from e
  if not reviews and size >= 1:
    raise ValueError(
      f"{path} has a header but no data rows (size={size} rows needed)"
    )
  if len(reviews) < size:
    raise ValueError(
      f"{path} has only {len(reviews)} data rows, fewer than size={size}"
    )
  return reviews, np.asarray(labels, np.int32)


def load_stopwords(path: Optional[PathLike] = None) -> frozenset[str]:
  """Reads a stop-word list, one word per line (blank lines ignored).

  Args:
    path: the file, or None for the packaged 179-word NLTK English list.

  Returns:
    The words, stripped of surrounding whitespace.

  Raises:
    ValueError: `path` missing or unreadable.

  Example:
    >>> words = load_stopwords()
    >>> len(words), "its" in words, "br" in words
    (179, True, False)
  """
  if path is None:
    text = (
      importlib.resources.files(_PACKAGE)
      .joinpath(STOPWORDS_RESOURCE)
      .read_text(encoding="utf-8")
    )
  else:
    path = Path(path).expanduser()
    if not path.is_file():
      raise ValueError(f"stop-word file {path} does not exist or is not a file")
    try:
      text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
      raise ValueError(f"cannot read stop-word file {path} ({e})") from e
  return frozenset(w.strip() for w in text.splitlines() if w.strip())


# ------------------------------------------------------------------ tokens


def clean_word(word: str) -> str:
  """Removes every non-word character, then whitespace, then digits.

  Example:
    >>> [clean_word(w) for w in ["it's", "<br", "/><br", "10/10", "2nd"]]
    ['its', 'br', 'br', '', 'nd']
  """
  word = _NON_WORD.sub("", word)
  word = _SPACE.sub("", word)
  return _DIGIT.sub("", word)


def tokenize(review: str, stopwords: Iterable[str]) -> list[str]:
  """The reference's tokenization of one review.

  Lowercase, ``str.split()`` on whitespace, :func:`clean_word` each word, and
  drop it if the cleaned word is empty or in `stopwords`.

  Args:
    review: the raw review text.
    stopwords: words to drop (compared with the cleaned word).

  Returns:
    The kept words, in order.

  Example:
    >>> tokenize("It's a 10/10 film! <br />Don't miss it", {"its", "a", "it"})
    ['film', 'br', 'dont', 'miss']
  """
  stop = (
    stopwords if isinstance(stopwords, (set, frozenset)) else set(stopwords)
  )
  words = (clean_word(w) for w in review.lower().split())
  return [w for w in words if w and w not in stop]


def build_vocab(
  token_lists: Iterable[Sequence[str]], vocab_size: int
) -> dict[str, int]:
  """The `vocab_size` most frequent words, ids 1.. by rank.

  Ties keep the order of first occurrence in `token_lists` (a stable sort by
  decreasing count over a Counter, whose keys are in insertion order).

  Args:
    token_lists: the training reviews' words, in training order.
    vocab_size: words to keep, >= 1.

  Returns:
    word -> id in ``1..min(vocab_size, distinct words)``.

  Example:
    >>> build_vocab([["b", "a"], ["a", "c", "b", "d"]], 3)
    {'b': 1, 'a': 2, 'c': 3}
  """
  counts: collections.Counter[str] = collections.Counter()
  for tokens in token_lists:
    counts.update(tokens)
  ranked = sorted(counts, key=lambda w: counts[w], reverse=True)[:vocab_size]
  return {word: rank + 1 for rank, word in enumerate(ranked)}


def encode(
  token_lists: Sequence[Sequence[str]], vocab: dict[str, int], seq_len: int
) -> np.ndarray:
  """Token ids of the in-vocabulary words, first `seq_len`, left-padded with 0.

  Args:
    token_lists: each review's words.
    vocab: word -> id (>= 1).
    seq_len: length of every encoded review, >= 1.

  Returns:
    int32 ``[len(token_lists), seq_len]``.

  Example:
    >>> encode([["a", "x", "b"], ["b", "a", "b", "a"]], {"a": 1, "b": 2}, 3)
    array([[0, 1, 2],
           [2, 1, 2]], dtype=int32)
  """
  out = np.full((len(token_lists), seq_len), PAD_ID, np.int32)
  for row, tokens in enumerate(token_lists):
    ids = [vocab[w] for w in tokens if w in vocab][:seq_len]
    if ids:
      out[row, seq_len - len(ids) :] = ids
  return out


# ------------------------------------------------------------------ split


def stratified_split(
  labels: np.ndarray, seed: int, val_fraction: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
  """Splits row indices into training and validation, stratified by label.

  ``n_val = ceil(val_fraction * n)`` rows are held out (250 of 1,000, as
  scikit-learn's ``train_test_split(test_size=0.25)`` would). Each class gets
  its proportional share ``n_val * n_class / n``, rounded down, and the rows
  still missing go to the classes with the largest fractional parts (ties: the
  lower label first), so 499 negative and 501 positive rows give 125 and 125.
  A ``numpy.random.default_rng(seed)`` permutes each class's rows (label 0
  first) and the first rows of each permutation are held out. Both index
  arrays come back sorted, i.e. in CSV order.

  Args:
    labels: int labels of the rows.
    seed: seeds the permutations.
    val_fraction: share held out, in (0, 1).

  Returns:
    ``(train_idx, val_idx)``, disjoint sorted int64 arrays covering every row.

  Raises:
    ValueError: `val_fraction` outside (0, 1).

  Example:
    >>> tr, va = stratified_split(np.array([0, 1] * 4), seed=0)
    >>> len(tr), len(va)
    (6, 2)
  """
  if not 0.0 < val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
  labels = np.asarray(labels)
  n = len(labels)
  n_val = math.ceil(val_fraction * n)
  classes = np.unique(labels)
  sizes = np.array([np.sum(labels == c) for c in classes])
  exact = n_val * sizes / max(n, 1)
  quota = np.floor(exact).astype(int)
  short = n_val - int(quota.sum())
  order = sorted(range(len(classes)), key=lambda k: -(exact[k] - quota[k]))
  for k in order[:short]:
    quota[k] += 1
  rng = np.random.default_rng(seed)
  val = []
  for c, q in zip(classes, quota):
    rows = rng.permutation(np.flatnonzero(labels == c))
    val.append(rows[:q])
  val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
  train_idx = np.setdiff1d(np.arange(n), val_idx)
  return train_idx.astype(np.int64), val_idx.astype(np.int64)


# ------------------------------------------------------------------ all


def load_dataset(
  path: PathLike,
  *,
  size: int = 1000,
  seed: int = 0,
  vocab_size: int = 1000,
  seq_len: int = 500,
  stopwords: Optional[PathLike] = None,
  val_fraction: float = 0.25,
) -> Dataset:
  """Reads, splits, tokenizes and encodes the first `size` reviews.

  Args:
    path: the ``review,sentiment`` CSV.
    size: rows to use (the first `size`).
    seed: seeds the stratified split.
    vocab_size: vocabulary words (from the training reviews only).
    seq_len: tokens kept per review (the first), left-padded with 0.
    stopwords: stop-word file, or None for the packaged NLTK list.
    val_fraction: share of the rows held out for validation.

  Returns:
    The encoded :class:`Dataset`.

  Raises:
    ValueError: bad CSV or stop-word file (see :func:`read_csv`), or a
      non-positive `size`, `vocab_size` or `seq_len`.
  """
  for name, value in (
    ("size", size),
    ("vocab_size", vocab_size),
    ("seq_len", seq_len),
  ):
    if value < 1:
      raise ValueError(f"{name} must be >= 1, got {value}")
  stop = load_stopwords(stopwords)
  reviews, labels = read_csv(path, size)
  train_idx, val_idx = stratified_split(labels, seed, val_fraction)
  tokens = [tokenize(r, stop) for r in reviews]
  train_tokens = [tokens[i] for i in train_idx]
  vocab = build_vocab(train_tokens, vocab_size)
  return Dataset(
    x_train=encode(train_tokens, vocab, seq_len),
    y_train=labels[train_idx],
    x_val=encode([tokens[i] for i in val_idx], vocab, seq_len),
    y_val=labels[val_idx],
    vocab=tuple(vocab),
    train_rows=train_idx,
    val_rows=val_idx,
    source=str(Path(path).expanduser()),
    stopwords_source=(
      PACKAGED_STOPWORDS
      if stopwords is None
      else str(Path(stopwords).expanduser())
    ),
  )
