"""The QM9 polarizability experiment as a harness task: ``grokfast-jax qm9``
and ``qm9-compare``::

  grokfast-jax qm9 --data qm9_first138.csv --filter ema --out runs/qm9-ema
  grokfast-jax qm9-compare --data qm9_first138.csv --out runs/qm9-compare

Each run writes results.json (settings, a thinned history, the lowest test
MSE over every epoch, timings), losses.npz (the full per-epoch train and test
curves, float32) and curves.png.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from grokfast_jax.experiments import harness, settings
from grokfast_jax.experiments.harness import report
from grokfast_jax.experiments.qm9 import config as config_lib
from grokfast_jax.experiments.qm9 import data as data_lib
from grokfast_jax.experiments.qm9 import training

EXPERIMENT = "qm9-polarizability"
LOSSES_FILE = "losses.npz"


@dataclasses.dataclass(frozen=True)
class Molecules:
  """The loaded molecules (shared by the runs of a comparison).

  Attributes:
    molecules: the first `size` characterized molecules of the CSV.
    source: where they came from (:func:`data_lib.describe_source`).
  """

  molecules: list[data_lib.Molecule]
  source: Optional[dict[str, Any]] = None


def load_data(cfg: config_lib.Qm9Config) -> Molecules:
  """Reads and featurizes the first `cfg.size` molecules of `cfg.data`.

  Raises:
    ValueError: no `data` given, or the CSV is missing or malformed.
  """
  path = settings.require_data(
    cfg, "the QM9 CSV to read (columns gdb_id, smiles, alpha, uncharacterized)"
  )
  molecules = data_lib.load_molecules(path, size=cfg.size)
  return Molecules(molecules, data_lib.describe_source(path, molecules))


def build(
  cfg: config_lib.Qm9Config, data: Molecules | list, ctx: harness.Context
) -> harness.Program:
  """:func:`training.build` of the loaded molecules (or a list of them)."""
  molecules = data.molecules if isinstance(data, Molecules) else data
  return training.build(cfg, molecules, ctx)


def _first(ok: np.ndarray) -> Optional[int]:
  """The 1-based index of the first True of `ok` (None if none)."""
  hits = np.flatnonzero(ok)
  return int(hits[0]) + 1 if hits.size else None


def summarize(
  cfg: config_lib.Qm9Config, data: Any, facts: Mapping[str, Any]
) -> dict[str, Any]:
  """The results of a run (the harness adds its own keys).

  Keys: experiment, run, label, settings, optimizer, loss, target, split
  (how the molecules were split), data_source, train_gdb_ids, test_gdb_ids,
  n_params, min_val_loss / min_val_epoch / min_val_step (the lowest test MSE
  over every epoch and when; None if every epoch's loss was non-finite),
  target_mse_epoch (the first epoch whose test MSE is at most `target_mse`,
  None if none), final_epoch, final_step, final_train_loss, final_val_loss,
  stopped_early, total_seconds (the whole run, compilation included),
  seconds_per_1000_epochs (chunks after their compilation; None when every
  chunk compiled), losses_file, history (epoch 0: the initial model's MSE on
  the training and test sets; then the kept epochs' losses, see
  :func:`training.history_epochs`, plus the best epoch).
  """
  curves = facts["curves"]
  # Index 0 of every curve is the step-0 evaluation.
  train_curve, val_curve = curves["train_loss"][1:], curves["val_loss"][1:]
  seconds = curves["seconds"]
  upe, epochs = cfg.updates_per_epoch, len(val_curve)
  finite = np.isfinite(val_curve)
  best = (
    int(np.argmin(np.where(finite, val_curve, np.inf))) + 1
    if finite.any()
    else None
  )
  keep = {
    e for e in training.history_epochs(cfg.epochs, cfg.log_every) if e <= epochs
  } | {epochs}
  if best is not None:
    keep.add(best)
  first = facts["history"][0]
  history = [
    {
      "step": 0,
      "epoch": 0,
      "train_loss": first["train_loss"],
      "val_loss": first["val_loss"],
      "seconds": first["seconds"],
    }
  ]
  history += [
    {
      "step": e * upe,
      "epoch": e,
      "train_loss": float(train_curve[e - 1]),
      "val_loss": float(val_curve[e - 1]),
      "seconds": float(seconds[e]),
    }
    for e in sorted(keep)
    if e > 0
  ]
  info = facts["info"]
  steady, steady_epochs = (
    facts.get("seconds_steady"),
    facts.get("epochs_steady"),
  )
  target_epoch = _first(val_curve <= cfg.target_mse)
  return {
    "experiment": EXPERIMENT,
    **report.names(cfg, facts),
    "settings": cfg.to_dict(),
    "optimizer": report.optimizer_name(cfg.filter),
    "loss": "mse of alpha (mean over molecules)",
    "target": "alpha, isotropic polarizability (bohr^3), not normalized",
    "split": (
      "numpy default_rng(seed).permutation; first size // 2 train, "
      "rest test (not the reference's torch split)"
    ),
    "data_source": getattr(data, "source", None),
    "train_gdb_ids": info["train_gdb_ids"],
    "test_gdb_ids": info["test_gdb_ids"],
    "n_params": info["n_params"],
    "min_val_loss": None if best is None else float(val_curve[best - 1]),
    "min_val_epoch": best,
    "min_val_step": None if best is None else best * upe,
    "target_mse_epoch": target_epoch,
    "final_epoch": epochs,
    "final_step": epochs * upe,
    "final_train_loss": float(train_curve[-1]),
    "final_val_loss": float(val_curve[-1]),
    "stopped_early": facts.get("stopped_early", False),
    "total_seconds": facts["seconds_total"],
    "seconds_per_1000_epochs": (
      1000 * steady / steady_epochs
      if steady is not None and steady_epochs
      else None
    ),
    "losses_file": LOSSES_FILE,
    "history": history,
  }


def describe(results: Mapping[str, Any]) -> str:
  """One line: the run's lowest test MSE, when, and how long it took.

  Example:
    >>> describe({"run": "grokfast-ema", "label": "alpha 0.9, lamb 1, wd 0.01",
    ...           "min_val_loss": 0.0412, "min_val_epoch": 31200,
    ...           "final_epoch": 50000, "total_seconds": 210.2})
    'grokfast-ema (alpha 0.9, lamb 1, wd 0.01): lowest val MSE 0.0412 at epoch 31,200 (50,000 epochs, 210 s)'
  """
  tail = (
    f"({results['final_epoch']:,} epochs, {results['total_seconds']:.0f} s)"
  )
  lowest = (
    "no finite val MSE"
    if results["min_val_loss"] is None
    else report.figure(
      "lowest val MSE",
      results["min_val_loss"],
      results["min_val_epoch"],
      ".4g",
      "epoch",
    )
  )
  return f"{report.headline(results)}: {lowest} {tail}"


def compare_line(
  reference: Mapping[str, Any], grokfast: Mapping[str, Any]
) -> str:
  """How the Grokfast run's lowest test MSE compares with another run's."""
  g, r = grokfast["min_val_loss"], reference["min_val_loss"]
  gname, rname = grokfast["run"], reference["run"]
  if g is None or r is None:
    return f"{gname} vs {rname}: a run had no finite val MSE"
  ratio = f"{g / r:.2f}x" if r > 0 else "n/a"
  return (
    f"{gname} vs {rname}: lowest val MSE {g:.4g} (epoch "
    f"{grokfast['min_val_epoch']:,}) vs {r:.4g} (epoch "
    f"{reference['min_val_epoch']:,}), ratio {ratio}"
  )


# ``plan_compare(given)``: baseline (weight decay 0), weight-decay control
# and Grokfast (the given weight decay, else the README's 0.01).
plan_compare = functools.partial(
  report.plan_compare, make_config=config_lib.make_config
)


def summarize_compare(
  runs: Mapping[str, Mapping[str, Any]],
) -> tuple[list[str], dict[str, Any]]:
  """The verdicts (Grokfast, the last run, against each other run) and the
  comparison's keys: experiment, data_source, summary, verdicts, the paper's
  lowest val losses and a note on them."""
  names = list(runs)
  grok = runs[names[-1]]
  verdicts = [compare_line(runs[name], grok) for name in names[:-1]]
  summary = report.table(
    runs,
    (
      "label",
      "min_val_loss",
      "min_val_epoch",
      "final_val_loss",
      "total_seconds",
      "seconds_per_1000_epochs",
    ),
  )
  return verdicts, {
    "experiment": f"{EXPERIMENT}-compare",
    "data_source": grok["data_source"],
    "summary": summary,
    "verdicts": verdicts,
    "paper_lowest_val_loss": config_lib.PAPER_LOWEST_VAL_LOSS,
    "paper_note": (
      "the reference README's QM9 commands set the weight "
      "decay but not the filter, so which run produced each "
      "published number is ambiguous; compare with the "
      "weight-decay control"
    ),
  }


def write_losses(out_dir: Path, run: harness.Run) -> list[Path]:
  """Writes OUT/losses.npz: every epoch's train and test loss (float32)."""
  path = Path(out_dir) / LOSSES_FILE
  np.savez_compressed(
    path,
    train_loss=run.curves["train_loss"][1:],
    val_loss=run.curves["val_loss"][1:],
  )
  return [path]


def announce(cfg: config_lib.Qm9Config, data: Molecules) -> list[str]:
  """The data used and, for ``--max-steps``, the epochs it became."""
  lines = []
  source = data.source
  if source is not None:
    lines.append(
      f"data: {source['n_molecules']} characterized molecules (gdb_id "
      f"{source['gdb_ids'][0]}-{source['gdb_ids'][1]}) from "
      f"{source['path']}; {cfg.n_train} train / {cfg.n_test} test"
    )
  if cfg.requested_steps is not None:
    lines.append(
      f"--max-steps {cfg.requested_steps:,} -> {cfg.epochs:,} "
      f"epochs of {cfg.updates_per_epoch} updates "
      f"({cfg.max_steps:,} updates)"
    )
  return lines


def title(cfg: config_lib.Qm9Config, what: str) -> str:
  """Plot title: the run (or runs, "a vs b") and the data split."""
  return report.title(
    cfg,
    what,
    "QM9 polarizability",
    (f"{cfg.n_train} train / {cfg.n_test} test molecules, seed {cfg.seed}"),
  )


# What a resume must share with its checkpoint: every setting but the run's
# length and its early stop (a resume may change them).
checkpoint_settings = report.settings_but(
  "epochs", "max_steps", "stop_at_target", "target_mse"
)


TASK = harness.Task(
  name="qm9",
  help="QM9 polarizability with a scaled-init GNN: one run",
  description="Train the NNConv network (init scaled by 3, MSE, AdamW, "
  "batch 32) on 50 of the first 100 characterized QM9 molecules, testing "
  "on the other 50 every epoch; unset options take the paper's settings "
  "for the chosen --filter (none: wd 0; ema: alpha 0.9, lamb 1, wd 0.01).",
  compare_name="qm9-compare",
  compare_help="QM9 polarizability: baseline, weight decay only, Grokfast",
  compare_description="Three runs on the same data and seed: baseline (no "
  "filter, wd 0), weight-decay (no filter, wd 0.01: the control the "
  "reference lacks) and Grokfast (--filter ema or ma, wd 0.01); --alpha, "
  "--lamb and --window-size apply to the Grokfast run, --weight-decay to "
  "it and to the control.",
  config_class=config_lib.Qm9Config,
  make_config=config_lib.make_config,
  load_data=load_data,
  build=build,
  summarize=summarize,
  describe=describe,
  plan_compare=plan_compare,
  summarize_compare=summarize_compare,
  title=title,
  announce=announce,
  checkpoint_settings=checkpoint_settings,
  extra_files=write_losses,
  default_out="runs/qm9",
  compare_out="runs/qm9-compare",
  plots=(("curves.png", "loss", "MSE (bohr^6)", True),),
  extra_flags=(
    harness.Flag(
      "--max-steps",
      "max_steps",
      help="optimizer updates, converted to whole epochs (rounded up; 2 "
      "updates per epoch with 50 training molecules in batches of 32 and "
      "18); instead of --epochs",
      parse=int,
    ),
  ),
)
