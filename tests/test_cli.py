"""Tests of the `grokfast-jax` command line (modular experiment)."""

import json

import pytest

from grokfast_jax import cli

# A small model keeps compilation short; the shape flags are tested too.
_SMALL = ["--width", "32", "--depth", "1", "--heads", "2"]


def _check_run(result, filter):
  assert result["settings"]["filter"] == filter
  assert result["settings"]["p"] == 11
  assert {"steps_to_val_acc_95", "seconds_to_val_acc_95", "final", "history",
          "backend", "versions"} <= set(result)
  assert result["history"] and result["final"]["step"] == (
      result["history"][-1]["step"])
  for entry in result["history"]:
    assert set(entry) == {"step", "epoch", "train_loss", "train_acc",
                          "val_loss", "val_acc", "seconds"}


def test_modular_writes_results_and_curves(tmp_path, capsys):
  out = tmp_path / "run"
  rc = cli.main(["modular", "--p", "11", "--op", "-", "--filter", "ma",
                 "--window-size", "5", "--max-steps", "12", "--seed", "1",
                 *_SMALL,
                 "--out", str(out), "--no-progress"])
  assert rc == 0
  result = json.loads((out / "results.json").read_text())
  _check_run(result, "ma")
  assert result["settings"]["window_size"] == 5
  assert result["settings"]["lamb"] == 5.0  # paper default for ma
  assert result["settings"]["weight_decay"] == 0.01
  assert (result["settings"]["width"], result["settings"]["depth"]) == (32, 1)
  assert result["final"]["step"] == 12  # 55 examples: 1 update per epoch
  assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
  assert "grokfast-ma" in capsys.readouterr().out


def test_compare_writes_every_run_and_summary(tmp_path, capsys):
  out = tmp_path / "cmp"
  rc = cli.main(["compare", "--p", "11", "--max-steps", "6", "--out",
                 str(out), "--no-progress", *_SMALL])
  assert rc == 0
  for f in ("none", "ema"):
    run = json.loads((out / f / "results.json").read_text())
    _check_run(run, f)
    assert (out / f / "curves.png").exists()
  both = json.loads((out / "results.json").read_text())
  assert set(both["summary"]) == {"baseline", "grokfast-ema"}
  assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
  text = capsys.readouterr().out
  assert "baseline" in text and "grokfast-ema" in text and "95%" in text


def test_bad_cli_arguments(tmp_path, capsys):
  # Bad settings: one line on stderr naming the argument, exit status 2.
  assert cli.main(["modular", "--p", "12", "--out", str(tmp_path),
                   "--no-progress"]) == 2
  assert "p must be a prime" in capsys.readouterr().err
  assert cli.main(["compare", "--filters", "none,foo",
                   "--out", str(tmp_path)]) == 2
  assert "--filters must list some of" in capsys.readouterr().err
  assert cli.main(["modular", "--resume", "--out", str(tmp_path)]) == 2
  assert "--resume needs --checkpoint-dir" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cli.main(["modular", "--filter", "foo"])
