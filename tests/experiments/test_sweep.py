"""Sweeps: many runs of one task as one vmapped program."""

import json

import pytest

from grokfast_jax import cli
from grokfast_jax.experiments import harness
from grokfast_jax.experiments.harness import _sweep
from grokfast_jax.experiments.modular import task as modular

SMALL = {"p": 11, "depth": 1, "width": 32, "heads": 2, "max_steps": 10,
         "filter": "ema"}
KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")


def _single(cfg):
  return harness.train(modular.TASK, cfg, progress=False)


def _assert_same_run(member, single, rel=2e-5, first=None):
  """The same evaluations, equal to float tolerance (the `first` ones: a
  vmapped program rounds differently, and over many updates the dynamics
  amplify that, Muon's at a high learning rate most)."""
  got, want = member["history"], single.results["history"]
  assert [h["step"] for h in got] == [h["step"] for h in want]
  for g, w in list(zip(got, want))[:first]:
    for k in KEYS:
      assert g[k] == pytest.approx(w[k], rel=rel, abs=1e-6), (k, g, w)
  # The run-level results a member shares with its single run (the modular
  # task's keys; every one of them must be there).
  for k in ("steps_to_val_acc_95", "final", "settings"):
    assert k in single.results and k in member, k
    if isinstance(single.results[k], float):
      assert member[k] == pytest.approx(single.results[k], rel=rel), k
    elif k == "final":
      assert member[k].keys() == single.results[k].keys()
      # The last evaluation: all of it where every evaluation is compared,
      # else where it ended.
      for kk, v in single.results[k].items():
        if first is None or kk in ("step", "epoch"):
          assert member[k][kk] == pytest.approx(v, rel=rel, abs=1e-6), kk
    else:
      assert member[k] == single.results[k], k


def test_each_member_equals_its_single_run():
  # Two members in one program that differ in a swept float (the seeds
  # differ in the next test).
  members = _sweep.plan_members(modular.TASK, SMALL, [1],
                                {"lr": [1e-3, 3e-3], "lamb": [2.0]})
  assert [m.name for m in members] == ["seed1-lamb2-lr0.001",
                                       "seed1-lamb2-lr0.003"]
  results = _sweep.sweep(modular.TASK, members, progress=False)
  finals = set()
  for m in members:
    _assert_same_run(results[m.name], _single(m.cfg))
    assert results[m.name]["settings"]["seed"] == m.values["seed"]
    assert results[m.name]["settings"]["lr"] == m.values["lr"]
    finals.add(round(results[m.name]["history"][-1]["val_loss"], 6))
  assert len(finals) == 2  # the members really differ


def test_a_member_stops_counting_where_its_single_run_stops():
  given = {**SMALL, "filter": "none", "optimizer": "muon", "lr": 2e-2,
           "max_weight_norm": 2.0, "weight_norm_scope": "all",
           "stop_at_target": True, "target": 0.45, "max_steps": 300,
           "p": 31}
  members = _sweep.plan_members(modular.TASK, given, [0, 1, 2], {})
  results = _sweep.sweep(modular.TASK, members, progress=False,
                         members_per_chunk=2)
  steps = []
  for m in members:
    single = _single(m.cfg)
    _assert_same_run(results[m.name], single, rel=1e-4, first=10)
    for g, w in zip(results[m.name]["history"], single.results["history"]):
      assert g["val_acc"] == pytest.approx(w["val_acc"], abs=0.05)
    assert (results[m.name]["steps_to_val_acc_95"]
            == single.results["steps_to_val_acc_95"])
    steps.append(results[m.name]["history"][-1]["step"])
    assert results[m.name]["history"][-1]["val_acc"] >= 0.45
    assert results[m.name]["sweep"]["chunk"] == (0 if m.values["seed"] < 2
                                                  else 1)
  assert len(set(steps)) > 1, steps  # the members stop at different steps


