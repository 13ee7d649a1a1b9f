"""Tests of the IMDb LSTM experiment: tokenization, split, data errors,
settings, model, loss and optimizer (the harness task: test_imdb_task.py)."""

from __future__ import annotations

import csv
import doctest
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grokfast_jax import cli
from grokfast_jax.experiments.imdb import config as config_lib
from grokfast_jax.experiments.imdb import data as data_lib
from grokfast_jax.experiments.imdb import model as model_lib
from grokfast_jax.experiments.imdb import training

SHARED_IMDB = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
               / "imdb")
REAL_CSV = SHARED_IMDB / "IMDB-Dataset.csv"

# Tiny settings for the end-to-end runs (test_imdb_task.py too): 40 rows -> 30 train / 10 validation,
# 3 updates of 10 per epoch, 2 epochs.
TINY = ["--size", "40", "--seq-len", "16", "--hidden", "8", "--batch-size",
        "10", "--max-steps", "6", "--no-progress"]

_POSITIVE = ["great", "wonderful", "loved", "superb", "brilliant", "moving"]
_NEGATIVE = ["awful", "boring", "hated", "dull", "terrible", "waste"]
_NEUTRAL = ["film", "plot", "actor", "scene", "story", "ending", "music"]


def _write_csv(path: Path, rows, header=("review", "sentiment")) -> Path:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)  # CRLF line ends, quotes where needed
    if header is not None:
      writer.writerow(header)
    writer.writerows(rows)
  return path


def _synthetic_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
  """`n` short reviews whose words hint at their label, with commas, line
  breaks, <br /> tags and digits inside quoted fields."""
  rng = np.random.default_rng(seed)
  rows = []
  for k in range(n):
    positive = k % 3 != 0
    pool = _POSITIVE if positive else _NEGATIVE
    words = list(rng.choice(pool, 4)) + list(rng.choice(_NEUTRAL, 6))
    rng.shuffle(words)
    text = (" ".join(words[:5]) + ", it's 7/10.<br /><br />\n"
            + " ".join(words[5:]))
    rows.append((text, "positive" if positive else "negative"))
  return rows


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
  return _write_csv(tmp_path / "reviews.csv", _synthetic_rows(40))


# ------------------------------------------------------------------ tokens


def test_clean_word_hand_worked():
  cases = {"it's": "its", "<br": "br", "/><br": "br", "/>": "", "10/10": "",
           "2nd": "nd", "don't": "dont", "film,": "film", "(1999)": "",
           "foo_bar": "foo_bar", "café!": "café"}
  assert {w: data_lib.clean_word(w) for w in cases} == cases


def test_tokenize_hand_worked():
  stop = data_lib.load_stopwords()
  review = ("It's a GREAT film, 10/10!<br /><br />The 2nd half? "
            "Don't ask.")
  # lower + split: it's a great film, 10/10!<br /><br />the 2nd half? don't
  # ask. -> cleaned: its a great film br br the nd half dont ask; "its",
  # "a" and "the" are stop words, "dont" is not (the list has "don't" and
  # "don"), "br" is not.
  assert data_lib.tokenize(review, stop) == [
      "great", "film", "br", "br", "nd", "half", "dont", "ask"]
  assert data_lib.tokenize("It's   it's\tITS", stop) == []
  assert data_lib.tokenize("", stop) == []


def test_packaged_stopwords():
  words = data_lib.load_stopwords()
  assert len(words) == 179
  assert {"its", "it's", "don't", "don", "the", "a"} <= words
  assert not {"dont", "br", "nd"} & words
  shared = SHARED_IMDB / "stopwords-en.txt"
  if shared.is_file():
    assert words == data_lib.load_stopwords(shared)


def test_custom_stopwords_file(tmp_path):
  path = tmp_path / "stop.txt"
  path.write_text("great\n\n  film \n")
  assert data_lib.load_stopwords(path) == {"great", "film"}
  assert data_lib.tokenize("Great film, great plot", {"great", "film"}) == [
      "plot"]
  with pytest.raises(ValueError, match="stop-word file .*missing.txt"):
    data_lib.load_stopwords(tmp_path / "missing.txt")


def test_vocab_ties_keep_first_occurrence():
  lists = [["b", "a", "c"], ["c", "a", "d", "b"], ["e", "f"], ["f"]]
  # counts b2 a2 c2 f2 d1 e1: ties in order of first occurrence, not
  # alphabetical.
  assert data_lib.build_vocab(lists, 10) == {
      "b": 1, "a": 2, "c": 3, "f": 4, "d": 5, "e": 6}
  assert data_lib.build_vocab(lists, 3) == {"b": 1, "a": 2, "c": 3}
  assert data_lib.build_vocab([["z", "y", "y"]], 2) == {"y": 1, "z": 2}


