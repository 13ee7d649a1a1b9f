"""Two processes on this machine train one run, as two hosts would.

Each process has one CPU device and joins the other through
``--distributed`` (CPU collectives over gloo); together they train the
modular task data parallel on a 2-device mesh. The history must equal one
process's on two (simulated) devices; only process 0 writes results; the
checkpoints are Orbax's multi-process layout, and a run killed after its
first part and resumed by both processes ends as the uninterrupted run.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

# 44 training equations: one batch of 44 an epoch, 22 rows a device.
ARGS = ["modular", "--filter", "ema", "--p", "11", "--train-fraction", "0.4",
        "--depth", "1",
        "--width", "16", "--heads", "2", "--mesh", "dp", "--no-progress"]


def _env(devices=None):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  if devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _two_processes(extra, outs):
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "grokfast_jax.cli", *ARGS, *extra,
       "--distributed", "--coordinator-address", f"127.0.0.1:{port}",
       "--num-processes", "2", "--process-id", str(i), "--out", str(outs[i])],
      env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      start_new_session=True) for i in range(2)]
  try:
    results = [p.communicate(timeout=300) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, results):
    assert p.returncode == 0, err[-3000:]


def _history(path):
  return [{k: v for k, v in h.items() if k != "seconds"}
          for h in json.loads(path.read_text())["history"]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("distributed")
  one = subprocess.run(
      [sys.executable, "-m", "grokfast_jax.cli", *ARGS, "--max-steps", "8",
       "--out", str(tmp / "one")], env=_env(devices=2), capture_output=True,
      text=True, timeout=300, check=False)
  assert one.returncode == 0, one.stderr[-3000:]
  ckpt = str(tmp / "ckpt")
  _two_processes(["--max-steps", "4", "--checkpoint-dir", ckpt,
                  "--checkpoint-every", "2"], [tmp / "a0", tmp / "a1"])
  _two_processes(["--max-steps", "8", "--checkpoint-dir", ckpt, "--resume"],
                 [tmp / "b0", tmp / "b1"])
  return tmp


def test_two_processes_train_what_one_process_on_two_devices_trains(runs):
  one = _history(runs / "one" / "results.json")
  two = _history(runs / "b0" / "results.json")
  assert len(one) == len(two) == 8
  assert two == one


def test_only_process_0_writes_results(runs):
  assert (runs / "a0" / "results.json").exists()
  assert (runs / "b0" / "curves.png").exists()
  assert not (runs / "a1").exists() and not (runs / "b1").exists()
  record = json.loads((runs / "b0" / "results.json").read_text())
  assert record["process_count"] == 2 and len(record["devices"]) == 2


def test_checkpoints_are_written_by_both_processes(runs):
  newest = max((runs / "ckpt").iterdir(), key=lambda p: int(p.name))
  assert newest.name == "8"
  written = {p.name for p in (newest / "state").iterdir()}
  assert {"ocdbt.process_0", "ocdbt.process_1"} <= written