def test_cli_writes_every_member_a_summary_and_the_overlay(tmp_path):
  out = tmp_path / "sweep"
  argv = ["sweep", "modular", "--p", "11", "--depth", "1", "--width", "32",
          "--heads", "2", "--max-steps", "6", "--seeds", "0-2", "--grid",
          "weight-decay=0,0.01", "--out", str(out), "--no-progress"]
  assert cli.main(argv) == 0
  summary = json.loads((out / "summary.json").read_text())
  assert summary["members"] == 6 and summary["task"] == "modular"
  assert summary["metric"] == "steps_to_val_acc_95"
  assert set(summary["per_member"]) == {
      f"seed{s}-weight_decay{w}" for s in range(3) for w in ("0", "0.01")}
  single = json.loads((out / "seed2-weight_decay0.01" / "results.json")
                      .read_text())
  assert single["settings"]["seed"] == 2
  assert single["settings"]["weight_decay"] == 0.01
  assert single["sweep"]["members"] == 6
  for key in ("task", "run", "settings", "history", "steps_to_val_acc_95",
              "seconds_total", "backend", "versions"):
    assert key in single, key
  assert (out / "curves.png").exists()
  assert (out / "seed0-weight_decay0" / "curves.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["--grid", "p=7,11"], "--grid 'p=7,11': the swept settings are"),
    (["--grid", "lr=x"], "values must be numbers"),
    (["--seeds", "1-"], "--seeds takes ints"),
    (["--seeds", "1,1"], "--seeds must name distinct ints"),
    (["--record-spectrum"], "record_spectrum"),
])
def test_cli_refuses_bad_sweeps_with_one_line(argv, message, tmp_path,
                                              capsys):
  base = ["sweep", "modular", "--p", "11", "--max-steps", "2",
          "--out", str(tmp_path / "o"), "--no-progress"]
  assert cli.main(base + argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0], err
  assert not (tmp_path / "o").exists()


def test_sweep_refuses_members_that_differ_in_other_settings():
  a, b = (_sweep.Member(f"m{i}", modular.make_config({**SMALL, "seed": i,
                                                      "weight_decay": w}),
                        {"seed": i}) for i, w in ((0, 0.0), (1, 0.01)))
  with pytest.raises(ValueError, match="m1 differs from m0 in weight_decay"):
    _sweep.sweep(modular.TASK, [a, b], progress=False)


def test_vmap_program_refuses_members_of_other_shapes():
  a = modular.TASK.build_member(modular.make_config(SMALL), None,
                                harness.Context(), ())
  b = modular.TASK.build_member(modular.make_config({**SMALL, "width": 64}),
                                None, harness.Context(), ())
  with pytest.raises(ValueError, match="layout of their state"):
    _sweep.vmap_program([a, b])


def test_parse_helpers():
  assert _sweep.parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
  assert _sweep.parse_grid(["max-weight-norm=1.5,2"], ("max_weight_norm",)) \
      == {"max_weight_norm": [1.5, 2.0]}
  assert _sweep.parse_grid([], ("lr",)) == {}
  assert _sweep.median_of([370, None, 220, None, 250]) == 370
  assert _sweep.median_of([370, None, 220, 250]) == 310
  assert _sweep.median_of([None, None, 220]) is None
  with pytest.raises(ValueError, match="names lr twice"):
    _sweep.parse_grid(["lr=1", "lr=2"], ("lr",))


def test_a_sweep_resumes_from_its_chunk_checkpoints(tmp_path):
  members = _sweep.plan_members(modular.TASK, {**SMALL, "max_steps": 4},
                                [0, 1], {})
  ckpt = tmp_path / "ckpt"
  first = _sweep.sweep(modular.TASK, members, progress=False,
                       members_per_chunk=1, checkpoint_dir=ckpt)
  assert sorted(p.name for p in ckpt.iterdir()) == ["chunk0", "chunk1"]
  with pytest.raises(ValueError, match="already holds checkpoints"):
    _sweep.sweep(modular.TASK, members, progress=False, members_per_chunk=1,
                 checkpoint_dir=ckpt)
  # As if killed before the second chunk began: the first is restored (not
  # trained again), the second trained, and nothing changes.
  import shutil
  shutil.rmtree(ckpt / "chunk1")
  again = _sweep.sweep(modular.TASK, members, progress=False,
                       members_per_chunk=1, checkpoint_dir=ckpt, resume=True)
  for m in members:
    strip = [{k: v for k, v in h.items() if k != "seconds"}
             for h in first[m.name]["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"}
            for h in again[m.name]["history"]] == strip
