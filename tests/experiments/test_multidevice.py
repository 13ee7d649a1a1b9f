"""The algorithmic experiment on 8 simulated devices: data parallel and FSDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report():
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  proc = subprocess.run(
      [sys.executable, str(Path(__file__).parent / "multidevice_worker.py")],
      capture_output=True, text=True, env=env, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout)


def _curves(run):
  return {k: np.array([h[k] for h in run["history"]])
          for k in ("train_loss", "val_loss", "val_acc")}


@pytest.mark.parametrize("mesh", ["dp", "fsdp"])
def test_sharded_training_matches_one_device(report, mesh):
  assert report["devices"] == 8
  one, many = _curves(report["none"]), _curves(report[mesh])
  assert len(many["val_acc"]) == len(one["val_acc"]) == 6
  for k in one:
    np.testing.assert_allclose(many[k], one[k], rtol=1e-5, atol=1e-6)


def test_data_parallel_replicates_params_and_filter_state(report):
  r = report["dp"]
  assert r["kernel_spec"] == ["None", "None"]
  assert r["window_spec"] == ["None", "None", "None"]
  assert r["window_bytes_per_device"] == r["window_bytes"]


def test_fsdp_splits_params_and_the_filter_state_alike(report):
  r = report["fsdp"]
  assert "data" in r["kernel_spec"]
  # The window is the param's layout with an unsharded window axis in front.
  assert r["window_spec"] == ["None"] + r["kernel_spec"]
  assert r["window_bytes_per_device"] * 8 == r["window_bytes"]


def test_bad_mesh_settings_raise_clear_errors():
  from grokfast_jax.experiments import sharding
  from grokfast_jax.experiments.modular import config as config_lib
  import jax
  n = jax.device_count()
  with pytest.raises(ValueError, match=rf"devices must be in \[1, {n}\]"):
    sharding.make_mesh(n + 1)
  with pytest.raises(ValueError, match="mesh must be one of"):
    config_lib.ModularConfig(mesh="tpu")
  with pytest.raises(ValueError, match="devices must be an int >= 0"):
    config_lib.ModularConfig(devices=-1)


def test_cli_passes_the_mesh_through():
  from grokfast_jax import cli
  from grokfast_jax.experiments import harness
  from grokfast_jax.experiments.modular import task as task_lib
  args = cli.build_parser().parse_args(
      ["modular", "--mesh", "fsdp", "--devices", "4", "--distributed"])
  cfg = task_lib.make_config(harness.given_from_args(task_lib.TASK, args))
  assert (cfg.mesh, cfg.devices, args.distributed) == ("fsdp", 4, True)


def test_fsdp_spec_picks_the_largest_divisible_axis():
  from grokfast_jax.experiments.sharding import fsdp_spec
  assert tuple(fsdp_spec((32, 128), 8)) == (None, "data")
  assert tuple(fsdp_spec((128, 12), 8)) == ("data", None)
  assert tuple(fsdp_spec((7, 5), 8)) == ()
  assert tuple(fsdp_spec((), 8)) == ()
