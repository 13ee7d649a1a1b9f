"""The Grokfast paper's MNIST, IMDb and QM9 experiments: three runs per seed.

For each task and seed this runs the task's ``grokfast-jax <task>-compare``
command (in this process, exactly as a user would), which trains three runs on
the same data and seed:

* ``baseline``: no filter, the reference script's default weight decay;
* ``weight-decay``: no filter, the weight decay of the reference README's
  command (the control the reference lacks);
* ``grokfast-ema``: Grokfast-EMA with the README's settings and weight decay.

Each seed's results go to ``OUT/<task>/seed<k>/`` (a finished seed is not run
again, so an interrupted benchmark resumes); ``--report`` prints the markdown
table of all finished seeds next to the paper's figures::

  python -m benchmarks.studies.paper_tasks --tasks mnist --seeds 0,1,2
  python -m benchmarks.studies.paper_tasks --tasks imdb --imdb-seq-len 100 \\
      --imdb-steps 1005
  python -m benchmarks.studies.paper_tasks --report

Data come from ``--data-dir`` (default: the ``shared/data`` folder beside the
repository), holding ``mnist/``, ``imdb/IMDB-Dataset.csv`` and
``qm9/qm9_first138.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from grokfast_jax import cli
from grokfast_jax.experiments import common

REPO = Path(__file__).resolve().parents[2]
RUNS = ("baseline", "weight-decay", "grokfast-ema")


def _mnist_args(data: Path, args: argparse.Namespace) -> list[str]:
  return ["mnist-compare", "--data", str(data / "mnist"),
          "--max-steps", str(args.mnist_steps)]


def _imdb_args(data: Path, args: argparse.Namespace) -> list[str]:
  return ["imdb-compare", "--data", str(data / "imdb" / "IMDB-Dataset.csv"),
          "--max-steps", str(args.imdb_steps), "--seq-len",
          str(args.imdb_seq_len)]


def _qm9_args(data: Path, args: argparse.Namespace) -> list[str]:
  return ["qm9-compare", "--data", str(data / "qm9" / "qm9_first138.csv"),
          "--epochs", str(args.qm9_epochs)]


def _fmt_steps(step: Optional[int]) -> str:
  return "never" if step is None else f"{step:,}"


def _mnist_cells(res: dict[str, Any]) -> dict[str, str]:
  marks = res["steps_to_val_acc"]
  return {"85%": _fmt_steps(marks["0.85"]), "90%": _fmt_steps(marks["0.9"]),
          "95%": _fmt_steps(marks["0.95"]),
          "best test acc": f"{res['best_val_acc']:.4f}",
          "seconds": f"{res['total_seconds']:.0f}"}


def _imdb_cells(res: dict[str, Any]) -> dict[str, str]:
  return {"best val acc": f"{res['best_val_acc']:.3f}",
          "at update": _fmt_steps(res["best_val_acc_step"]),
          "lowest val loss": f"{res['min_val_loss']:.3f}",
          "at update ": _fmt_steps(res["min_val_loss_step"]),
          "seconds": f"{res['total_seconds']:.0f}"}


def _qm9_cells(res: dict[str, Any]) -> dict[str, str]:
  return {"lowest val MSE": f"{res['min_val_loss']:.4g}",
          "at epoch": _fmt_steps(res["min_val_epoch"]),
          "final val MSE": f"{res['final_val_loss']:.4g}",
          "seconds": f"{res['total_seconds']:.0f}"}


# task -> (compare command's arguments, table cells of one run, paper figures)
TASKS: dict[str, tuple[Callable[..., list[str]],
                       Callable[[dict[str, Any]], dict[str, str]], str]] = {
    "mnist": (_mnist_args, _mnist_cells,
              "paper: 95% test accuracy at 44,022 (baseline) -> 2,001 "
              "(Grokfast) updates"),
    "imdb": (_imdb_args, _imdb_cells,
             "paper: best val acc 0.84 -> 0.90, lowest val loss 0.517 -> "
             "0.412"),
    "qm9": (_qm9_args, _qm9_cells,
            "paper: lowest val loss 0.00659 -> 0.00348"),
}


def run_seed(task: str, seed: int, args: argparse.Namespace) -> Path:
  """Runs one task's compare command for one seed (unless already done)."""
  out = Path(args.out) / task / f"seed{seed}"
  if (out / "results.json").is_file():
    print(f"{task} seed {seed}: done already ({out})")
    return out
  build, _, _ = TASKS[task]
  argv = build(Path(args.data_dir), args) + [
      "--seed", str(seed), "--out", str(out)]
  if not args.progress:
    argv.append("--no-progress")
  print(f"{task} seed {seed}: grokfast-jax {' '.join(argv)}", flush=True)
  start = time.perf_counter()
  status = cli.main(argv)
  if status:
    raise SystemExit(f"{task} seed {seed} failed with status {status}")
  print(f"{task} seed {seed}: {time.perf_counter() - start:.0f} s",
        flush=True)
  return out


