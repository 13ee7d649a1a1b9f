"""Tests of the QM9 experiment as a harness task: config and flags, the
jitted epochs, the summary, early stop, resume, meshes and the commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import optax
import pytest

pytest.importorskip("rdkit", reason="the QM9 experiment needs RDKit "
                    '(pip install "grokfast_jax[chem]")')

from grokfast_jax import cli  # noqa: E402
from grokfast_jax.experiments import harness  # noqa: E402
from grokfast_jax.experiments.qm9 import config as config_lib  # noqa: E402
from grokfast_jax.experiments.qm9 import data as data_lib  # noqa: E402
from grokfast_jax.experiments.qm9 import model as model_lib  # noqa: E402
from grokfast_jax.experiments.qm9 import task as task_lib  # noqa: E402
from grokfast_jax.experiments.qm9 import training  # noqa: E402
from test_qm9 import (SMILES, _loss_and_grads, _molecules,  # noqa: E402
                      _synthetic_csv)


# ----------------------------------------------------------------- training


def test_config_defaults_and_validation():
  assert config_lib.paper_config("none").weight_decay == 0.0
  ema = config_lib.paper_config("ema")
  assert (ema.alpha, ema.lamb, ema.weight_decay) == (0.9, 1.0, 0.01)
  assert ema.updates_per_epoch == 2 and ema.max_steps == 100_000
  assert ema.run_name == "grokfast-ema"
  assert config_lib.paper_config("none", weight_decay=0.01).run_name == \
      "weight-decay"
  assert config_lib.epochs_from_steps(5, 2) == 3
  for field, value, message in (("lamb", -1.0, "lamb must be >= 0"),
                                ("epochs", 0, "epochs must be >= 1"),
                                ("log_every", 0, "log_every must be >= 1"),
                                ("target_mse", 0.0, "target_mse must be > 0")):
    with pytest.raises(ValueError, match=message):
      config_lib.paper_config("ema", **{field: value})
  assert "window_size" not in ema.to_dict()
  # The flags: the filter's defaults, then the given values.
  assert config_lib.make_config({}) == ema
  cfg = config_lib.make_config({"filter": "none", "alpha": 1.5,
                                "max_steps": 5})
  assert (cfg.filter, cfg.epochs, cfg.max_steps) == ("none", 3, 6)
  assert "requested_steps" not in cfg.to_dict()
  with pytest.raises(ValueError, match="--epochs or --max-steps, not both"):
    config_lib.make_config({"epochs": 3, "max_steps": 4})
  with pytest.raises(ValueError, match="max_steps must be >= 1"):
    config_lib.make_config({"max_steps": 0})
  base, control, grok = [cfg for _, _, cfg in task_lib.plan_compare(
      {"filter": "ma", "weight_decay": 0.05, "lamb": 2.0, "epochs": 7})]
  assert [c.run_name for c in (base, control, grok)] == [
      "baseline", "weight-decay", "grokfast-ma"]
  assert (base.weight_decay, control.weight_decay, grok.weight_decay) == (
      0.0, 0.05, 0.05)
  assert grok.lamb == 2.0 and control.lamb == 1.0
  assert {c.epochs for c in (base, control, grok)} == {7}
  with pytest.raises(ValueError, match=r"filter must be one of \('ema', "
                     r"'ma'\)"):
    task_lib.plan_compare({"filter": "none"})


# The CLI tests train the same shapes (10 molecules, batches of 3, chunks of
# 2 epochs), so they reuse these runs' compilation.
TINY_ARGS = ["--size", "10", "--batch-size", "3", "--no-progress"]
TINY = {"size": 10, "batch_size": 3, "log_every": 2}


def _train(cfg, **kwargs) -> harness.Run:
  return harness.train(task_lib.TASK, cfg, _molecules()[:10], progress=False,
                       **kwargs)


TINY_CFG = config_lib.paper_config("ema", epochs=2, **TINY)


@pytest.fixture(scope="module")
def tiny_run() -> harness.Run:
  """Two epochs of 10 molecules on one device."""
  return _train(TINY_CFG)


def test_jitted_epochs_match_eager_loop(tiny_run):
  """Two epochs of the harness's jitted chunk = the same updates taken one by
  one with the per-edge network (remainder batch included)."""
  mols = _molecules()[:10]
  cfg, run = TINY_CFG, tiny_run
  tl, vl = run.curves["train_loss"][1:], run.curves["val_loss"][1:]
  train_mols, test_mols = data_lib.split(mols, cfg.seed)
  graphdef, state = training.init_state(cfg)
  params, key = state.params, state.key
  tx = training.make_optimizer(cfg)
  test_batch = model_lib.full_batch(test_mols)
  packed = data_lib.pack(train_mols)
  # Step 0: the initial model's MSE on the training and the test molecules.
  (init_train, _), _ = _loss_and_grads(
      graphdef, params, model_lib.full_batch(train_mols), True)
  (init_val, _), _ = _loss_and_grads(graphdef, params, test_batch, True)
  assert run.history[0]["epoch"] == 0
  np.testing.assert_allclose(run.history[0]["train_loss"], init_train,
                             rtol=1e-5)
  np.testing.assert_allclose(run.history[0]["val_loss"], init_val, rtol=1e-5)

  @jax.jit
  def step(params, opt_state, idx):
    """One update with the per-edge network; the test MSE before it."""
    batch = model_lib.gather_batch(packed, idx, 40, 80)
    (loss, _), grads = _loss_and_grads(graphdef, params, batch, True)
    (val, _), _ = _loss_and_grads(graphdef, params, test_batch, True)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, val

  opt_state = state.opt_state
  vals = []
  for epoch in range(2):
    key, sub = jax.random.split(key)
    order = np.asarray(jax.random.permutation(sub, 5))
    total = 0.0
    for idx in (order[:3], np.append(order[3:], -1)):
      params, opt_state, loss, val = step(params, opt_state, idx)
      vals.append(val)
      total += float(loss) * int(np.sum(idx >= 0))
    np.testing.assert_allclose(tl[epoch], total / 5, rtol=2e-4)
  # The test MSE after epoch 1 is the one before the first update of epoch 2.
  np.testing.assert_allclose(vl[0], vals[2], rtol=2e-4)
  _, _, _, last = step(params, opt_state, order[:3])
  np.testing.assert_allclose(vl[1], last, rtol=2e-4)
  assert run.results["min_val_loss"] == float(vl.min())
  assert float(run.state.min_val_loss) == float(vl.min())


def _facts(val: np.ndarray, **extra) -> dict:
  """Run facts as the harness hands them to `summarize`."""
  f32 = np.float32
  return {"curves": {"train_loss": np.concatenate([[20.0], val + 1]).astype(f32),
                     "val_loss": np.concatenate([[30.0], val]).astype(f32),
                     "seconds": np.arange(len(val) + 1, dtype=f32)},
          "history": [{"step": 0, "epoch": 0, "train_loss": 20.0,
                       "val_loss": 30.0, "seconds": 0.0}],
          "info": {"n_params": 1, "train_gdb_ids": [1],
                   "test_gdb_ids": [2]},
          "label": "baseline", "seconds_total": 2.0, "seconds_steady": 0.5,
          "epochs_steady": 500, "stopped_early": False, **extra}


def test_summary_takes_min_over_every_epoch():
  cfg = config_lib.paper_config("none", epochs=1000, log_every=200)
  val = np.linspace(10, 1, 1000).astype(np.float32)
  val[876] = 0.5  # epoch 877, not a logged epoch
  res = task_lib.summarize(cfg, None, _facts(val))
  assert res["min_val_loss"] == 0.5 and res["min_val_epoch"] == 877
  assert res["min_val_step"] == 877 * cfg.updates_per_epoch
  epochs = [h["epoch"] for h in res["history"]]
  assert epochs[0] == 0 and 877 in epochs and 1000 in epochs
  assert epochs == sorted(epochs) and len(epochs) < 30
  assert res["history"][0]["val_loss"] == 30.0
  assert res["history"][-1]["train_loss"] == float(val[-1] + 1)
  assert res["seconds_per_1000_epochs"] == 1.0
  assert res["target_mse_epoch"] is None
  assert (res["final_epoch"], res["final_step"]) == (1000, 2000)
  line = task_lib.describe(res)
  assert line == ("baseline (wd 0): lowest val MSE 0.5 at epoch 877 "
                  "(1,000 epochs, 2 s)")
  cfg = config_lib.paper_config("none", epochs=1000, target_mse=0.6)
  res = task_lib.summarize(cfg, None, _facts(val, epochs_steady=0))
  assert res["target_mse_epoch"] == 877
  assert res["seconds_per_1000_epochs"] is None  # every chunk compiled
  val[:] = np.nan
  res = task_lib.summarize(cfg, None, _facts(val))
  assert res["min_val_loss"] is None and res["min_val_epoch"] is None
  assert task_lib.describe(res).startswith("baseline (wd 0): no finite val")


def test_stop_at_target_ends_after_the_chunk_reaching_it():
  cfg = config_lib.paper_config("ema", epochs=6, chunk_epochs=2,
                                stop_at_target=True, target_mse=1e12, **TINY)
  res = _train(cfg).results
  assert res["stopped_early"] and res["target_mse_epoch"] == 1
  assert res["final_epoch"] == 2 and res["final_step"] == 4
  assert [h["epoch"] for h in res["history"]] == [0, 1, 2]


def _without_seconds(history):
  return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
  """A run stopped early (smaller --max-steps) into a checkpoint folder and
  resumed with the full settings = the run never interrupted, bit for bit."""
  given = {**TINY, "chunk_epochs": 2}
  full_cfg = config_lib.make_config({**given, "epochs": 6})
  full = _train(full_cfg)
  _train(config_lib.make_config({**given, "max_steps": 3}),
         checkpoint_dir=tmp_path)  # 2 epochs
  with pytest.raises(ValueError, match="pass --resume"):
    _train(full_cfg, checkpoint_dir=tmp_path)
  with pytest.raises(ValueError, match="seed: checkpoint 0, this run 1"):
    _train(config_lib.make_config({**given, "epochs": 6, "seed": 1}),
           checkpoint_dir=tmp_path, resume=True)
  resumed = _train(full_cfg, checkpoint_dir=tmp_path, resume=True)
  assert _without_seconds(resumed.results["history"]) == _without_seconds(
      full.results["history"])
  assert [h["epoch"] for h in full.results["history"]] == [0, 1, 2, 4, 6]
  for k in ("train_loss", "val_loss"):
    np.testing.assert_array_equal(resumed.curves[k], full.curves[k])
  for k in ("min_val_loss", "min_val_epoch", "final_train_loss",
            "final_val_loss"):
    assert resumed.results[k] == full.results[k]
  chex.assert_trees_all_equal(resumed.state, full.state)


MESH_WORKER = r"""
import json, sys
import jax
from grokfast_jax.experiments import harness
from grokfast_jax.experiments.qm9 import config as config_lib
from grokfast_jax.experiments.qm9 import data as data_lib
from grokfast_jax.experiments.qm9 import task as task_lib
smiles, given = json.loads(sys.argv[1]), json.loads(sys.argv[2])
mols = [data_lib.Molecule(i + 1, s, *data_lib.featurize(s), 10.0 + i)
        for i, s in enumerate(smiles)]
