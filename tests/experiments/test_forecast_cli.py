"""Tests of the ``grokfast-jax forecast`` command and its CSV loader."""

import datetime
import json
import re

import numpy as np
import pytest

from grokfast_jax import cli
from grokfast_jax.experiments.forecasting import data as fdata


def write_csv(path, rows=220, header=("date", "HUFL", "OT"), *, date=True,
              extra=None, cell=None):
  """A small hourly CSV; `cell` = (row, column, text) overrides one cell."""
  rng = np.random.default_rng(0)
  lines = [",".join(header)]
  for i in range(rows):
    values = [f"{np.sin(i / 5 + k) + 0.1 * rng.normal():.4f}"
              for k in range(len(header) - int(date) - (extra is not None))]
    when = datetime.datetime(2020, 1, 1) + datetime.timedelta(hours=i)
    cells = ([when.strftime("%Y-%m-%d %H:%M:%S")] if date
             else []) + values + ([extra] if extra is not None else [])
    if cell is not None and cell[0] == i:
      cells[cell[1]] = cell[2]
    lines.append(",".join(cells))
  path.write_text("\n".join(lines) + "\n")
  return path


def forecast(path, out, *extra):
  return cli.main(["forecast", "--data", str(path), "--lookback", "12",
                   "--horizon", "4", "--epochs", "1", "--ft-epochs", "1",
                   "--out", str(out), "--no-progress", *extra])


def test_forecast_one_target_writes_results_and_plot(tmp_path, capsys):
  path = write_csv(tmp_path / "ett.csv")
  out = tmp_path / "run"
  assert forecast(path, out, "--target", "OT", "--model", "rlinear") == 0
  text = capsys.readouterr().out
  assert "date column 'date' (by its name)" in text
  assert "1 channel(s): OT" in text
  assert "rlinear on ett.csv (1 channel, H=4): test MSE " in text
  assert "with BSA (" in text and "MAE " in text
  results = json.loads((out / "results.json").read_text())
  assert results["data"]["channels"] == ["OT"]
  assert results["data"]["date_column"] == "date"
  assert results["settings"]["model"] == "rlinear"
  for model in ("base", "bsa"):
    for split in ("val", "test"):
      assert set(results["metrics"][model][split]) == {"mse", "mae"}
  assert {"jax", "flax"} <= set(results["versions"])
  assert results["backend"] and results["devices"]
  assert results["plot"]["channel"] == "OT"
  assert (out / "forecast.png").read_bytes()[:4] == b"\x89PNG"


def test_forecast_search_writes_what_it_tried(tmp_path, capsys):
  path = write_csv(tmp_path / "ett.csv")
  out = tmp_path / "run"
  assert forecast(path, out, "--search", "--control") == 0
  assert "; fine-tuning rates searched" in capsys.readouterr().out
  results = json.loads((out / "results.json").read_text())
  assert results["settings"]["search"] and results["settings"]["control"]
  bsa, control = results["search"]["bsa"], results["search"]["control"]
  assert len(bsa["tried"]) == 5 and len(control["tried"]) == 3
  assert results["metrics"]["bsa"]["val"]["mse"] == min(
      t["val_mse"] for t in bsa["tried"])
  assert set(control["rates"]) == {"ft_lr_base"}


def test_forecast_all_columns_of_a_generic_csv(tmp_path, capsys):
  # A `timestamp` column, arbitrary value columns and an ignored text column.
  path = write_csv(tmp_path / "sensors.csv",
                   header=("timestamp", "flow", "pressure", "site"),
                   extra="north")
  out = tmp_path / "run"
  assert forecast(path, out) == 0
  text = capsys.readouterr().out
  assert "date column 'timestamp' (by its name)" in text
  assert "ignored non-numeric: site" in text
  assert "dlinear on sensors.csv (2 channels, H=4)" in text
  results = json.loads((out / "results.json").read_text())
  assert results["data"]["channels"] == ["flow", "pressure"]
  assert results["data"]["ignored_columns"] == ["site"]
  assert (out / "forecast.png").exists()


def test_load_csv_finds_the_date_column_by_content(tmp_path):
  path = write_csv(tmp_path / "a.csv", rows=3, header=("day", "x", "y"))
  series = fdata.load_csv(path)
  assert series.date_column == "day"
  assert series.date_rule == "first non-numeric column"
  assert series.channels == ["x", "y"] and series.values.shape == (3, 2)
  path = write_csv(tmp_path / "b.csv", rows=3, header=("x", "y"), date=False)
  series = fdata.load_csv(path, "y")
  assert series.date_column is None and series.dates is None
  assert series.channels == ["y"] and series.values.shape == (3, 1)


@pytest.mark.parametrize("text, seconds", [
    ("2016-07-01 00:00:00", 1467331200.0),  # ETT
    ("1990/1/1 0:00", 631152000.0),  # Exchange
    ("2002-01-08 00:00:00", 1010448000.0),  # ILI
    ("2016-07-01T02:30:00+02:00", 1467331200.0 + 1800.0),  # 00:30 UTC
    ("2016.07.01 00:00:01.5", 1467331201.5),
    ("2020-01", 1577836800.0),
    ("12.5", 12.5),
])
def test_parse_date_reads_the_forms_of_the_forecasting_files(text, seconds):
  assert fdata.parse_date(text) == seconds


@pytest.mark.parametrize("text", ["01/07/2016", "2020-13-01", "2021-02-29",
                                  "monday", "nan", ""])
def test_parse_date_refuses_what_is_not_a_year_first_date(text):
  assert fdata.parse_date(text) is None


