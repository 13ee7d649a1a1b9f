"""The package is clean under ruff's lint and format (configured in
pyproject.toml), so the suite fails where the style tools would."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
  found = shutil.which("ruff", path=str(Path(sys.executable).parent))
  if found is None:
    pytest.skip("ruff is not installed (it is in the dev extra)")
  return [found]


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]],
                         ids=["lint", "format"])
def test_ruff_is_clean_on_the_package(args):
  run = subprocess.run(_ruff() + args + ["grokfast_jax"], cwd=REPO,
                       capture_output=True, text=True)
  assert run.returncode == 0, run.stdout + run.stderr