# task -> the figures whose median over seeds the summary shows: (key in a
# run's results, label, format); a key "a.b" reads results["a"]["b"], and a
# missing value (a mark never reached) counts as +infinity.
MEDIANS = {
    "mnist": (("steps_to_val_acc.0.85", "updates to 85%", "{:,.0f}"),
              ("steps_to_val_acc.0.9", "updates to 90%", "{:,.0f}"),
              ("steps_to_val_acc.0.95", "updates to 95%", "{:,.0f}"),
              ("best_val_acc", "best test acc", "{:.4f}"),
              ("total_seconds", "seconds", "{:.0f}")),
    "imdb": (("best_val_acc", "best val acc", "{:.3f}"),
             ("min_val_loss", "lowest val loss", "{:.3f}"),
             ("total_seconds", "seconds", "{:.0f}")),
    "qm9": (("min_val_loss", "lowest val MSE", "{:.4g}"),
            ("total_seconds", "seconds", "{:.0f}")),
}


def _value(res: dict[str, Any], key: str) -> float:
  head, _, rest = key.partition(".")
  value = res.get(head) if not rest else (res.get(head) or {}).get(rest)
  return float("inf") if value is None else float(value)


def summary(out_dir: Path, task: str) -> str:
  """The median over the finished seeds of each run's figures, as markdown."""
  runs: dict[str, list[dict[str, Any]]] = {r: [] for r in RUNS}
  for path in sorted((out_dir / task).glob("seed*/results.json")):
    for run, res in json.loads(path.read_text())["runs"].items():
      runs.setdefault(run, []).append(res)
  figures = MEDIANS[task]
  lines = ["| run (median of seeds) | seeds | "
           + " | ".join(label for _, label, _ in figures) + " |",
           "|" + "---|" * (len(figures) + 2)]
  for run, results in runs.items():
    if not results:
      continue
    cells = []
    for key, _, fmt in figures:
      m = common.median(_value(r, key) for r in results)
      cells.append("never" if m == float("inf") else fmt.format(m))
    lines.append(f"| {run} | {len(results)} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def report(out_dir: Path, tasks: list[str]) -> str:
  """The markdown tables of every finished seed, one per task."""
  lines = []
  for task in tasks:
    _, cells, paper = TASKS[task]
    seeds = sorted((p for p in (out_dir / task).glob("seed*")
                    if (p / "results.json").is_file()),
                   key=lambda p: int(p.name[4:]))
    if not seeds:
      continue
    lines += [f"### {task} ({paper})", ""]
    header = None
    for seed_dir in seeds:
      top = json.loads((seed_dir / "results.json").read_text())
      for run in RUNS:
        res = top["runs"].get(run)
        if res is None:
          continue
        row = cells(res)
        if header is None:
          header = ["seed", "run", "settings", *row]
          lines += ["| " + " | ".join(header) + " |",
                    "|" + "---|" * len(header)]
        lines.append(f"| {seed_dir.name[4:]} | {run} | {res['label']} | "
                     + " | ".join(row.values()) + " |")
    lines += ["", summary(out_dir, task), ""]
  return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tasks", default="mnist,imdb,qm9",
                      help="comma-separated among mnist, imdb, qm9")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--data-dir", default=str(REPO / ".." / "shared" /
                                                "data"))
  parser.add_argument("--out", default=str(REPO / "runs" / "paper_tasks"))
  parser.add_argument("--mnist-steps", type=int, default=100_000,
                      help="updates per MNIST run (reference: 100,000)")
  parser.add_argument("--imdb-steps", type=int, default=10_000,
                      help="updates per IMDb run (reference: 10,000)")
  parser.add_argument("--imdb-seq-len", type=int, default=500,
                      help="IMDb tokens per review (reference: 500)")
  parser.add_argument("--qm9-epochs", type=int, default=50_000,
                      help="epochs per QM9 run (reference: 50,000)")
  parser.add_argument("--report", action="store_true",
                      help="only print the tables of the finished seeds")
  parser.add_argument("--progress", action="store_true")
  args = parser.parse_args(argv)
  tasks = [t for t in args.tasks.split(",") if t]
  for t in tasks:
    if t not in TASKS:
      parser.error(f"--tasks must list some of {sorted(TASKS)}, got {t!r}")
  if not args.report:
    for task in tasks:
      for seed in (int(s) for s in args.seeds.split(",") if s):
        run_seed(task, seed, args)
  print(report(Path(args.out), tasks))
  return 0


if __name__ == "__main__":
  sys.exit(main())