report = {"devices": jax.device_count()}
for mesh in ("dp", "fsdp"):
  run = harness.train(task_lib.TASK, config_lib.make_config(given), mols,
                      ctx=harness.make_context(mesh, 2), progress=False)
  report[mesh] = {
      "history": run.results["history"],
      "split": any("data" in str(getattr(p.sharding, "spec", ""))
                   for p in jax.tree.leaves(run.state.params))}
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def mesh_report():
  """`TINY_CFG` trained data parallel and FSDP on 2 simulated CPU devices."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2",
             PYTHONPATH=str(Path(__file__).resolve().parents[2]))
  given = {"epochs": 2, **TINY}
  assert config_lib.make_config(given) == TINY_CFG
  proc = subprocess.run(
      [sys.executable, "-c", MESH_WORKER, json.dumps(SMILES[:10]),
       json.dumps(given)],
      capture_output=True, text=True, env=env, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mesh", ["dp", "fsdp"])
def test_mesh_run_matches_one_device(mesh_report, tiny_run, mesh):
  assert mesh_report["devices"] == 2
  one, many = tiny_run.results["history"], mesh_report[mesh]["history"]
  assert [h["epoch"] for h in many] == [h["epoch"] for h in one] == [0, 1, 2]
  for k in ("train_loss", "val_loss"):
    np.testing.assert_allclose([h[k] for h in many], [h[k] for h in one],
                               rtol=1e-5)
  assert mesh_report[mesh]["split"] == (mesh == "fsdp")


def test_cli_qm9_writes_results_and_curves(tmp_path, capsys):
  path = _synthetic_csv(tmp_path / "q.csv", n=10)
  out = tmp_path / "run"
  assert cli.main(["qm9", "--data", str(path), *TINY_ARGS, "--max-steps",
                   "3", "--log-every", "1", "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "--max-steps 3 -> 2 epochs of 2 updates (4 updates)" in printed
  assert "grokfast-ema (alpha 0.9, lamb 1, wd 0.01): lowest val MSE" in printed
  res = json.loads((out / "results.json").read_text())
  assert res["settings"]["epochs"] == 2 and res["final_step"] == 4
  assert [h["epoch"] for h in res["history"]] == [0, 1, 2]
  assert res["backend"] == jax.default_backend()
  assert res["versions"]["jax"] == jax.__version__
  assert res["data_source"]["n_molecules"] == 10
  assert res["data_source"]["path"] == str(path)
  assert sorted(res["train_gdb_ids"] + res["test_gdb_ids"]) == list(
      range(1, 11))
  assert len(res["train_gdb_ids"]) == 5
  assert res["task"] == "qm9" and res["run"] == "grokfast-ema"
  losses = np.load(out / "losses.npz")
  assert losses["val_loss"].shape == (2,)
  assert res["min_val_loss"] == pytest.approx(float(losses["val_loss"].min()))
  assert (out / "curves.png").stat().st_size > 0


def test_cli_errors_are_one_line(tmp_path, capsys):
  path = _synthetic_csv(tmp_path / "q.csv", n=10)
  out = tmp_path / "out"
  for argv, message in (
      (["qm9", *TINY_ARGS], "--data is required"),
      (["qm9", "--data", str(path), *TINY_ARGS, "--epochs", "2",
        "--max-steps", "4"], "give --epochs or --max-steps, not both"),
      (["qm9-compare", "--data", str(path), *TINY_ARGS, "--filter", "none"],
       "filter must be one of ('ema', 'ma')")):
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"grokfast-jax {argv[0]}: error:"), err
    assert message in err and "\n" not in err
  assert not out.exists()


def test_cli_qm9_compare_runs_three(tmp_path, capsys):
  path = _synthetic_csv(tmp_path / "q.csv", n=10)
  out = tmp_path / "cmp"
  assert cli.main(["qm9-compare", "--data", str(path), *TINY_ARGS,
                   "--epochs", "2", "--weight-decay", "0.05", "--out",
                   str(out)]) == 0
  printed = capsys.readouterr().out
  res = json.loads((out / "results.json").read_text())
  assert res["experiment"] == "qm9-polarizability-compare"
  assert list(res["runs"]) == ["baseline", "weight-decay", "grokfast-ema"]
  settings = {k: v["settings"] for k, v in res["runs"].items()}
  assert settings["baseline"]["weight_decay"] == 0.0
  assert settings["baseline"]["filter"] == "none"
  assert settings["weight-decay"]["weight_decay"] == 0.05
  assert settings["weight-decay"]["filter"] == "none"
  grok = settings["grokfast-ema"]
  assert (grok["alpha"], grok["lamb"], grok["weight_decay"]) == (0.9, 1.0,
                                                                 0.05)
  assert set(res["summary"]) == set(res["runs"]) and len(res["verdicts"]) == 2
  assert res["verdicts"][0].startswith("grokfast-ema vs baseline: lowest")
  assert res["data_source"]["n_molecules"] == 10
  assert res["paper_lowest_val_loss"] == config_lib.PAPER_LOWEST_VAL_LOSS
  for name in res["runs"]:
    assert (out / name / "results.json").exists()
    assert (out / name / "curves.png").exists()
    assert (out / name / "losses.npz").exists()
    assert f"{name} (" in printed
  assert res["verdicts"][1] in printed
  assert (out / "curves.png").exists()
