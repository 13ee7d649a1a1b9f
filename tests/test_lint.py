"""The package is clean under ruff's lint and format and pyright's type
check (all configured in pyproject.toml), so the suite fails where the tools
would."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
  found = shutil.which(name, path=str(Path(sys.executable).parent))
  if found is None:
    pytest.skip(f"{name} is not installed (it is in the dev extra)")
  return [found]


def _ruff() -> list[str]:
  return _tool("ruff")


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]],
                         ids=["lint", "format"])
def test_ruff_is_clean_on_the_package(args):
  run = subprocess.run(_ruff() + args + ["grokfast_jax"], cwd=REPO,
                       capture_output=True, text=True)
  assert run.returncode == 0, run.stdout + run.stderr


def test_pyright_is_clean_on_the_package():
  # The environment pyright checks against is this interpreter's, whichever
  # virtual environment that is.
  run = subprocess.run(
    _tool("pyright") + ["--pythonpath", sys.executable],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert run.returncode == 0, run.stdout[-5000:] + run.stderr
  assert "0 errors" in run.stdout, run.stdout[-5000:]


def _unannotated(path: Path) -> list[str]:
  """Public functions and public classes' public methods of `path` with a
  parameter (other than self/cls) or a return type left unannotated."""
  import ast

  found = []

  def check(fn: ast.FunctionDef | ast.AsyncFunctionDef, where: str) -> None:
    if fn.name.startswith("_") and fn.name not in ("__init__", "__call__"):
      return
    a = fn.args
    missing = [
      p.arg
      for p in a.posonlyargs + a.args + a.kwonlyargs
      if p.annotation is None and p.arg not in ("self", "cls")
    ]
    missing += [
      "*" + p.arg for p in (a.vararg, a.kwarg) if p and p.annotation is None
    ]
    if fn.returns is None and fn.name != "__init__":
      missing.append("return")
    if missing:
      found.append(f"{path}:{fn.lineno} {where}{fn.name}: {missing}")

  for node in ast.parse(path.read_text()).body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      check(node, "")
    elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
      for sub in node.body:
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
          check(sub, node.name + ".")
  return found


def test_public_functions_are_annotated():
  files = sorted((REPO / "grokfast_jax").rglob("*.py"))
  assert len(files) > 30
  missing = [m for f in files for m in _unannotated(f)]
  assert not missing, "\n".join(missing)


def test_the_annotation_check_finds_a_missing_annotation(tmp_path):
  src = tmp_path / "m.py"
  src.write_text(
    "def f(x: int) -> int:\n  return x\n"
    "def g(x):\n  return x\n"
    "def _h(x):\n  return x\n"
    "class C:\n  def m(self, y: int):\n    return y\n"
  )
  assert [m.split(" ", 1)[1] for m in _unannotated(src)] == [
    "g: ['x', 'return']",
    "C.m: ['return']",
  ]
