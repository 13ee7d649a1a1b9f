"""Every notebook in notebooks/ runs top to bottom, on small settings.

Each notebook is executed with nbclient in a kernel started from this very
interpreter (a kernelspec written to a temporary JUPYTER_PATH whose argv is
``sys.executable``), so a fresh ``.venv`` needs no registered kernel. The
environment variable ``GROKFAST_NOTEBOOK_SMOKE=1`` tells the notebooks'
settings cells to shrink the runs. Any cell raising fails the test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "grokfast-jax-test-python"
CELL_TIMEOUT_S = 600


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
  """A kernelspec running ``sys.executable``, visible through JUPYTER_PATH."""
  spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  spec = {
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
               "{connection_file}"],
      "display_name": "Python (grokfast_jax tests)",
      "language": "python",
  }
  (spec_dir / "kernel.json").write_text(json.dumps(spec))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  monkeypatch.setenv("GROKFAST_NOTEBOOK_SMOKE", "1")
  return KERNEL_NAME


def execute(nb: nbformat.NotebookNode, kernel_name: str) -> None:
  """Runs every cell of `nb` in place; raises CellExecutionError on errors."""
  NotebookClient(nb, kernel_name=kernel_name, timeout=CELL_TIMEOUT_S,
                 allow_errors=False,
                 resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
                 ).execute()


def stream_text(cell: nbformat.NotebookNode) -> str:
  return "".join(o.get("text", "") for o in cell.outputs
                 if o.output_type == "stream")


def test_there_are_notebooks():
  assert NOTEBOOKS, f"no notebook in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
          f"{path.name}: clear the outputs before committing")


# Per notebook: a check cell appended after its last cell, and its expected
# printed output (what the smoke settings must have produced).
EXTRA_CHECKS = {
    "grokfast_modular.ipynb": (
        "print(sorted(results), P, MAX_STEPS,"
        " [r['final']['step'] for r in results.values()])",
        "['baseline', 'grokfast-ema'] 11 40 [40, 40]"),
}
# Notebooks that must display at least one figure.
PLOTTING = {"grokfast_modular.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, kernel_name):
  nb = nbformat.read(path, as_version=4)
  n_own = len(nb.cells)
  # Cells added here only: where the kernel runs, then the notebook's check.
  nb.cells.append(nbformat.v4.new_code_cell(
      "import os, sys\n"
      "print(sys.executable)\n"
      "print(os.environ.get('GROKFAST_NOTEBOOK_SMOKE'))"))
  check = EXTRA_CHECKS.get(path.name)
  if check:
    nb.cells.append(nbformat.v4.new_code_cell(check[0]))
  execute(nb, kernel_name)
  code_cells = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.execution_count for c in code_cells)
  kernel_python, smoke = stream_text(nb.cells[n_own]).split()
  assert Path(kernel_python).resolve() == Path(sys.executable).resolve()
  assert smoke == "1"
  if check:
    assert stream_text(nb.cells[-1]).strip() == check[1]
  if path.name in PLOTTING:
    outputs = [o for c in nb.cells[:n_own] if c.cell_type == "code"
               for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot"


def test_a_failing_cell_fails(kernel_name):
  nb = nbformat.v4.new_notebook(cells=[
      nbformat.v4.new_code_cell("x = 1"),
      nbformat.v4.new_code_cell("raise ValueError('boom')"),
      nbformat.v4.new_code_cell("y = 2")])
  with pytest.raises(CellExecutionError, match="boom"):
    execute(nb, kernel_name)
