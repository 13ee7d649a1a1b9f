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
        "imdb", "qm9", "forecast_patchtst")

# Wall-clock seconds inside a summary line, e.g. "(3 updates, 3 s)".
WALL_CLOCK = re.compile(r"\b\d+ s\)")


def assert_contains(new, old, path="results"):
  """Every key and value of `old` is in `new`, equal (lists element-wise)."""
  if isinstance(old, dict):
    assert isinstance(new, dict), f"{path}: {new!r} is not a dict"
    for k, v in old.items():
      assert k in new, f"{path}: key {k!r} is missing"
      assert_contains(new[k], v, f"{path}.{k}")
  elif isinstance(old, list):
    assert isinstance(new, list) and len(new) == len(old), (
        f"{path}: {len(new) if isinstance(new, list) else new!r} entries, "
        f"recorded {len(old)}")
    for i, (a, b) in enumerate(zip(new, old)):
      assert_contains(a, b, f"{path}[{i}]")
  elif isinstance(old, str) and isinstance(new, str):
    assert WALL_CLOCK.sub("N s)", new) == WALL_CLOCK.sub("N s)", old), (
        f"{path}: {new!r}, recorded {old!r}")
  else:
    assert new == old, f"{path}: {new!r}, recorded {old!r}"


def test_assert_contains_can_fail():
  assert_contains({"a": [1, {"b": 2.0, "c": 0}]}, {"a": [1, {"b": 2.0}]})
  for new in ({"a": [1, {"b": 2.0000001}]}, {"a": [1]}, {"x": 1}):
    with pytest.raises(AssertionError):
      assert_contains(new, {"a": [1, {"b": 2.0}]})


@pytest.mark.parametrize("name", [
    n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
    for n in record.RUNS])
def test_run_equals_its_reference(name, tmp_path):
  if record.argv_for(name, tmp_path) is None:
    pytest.skip(f"the data of {name} is absent ({record.SHARED})")
  old = json.loads((HERE / f"{name}.json").read_text())
  assert_contains(record.run(name, tmp_path), old)
