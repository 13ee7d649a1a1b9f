"""The experiment harness once, on a toy task: flags from a config, the
chunked loop, history and curves, the results schema, checkpoints (exact
resume, the guard), the comparison runner and its files."""

import dataclasses
import json
from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from grokfast_jax.experiments import harness
from grokfast_jax.experiments.checkpoint import CheckpointMismatchError


@dataclasses.dataclass(frozen=True)
class ToyConfig:
  lr: float = harness.option(0.1, "learning rate")
  seed: int = harness.option(0, "seed", group="task")
  max_steps: int = harness.option(40, "updates")
  stop_at_target: bool = harness.option(
      False, "stop at val_loss <= target", aliases=("--stop-at-threshold",))
  target: float = harness.option(0.05, cli=False)
  filter: str = harness.option("none", "filter", choices=("none", "ema"))
  width: Optional[int] = harness.option(None, "unused width")
  hidden: tuple[int, ...] = harness.option((3, 4), "widths")

  def __post_init__(self):
    if self.lr <= 0:
      raise ValueError(f"lr must be > 0, got {self.lr}")


def _build(cfg, data, ctx):
  key = jax.random.key(cfg.seed)
  w = jax.random.normal(key, (4,))
  tx = optax.chain(*([harness_filter()] if cfg.filter == "ema" else []),
                   optax.sgd(cfg.lr))
  xs = jax.random.normal(jax.random.fold_in(key, 1), (32, 4))
  ys = xs @ jnp.arange(4.0)

  def update(state, batch):
    w, s = state
    x, y = batch
    loss, g = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(w)
    u, s = tx.update(g, s, w)
    return (optax.apply_updates(w, u), s), loss

  def train_epoch(state, epoch, d):
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), 32)
    batches = (d[0][perm].reshape(4, 8, 4), d[1][perm].reshape(4, 8))
    state, losses = jax.lax.scan(update, state, batches)
    return state, {"loss": losses.mean()}

  def evaluate(state, d):
    return state, {"val_loss": jnp.mean((d[0] @ state[0] - d[1]) ** 2)}

  def entry(m, ev):
    return {"train_loss": None if m is None else float(m["loss"][-1]),
            "val_loss": ev["val_loss"]}

  stop = (lambda h: h[-1]["val_loss"] <= cfg.target) if cfg.stop_at_target \
      else None
  return harness.Program(
      state=(w, tx.init(w)), data=(xs, ys), train_epoch=train_epoch,
      evaluate=evaluate, entry=entry, total_epochs=cfg.max_steps // 4,
      steps_per_epoch=4, epochs_per_eval=2, evals_per_chunk=2,
      initial_eval=True, should_stop=stop, keep=lambda e: e % 4 == 0,
      curve_keys=("val_loss",), info={"n_params": 4})


def harness_filter():
  import grokfast_jax as gj
  return gj.grokfast_ema(0.5, 1.0)


def _summarize(cfg, data, facts):
  return {"lowest_val_loss": float(facts["curves"]["val_loss"].min()),
          "n_params": facts["info"]["n_params"]}


TOY = harness.Task(
    name="toy", config_class=ToyConfig,
    make_config=lambda given: ToyConfig(**given), build=_build,
    summarize=_summarize,
    describe=lambda r: f"{r['run']}: lowest val loss "
    f"{r['lowest_val_loss']:.3g}",
    plan_compare=lambda given: [
        (f, f"toy-{f}", ToyConfig(**{**given, "filter": f}))
        for f in ("none", "ema")],
    summarize_compare=lambda runs: (
        [f"{k}: {r['lowest_val_loss']:.3g}" for k, r in runs.items()],
        {"best": min(runs, key=lambda k: runs[k]["lowest_val_loss"])}),
    plots=(("losses.png", "loss", "loss", True),),
    default_out="runs/toy", run_label=lambda cfg: f"toy-{cfg.filter}")


def _parser():
  import argparse
  p = argparse.ArgumentParser(prog="grokfast-jax")
  harness.add_parsers(p.add_subparsers(dest="command"), TOY)
  return p


