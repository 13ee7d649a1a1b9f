"""Tests of the MNIST large-init experiment: data, config, model, training
pieces, summary lines (runs through the harness: test_mnist_runs.py)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import grokfast_jax as gj
from grokfast_jax import cli
from grokfast_jax.experiments import harness
from grokfast_jax.experiments.mnist import config as config_lib
from grokfast_jax.experiments.mnist import data as data_lib
from grokfast_jax.experiments.mnist import task as task_lib
from grokfast_jax.experiments.mnist import training
from grokfast_jax.experiments.mnist.model import MLP

# ------------------------------------------------------------------ helpers


def _idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
  """An IDX file of uint8 `arr` (type 0x08), optionally with a bad magic."""
  if magic is None:
    magic = 0x0800 | arr.ndim
  header = struct.pack(">I", magic) + b"".join(
      struct.pack(">I", d) for d in arr.shape)
  return header + arr.astype(np.uint8).tobytes()


def _fake_mnist(rng: np.random.Generator, n_train=6, n_test=4):
  return {
      "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
      "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
      "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
      "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
  }


def _write_idx_dir(directory, arrays, gz: bool):
  for key, name in data_lib.IDX_FILES.items():
    raw = _idx_bytes(arrays[key])
    if gz:
      (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
    else:
      (directory / name).write_bytes(raw)


def _check_matches(ds: data_lib.Dataset, arrays) -> None:
  assert ds.label == data_lib.MNIST_LABEL
  for split in ("train", "test"):
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    assert x.dtype == np.float32 and x.shape == (len(arrays[f"y_{split}"]), 784)
    np.testing.assert_allclose(
        x, arrays[f"x_{split}"].reshape(len(x), -1) / 255.0, rtol=1e-6)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, arrays[f"y_{split}"])


# ------------------------------------------------------------------ data


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_loads(tmp_path, gz):
  arrays = _fake_mnist(np.random.default_rng(0))
  _write_idx_dir(tmp_path, arrays, gz)
  _check_matches(data_lib.load_dataset(tmp_path), arrays)


def test_idx_found_under_torchvision_raw_and_dot_spelling(tmp_path):
  arrays = _fake_mnist(np.random.default_rng(1))
  raw = tmp_path / "MNIST" / "raw"
  raw.mkdir(parents=True)
  for key, name in data_lib.IDX_FILES.items():
    (raw / name.replace("-idx", ".idx")).write_bytes(_idx_bytes(arrays[key]))
  _check_matches(data_lib.load_dataset(tmp_path), arrays)


def test_read_idx_wrong_magic_raises(tmp_path):
  path = tmp_path / "bad"
  path.write_bytes(_idx_bytes(np.zeros((2, 28, 28)), magic=0x01020803))
  with pytest.raises(ValueError, match="magic"):
    data_lib.read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_raises(tmp_path, gz):
  raw = _idx_bytes(np.zeros((3, 28, 28)))[:-10]
  path = tmp_path / ("t.gz" if gz else "t")
  path.write_bytes(gzip.compress(raw) if gz else raw)
  with pytest.raises(ValueError, match="truncated"):
    data_lib.read_idx(path)


def test_idx_wrong_image_shape_raises(tmp_path):
  arrays = _fake_mnist(np.random.default_rng(2))
  arrays["x_test"] = np.zeros((4, 14, 14), np.uint8)
  _write_idx_dir(tmp_path, arrays, gz=False)
  with pytest.raises(ValueError, match="x_test"):
    data_lib.load_dataset(tmp_path)


def test_idx_missing_file_raises(tmp_path):
  arrays = _fake_mnist(np.random.default_rng(3))
  _write_idx_dir(tmp_path, arrays, gz=False)
  (tmp_path / data_lib.IDX_FILES["y_test"]).unlink()
  with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
    data_lib.load_dataset(tmp_path)


def test_npz_file_and_directory_load(tmp_path):
  arrays = _fake_mnist(np.random.default_rng(4))
  np.savez(tmp_path / "mnist.npz", **arrays)
  ds = data_lib.load_dataset(tmp_path / "mnist.npz")
  _check_matches(ds, arrays)
  assert ds.source == str(tmp_path / "mnist.npz")
  _check_matches(data_lib.load_dataset(tmp_path), arrays)


def test_npz_missing_key_and_bad_paths_raise(tmp_path):
  arrays = _fake_mnist(np.random.default_rng(5))
  del arrays["y_test"]
  np.savez(tmp_path / "m.npz", **arrays)
  with pytest.raises(ValueError, match="y_test"):
    data_lib.load_dataset(tmp_path / "m.npz")
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="npz"):
    data_lib.load_dataset(tmp_path / "junk.npz")
  with pytest.raises(ValueError, match="does not exist"):
    data_lib.load_dataset(tmp_path / "nowhere")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="IDX"):
    data_lib.load_dataset(empty)


def test_digits_fallback_shapes_labels_and_determinism():
  ds = data_lib.load_dataset(None)
  assert ds.label == data_lib.DIGITS_LABEL
  assert "not MNIST" in ds.label
  assert ds.x_train.shape == (1000, 784) and ds.x_test.shape == (797, 784)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
  assert set(np.unique(ds.y_train)) == set(range(10))
  assert set(np.unique(ds.y_test)) == set(range(10))
  # 2-pixel zero border around the 24x24 upsampled digit.
  img = ds.x_train.reshape(-1, 28, 28)
  assert not img[:, :2].any() and not img[:, -2:].any()
  assert not img[:, :, :2].any() and not img[:, :, -2:].any()
  # Nearest-neighbour upsampling: 3x3 blocks are constant.
  block = img[:, 2:26, 2:26].reshape(-1, 8, 3, 8, 3)
  np.testing.assert_array_equal(block, block[:, :, :1, :, :1].repeat(3, 2)
                                .repeat(3, 4))
  again = data_lib.load_digits_fallback()
  np.testing.assert_array_equal(ds.y_test, again.y_test)


def test_train_subset_is_the_first_images():
  ds = data_lib.load_dataset(None)
  a = data_lib.train_subset(ds, 100)
  assert a.x_train.shape == (100, 784)
  np.testing.assert_array_equal(a.x_train, ds.x_train[:100])
  np.testing.assert_array_equal(a.y_train, ds.y_train[:100])
  assert a.x_test is ds.x_test
  with pytest.raises(ValueError, match=r"train_size must be in \[1, 1000\]"):
    data_lib.train_subset(ds, 1001)


# ------------------------------------------------------------------ config


def test_paper_config_defaults_and_validation():
  assert config_lib.paper_config("none").weight_decay == 0.01
  ema = config_lib.paper_config("ema", lamb=None)
  assert (ema.alpha, ema.lamb, ema.weight_decay) == (0.8, 0.1, 2.0)
  assert (ema.lr, ema.init_scale, ema.train_size, ema.batch_size,
          ema.hidden) == (1e-3, 8.0, 1000, 200, (200, 200))
  assert ema.steps_per_epoch == 5
  assert "window_size" not in ema.to_dict()
  assert "alpha" not in config_lib.paper_config("none").to_dict()
  assert config_lib.is_paper_setting(
      config_lib.paper_config("ema", seed=3, max_steps=500, eval_every=50,
                              stop_at_target=True, data="/x"))
  assert not config_lib.is_paper_setting(
      config_lib.paper_config("ema", weight_decay=0.01))
  for bad in (dict(alpha=1.0), dict(lamb=-1.0), dict(init_scale=0.0),
              dict(eval_every=7), dict(max_steps=12), dict(batch_size=2000),
              dict(window_size=0), dict(weight_decay=-1.0)):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
      config_lib.paper_config("ema", **bad)
  with pytest.raises(ValueError, match="filter"):
    config_lib.paper_config("kalman")
  # The flags given: the chosen filter's paper settings, then the values.
  assert config_lib.make_config({}) == config_lib.paper_config("ema")
  ma = config_lib.make_config({"filter": "ma", "seed": 2})
  assert (ma.lamb, ma.window_size, ma.weight_decay, ma.seed) == (
      5.0, 100, 2.0, 2)
  with pytest.raises(ValueError, match="eval_every"):
    config_lib.make_config({"eval_every": 3})


# ------------------------------------------------------------------ model


def test_model_shapes_and_init_scale():
  model = MLP(784, (200, 200), 10, init_scale=8.0, rngs=nnx.Rngs(0))
  assert jax.jit(lambda m, x: m(x))(model, jnp.zeros((3, 784))).shape == (3, 10)
  shapes = [(l.kernel[...].shape, l.bias[...].shape) for l in model.layers]
  assert shapes == [((784, 200), (200,)), ((200, 200), (200,)),
                    ((200, 10), (10,))]
  unit = MLP(784, (200, 200), 10, init_scale=1.0, rngs=nnx.Rngs(0))
  for big, small, fan_in in zip(model.layers, unit.layers, (784, 200, 200)):
    k8, k1 = np.asarray(big.kernel[...]), np.asarray(small.kernel[...])
    # PyTorch default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std bound/sqrt(3).
    np.testing.assert_allclose(k1.std(), 1 / np.sqrt(3 * fan_in), rtol=0.05)
    np.testing.assert_allclose(k8.std() / k1.std(), 8.0, rtol=1e-5)
    assert np.abs(k8).max() <= 8 / np.sqrt(fan_in)
    b8 = np.asarray(big.bias[...])
    assert np.abs(b8).max() <= 8 / np.sqrt(fan_in) and b8.std() > 0
  with pytest.raises(ValueError, match="init_scale"):
    MLP(4, (3,), 2, init_scale=-1.0, rngs=nnx.Rngs(0))


# ------------------------------------------------------------------ training


def test_jitted_epoch_matches_python_loop():
  """One jitted epoch equals a plain loop over the same shuffled batches."""
  cfg = config_lib.paper_config("ema", hidden=(16,), train_size=20,
                                batch_size=5, max_steps=4, eval_every=4)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((20, 784), np.float32))
  y = jnp.asarray(rng.integers(0, 10, 20), jnp.int32)
  model = MLP(784, cfg.hidden, 10, init_scale=8.0, rngs=nnx.Rngs(1))
  graphdef, params = nnx.split(model, nnx.Param)
  tx = training.make_optimizer(cfg)
  key = jax.random.key(3)

  @jax.jit
  def reference_step(p, opt, xb, yb):
    g = jax.grad(lambda q: training.mse_loss(nnx.merge(graphdef, q)(xb),
                                             yb))(p)
    u, opt = tx.update(g, opt, p)
    return optax.apply_updates(p, u), opt

  # A Python loop over single steps reproducing the epoch's shuffle.
  p, opt = params, tx.init(params)
  _, sub = jax.random.split(key)
  order = np.asarray(jax.random.permutation(sub, 20))
  for b in range(4):
    idx = order[b * 5:(b + 1) * 5]
    p, opt = reference_step(p, opt, x[idx], y[idx])

  update = training.make_update(graphdef, tx)
  assert training.make_update(graphdef, tx) is update  # cached
  train_epoch = training.make_train_epoch(update, 4, 5)
  state = training.TrainState(params, tx.init(params), key)
  state, metrics = jax.jit(train_epoch)(state, jnp.int32(1),
                                        {"x_train": x, "y_train": y})
  assert metrics == {}
  for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(p)):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  # The update alone is a pure function of (state, batch).
  s0 = training.TrainState(params, tx.init(params), key)
  s1, m = update(s0, (x[:5], y[:5]))
  assert m == {} and s1.key is s0.key


def test_short_training_loss_falls():
  ds = data_lib.load_dataset(None)
  # Same shapes and settings as the CLI tests' baseline: shares its compile.
  cfg = config_lib.paper_config("none", max_steps=20, eval_every=4,
                                train_size=100, batch_size=50)
  res = harness.train(task_lib.TASK, cfg, ds, progress=False).results
  hist = res["history"]
  assert [h["step"] for h in hist] == [0, 4, 8, 12, 16, 20]
  assert [h["epoch"] for h in hist] == [0, 2, 4, 6, 8, 10]
  assert hist[-1]["train_loss"] < 0.1 * hist[0]["train_loss"]
  assert all(0.0 <= h["train_acc"] <= 1.0 and 0.0 <= h["val_acc"] <= 1.0
             for h in hist)
  assert res["dataset"] == data_lib.DIGITS_LABEL
  assert res["paper_steps_to_val_acc_95"] is None
  assert not res["stopped_at_threshold"]
  assert res["n_params"] == 199210 and res["task"] == "mnist"
  assert all(h["seconds"] >= 0 for h in hist)


def test_make_optimizer_chains_the_filter():
  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.asarray([1.0, -2.0, 3.0])}
  out = {}
  for filter_ in ("none", "ema", "ma"):
    cfg = config_lib.paper_config(filter_)
    tx = training.make_optimizer(cfg)
    state = tx.init(params)
    if filter_ != "none":
      want = gj.GrokfastEmaState if filter_ == "ema" else gj.GrokfastMaState
      assert isinstance(state[0], want)
    out[filter_], _ = tx.update(grads, state, params)
  # AdamW alone with weight decay 0.01 vs the filtered runs with decay 2.0.
  lr = 1e-3
  np.testing.assert_allclose(out["none"]["w"],
                             -lr * (np.sign([1, -2, 3]) + 0.01), rtol=1e-4)
  np.testing.assert_allclose(out["ema"]["w"],
                             -lr * (np.sign([1, -2, 3]) + 2.0), rtol=1e-4)
  np.testing.assert_allclose(out["ma"]["w"],
                             -lr * (np.sign([1, -2, 3]) + 2.0), rtol=1e-4)


def test_describe_and_compare_lines():
  base = {"run": "baseline", "label": "wd 0.01", "final_step": 5000,
          "steps_to_val_acc": {"0.85": 2000, "0.9": None, "0.95": None},
          "steps_to_val_acc_95": None, "seconds_to_val_acc_95": None,
          "best_val_acc": 0.899, "best_val_acc_step": 4900,
          "final_val_acc": 0.89}
  grok = {"run": "grokfast-ema", "label": "l", "final_step": 5000,
          "steps_to_val_acc": {"0.85": 500, "0.9": 800, "0.95": 1000},
          "steps_to_val_acc_95": 1000, "seconds_to_val_acc_95": 3.0,
          "best_val_acc": 0.97, "best_val_acc_step": 1200,
          "final_val_acc": 0.96}
  assert task_lib.describe(base) == (
      "baseline (wd 0.01): test accuracy 85% at step 2,000, 90% never in "
      "5,000 steps, 95% never in 5,000 steps; best 89.9% at step 4,900, "
      "final 89.0%")
  assert task_lib.describe(grok).endswith(
      "95% at step 1,000; best 97.0% at step 1,200, final 96.0% "
      "(95% after 3.0 s)")
  assert task_lib.compare_line(base, grok) == (
      "grokfast-ema reached 95% at step 1,000; baseline had not after 5,000 "
      "steps (> 5.0x fewer steps)")
  assert task_lib.compare_line(base, grok, 0.85) == (
      "grokfast-ema reached 85% at step 500, baseline at step 2,000: "
      "4.0x fewer steps")
  assert task_lib.compare_line(grok, base, 0.85).endswith(
      "grokfast-ema at step 500: 4.0x more steps")
  assert task_lib.compare_line(base, dict(grok, steps_to_val_acc={}),
                               0.9).startswith("neither run reached 90%")

  def hist(*accs):
    return {"history": [{"step": 100 * i, "val_acc": a, "seconds": 0.0}
                        for i, a in enumerate(accs)]}
  assert task_lib.verdict_threshold([hist(0.5, 0.96), hist(0.2)]) == 0.95
  assert task_lib.verdict_threshold([hist(0.5, 0.91), hist(0.86)]) == 0.9
  assert task_lib.verdict_threshold([hist(0.5), hist(0.6)]) == 0.85


def test_plan_compare_runs_and_settings():
  plan = task_lib.plan_compare({"filter": "ma", "window_size": 3, "seed": 4,
                                "baseline_weight_decay": 0.5,
                                "weight_decay": 1.0})
  assert [(sub, name) for sub, name, _ in plan] == [
      ("baseline", "baseline"), ("weight-decay", "weight-decay"),
      ("grokfast-ma", "grokfast-ma")]
  base, control, grok = (cfg for _, _, cfg in plan)
  assert (base.filter, base.weight_decay, base.seed) == ("none", 0.5, 4)
  assert (control.filter, control.weight_decay) == ("none", 1.0)
  assert (grok.window_size, grok.lamb, grok.weight_decay) == (3, 5.0, 1.0)
  assert len(task_lib.plan_compare({"no_control": True})) == 2
  with pytest.raises(ValueError, match="filter must be one of"):
    task_lib.plan_compare({"filter": "none"})


# ------------------------------------------------------------------ CLI


def test_cli_truncated_idx_file_writes_nothing(tmp_path, capsys):
  data = tmp_path / "mnist"
  data.mkdir()
  _write_idx_dir(data, _fake_mnist(np.random.default_rng(0)), gz=False)
  images = data / data_lib.IDX_FILES["x_train"]
  images.write_bytes(images.read_bytes()[:-10])
  out = tmp_path / "out"
  assert cli.main(["mnist", "--data", str(data), "--out", str(out),
                   "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert "truncated" in err and "train-images-idx3-ubyte" in err
  assert len(err.strip().splitlines()) == 1
  assert not out.exists()


# ------------------------------------------------------ the real MNIST files

REAL_MNIST = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
              / "mnist")
needs_real_mnist = pytest.mark.skipif(
    not (REAL_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST IDX files not found at {REAL_MNIST} (the shared data "
    "folder beside the repository)")


@needs_real_mnist
def test_real_mnist_counts_come_from_the_headers():
  ds = data_lib.load_dataset(REAL_MNIST)
  assert ds.label == data_lib.MNIST_LABEL
  assert ds.x_train.shape == (4502, 784) and ds.x_test.shape == (10000, 784)
  assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
  assert np.bincount(ds.y_test).tolist() == [
      980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
  # The canonical first training labels (5, 0, 4, 1, 9, 2, 1, 3, 1, 4).
  assert ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
  sub = data_lib.train_subset(ds, 1000)
  np.testing.assert_array_equal(sub.x_train, ds.x_train[:1000])
  with pytest.raises(ValueError, match=r"train_size must be in \[1, 4502\]"):
    data_lib.train_subset(ds, 4503)
