"""One results schema for every task, and the files a run writes.

``results.json`` of a run holds the harness's keys (task, run, settings,
steps_per_epoch, seconds_total, seconds_first_eval, steps_per_second,
backend, devices, process_count, versions, history), then the task's own
figures (:attr:`~._task.Task.summarize`, which may refine any of them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import jax

from grokfast_jax.experiments import common


def settings_dict(cfg: Any) -> dict[str, Any]:
  """The config as a JSON-friendly dict (its own ``to_dict`` if it has one)."""
  if hasattr(cfg, "to_dict"):
    return cfg.to_dict()
  return common.to_json_safe(dataclasses.asdict(cfg))


def assemble(
  task: Any, cfg: Any, data: Any, facts: Mapping[str, Any]
) -> dict[str, Any]:
  """The results dict of a finished run (see the module docstring)."""
  history = facts["history"]
  first, total = facts["seconds_first_eval"], facts["seconds_total"]
  rate = None
  trained = [h for h in history if h["step"] > 0]
  if len(trained) > 1 and first is not None:
    dt = trained[-1]["seconds"] - first
    rate = (trained[-1]["step"] - trained[0]["step"]) / dt if dt > 0 else None
  results: dict[str, Any] = {
    "task": task.name,
    "run": facts.get("label"),
    "settings": settings_dict(cfg),
    "steps_per_epoch": facts["steps_per_epoch"],
    "seconds_total": total,
    "seconds_first_eval": first,
    "steps_per_second": rate,
    "backend": jax.default_backend(),
    "devices": [str(d) for d in jax.devices()],
    "process_count": jax.process_count(),
    "versions": common.versions(),
  }
  results.update(task.summarize(cfg, data, facts))
  results["history"] = results.pop("history", history)
  return results


def _plots(
  task: Any, out: Path, histories: Mapping[str, Any], title: str
) -> list[Path]:
  """The task's plots of `histories` (run name -> history) in `out`."""
  return [
    common.plot_curves(
      histories, out / file, title, metric=metric, ylabel=ylabel, log_y=log_y
    )
    for file, metric, ylabel, log_y in task.plots
  ]


def write_run(
  task: Any, out: Path, run: Any, cfg: Any, label: str
) -> list[Path]:
  """Writes ``out/results.json``, the task's plots and extra files."""
  out = Path(out)
  written = [
    common.save_results(out, run.results),
    *_plots(task, out, {label: run.history}, task.title(cfg, label)),
  ]
  if task.extra_files is not None:
    written += [Path(p) for p in task.extra_files(out, run)]
  return written


def write_compare(
  task: Any,
  out: Path,
  runs: Mapping[str, Any],
  extra: Mapping[str, Any],
  title: str,
) -> list[Path]:
  """Writes a comparison's ``out/results.json`` (its `extra` keys and every
  run's results under "runs") and the overlaid plots."""
  out = Path(out)
  return [
    common.save_results(
      out,
      {
        "task": task.compare_name or f"{task.name}-compare",
        **extra,
        "runs": {k: r.results for k, r in runs.items()},
      },
    ),
    *_plots(task, out, {k: r.history for k, r in runs.items()}, title),
  ]
