"""Records the reference runs that `test_reference_runs.py` compares against.

Each entry of `RUNS` is a `grokfast-jax` command line with small settings. This
script runs each one and stores its results.json (without wall-clock and
version fields) as ``<name>.json`` beside it. The stored files were written at
the commit before the one experiment harness replaced the per-task loops
(a471e8e), so the test checks that the harness trains exactly what the old
loops trained. Run it again only to record a deliberate change:

  python tests/experiments/reference_runs/record.py [NAME ...]

Paths under ``../shared`` are written as ``{shared}``; runs whose data is
absent are skipped.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2].parent / "shared" / "data"

# name -> (argv after the subcommand's output flag is added, data it needs)
RUNS = {
    "modular_ema": ["modular", "--filter", "ema", "--max-steps", "60"],
    "modular_fastest": ["modular", "--recipe", "fastest", "--max-steps", "40",
                        "--op", "+"],
    "modular_ma_small": ["modular", "--filter", "ma", "--window-size", "5",
                         "--p", "11", "--depth", "1", "--width", "32",
                         "--heads", "2", "--max-steps", "24"],
    "compare_small": ["compare", "--p", "11", "--depth", "1", "--width", "32",
                      "--heads", "2", "--max-steps", "12",
                      "--filters", "none,ema,ma"],
    "mnist_digits": ["mnist", "--max-steps", "60", "--eval-every", "20",
                     "--train-size", "400"],
    "mnist_real": ["mnist", "--data", "{shared}/mnist", "--max-steps", "50",
                   "--eval-every", "25"],
    "mnist_compare": ["mnist-compare", "--max-steps", "20", "--eval-every",
                      "10", "--train-size", "400", "--filter", "ma",
                      "--window-size", "3"],
    "imdb": ["imdb", "--data", "{shared}/imdb/IMDB-Dataset.csv", "--size",
             "200", "--seq-len", "24", "--hidden", "16", "--max-steps", "6"],
    "imdb_compare": ["imdb-compare", "--data",
                     "{shared}/imdb/IMDB-Dataset.csv", "--size", "120",
                     "--seq-len", "16", "--hidden", "8", "--max-steps", "3"],
    "qm9": ["qm9", "--data", "{shared}/qm9/qm9_first138.csv", "--epochs", "30",
            "--log-every", "5", "--chunk-epochs", "10"],
    "qm9_compare": ["qm9-compare", "--data", "{shared}/qm9/qm9_first138.csv",
                    "--epochs", "6", "--chunk-epochs", "3"],
    "forecast_dlinear": ["forecast", "--data", "{shared}/ett/ETTh1.csv",
                         "--model", "dlinear", "--target", "OT",
                         "--epochs", "2", "--ft-epochs", "1", "--control"],
    "forecast_patchtst": ["forecast", "--data", "{shared}/ett/ETTh2.csv",
                          "--model", "patchtst", "--lookback", "48",
                          "--horizon", "24", "--epochs", "1",
                          "--ft-epochs", "1"],
}

# Keys that vary from run to run without any change in what is trained.
VOLATILE = {"seconds", "seconds_to_val_acc_95", "seconds_total",
            "seconds_first_epoch", "steps_per_second", "total_seconds",
            "versions", "devices", "data", "data_source", "out",
            "wall_seconds", "seconds_per_epoch", "time"}


def strip(value):
  """`value` without the VOLATILE keys, at any depth."""
  if isinstance(value, dict):
    return {k: strip(v) for k, v in value.items()
            if k not in VOLATILE and "seconds" not in k}
  if isinstance(value, list):
    return [strip(v) for v in value]
  return value


def argv_for(name: str, out: Path) -> list[str] | None:
  """The command line of run `name` writing to `out` (None: data absent)."""
  argv = [a.replace("{shared}", str(SHARED)) for a in RUNS[name]]
  if any("{shared}" in a for a in RUNS[name]) and not SHARED.exists():
    return None
  return argv + ["--out", str(out), "--no-progress"]


def run(name: str, out: Path) -> dict:
  """Runs `name` into `out`; its stripped results.json."""
  from grokfast_jax import cli
  argv = argv_for(name, out)
  assert argv is not None, f"{name}: its data is absent"
  assert cli.main(argv) == 0, name
  return strip(json.loads((out / "results.json").read_text()))


def main(names):
  for name in names or RUNS:
    with tempfile.TemporaryDirectory() as tmp:
      if argv_for(name, Path(tmp)) is None:
        print(f"skip {name}: no {SHARED}")
        continue
      result = run(name, Path(tmp))
    (HERE / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"recorded {name}")


if __name__ == "__main__":
  main(sys.argv[1:])
