"""The forecasting table study: one run per cell, recorded and resumed."""

import json

import pytest

from benchmarks.studies import forecast_table
from tests.experiments.test_forecast_cli import write_csv


def test_table_records_its_runs_and_resumes(tmp_path, capsys):
  (tmp_path / "ett").mkdir()
  write_csv(tmp_path / "ett" / "ETTh1.csv", rows=1500)
  runs = tmp_path / "runs.jsonl"
  argv = ["--data-dir", str(tmp_path), "--datasets", "ETTh1", "--horizons",
          "96", "--models", "dlinear", "--seeds", "0", "--max-epochs", "1",
          "--runs", str(runs)]
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
