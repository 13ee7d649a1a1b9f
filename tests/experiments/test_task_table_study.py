"""The task table (benchmarks/studies/task_table.py): each cell's flags, its
resuming from recorded cells and its markdown rows."""

import json

import pytest

from benchmarks.studies import task_table
from grokfast_jax.experiments.modular import recipes


@pytest.mark.parametrize(
  "op,c",
  [
    ("*", 2.0),
    ("+", 1.75),
    ("/", 1.75),
    ("-", 1.5),
    ("s5", 1.0),
    ("x^2+xy+y^2", 2.0),
  ],
)
def test_per_task_recipes_take_clip_to_groks_c(op, c):
  assert task_table.cell_settings(op, "lion-clip") == {
    "op": op,
    "recipe": "lion-clip",
    "max_weight_norm": c,
  }
  # fastest-c is fastest with only the bound changed; on `*` that is
  # fastest's own bound.
  assert task_table.cell_settings(op, "fastest-c") == {
    "op": op,
    "recipe": "fastest",
    "max_weight_norm": c,
  }
  if op == "*":
    assert recipes.RECIPES["fastest"].settings["max_weight_norm"] == c
  assert task_table.cell_settings(op, "fastest") == {
    "op": op,
    "recipe": "fastest",
  }
  assert task_table.cell_settings(op, "paper-ema") == {
    "op": op,
    "recipe": "paper-ema",
  }


def _cell(op, recipe, steps, max_steps=1500):
  got = [s for s in steps if s is not None]
  return {
    "op": op,
    "recipe": recipe,
    "settings": task_table.cell_settings(op, recipe),
    "seeds": list(range(len(steps))),
    "max_steps": max_steps,
    "after": 100,
    "steps": steps,
    "reached": len(got),
    "median": None,
    "min": min(got) if got else None,
    "max": None,
    "median_seconds": 12.0 if got else None,
    "min_val_acc_after": 0.9 if got else None,
    "sweep_seconds": 1.0,
    "backend": "cpu",
    "device": "cpu",
  }


def test_table_rows_give_the_median_range_and_target():
  rows = task_table.table(
    [
      _cell("+", "fastest-c", [100, 300, 200]),
      _cell("s5", "lion-clip", [None, 700, 900, None]),
      _cell("x^2+xy+y^2", "paper-ema", [None, None]),
    ]
  ).splitlines()
  assert rows[2] == (
    "| `+` | fastest-c | 200 (100-300) | 3/3 | 12 | 0.900 | 570 | <= 285 |"
  )
  # A seed that never reached 95% counts as slower than every other.
  assert rows[3] == (
    "| `s5` | lion-clip | >1500 (700 to >1500) | 2/4 | 12 "
    "| 0.900 | 1348 | <= 674 |"
  )
  assert rows[4] == ("| `x^2+xy+y^2` | paper-ema | never | 0/2 |  |  | - | - |")


def test_recorded_cells_are_not_run_again(tmp_path, monkeypatch, capsys):
  record = tmp_path / "cells.jsonl"
  old = _cell("+", "fastest-c", [100, 300, 200])
  old["seeds"] = [0, 1, 2]
  record.write_text(json.dumps(old) + "\n")
  ran = []

  def fake_run_cell(op, recipe, seeds, max_steps, after):
    ran.append((op, recipe))
    return _cell(op, recipe, [50] * len(seeds))

  monkeypatch.setattr(task_table, "run_cell", fake_run_cell)
  argv = [
    "--recipes",
    "fastest-c",
    "--ops=+,-",
    "--seeds",
    "0-2",
    "--max-steps",
    "1500",
    "--after",
    "100",
    "--json",
    str(record),
  ]
  assert task_table.main(argv) == 0
  assert ran == [("-", "fastest-c")]
  lines = record.read_text().splitlines()
  assert len(lines) == 2 and json.loads(lines[1])["op"] == "-"
  out = capsys.readouterr().out
  assert "| `+` | fastest-c | 200 (100-300)" in out
  # A second call finds both and runs nothing.
  assert task_table.main(argv) == 0 and ran == [("-", "fastest-c")]


def test_a_cell_is_one_sweep_of_its_seeds_with_its_settings(monkeypatch):
  seen = {}
  real_sweep = task_table._sweep.sweep

  def spy(task, members, **kw):
    seen["cfgs"] = [m.cfg for m in members]
    return real_sweep(task, members, **kw)

  monkeypatch.setattr(task_table._sweep, "sweep", spy)
  cell = task_table.run_cell("+", "fastest-c", [0, 1], max_steps=20, after=10)
  assert [c.seed for c in seen["cfgs"]] == [0, 1]
  assert all(
    c.max_weight_norm == 1.75 and c.optimizer == "muon" and c.op == "+"
    for c in seen["cfgs"]
  )
  assert cell["settings"] == {
    "op": "+",
    "recipe": "fastest",
    "max_weight_norm": 1.75,
  }
  # 20 updates are far from 95%: no seed reached it, and each seed's best
  # validation accuracy is kept to say how far.
  assert cell["steps"] == [None, None] and cell["reached"] == 0
  assert cell["median"] is None and cell["median_seconds"] is None
  assert len(cell["best_val_acc"]) == 2
  assert all(0.0 <= a < 0.95 for a in cell["best_val_acc"])