def test_encode_left_pads_and_keeps_the_first_tokens():
  vocab = {"a": 1, "b": 2, "c": 3}
  out = data_lib.encode([["a", "x", "b"], ["c", "b", "b", "a", "a"], [],
                         ["x", "y"]], vocab, 3)
  np.testing.assert_array_equal(out, [[0, 1, 2], [3, 2, 2], [0, 0, 0],
                                      [0, 0, 0]])
  assert out.dtype == np.int32


# ------------------------------------------------------------------ split


def test_stratified_split_counts_disjoint_and_seeded():
  labels = np.array([0] * 499 + [1] * 501)
  labels = labels[np.random.default_rng(7).permutation(1000)]
  tr, va = data_lib.stratified_split(labels, seed=3)
  assert (len(tr), len(va)) == (750, 250)
  assert (np.sum(labels[va] == 0), np.sum(labels[va] == 1)) == (125, 125)
  assert not set(tr) & set(va)
  np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])),
                                np.arange(1000))
  assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)  # CSV order
  tr2, va2 = data_lib.stratified_split(labels, seed=3)
  np.testing.assert_array_equal(va, va2)
  _, va3 = data_lib.stratified_split(labels, seed=4)
  assert not np.array_equal(va, va3)


def test_stratified_split_rounding():
  # 10 negatives, 30 positives, n_val = 10: shares 2.5 and 7.5 -> 2 + 7, the
  # missing one to the tied larger remainder of the lower label.
  labels = np.array([0] * 10 + [1] * 30)
  tr, va = data_lib.stratified_split(labels, seed=0)
  assert (np.sum(labels[va] == 0), np.sum(labels[va] == 1)) == (3, 7)
  assert len(tr) == 30
  with pytest.raises(ValueError, match="val_fraction"):
    data_lib.stratified_split(labels, seed=0, val_fraction=1.0)


def test_load_dataset_tiny(tiny_csv):
  ds = data_lib.load_dataset(tiny_csv, size=40, seed=0, vocab_size=5,
                             seq_len=8)
  assert ds.x_train.shape == (30, 8) and ds.x_val.shape == (10, 8)
  assert len(ds.vocab) == 5 and ds.x_train.max() <= 5
  assert ds.stopwords_source == data_lib.PACKAGED_STOPWORDS
  # The vocabulary counts the training reviews only.
  stop = data_lib.load_stopwords()
  reviews, _ = data_lib.read_csv(tiny_csv, 40)
  train_tokens = [data_lib.tokenize(reviews[i], stop) for i in ds.train_rows]
  assert ds.vocab == tuple(data_lib.build_vocab(train_tokens, 5))


# ------------------------------------------------------------------ bad input


def test_read_csv_names_row_and_line(tmp_path):
  path = tmp_path / "bad.csv"
  path.write_bytes(b'review,sentiment\r\nfine,positive\r\n"two\r\nlines, '
                   b'ok",negative\r\nmeh,neutral\r\n')
  with pytest.raises(ValueError) as e:
    data_lib.read_csv(path, 3)
  assert str(e.value) == (f"{path}, row 3 (line 5): unknown sentiment "
                          "'neutral' (expected 'positive' or 'negative')")
  reviews, labels = data_lib.read_csv(path, 2)  # rows after size not read
  assert reviews == ["fine", "two\r\nlines, ok"]
  np.testing.assert_array_equal(labels, [1, 0])


def _malformed(tmp_path: Path, kind: str) -> tuple[Path, str]:
  path = tmp_path / f"{kind}.csv"
  rows = _synthetic_rows(40)
  if kind == "missing-file":
    return path, f"data file {path} does not exist"
  if kind == "empty":
    path.write_bytes(b"")
    return path, f"{path} is empty"
  if kind == "missing-column":
    _write_csv(path, rows, header=("review", "label"))
    return path, "header lacks column(s) ['sentiment']"
  if kind == "unknown-label":
    rows[6] = (rows[6][0], "Positive!")
    _write_csv(path, rows)
    return path, "row 7 (line 14): unknown sentiment 'Positive!'"
  if kind == "too-few-rows":
    _write_csv(path, rows[:25])
    return path, "has only 25 data rows, fewer than size=40"
  raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing-file", "empty", "missing-column",
                                  "unknown-label", "too-few-rows"])
