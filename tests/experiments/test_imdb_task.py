"""Tests of the IMDb experiment as a harness task: the commands end to end,
their errors, the comparison's plan, shared compilation, exact resume, early
stop and meshes (data parallel, FSDP) on simulated devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from grokfast_jax import cli
from grokfast_jax.experiments import harness
from grokfast_jax.experiments.imdb import config as config_lib
from grokfast_jax.experiments.imdb import task as task_lib
from test_imdb import TINY, tiny_csv  # noqa: F401  (a fixture)


def _strip_seconds(history):
  return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_cli_single_and_compare_end_to_end(tiny_csv, tmp_path, capsys):
  single = tmp_path / "single"
  assert cli.main(["imdb", "--data", str(tiny_csv), "--filter", "none",
                   "--out", str(single), *TINY]) == 0
  printed = capsys.readouterr().out
  assert "6 updates = 2 epochs of 3" in printed
  assert "baseline (wd 1): best val acc " in printed
  res = json.loads((single / "results.json").read_text())
  assert (single / "curves.png").stat().st_size > 0
  assert (single / "loss.png").stat().st_size > 0
  assert [h["step"] for h in res["history"]] == [0, 3, 6]
  assert res["history"][0]["train_loss"] is None
  # 19 pool words and "br"; "its" is a stop word, "7/10." cleans away.
  assert (res["n_train"], res["n_val"], res["vocab_words"]) == (30, 10, 20)
  assert res["settings"]["total_steps"] == 6
  assert res["settings"]["weight_decay"] == 1.0
  assert res["backend"] == jax.default_backend()
  assert res["versions"]["jax"] == jax.__version__
  assert "all 10 held-out reviews" in res["validation"]
  assert "standard error" in res["validation"]
  assert res["seconds_per_update"] > 0
  evals = res["history"][1:]
  # The first update reaching the best (this run ties at steps 3 and 6).
  best = max(h["val_acc"] for h in evals)
  assert res["best_val_acc_step"] == next(
    h["step"] for h in evals if h["val_acc"] == best
  )
  low = min(h["val_loss"] for h in evals)
  assert res["min_val_loss_step"] == next(
    h["step"] for h in evals if h["val_loss"] == low
  )
  assert res["best_val_acc"] == max(h["val_acc"] for h in res["history"][1:])
  assert res["min_val_loss"] == min(h["val_loss"]
                                    for h in res["history"][1:])
  assert res["paper_results"] is None and res["paper_setting"] is False

  out = tmp_path / "compare"
  assert cli.main(["imdb-compare", "--data", str(tiny_csv), "--out", str(out),
                   *TINY]) == 0
  lines = capsys.readouterr().out.splitlines()
  summary = json.loads((out / "results.json").read_text())
  assert list(summary["runs"]) == ["baseline", "weight-decay", "grokfast-ema"]
  for name in summary["runs"]:
    assert (out / name / "results.json").is_file()
    assert (out / name / "curves.png").is_file()
  assert (out / "curves.png").stat().st_size > 0
  assert (out / "loss.png").stat().st_size > 0
  settings = {k: v["settings"] for k, v in summary["runs"].items()}
  assert settings["baseline"]["filter"] == "none"
  assert settings["baseline"]["weight_decay"] == 1.0
  assert settings["weight-decay"]["filter"] == "none"
  assert settings["weight-decay"]["weight_decay"] == 10.0
  assert settings["grokfast-ema"]["weight_decay"] == 10.0
  assert (settings["grokfast-ema"]["alpha"],
          settings["grokfast-ema"]["lamb"]) == (0.98, 2.0)
  assert summary["summary"] == [l for l in lines if " best val acc " in l]
  assert len(summary["summary"]) == 3
  # Same seed, same settings: the compare's baseline repeats the single run.
  assert (_strip_seconds(summary["runs"]["baseline"]["history"])
          == _strip_seconds(res["history"]))
  # The weight decay changes the run.
  assert (summary["runs"]["weight-decay"]["final_val_loss"]
          != summary["runs"]["baseline"]["final_val_loss"])


def test_cli_errors_are_one_line(tiny_csv, tmp_path, capsys):
  out = tmp_path / "out"
  cases = [(["imdb", *TINY], "--data is required"),
           (["imdb-compare", "--data", str(tiny_csv), "--filter", "none",
             *TINY], "filter must be one of ('ema', 'ma')")]
  for argv, message in cases:
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert err.startswith(f"grokfast-jax {argv[0]}: error: ")
  assert not out.exists()
  # --baseline-weight-decay is a flag of the comparison only.
  with pytest.raises(SystemExit) as e:
    cli.main(["imdb", "--data", str(tiny_csv), "--baseline-weight-decay",
              "2"])
  assert e.value.code == 2
  capsys.readouterr()


def test_compare_plan_and_filter_knobs():
  plan = task_lib.plan_compare({"data": "x.csv", "alpha": 0.5,
                                "baseline_weight_decay": 0.5, "seed": 3})
  assert [(sub, name) for sub, name, _ in plan] == [
      ("baseline", "baseline"), ("weight-decay", "weight-decay"),
      ("grokfast-ema", "grokfast-ema")]
  base, control, grok = (cfg for _, _, cfg in plan)
  assert (base.filter, base.weight_decay) == ("none", 0.5)
  assert (control.filter, control.weight_decay) == ("none", 10.0)
  assert (grok.alpha, grok.lamb, grok.weight_decay) == (0.5, 2.0, 10.0)
  assert {c.seed for c in (base, control, grok)} == {3}
  # The filter knobs are ignored without a filter, even out of range.
  cfg = config_lib.make_config({"data": "x.csv", "filter": "none",
                                "alpha": 2.0})
  assert cfg.alpha == config_lib.ImdbConfig().alpha


# ------------------------------------------------------------------ harness


def _tiny_config(path: Path, **given) -> config_lib.ImdbConfig:
  return config_lib.make_config(
      {"data": str(path), "size": 40, "seq_len": 16, "hidden": 8,
       "batch_size": 10, "max_steps": 6, **given})


def test_runs_differing_in_hyperparameters_share_the_compiled_epoch(
    tiny_csv):
  a = _tiny_config(tiny_csv, filter="none", weight_decay=1.0)
  b = _tiny_config(tiny_csv, filter="none", weight_decay=10.0, seed=1)
  c = _tiny_config(tiny_csv, filter="ema")
  data = task_lib.load_data(a)
  pa, pb, pc = (task_lib.build(cfg, data, harness.Context())
                for cfg in (a, b, c))
  assert pa.train_epoch is pb.train_epoch and pa.evaluate is pb.evaluate
  assert pa.train_epoch is not pc.train_epoch
  assert float(pb.state.hparams["weight_decay"]) == 10.0


def test_resume_equals_an_uninterrupted_run(tiny_csv, tmp_path):
  full_cfg = _tiny_config(tiny_csv, max_steps=9)
  data = task_lib.load_data(full_cfg)
  full = harness.train(task_lib.TASK, full_cfg, data, progress=False)
  ckpt = tmp_path / "ckpt"
  part = harness.train(task_lib.TASK, _tiny_config(tiny_csv, max_steps=3),
                       data, progress=False, checkpoint_dir=ckpt)
  assert [h["step"] for h in part.history] == [0, 3]
  resumed = harness.train(task_lib.TASK, full_cfg, data, progress=False,
                          checkpoint_dir=ckpt, resume=True)
  assert [h["step"] for h in resumed.history] == [0, 3, 6, 9]
  assert _strip_seconds(resumed.history) == _strip_seconds(full.history)
  chex.assert_trees_all_equal(resumed.state, full.state)
  for key in ("best_val_acc", "min_val_loss", "final_train_loss"):
    assert resumed.results[key] == full.results[key]
  # Other settings may not resume the checkpoint.
  with pytest.raises(ValueError, match="weight_decay"):
    harness.train(task_lib.TASK, _tiny_config(tiny_csv, weight_decay=1.0),
                  data, progress=False, checkpoint_dir=ckpt, resume=True)


def test_stop_at_target_ends_the_run(tiny_csv, monkeypatch):
  monkeypatch.setattr(config_lib, "TARGET_VAL_ACC", 0.0)
  cfg = _tiny_config(tiny_csv, stop_at_target=True)
  run = harness.train(task_lib.TASK, cfg, task_lib.load_data(cfg),
                      progress=False)
  assert [h["step"] for h in run.history] == [0, 3]
  assert run.results["stopped_early"] is True
  assert run.results["target_step"] == 3
  assert run.results["settings"]["stop_at_target"] is True


_MESH_WORKER = """
import json, sys
import jax
from grokfast_jax.experiments import harness
from grokfast_jax.experiments.imdb import config as config_lib
from grokfast_jax.experiments.imdb import task as task_lib
cfg = config_lib.make_config(json.loads(sys.argv[1]))
data = task_lib.load_data(cfg)
report = {"devices": jax.device_count()}
for mesh in ("dp", "fsdp"):
  run = harness.train(task_lib.TASK, cfg, data,
                      ctx=harness.make_context(mesh), progress=False)
  report[mesh] = {
      "history": [{k: h[k] for k in ("step", "train_loss", "train_acc",
                                     "val_loss", "val_acc")}
                  for h in run.history],
      "split_params": sum(not x.sharding.is_fully_replicated
                          for x in jax.tree.leaves(run.state.params))}