def test_time_order_names_the_first_offending_row():
  dates = ["2020-01-01", "2020-01-02", "2020-01-02", "2019-12-31"]
  with pytest.raises(ValueError, match=r"f, line 4 \(data row 3\), column "
                     r"'day': '2020-01-02' repeats the date of line 3"):
    fdata.check_time_order("f", "day", dates, [2, 3, 4, 5])
  with pytest.raises(ValueError, match=r"line 5 .* comes before line 4"):
    fdata.check_time_order("f", "day", dates[:2] + dates[3:], [2, 4, 5])
  fdata.check_time_order("f", "day", ["1", "2", "10"], [2, 3, 4])


def test_min_rows_matches_the_split():
  need = fdata.min_rows(12, 4, min_train_windows=64)
  fdata.check_rows(need, 12, 4, min_train_windows=64)
  with pytest.raises(ValueError, match=f"needs at least {need} rows"):
    fdata.check_rows(need - 1, 12, 4, min_train_windows=64)
  assert fdata.min_rows(96, 96, "ett") == 14400
  assert fdata.min_rows(6000, 3000, "ett") is None


@pytest.mark.parametrize("case, expected", [
    ("missing", r"missing\.csv: no such file"),
    ("no_numeric", r"no numeric columns \(columns: date, name\)"),
    ("nan", r"line 6 \(data row 5\), column 'OT': 'nan' is not a finite"),
    ("empty", r"line 4 \(data row 3\), column 'HUFL': empty cell"),
    ("text", r"line 9 \(data row 8\), column 'OT': 'abc' is not a number"),
    ("short", r"has 100 rows, too few .* needs at least \d+ rows"),
    ("target", r"unknown target column 'LOAD'; numeric columns: HUFL, OT"),
    ("width", r"line 3: expected 3 fields"),
    ("order", r"line 7 \(data row 6\), column 'date': '2020-01-01 02:00:00' "
     r"comes before line 6 \('2020-01-01 04:00:00'\)"),
    ("repeat", r"line 7 \(data row 6\), column 'date': '2020-01-01 04:00:00' "
     r"repeats the date of line 6"),
    ("notdate", r"line 5 \(data row 4\), column 'date': 'yesterday' is not a "
     r"date"),
])
def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path, capsys,
                                                           case, expected):
  path = tmp_path / f"{case}.csv"
  extra = []
  if case == "no_numeric":
    path.write_text("date,name\n2020-01-01,a\n2020-01-02,b\n")
  elif case == "nan":
    write_csv(path, cell=(4, 2, "nan"))
  elif case == "empty":
    write_csv(path, cell=(2, 1, ""))
  elif case == "text":
    write_csv(path, cell=(7, 2, "abc"))
  elif case == "short":
    write_csv(path, rows=100)
  elif case == "target":
    write_csv(path)
    extra = ["--target", "LOAD"]
  elif case == "width":
    write_csv(path, cell=(1, 2, "1,2"))
  elif case == "order":
    write_csv(path, cell=(5, 0, "2020-01-01 02:00:00"))
  elif case == "repeat":
    write_csv(path, cell=(5, 0, "2020-01-01 04:00:00"))
  elif case == "notdate":
    write_csv(path, cell=(3, 0, "yesterday"))
  out = tmp_path / "out"
  assert forecast(path, out, *extra) == 2
  captured = capsys.readouterr()
  err = captured.err.strip()
  assert err.startswith("grokfast-jax forecast: error: ")
  assert "\n" not in err and not captured.out
  assert str(path) in err
  assert re.search(expected, err), err
  assert not out.exists()


def _stable(value):
  """`value` without wall-clock keys (at any depth)."""
  if isinstance(value, dict):
    return {k: _stable(v) for k, v in value.items()
            if "seconds" not in k and k not in ("versions", "path")}
  if isinstance(value, list):
    return [_stable(v) for v in value]
  return value


def test_forecast_resumed_after_a_kill_writes_the_same_results(
    tmp_path, capsys, monkeypatch):
  from grokfast_jax.experiments import checkpoint as checkpoint_lib
  path = write_csv(tmp_path / "ett.csv")
  assert forecast(path, tmp_path / "full") == 0
  ckpt = str(tmp_path / "ckpt")
  save = checkpoint_lib.RunCheckpointer.save

  def killing_save(self, *args, **kwargs):  # killed after the base stage
    save(self, *args, **kwargs)
    raise KeyboardInterrupt

  with monkeypatch.context() as m:
    m.setattr(checkpoint_lib.RunCheckpointer, "save", killing_save)
    with pytest.raises(KeyboardInterrupt):
      forecast(path, tmp_path / "a", "--checkpoint-dir", ckpt)
  assert not (tmp_path / "a").exists()
  # Without --resume the checkpoints are not overwritten: one error line.
  capsys.readouterr()
  assert forecast(path, tmp_path / "b", "--checkpoint-dir", ckpt) == 2
  err = capsys.readouterr().err.strip()
  assert "\n" not in err and "already holds checkpoints" in err
  assert forecast(path, tmp_path / "b", "--checkpoint-dir", ckpt,
                  "--resume") == 0
  full = json.loads((tmp_path / "full" / "results.json").read_text())
  resumed = json.loads((tmp_path / "b" / "results.json").read_text())
  assert _stable(resumed) == _stable(full)
  assert set(resumed["stages"]) == {"base", "finetune"}
  assert resumed["task"] == "forecast" and resumed["log"] == full["log"]


def test_forecast_has_no_mesh_flags(tmp_path, capsys):
  # Its batches are consecutive windows in time order (BSA): not split.
  with pytest.raises(SystemExit) as e:
    forecast(write_csv(tmp_path / "x.csv"), tmp_path / "out", "--mesh", "dp")
  assert e.value.code == 2
  assert "unrecognized arguments: --mesh dp" in capsys.readouterr().err