def test_flags_come_from_the_config_fields():
  args = _parser().parse_args(["toy"])
  assert harness.given_from_args(TOY, args) == {}
  args = _parser().parse_args(
      ["toy", "--lr", "0.5", "--stop-at-threshold", "--filter", "ema",
       "--width", "3", "--hidden", "5,6", "--seed", "2"])
  assert harness.given_from_args(TOY, args) == {
      "lr": 0.5, "stop_at_target": True, "filter": "ema", "width": 3,
      "hidden": (5, 6), "seed": 2}
  help_text = _parser()._subparsers._group_actions[0].choices[
      "toy"].format_help()
  assert "--target" not in help_text and "learning rate" in help_text
  with pytest.raises(SystemExit):
    _parser().parse_args(["toy", "--filter", "sma"])


def test_the_loop_history_curves_and_schema():
  run = harness.train(TOY, ToyConfig(), progress=False)
  steps = [h["step"] for h in run.history]
  # Step 0, then every 2 epochs (8 updates) evaluated; every 4th epoch kept.
  assert steps == [0, 16, 32, 40]
  assert len(run.curves["val_loss"]) == 1 + 5
  assert run.history[0]["train_loss"] is None
  r = run.results
  for key in ("task", "run", "settings", "steps_per_epoch", "seconds_total",
              "seconds_first_eval", "steps_per_second", "backend",
              "devices", "process_count", "versions", "history",
              "lowest_val_loss", "n_params"):
    assert key in r, key
  assert r["task"] == "toy" and r["settings"]["hidden"] == [3, 4]
  assert r["lowest_val_loss"] == pytest.approx(min(run.curves["val_loss"]))


def test_stop_at_target_ends_the_run_early():
  run = harness.train(TOY, ToyConfig(stop_at_target=True, target=1e3,
                                     max_steps=400), progress=False)
  assert run.history[-1]["step"] == 0
  run = harness.train(TOY, ToyConfig(stop_at_target=True, target=1.0,
                                     max_steps=400), progress=False)
  # It stops at the first evaluation at the target (here the first after
  # the initial one).
  assert [h["step"] for h in run.history] == [0, 16]
  assert run.history[-1]["val_loss"] <= 1.0 < run.history[-2]["val_loss"]
  assert run.history[-1]["step"] < 400


@pytest.mark.parametrize("cut", [8, 16, 24])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, cut):
  full = harness.train(TOY, ToyConfig(filter="ema"), progress=False)
  harness.train(TOY, ToyConfig(filter="ema", max_steps=cut), progress=False,
                checkpoint_dir=tmp_path, checkpoint_every=1)
  resumed = harness.train(TOY, ToyConfig(filter="ema"), progress=False,
                          checkpoint_dir=tmp_path, resume=True)
  strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"}
                     for e in h]
  assert strip(resumed.history) == strip(full.history)
  np.testing.assert_array_equal(resumed.curves["val_loss"],
                                full.curves["val_loss"])
  chex.assert_trees_all_equal(resumed.state, full.state)


def test_the_guard_never_overwrites_and_names_differences(tmp_path):
  harness.train(TOY, ToyConfig(max_steps=8), progress=False,
                checkpoint_dir=tmp_path)
  with pytest.raises(ValueError, match="already holds checkpoints.*--resume"):
    harness.train(TOY, ToyConfig(max_steps=8), progress=False,
                  checkpoint_dir=tmp_path)
  with pytest.raises(CheckpointMismatchError,
                     match="lr: checkpoint 0.1, this run 0.2"):
    harness.train(TOY, ToyConfig(lr=0.2, max_steps=16), progress=False,
                  checkpoint_dir=tmp_path, resume=True)
  with pytest.raises(ValueError, match="--resume needs --checkpoint-dir"):
    harness.train(TOY, ToyConfig(), progress=False, resume=True)


def test_compare_writes_each_run_and_the_summary(tmp_path, capsys):
  args = _parser().parse_args(["toy-compare", "--max-steps", "16", "--out",
                               str(tmp_path), "--no-progress",
                               "--checkpoint-dir", str(tmp_path / "ck")])
  assert args.func(args) == 0
  r = json.loads((tmp_path / "results.json").read_text())
  assert r["task"] == "toy-compare" and set(r["runs"]) == {"toy-none",
                                                          "toy-ema"}
  assert r["best"] in r["runs"]
  for sub in ("none", "ema"):
    assert (tmp_path / sub / "results.json").exists()
    assert (tmp_path / sub / "losses.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "ck" / sub).is_dir()
  assert (tmp_path / "losses.png").exists()
  out = capsys.readouterr().out
  assert "summary:" in out and "toy-ema: " in out