print(json.dumps(report))
"""


def test_mesh_runs_match_one_device(tiny_csv):
  """Data parallel and FSDP on 2 simulated devices (in a subprocess) train
  what one device trains (here)."""
  root = Path(__file__).resolve().parents[2]
  env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  given = {"data": str(tiny_csv), "size": 40, "seq_len": 16, "hidden": 8,
           "batch_size": 10, "max_steps": 6}
  cfg = config_lib.make_config(given)
  single = harness.train(task_lib.TASK, cfg, task_lib.load_data(cfg),
                         progress=False)
  proc = subprocess.run([sys.executable, "-c", _MESH_WORKER,
                         json.dumps(given)], capture_output=True, text=True,
                        env=env, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report["devices"] == 2
  assert report["dp"]["split_params"] == 0
  assert report["fsdp"]["split_params"] > 0

  def curves(history):
    return {k: np.array([np.nan if h[k] is None else h[k] for h in history])
            for k in ("train_loss", "train_acc", "val_loss", "val_acc")}

  one = curves(single.history)
  for mesh in ("dp", "fsdp"):
    many = curves(report[mesh]["history"])
    assert [h["step"] for h in report[mesh]["history"]] == [0, 3, 6]
    for k in one:
      np.testing.assert_allclose(many[k], one[k], rtol=1e-5, err_msg=k)