@pytest.mark.parametrize("command", ["imdb", "imdb-compare"])
def test_malformed_data_one_error_nothing_written(tmp_path, capsys, kind,
                                                  command):
  path, message = _malformed(tmp_path, kind)
  out = tmp_path / "out"
  status = cli.main([command, "--data", str(path), "--out", str(out), *TINY])
  err = capsys.readouterr().err.strip()
  assert status == 2
  assert len(err.splitlines()) == 1, err
  assert err.startswith(f"grokfast-jax {command}: error: ")
  assert message in err and str(path) in err
  assert not out.exists()


def test_bad_settings_name_the_argument(tiny_csv, tmp_path, capsys):
  out = tmp_path / "out"
  status = cli.main(["imdb", "--data", str(tiny_csv), "--out", str(out),
                     "--size", "40", "--batch-size", "31"])
  assert status == 2 and not out.exists()
  assert "batch_size must be in [1, 30]" in capsys.readouterr().err
  with pytest.raises(ValueError, match="alpha must be in"):
    config_lib.paper_config("ema", alpha=1.0)
  with pytest.raises(ValueError, match="seq_len must be >= 1"):
    config_lib.paper_config("none", seq_len=0)


# ------------------------------------------------------------------ config


def test_paper_defaults_and_step_rounding():
  base = config_lib.paper_config("none")
  grok = config_lib.paper_config("ema")
  assert base.weight_decay == 1.0 and grok.weight_decay == 10.0
  assert (grok.alpha, grok.lamb) == (0.98, 2.0)
  assert (base.n_train, base.n_val, base.steps_per_epoch) == (750, 250, 15)
  assert (base.max_steps, base.epochs, base.total_steps) == (10_000, 667,
                                                             10_005)
  assert (base.seq_len, base.vocab_size, base.hidden, base.embed_dim,
          base.batch_size, base.lr, base.clip_norm,
          base.init_scale) == (500, 1000, 256, 64, 50, 3e-4, 5.0, 6.0)
  assert config_lib.is_paper_setting(base)
  assert config_lib.is_paper_setting(grok)
  assert not config_lib.is_paper_setting(
      config_lib.paper_config("ema", seq_len=200))
  assert not config_lib.is_paper_setting(config_lib.paper_config("ma"))


# ------------------------------------------------------------------ model


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _torch_lstm_numpy(x, layers):
  """torch.nn.LSTM's equations in NumPy: x [T, B, in] -> h of every step."""
  for w_ih, w_hh, b_ih, b_hh in layers:
    hidden = w_hh.shape[1]
    h = np.zeros((x.shape[1], hidden))
    c = np.zeros((x.shape[1], hidden))
    outs = []
    for t in range(x.shape[0]):
      gates = x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
      i, f, g, o = np.split(gates, 4, axis=-1)
      i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
      c = f * c + i * g
      h = o * np.tanh(c)
      outs.append(h)
    x = np.stack(outs)
  return x


def test_lstm_matches_torch_equations_in_numpy():
  model = model_lib.LSTMClassifier(13, 3, 5, num_layers=2, init_scale=2.0,
                                   rngs=nnx.Rngs(0))
  tokens = np.random.default_rng(1).integers(0, 13, (4, 7)).astype(np.int32)
  tokens[0, :3] = 0  # left padding
  f64 = lambda a: np.asarray(a, np.float64)
  emb = f64(model.embedding.embedding[...])
  layers = [tuple(f64(getattr(l, n)[...])
                  for n in ("w_ih", "w_hh", "b_ih", "b_hh"))
            for l in model.lstm]
  hs = _torch_lstm_numpy(emb[tokens.T], layers)
  expected = hs[-1] @ f64(model.head.kernel[...])[:, 0] + f64(
      model.head.bias[...])[0]
  graphdef, params = nnx.split(model)
  got = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))(params, tokens)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-5, atol=2e-5)
  # One layer's whole sequence, from the exported scan.
  layer = model.lstm[0]
  x = jnp.asarray(emb[tokens.T], jnp.float32)
  seq = jax.jit(model_lib.lstm_layer)(layer.project(x), layer.w_hh[...])
  np.testing.assert_allclose(np.asarray(seq),
                             _torch_lstm_numpy(emb[tokens.T], layers[:1]),
                             rtol=2e-5, atol=2e-5)


