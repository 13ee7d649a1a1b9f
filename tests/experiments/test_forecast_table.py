"""The forecasting table study: one run per cell, recorded and resumed."""

import json

import pytest

from benchmarks.studies import forecast_table
from tests.experiments.test_forecast_cli import write_csv


def small_table(folder):
  """The study's arguments for one DLinear run on a small ETTh1.csv in
  `folder`, recorded in folder/runs.jsonl (returned too)."""
  (folder / "ett").mkdir()
  write_csv(folder / "ett" / "ETTh1.csv", rows=1500)
  runs = folder / "runs.jsonl"
  return ["--data-dir", str(folder), "--datasets", "ETTh1", "--horizons",
          "96", "--models", "dlinear", "--seeds", "0", "--max-epochs", "1",
          "--runs", str(runs)], runs


def test_table_records_its_runs_and_resumes(tmp_path, capsys):
  argv, runs = small_table(tmp_path)
  rows = forecast_table.main(argv)
  out = capsys.readouterr().out
  assert "| ETTh1 | 96 | dlinear | 1 |" in out
  assert "| ETTh1 | dlinear | 1 |" in out  # the verdict row
  (record,) = [json.loads(line) for line in runs.read_text().splitlines()]
  assert set(record["run"]) == set(forecast_table.KEEP)
  assert rows[0]["control_mse"] == record["run"]["control"]["mse"]
  # A second call reuses the record: nothing is trained or appended.
  again = forecast_table.main(argv)
  assert len(runs.read_text().splitlines()) == 1
  assert again[0]["bsa_mse"] == rows[0]["bsa_mse"]


@pytest.mark.parametrize("flag, value", [("--models", "informer"),
                                         ("--datasets", "Weather")])
def test_table_refuses_unknown_names(flag, value, capsys):
  with pytest.raises(SystemExit):
    forecast_table.parse_args([flag, value])
  assert f"{flag}: unknown {value}" in capsys.readouterr().err


def test_searched_runs_are_recorded_apart(tmp_path, capsys):
  argv, runs = small_table(tmp_path)
  plain = forecast_table.main(argv)
  searched = forecast_table.main(argv + ["--search"])
  assert "learning-rate search used" in capsys.readouterr().out
  records = [json.loads(line) for line in runs.read_text().splitlines()]
  assert len(records) == 2  # the searched run did not reuse the plain one
  assert "search" not in records[0]["run"]
  assert set(records[1]["run"]["search"]) == {"bsa", "control"}
  assert len(records[1]["run"]["search"]["bsa"]["tried"]) == 5
  # The keys of runs without the search are those recorded before it was
  # added: the data set, the settings and True.
  given = {"data": str(tmp_path / "ett" / "ETTh1.csv"), "model": "dlinear",
           "lookback": 96, "horizon": 96, "seed": 0, "protocol": "quick",
           "max_epochs": 1}
  assert json.loads(records[0]["key"])[2:] == [True]
  assert records[0]["key"] == forecast_table.run_key("ETTh1", given)
  assert records[1]["key"] == forecast_table.run_key("ETTh1", given, True)
  # The searched BSA is the best of what it tried, on validation.
  best = min(t["val_mse"] for t in records[1]["run"]["search"]["bsa"]["tried"])
  assert records[1]["run"]["bsa_val"] == best
  assert searched[0]["base_mse"] == plain[0]["base_mse"]  # same base model
