"""Tests of the forecasting experiment: data pipeline, models, BSA fine-tuning."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting import models, train
from grokfast_jax.experiments.forecasting.config import ForecastConfig

REPO = Path(__file__).resolve().parents[2]
ETTH1 = REPO / ".." / "shared" / "data" / "ett" / "ETTh1.csv"


def test_ett_csv_loader_reads_a_small_file(tmp_path):
  path = tmp_path / "tiny.csv"
  path.write_text("date,A,B,OT\n"
                  "2016-07-01 00:00:00,1.5,2,3\n"
                  "2016-07-01 01:00:00,-4,5.25,6e-1\n\n")
  values, columns, dates = fdata.load_ett_csv(path)
  assert columns == ["A", "B", "OT"]
  assert dates == ["2016-07-01 00:00:00", "2016-07-01 01:00:00"]
  assert values.dtype == np.float32
  np.testing.assert_allclose(values, [[1.5, 2, 3], [-4, 5.25, 0.6]])
  bad = tmp_path / "bad.csv"
  bad.write_text("date,A\n2016,1,2\n")
  with pytest.raises(ValueError, match="expected 2 fields"):
    fdata.load_ett_csv(bad)
  bad.write_text("date,A\n2016,x\n")
  with pytest.raises(ValueError, match="bad.csv:2"):
    fdata.load_ett_csv(bad)


def test_split_borders_ratio_and_ett():
  assert fdata.split_borders(1000) == ((0, 600), (600, 800), (800, 1000))
  assert fdata.split_borders(17420, "ett") == ((0, 8640), (8640, 11520),
                                               (11520, 14400))
  with pytest.raises(ValueError, match="split"):
    fdata.split_borders(1000, "random")
  with pytest.raises(ValueError, match="ratios"):
    fdata.split_borders(1000, ratios=(0.8, 0.3, 0.1))


def test_forecast_data_windows_normalization_and_batches():
  rng = np.random.default_rng(0)
  values = rng.normal(5.0, 3.0, size=(500, 2)).astype(np.float32)
  fd = fdata.make_forecast_data(values, lookback=10, horizon=5)
  train_rows = fd.series[:300]
  np.testing.assert_allclose(train_rows.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(train_rows.std(0), 1, atol=1e-5)
  # Targets stay inside their split; val/test inputs look back across it.
  assert fd.starts["train"][0] == 0 and fd.starts["train"][-1] == 300 - 15
  assert fd.starts["val"][0] == 290 and fd.starts["val"][-1] == 400 - 15
  assert fd.starts["test"][0] == 390 and fd.starts["test"][-1] == 500 - 15
  x, y = fdata.windows(fd.series, fd.starts["val"][:2], 10, 5)
  assert x.shape == (2, 2, 10) and y.shape == (2, 2, 5)
  np.testing.assert_array_equal(y[0, :, 0], fd.series[300])
  xj, yj = train.gather(jnp.asarray(fd.series),
                        jnp.asarray(fd.starts["val"][:2]), 10, 5)
  np.testing.assert_array_equal(xj, x)
  np.testing.assert_array_equal(yj, y)

  cons = fdata.consecutive_batches(np.arange(10), 3)
  np.testing.assert_array_equal(cons, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
  shuf = fdata.shuffled_batches(np.arange(10), 3, np.random.default_rng(0))
  assert shuf.shape == (3, 3) and len(set(shuf.ravel())) == 9
  assert not np.array_equal(np.sort(shuf.ravel()), shuf.ravel())



def test_padded_stream_layout():
  batches, mask = fdata.padded_stream(5, 9, 4, warmup_from=2)
  # 8 starts (2..9), no padding needed.
  np.testing.assert_array_equal(batches.ravel(), np.arange(2, 10))
  np.testing.assert_array_equal(mask.ravel(), np.arange(2, 10) >= 5)
  batches, mask = fdata.padded_stream(5, 9, 4)
  # 5 starts front-padded with 3 repeats of the first one.
  np.testing.assert_array_equal(batches.ravel(), [5, 5, 5, 5, 6, 7, 8, 9])
  np.testing.assert_array_equal(mask.ravel(), [0, 0, 0, 1, 1, 1, 1, 1])


@pytest.mark.parametrize("name", models.MODELS)
def test_models_with_identity_bsa_match_the_base_model(name):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 3, 16)),
                  jnp.float32)
  call = nnx.jit(lambda m, inputs: m(inputs))
  base = models.make_model(name, 3, 16, 4, seed=0)
  y = call(base, x)
  assert y.shape == (6, 3, 4)
  with_bsa = models.make_model(name, 3, 16, 4, seed=5, spectral={})
  models.transfer_params(base, with_bsa)
  np.testing.assert_allclose(call(with_bsa, x), y, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["rlinear", "patchtst"])
def test_revin_models_shapes_and_channel_independence(name):
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(5, 3, 24)) * 4 + 2, jnp.float32)
  x2 = x.at[:, 1].set(jnp.asarray(rng.normal(size=(5, 24)), jnp.float32))
  model = models.make_model(name, 3, 24, 6, seed=1)
  if name == "patchtst":
    assert model.n_patches == 3
  # One call on both inputs (the samples of a batch do not interact).
  out = nnx.jit(lambda m, inputs: m(inputs))(model,
                                              jnp.concatenate([x, x2]))
  assert out.shape == (10, 3, 6) and out.dtype == jnp.float32
  y, y2 = out[:5], out[5:]
  # Only channel 1's forecast moves.
  np.testing.assert_array_equal(y2[:, 0], y[:, 0])
  np.testing.assert_array_equal(y2[:, 2], y[:, 2])
  assert not np.allclose(y2[:, 1], y[:, 1])


def test_revin_normalize_then_denormalize_is_the_identity():
  rng = np.random.default_rng(3)
  revin = models.RevIN(4)
  revin.weight[...] = jnp.asarray(rng.uniform(0.5, 2.0, (4, 1)), jnp.float32)
  revin.bias[...] = jnp.asarray(rng.normal(size=(4, 1)), jnp.float32)
  x = jnp.asarray(rng.normal(size=(3, 4, 20)) * 10 + 50, jnp.float32)
  z, stats = revin.normalize(x)
  # Each window's channel is standardized before the affine map.
  np.testing.assert_allclose(
      ((z - revin.bias[...]) / revin.weight[...]).std(-1), 1, rtol=1e-3)
  np.testing.assert_allclose(revin.denormalize(z, stats), x, rtol=1e-5,
                             atol=1e-4)


def test_patchtst_patches_pad_the_end_with_the_last_value():
  assert models.patch_count(96, 16, 8) == 12
  assert models.patch_count(24, 16, 8) == 3
  assert models.patch_count(8, 16, 8) == 1
  x = jnp.arange(24.0)[None, None]
  p = models.make_patches(x, 16, 8)
  assert p.shape == (1, 1, 3, 16)
  np.testing.assert_array_equal(p[0, 0, 1], np.arange(8, 24))
  np.testing.assert_array_equal(p[0, 0, 2], [*range(16, 24)] + [23] * 8)
  with pytest.raises(ValueError, match="lookback must be >= 8"):
    models.make_model("patchtst", 2, 7, 4)
  with pytest.raises(ValueError, match="lookback must be >= 8"):
    ForecastConfig(model="patchtst", lookback=7)


def test_evaluation_does_not_depend_on_the_batch_size():
  rng = np.random.default_rng(0)
  values = np.cumsum(rng.normal(size=(400, 3)), axis=0).astype(np.float32)
  fd = fdata.make_forecast_data(values, lookback=16, horizon=4)
  model = models.make_model("dlinear", 3, 16, 4, spectral={})
  model.spectral.logits[...] = jnp.asarray(
      rng.normal(size=model.spectral.logits[...].shape), jnp.float32)
  a = train.evaluate(model, fd, "test", batch_size=32)
  b = train.evaluate(model, fd, "test", batch_size=7)
  assert a["mse"] == pytest.approx(b["mse"], rel=1e-5)
  assert a["mae"] == pytest.approx(b["mae"], rel=1e-5)
  # The warm-up matters: without it the first test windows see no history.
  c = train.evaluate(model, fd, "test", batch_size=32, warm_up=False)
  assert c["mse"] != pytest.approx(a["mse"], rel=1e-4)


def test_config_validates():
  with pytest.raises(ValueError, match="model"):
    ForecastConfig(model="lstm")
  with pytest.raises(ValueError, match="ft_batch_size"):
    ForecastConfig(ft_batch_size=0)
  cfg = ForecastConfig(learnable_alpha=True)
  assert cfg.spectral_kwargs()["learnable_alpha"] is True


@pytest.mark.skipif(not ETTH1.exists(),
                    reason=f"ETTh1.csv not found at {ETTH1} (the shared "
                    "data folder next to the repository)")
def test_bsa_finetune_on_etth1_slice_lowers_validation_loss():
  values, _, _ = fdata.load_ett_csv(ETTH1)
  # 6000 hourly rows: enough history for the slow EMAs to matter.
  cfg = ForecastConfig(model="dlinear", horizon=24, max_rows=6000,
                       max_epochs=2, patience=2, ft_epochs=2,
                       ft_batch_size=64)
  fd = fdata.make_forecast_data(values, cfg.lookback, cfg.horizon,
                                max_rows=cfg.max_rows)
  base = models.make_model("dlinear", fd.channels, cfg.lookback, cfg.horizon)
  train.fit_base(base, fd, cfg)
  base_val = train.evaluate(base, fd, "val")["mse"]
  bsa = models.make_model("dlinear", fd.channels, cfg.lookback, cfg.horizon,
                          spectral=cfg.spectral_kwargs())
  models.transfer_params(base, bsa)
  assert train.evaluate(bsa, fd, "val")["mse"] == pytest.approx(base_val,
                                                                rel=1e-5)
  log = []
  train.finetune_spectral(bsa, fd, cfg, log)
  ft_val = train.evaluate(bsa, fd, "val")["mse"]
  assert [e["stage"] for e in log] == ["finetune"] * 2
  assert ft_val < base_val * 0.99, (base_val, ft_val)
  # The fine-tuning moved the spectral weights away from the identity.
  assert not np.allclose(bsa.spectral.logits[...],
                         models.make_model(
                             "dlinear", fd.channels, cfg.lookback,
                             cfg.horizon, spectral={}).spectral.logits[...])
