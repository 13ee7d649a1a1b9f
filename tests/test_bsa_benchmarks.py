"""Smoke tests of the BSA cost benchmarks (they call private functions)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(module, *args):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", f"benchmarks.micro.{module}",
                         *args], capture_output=True, text=True, env=env,
                        cwd=ROOT, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout


def test_bsa_cost_prints_both_methods_side_by_side():
  out = _run("bsa_cost", "--batches", "16,32", "--channels", "7",
             "--rounds", "1")
  rows = [line for line in out.splitlines() if line.startswith("| 16 |")
          or line.startswith("| 32 |")]
  assert len(rows) == 2
  for row in rows:
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) > 0 and float(cells[3]) > 0  # closed, scan ms
    assert cells[4].endswith("x") and cells[7].endswith("x")
  assert "| closed |" in rows[0] and "| scan |" in rows[1]  # auto


def test_bsa_scan_tuning_times_every_variant():
  out = _run("bsa_scan_tuning", "--batches", "32", "--channels", "7",
             "--blocks", "16", "--chunks", "10,all", "--rounds", "1")
  row = next(r for r in out.splitlines() if r.startswith("B=32 C=7:"))
  # The closed form, and the scan in 7 one-channel chunks and in one chunk.
  for name in ("closed=", "K16/2^10(7ch)=", "K16/all(1ch)="):
    assert name in row