def test_init_is_torch_default_times_scale():
  kwargs = dict(num_layers=2)
  m1 = model_lib.LSTMClassifier(2001, 16, 32, init_scale=1.0,
                                rngs=nnx.Rngs(0), **kwargs)
  m6 = model_lib.LSTMClassifier(2001, 16, 32, init_scale=6.0,
                                rngs=nnx.Rngs(0), **kwargs)
  p1 = dict(nnx.to_flat_state(nnx.state(m1, nnx.Param)))
  p6 = dict(nnx.to_flat_state(nnx.state(m6, nnx.Param)))
  assert p1.keys() == p6.keys() and len(p6) == 1 + 4 * 2 + 2
  for path, var in p6.items():
    np.testing.assert_allclose(np.asarray(var[...]),
                               6.0 * np.asarray(p1[path][...]), rtol=1e-5,
                               atol=1e-6, err_msg=str(path))
  emb = np.asarray(m6.embedding.embedding[...])
  assert emb.shape == (2001, 16)
  assert abs(emb.std() - 6.0) < 0.1 and abs(emb.mean()) < 0.1
  bound = 6.0 / np.sqrt(32)
  for layer, width in zip(m6.lstm, (16, 32)):
    shapes = {"w_ih": (128, width), "w_hh": (128, 32), "b_ih": (128,),
              "b_hh": (128,)}
    for name, shape in shapes.items():
      w = np.asarray(getattr(layer, name)[...])
      assert w.shape == shape
      assert np.abs(w).max() <= bound
      assert np.abs(w).max() > 0.9 * bound
      assert abs(w.std() - bound / np.sqrt(3)) < 0.15 * bound
  for w in (m6.head.kernel[...], m6.head.bias[...]):
    assert np.abs(np.asarray(w)).max() <= bound
  assert np.asarray(m6.head.kernel[...]).shape == (32, 1)


def test_loss_and_accuracy_match_torch_formulas():
  logits = jnp.array([-3.0, 0.0, 2.0, 0.5])
  labels = jnp.array([0, 1, 1, 0])
  p = _sigmoid(np.asarray(logits, np.float64))
  y = np.asarray(labels, np.float64)
  bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
  np.testing.assert_allclose(training.bce_with_logits(logits, labels), bce,
                             rtol=1e-6)
  # round(sigmoid(0)) = round(0.5) = 0, as torch.round.
  np.testing.assert_array_equal(training.correct(logits, labels),
                                [1.0, 0.0, 1.0, 0.0])


# ------------------------------------------------------------------ optimizer


@pytest.mark.parametrize("filter", ["ema", "ma"])
def test_filter_sees_the_clipped_gradient(filter):
  cfg = config_lib.paper_config(filter, size=40, batch_size=10)
  tx = training.make_optimizer(cfg)
  params = {"w": jnp.zeros(4)}
  state = tx.init(params)
  grad = {"w": jnp.array([30.0, 40.0, 0.0, 0.0])}  # norm 50 -> clipped to 5
  _, state = tx.update(grad, state, params)
  clipped = np.array([3.0, 4.0, 0.0, 0.0])
  if filter == "ema":
    seen = state[1].mu["w"]  # first EMA value = the first gradient it saw
  else:
    seen = state[1].window_sum["w"]  # the window holds the one it saw
  np.testing.assert_allclose(np.asarray(seen), clipped, rtol=1e-6)


def test_no_filter_optimizer_is_clip_then_adamw():
  cfg = config_lib.paper_config("none")
  tx = training.make_optimizer(cfg)
  assert len(tx.init({"w": jnp.zeros(2)})) == 2
  assert training.optimizer_name(cfg) == (
      "clip_by_global_norm(5) -> adamw(0.0003)")
  assert training.optimizer_name(config_lib.paper_config("ema")) == (
      "clip_by_global_norm(5) -> grokfast_ema -> adamw(0.0003)")


# ------------------------------------------------------------------ docs


@pytest.mark.parametrize("module", [data_lib, config_lib])
def test_docstring_examples(module):
  result = doctest.testmod(module, raise_on_error=False)
  assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ real data


@pytest.mark.skipif(not REAL_CSV.is_file(),
                    reason=f"IMDb CSV not found at {REAL_CSV}")
def test_real_imdb_first_1000_rows():
  reviews, labels = data_lib.read_csv(REAL_CSV, 1000)
  assert len(reviews) == 1000
  assert (int(labels.sum()), int((labels == 0).sum())) == (501, 499)
  ds = data_lib.load_dataset(REAL_CSV, size=1000, seed=0)
  assert ds.x_train.shape == (750, 500) and ds.x_val.shape == (250, 500)
  assert len(ds.vocab) == 1000
  assert ds.x_train.max() == 1000 and ds.x_train.min() == 0
  assert (int((ds.y_val == 1).sum()), int((ds.y_val == 0).sum())) == (125, 125)
  assert "br" in ds.vocab and "its" not in ds.vocab
