"""Every task trains exactly what it trained before the experiment harness.

`reference_runs/*.json` are the results of short command lines recorded at
the commit before the harness replaced the per-task loops (see
`reference_runs/record.py`). Each is run again here and every recorded value
must be there, equal: the histories bit for bit (wall-clock seconds aside),
the task's figures and settings too. New keys may be added, none removed.
"""

import json
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "reference_runs"
sys.path.insert(0, str(HERE))
import record  # noqa: E402

FAST = ("modular_ema", "modular_ma_small", "mnist_digits", "mnist_real",
        "imdb", "qm9", "forecast_dlinear")

# Wall-clock seconds inside a summary line, e.g. "(3 updates, 3 s)".
WALL_CLOCK = re.compile(r"\b\d+ s\)")

# Runs whose float32 figures depend, in their last bits, on the CPU that
# computes them: the pre-harness code of a471e8e itself gives PatchTST's
# fine-tuned validation MSE 0.18623393774 on one AMD EPYC machine and the
# recorded 0.18623399734 on the machine that recorded it (XLA CPU picks its
# matmul kernels and their summation order per CPU). For them a float may
# differ from the record by at most this relative amount (a few float32
# ulps, which the percent changes derived from them amplify to ~4e-6);
# every other run is compared bit for bit.
ULP_TOLERANT = {"forecast_patchtst": 1e-5}


def assert_contains(new, old, path="results", rel=0.0):
  """Every key and value of `old` is in `new`, equal (lists element-wise;
  floats within `rel` relative difference, 0: bit for bit)."""
  if isinstance(old, dict):
    assert isinstance(new, dict), f"{path}: {new!r} is not a dict"
    for k, v in old.items():
      assert k in new, f"{path}: key {k!r} is missing"
      assert_contains(new[k], v, f"{path}.{k}", rel)
  elif isinstance(old, list):
    assert isinstance(new, list) and len(new) == len(old), (
        f"{path}: {len(new) if isinstance(new, list) else new!r} entries, "
        f"recorded {len(old)}")
    for i, (a, b) in enumerate(zip(new, old)):
      assert_contains(a, b, f"{path}[{i}]", rel)
  elif isinstance(old, str) and isinstance(new, str):
    assert WALL_CLOCK.sub("N s)", new) == WALL_CLOCK.sub("N s)", old), (
        f"{path}: {new!r}, recorded {old!r}")
  elif rel and isinstance(old, float) and isinstance(new, float):
    assert abs(new - old) <= rel * abs(old), (
        f"{path}: {new!r}, recorded {old!r} (beyond {rel:g} relative)")
  else:
    assert new == old, f"{path}: {new!r}, recorded {old!r}"


def test_assert_contains_can_fail():
  assert_contains({"a": [1, {"b": 2.0, "c": 0}]}, {"a": [1, {"b": 2.0}]})
  for new in ({"a": [1, {"b": 2.0000001}]}, {"a": [1]}, {"x": 1}):
    with pytest.raises(AssertionError):
      assert_contains(new, {"a": [1, {"b": 2.0}]})
  assert_contains({"b": 2.000001}, {"b": 2.0}, rel=1e-6)
  with pytest.raises(AssertionError):
    assert_contains({"b": 2.00001}, {"b": 2.0}, rel=1e-6)


@pytest.mark.parametrize("name", [
    n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
    for n in record.RUNS])
def test_run_equals_its_reference(name, tmp_path):
  if record.argv_for(name, tmp_path) is None:
    pytest.skip(f"the data of {name} is absent ({record.SHARED})")
  old = json.loads((HERE / f"{name}.json").read_text())
  assert_contains(record.run(name, tmp_path), old,
                  rel=ULP_TOLERANT.get(name, 0.0))
