"""Exact resume of the modular experiment from Orbax checkpoints."""

import dataclasses
import json

import chex
import pytest

from grokfast_jax import cli
from grokfast_jax.experiments import checkpoint as checkpoint_lib
from grokfast_jax.experiments.modular import config as config_lib
from grokfast_jax.experiments import harness
from grokfast_jax.experiments.modular import task as train_lib

# p=11: 55 training equations, batches of 16 -> 4 updates an epoch.
SMALL = dict(p=11, batch_size=16, depth=1, width=32, heads=2, max_steps=48)


def _cfg(filter="ma", **kw):
  extra = {"window_size": 5} if filter == "ma" else {}
  return config_lib.paper_config(filter, **{**SMALL, **extra, **kw})


def _train(cfg, **kwargs):
  run = harness.train(train_lib.TASK, cfg, **kwargs)
  return run.results, run.state[0], run.state[1]


def _no_seconds(history):
  return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


# The MA case (its ring buffer and running sums in the state) runs with
# -m slow, to keep the default suite within its time; EMA's covers the loop.
@pytest.mark.parametrize("filter", [
    "ema", pytest.param("ma", marks=pytest.mark.slow)])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(filter,
                                                                 tmp_path):
  cfg = _cfg(filter)
  full, p_full, s_full = _train(cfg, progress=False)

  # "Interrupted" after 5 of 12 epochs (a kill mid-epoch 6 leaves the same
  # newest checkpoint), then resumed to the end.
  short = dataclasses.replace(cfg, max_steps=20)
  _train(short, progress=False, checkpoint_dir=tmp_path,
                  checkpoint_every=2)
  resumed, p_res, s_res = _train(
      cfg, progress=False, checkpoint_dir=tmp_path, resume=True,
      checkpoint_every=2)

  assert _no_seconds(resumed["history"]) == _no_seconds(full["history"])
  chex.assert_trees_all_equal(p_res, p_full)  # bit for bit on CPU
  chex.assert_trees_all_equal(s_res, s_full)


def test_existing_checkpoints_are_never_overwritten(tmp_path):
  cfg = _cfg(max_steps=8)
  _train(cfg, progress=False, checkpoint_dir=tmp_path)
  with pytest.raises(ValueError, match="already holds checkpoints.*--resume"):
    _train(cfg, progress=False, checkpoint_dir=tmp_path)


@pytest.mark.parametrize("change,named", [
    (dict(window_size=7), "window_size: checkpoint 5, this run 7"),
    (dict(seed=1), "seed: checkpoint 0, this run 1"),
])
def test_restore_into_other_settings_is_refused(tmp_path, change, named):
  _train(_cfg(max_steps=8), progress=False, checkpoint_dir=tmp_path)
  with pytest.raises(checkpoint_lib.CheckpointMismatchError, match=named):
    _train(_cfg(max_steps=16, **change), progress=False,
                    checkpoint_dir=tmp_path, resume=True)


def test_cli_resume_writes_the_same_results(tmp_path, capsys):
  base = ["modular", "--filter", "ema", "--p", "11", "--depth", "1",
          "--width", "32", "--heads", "2", "--no-progress"]
  # (batch 512 > 55 examples: one update an epoch.)
  assert cli.main(base + ["--max-steps", "12", "--out",
                          str(tmp_path / "full")]) == 0
  ckpt = str(tmp_path / "ckpt")
  assert cli.main(base + ["--max-steps", "5", "--checkpoint-dir", ckpt,
                          "--checkpoint-every", "2",
                          "--out", str(tmp_path / "a")]) == 0
  assert cli.main(base + ["--max-steps", "12", "--checkpoint-dir", ckpt,
                          "--resume", "--out", str(tmp_path / "b")]) == 0
  full = json.loads((tmp_path / "full" / "results.json").read_text())
  resumed = json.loads((tmp_path / "b" / "results.json").read_text())
  assert _no_seconds(resumed["history"]) == _no_seconds(full["history"])
  # A mismatched resume is one clear line and exit status 2.
  capsys.readouterr()
  assert cli.main(base + ["--max-steps", "12", "--seed", "3",
                          "--checkpoint-dir", ckpt, "--resume",
                          "--out", str(tmp_path / "c")]) == 2
  err = capsys.readouterr().err
  assert "refusing to restore" in err and "seed: checkpoint 0, this run 3" in err


def test_a_checkpoint_of_the_old_modular_loop_still_resumes(tmp_path):
  """`reference_runs/old_modular_checkpoint` was written at epoch 6 by the
  loop before the harness (a471e8e); resumed here to 10 updates, the run
  equals that loop's uninterrupted one."""
  import shutil
  from pathlib import Path
  old = Path(__file__).parent / "reference_runs" / "old_modular_checkpoint"
  shutil.copytree(old / "6", tmp_path / "ckpt" / "6")
  base = ["modular", "--filter", "ma", "--window-size", "3", "--p", "11",
          "--depth", "1", "--width", "16", "--heads", "2", "--no-progress"]
  assert cli.main(base + ["--max-steps", "10", "--checkpoint-dir",
                          str(tmp_path / "ckpt"), "--resume",
                          "--out", str(tmp_path / "b")]) == 0
  resumed = json.loads((tmp_path / "b" / "results.json").read_text())
  full = json.loads((old / "full_history.json").read_text())
  assert len(full) == 10
  assert _no_seconds(resumed["history"]) == full
