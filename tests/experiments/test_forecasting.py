"""Tests of the forecasting experiment: data pipeline, models, the stages,
BSA fine-tuning and exact resume."""

from pathlib import Path

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grokfast_jax import cli
from grokfast_jax.experiments import checkpoint as checkpoint_lib
from grokfast_jax.experiments import harness
from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.experiments.forecasting import models, task, training
from grokfast_jax.experiments.forecasting.config import (ForecastConfig,
                                                         make_config)

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
  xj, yj = training.gather(jnp.asarray(fd.series),
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
  a = training.evaluate(model, fd, "test", batch_size=32)
  b = training.evaluate(model, fd, "test", batch_size=7)
  assert a["mse"] == pytest.approx(b["mse"], rel=1e-5)
  assert a["mae"] == pytest.approx(b["mae"], rel=1e-5)
  # The warm-up matters: without it the first test windows see no history.
  c = training.evaluate(model, fd, "test", batch_size=32, warm_up=False)
  assert c["mse"] != pytest.approx(a["mse"], rel=1e-4)


def test_config_validates():
  with pytest.raises(ValueError, match="model"):
    ForecastConfig(model="lstm")
  with pytest.raises(ValueError, match="ft_batch_size"):
    ForecastConfig(ft_batch_size=0)
  cfg = ForecastConfig(learnable_alpha=True)
  assert cfg.spectral_kwargs()["learnable_alpha"] is True
  with pytest.raises(ValueError, match="stage must be one of"):
    training.Stage(cfg, "warmup")


@pytest.mark.parametrize("given, named", [
    ({}, "--data is required"),
    ({"data": "x.csv", "max_epochs": 0}, "--epochs must be >= 1, got 0"),
    ({"data": "x.csv", "ft_epochs": -1}, "--ft-epochs must be >= 0, got -1"),
    ({"data": "x.csv", "horizon": 0}, "horizon must be >= 1, got 0"),
    ({"data": "x.csv", "model": "patchtst", "lookback": 7},
     "lookback must be >= 8"),
])
def test_command_config_names_the_bad_flag(given, named):
  with pytest.raises(ValueError, match=named):
    make_config(given)


def test_command_flags_fill_the_run_config():
  args = cli.build_parser().parse_args(
      ["forecast", "--data", "x.csv", "--epochs", "4", "--ft-epochs", "0",
       "--model", "rlinear", "--control"])
  given = harness.given_from_args(task.TASK, args)
  assert given == {"data": "x.csv", "max_epochs": 4, "ft_epochs": 0,
                   "model": "rlinear", "control": True}
  cfg = make_config(given)
  assert isinstance(cfg, ForecastConfig)
  assert (cfg.model, cfg.max_epochs, cfg.ft_epochs) == ("rlinear", 4, 0)
  assert task.TASK.config_class is ForecastConfig and not task.TASK.mesh_ok


# --- the stages and exact resume ---------------------------------------------

# 400 rows, L=16, H=4: 221 training windows, 13 base updates an epoch
# (batch 16) and 6 fine-tuning updates (batch 32). At this learning rate
# the base stage stops early after 3 epochs (patience 1).
SMALL = ForecastConfig(model="dlinear", lookback=16, horizon=4, batch_size=16,
                       lr=0.05, ft_batch_size=32, max_epochs=6, patience=1,
                       ft_epochs=2, eval_batch_size=64)


def small_series(rows=400):
  rng = np.random.default_rng(0)
  t = np.arange(rows)[:, None]
  return (np.sin(t / 7 + np.arange(2)) + 0.01 * t
          + 0.1 * rng.normal(size=(rows, 2))).astype(np.float32)


@pytest.fixture(scope="module")
def full():
  """An uninterrupted small run with the control (compiles once)."""
  return task.run(small_series(), SMALL, control=True, keep_models=True)


def _no_seconds(history):
  return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


class Killed(Exception):
  """Stands for a kill right after a checkpoint was written."""


def test_base_stage_keeps_the_best_params_and_stops_early(full):
  run = full["runs"]["base"]
  h = run.history
  assert len(h) == 3 and run.results["stopped_early"]
  assert h[-1]["epochs_without_gain"] == 1
  assert h[-1]["val_loss"] >= h[-2]["best_val_loss"] == h[-2]["val_loss"]
  assert run.results["steps_per_epoch"] == 221 // 16 == 13
  assert [e["epoch"] for e in run.results["log"]] == [0, 1, 2]
  # The best params are kept; scored again they give the best val MSE.
  assert full["base_val"] == min(e["val_loss"] for e in h)
  assert [e["stage"] for e in full["log"]] == (
      ["base"] * 3 + ["finetune"] * 2 + ["control"] * 2)


def test_bsa_starts_as_the_base_model_and_its_state_is_carried(full):
  fd, start = full["data"], full["runs"]["base"].state["best_params"]
  stage = training.Stage(SMALL, "finetune")
  bsa = training.stage_model(stage, fd, start)
  assert bsa.spectral is not None
  assert training.evaluate(bsa, fd, "val", batch_size=64)["mse"] == (
      pytest.approx(full["base_val"], rel=1e-5))
  state = full["runs"]["finetune"].state
  assert set(state) == {"params", "rest", "opt", "best_params", "best_val",
                        "bad"}
  # The BSA's EMA state is part of the training state.
  assert bool(state["rest"]["spectral"]["initialized"][...])
  assert np.abs(np.asarray(state["rest"]["spectral"]["ema"][...])).max() > 0
  assert not full["runs"]["control"].state["rest"]  # no BSA, no state


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(
    full, tmp_path, monkeypatch):
  values = small_series()
  folder = tmp_path / "ckpt"
  save = checkpoint_lib.RunCheckpointer.save
  # Killed after base epoch 2; resumed and killed again after fine-tuning
  # epoch 1 (the base stage, stopped early after epoch 3, is then restored,
  # not trained again); resumed to the end.
  for resume in (False, True):
    calls = []

    def killing_save(self, *args, **kwargs):
      written = save(self, *args, **kwargs)
      calls.append(1)
      if len(calls) == 2:
        raise Killed
      return written

    with monkeypatch.context() as m:
      m.setattr(checkpoint_lib.RunCheckpointer, "save", killing_save)
      with pytest.raises(Killed):
        task.run(values, SMALL, control=True, checkpoint_dir=folder,
                 checkpoint_every=1, resume=resume)
  assert {p.name for p in folder.iterdir()} == {"base", "finetune"}
  resumed = task.run(values, SMALL, control=True, checkpoint_dir=folder,
                     checkpoint_every=1, resume=True)
  assert resumed["metrics"] == full["metrics"]
  assert resumed["log"] == full["log"]
  for name, run in full["runs"].items():
    again = resumed["runs"][name]
    assert _no_seconds(again.history) == _no_seconds(run.history)
    chex.assert_trees_all_equal(again.state, run.state)  # bit for bit


def test_search_tries_each_rate_in_turn_and_keeps_the_lowest_val(tmp_path):
  cfg = ForecastConfig(**{**SMALL.__dict__, "max_epochs": 1, "ft_epochs": 2,
                          "ft_lr_base": 1e-2})
  values = small_series()
  out = task.run(values, cfg, control=True, search=True,
                 checkpoint_dir=tmp_path)
  bsa, ctl = out["search"]["bsa"], out["search"]["control"]
  rb, rs = cfg.ft_lr_base, cfg.ft_lr_spectral
  # BSA: the base weights' rate x 0.7 / 1 / 1.4, then the mixing rate
  # x 0.7 / 1.4 around the rates chosen so far (x 1 is the current best).
  assert [t["rates"] for t in bsa["tried"][:3]] == [
      {"ft_lr_base": rb * f, "ft_lr_spectral": rs} for f in (0.7, 1.0, 1.4)]
  first = min(bsa["tried"][:3], key=lambda t: t["val_mse"])
  assert [t["rates"] for t in bsa["tried"][3:]] == [
      {"ft_lr_base": first["rates"]["ft_lr_base"], "ft_lr_spectral": rs * f}
      for f in (0.7, 1.4)]
  assert [t["rates"] for t in ctl["tried"]] == [
      {"ft_lr_base": rb * f} for f in (0.7, 1.0, 1.4)]
  for model, found in (("bsa", bsa), ("control", ctl)):
    vals = [t["val_mse"] for t in found["tried"]]
    assert len(set(vals)) == len(vals)  # the rates matter here
    best = min(found["tried"], key=lambda t: t["val_mse"])
    assert found["rates"] == best["rates"]
    assert out["metrics"][model]["val"]["mse"] == best["val_mse"]
  assert out["bsa_val"] == min(t["val_mse"] for t in bsa["tried"])
  # The model kept is the chosen rates' fine-tuning, as a run without the
  # search at those rates trains it.
  again = task.run(values, ForecastConfig(**{**cfg.__dict__, **bsa["rates"]}))
  assert again["metrics"]["bsa"] == out["metrics"]["bsa"]
  assert "search" not in again
  # One checkpoint folder per candidate, under its stage's.
  assert len(list((tmp_path / "finetune").iterdir())) == 5
  assert len(list((tmp_path / "control").iterdir())) == 3


def test_search_tunes_learned_smoothing_factors_last():
  assert list(task.search_rates(SMALL, "finetune")) == ["ft_lr_base",
                                                        "ft_lr_spectral"]
  learned = ForecastConfig(**{**SMALL.__dict__, "learnable_alpha": True,
                              "ft_lr_alpha": 3e-3})
  assert task.search_rates(learned, "finetune") == {
      "ft_lr_base": SMALL.ft_lr_base, "ft_lr_spectral": SMALL.ft_lr_spectral,
      "ft_lr_alpha": 3e-3}
  assert task.search_rates(learned, "control") == {
      "ft_lr_base": SMALL.ft_lr_base}


def test_existing_checkpoints_need_resume_and_the_same_settings(tmp_path):
  values = small_series()
  cfg = ForecastConfig(**{**SMALL.__dict__, "max_epochs": 1, "ft_epochs": 1})
  task.run(values, cfg, checkpoint_dir=tmp_path)
  assert {p.name for p in tmp_path.iterdir()} == {"base", "finetune"}
  with pytest.raises(ValueError, match="already holds checkpoints"):
    task.run(values, cfg, checkpoint_dir=tmp_path)
  other = ForecastConfig(**{**cfg.__dict__, "seed": 1})
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match="seed: checkpoint 0, this run 1"):
    task.run(values, other, checkpoint_dir=tmp_path, resume=True)
  with pytest.raises(ValueError, match="--resume needs --checkpoint-dir"):
    task.run(values, cfg, resume=True)


@pytest.mark.skipif(not ETTH1.exists(),
                    reason=f"ETTh1.csv not found at {ETTH1} (the shared "
                    "data folder next to the repository)")
def test_bsa_finetune_on_etth1_slice_lowers_validation_loss():
  values, _, _ = fdata.load_ett_csv(ETTH1)
  # 6000 hourly rows: enough history for the slow EMAs to matter.
  cfg = ForecastConfig(model="dlinear", horizon=24, max_rows=6000,
                       max_epochs=2, patience=2, ft_epochs=2,
                       ft_batch_size=64)
  result = task.run(values, cfg, keep_models=True)
  base_val, ft_val = result["base_val"], result["bsa_val"]
  assert [e["stage"] for e in result["log"]] == ["base"] * 2 + (
      ["finetune"] * 2)
  assert ft_val < base_val * 0.99, (base_val, ft_val)
  # The fine-tuning moved the spectral weights away from the identity.
  fd = result["data"]
  assert not np.allclose(result["models"]["bsa"].spectral.logits[...],
                         models.make_model(
                             "dlinear", fd.channels, cfg.lookback,
                             cfg.horizon, spectral={}).spectral.logits[...])


