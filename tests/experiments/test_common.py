"""Tests of grokfast_jax.experiments.common."""

import json
import math

import numpy as np

from grokfast_jax.experiments import common


def _history():
  return [
      {"step": 10, "epoch": 1, "train_loss": 4.0, "train_acc": 0.1,
       "val_loss": 4.5, "val_acc": 0.01, "seconds": 1.5},
      {"step": 20, "epoch": 2, "train_loss": 1.0, "train_acc": 0.99,
       "val_loss": 2.0, "val_acc": 0.95, "seconds": 2.5},
      {"step": 30, "epoch": 3, "train_loss": 0.1, "train_acc": 1.0,
       "val_loss": 0.1, "val_acc": 0.99, "seconds": 3.5},
  ]


def test_steps_to_threshold_first_entry_reaching_it():
  assert common.steps_to_threshold(_history()) == (20, 2.5)
  assert common.steps_to_threshold(_history(), threshold=0.96) == (30, 3.5)
  assert common.steps_to_threshold(_history(), key="train_acc",
                                   threshold=0.05) == (10, 1.5)


def test_steps_to_threshold_not_reached_or_empty():
  assert common.steps_to_threshold(_history(), threshold=0.999) == (None, None)
  assert common.steps_to_threshold([]) == (None, None)


def test_save_results_writes_strict_json(tmp_path):
  results = {"a": float("nan"), "b": float("inf"), "c": np.float32(0.5),
             "d": np.arange(3), "e": None, "f": (1, 2), "g": {"h": True}}
  path = common.save_results(tmp_path / "new" / "dir", results)
  assert path == tmp_path / "new" / "dir" / "results.json"
  text = path.read_text()
  assert "NaN" not in text and "Infinity" not in text
  loaded = json.loads(text)
  assert loaded == {"a": None, "b": None, "c": 0.5, "d": [0, 1, 2], "e": None,
                    "f": [1, 2], "g": {"h": True}}


def test_plot_curves_writes_png(tmp_path):
  path = common.plot_curves({"baseline": _history(), "ema": _history()[:2]},
                            tmp_path / "curves.png", "title")
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_progress_bar_tracks_steps():
  with common.progress_bar(30, "x") as bar:
    for entry in _history():
      bar.update_to(entry)
    assert bar._bar.n == 30


def test_median_and_format():
  assert common.median([3, 1, 2]) == 2
  assert common.median([4, 1, 2, 3]) == 2.5
  assert common.median([]) is None
  assert common.format_steps(1110) == "1,110"
  assert common.format_steps(None) == "n/a"
  assert math.isclose(common.median([1.5]), 1.5)
