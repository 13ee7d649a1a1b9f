"""Tests of the modular task's recipes, optimizer factory and new flags."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import grokfast_jax as gj
from benchmarks.studies import fastest_grok
from grokfast_jax import cli
from grokfast_jax.experiments.modular import config as config_lib
from grokfast_jax.experiments.modular import optimizers
from grokfast_jax.experiments.modular import recipes
from grokfast_jax.experiments import harness
from grokfast_jax.experiments.modular import task as train_lib

# p=11 (55 training equations, one update an epoch), one small block.
TINY = ["--p", "11", "--depth", "1", "--width", "16", "--heads", "2",
        "--no-progress"]
TINY_CFG = dict(p=11, depth=1, width=16, heads=2)


def _params():
  """Hand params shaped like the model's: block kernels, head, biases."""
  k = jax.random.split(jax.random.key(0), 4)
  return {"blocks": {0: {"fc1": {"kernel": jax.random.normal(k[0], (4, 6)),
                                 "bias": jnp.zeros(6)},
                         "ln1": {"scale": jnp.ones(4)}}},
          "head": {"kernel": jax.random.normal(k[1], (4, 5))},
          "tok": {"embedding": jax.random.normal(k[2], (5, 4))}}


def _grads(params, t):
  return jax.tree.map(
      lambda x: jax.random.normal(jax.random.key(t), x.shape), params)


# ------------------------------------------------------------- recipes


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_builds_a_valid_config_and_optimizer(name):
  recipe = recipes.RECIPES[name]
  assert recipe.summary and set(recipe.settings) <= set(
      recipes.METHOD_FIELDS)
  cfg = recipes.resolve(name)
  assert cfg.recipe == name and cfg.filter == recipe.settings["filter"]
  for key, value in recipe.settings.items():
    assert getattr(cfg, key) == value
  # Model, data and evaluation stay the paper's.
  base = config_lib.ModularConfig()
  for key in ("op", "p", "train_fraction", "batch_size", "depth", "width",
              "heads", "target"):
    assert getattr(cfg, key) == getattr(base, key)
  params = _params()
  tx = optimizers.make_optimizer(cfg)
  state = tx.init(params)
  updates, state = tx.update(_grads(params, 0), state, params)
  params = optax.apply_updates(params, updates)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_paper_recipes_are_todays_paper_settings():
  for name, f in (("paper-ema", "ema"), ("paper-ma", "ma")):
    assert dataclasses.replace(recipes.resolve(name),
                               recipe=None) == config_lib.paper_config(f)
  clip = recipes.resolve("lion-clip")
  assert (clip.optimizer, clip.lr, clip.beta1, clip.beta2, clip.weight_decay,
          clip.max_weight_norm, clip.filter) == (
              "lion", 1e-3, 0.9, 0.97, 0.0, 2.0, "none")
  assert "fastest_grok.py" in recipes.RECIPES["fastest"].summary


def test_fastest_is_the_search_winner_as_benchmarked():
  """`fastest` trains exactly what `benchmarks.studies.fastest_grok`
  measured."""
  measured = _cfg(*fastest_grok.CANDIDATES[fastest_grok.WINNER])
  fastest = _cfg("--recipe", "fastest")
  assert dataclasses.replace(measured, recipe="fastest") == fastest


def test_paper_ema_chain_is_bit_identical_to_the_earlier_optimizer():
  cfg = recipes.resolve("paper-ema")
  tx = optimizers.make_optimizer(cfg)
  ref = optax.chain(
      gj.grokfast_ema(alpha=0.98, lamb=2.0), optax.add_decayed_weights(0.005),
      optax.scale_by_adam(b1=0.9, b2=0.98, eps=1e-8),
      optax.scale_by_learning_rate(
          lambda c: 1e-3 * jnp.minimum(c / 10, 1.0)))
  params = _params()
  s, s_ref = tx.init(params), ref.init(params)
  assert (jax.tree.structure(s) == jax.tree.structure(s_ref))
  for t in range(12):
    g = _grads(params, t)
    u, s = tx.update(g, s, params)
    u_ref, s_ref = ref.update(g, s_ref, params)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u_ref)):
      np.testing.assert_array_equal(a, b)
    params = optax.apply_updates(params, u)


def test_checkpoint_settings_of_old_defaults_round_trip():
  cfg = config_lib.paper_config("ema", seed=3)
  old = set(dataclasses.asdict(cfg)) - set(config_lib.NEW_FIELDS) - set(
      config_lib.UNCHECKED_FIELDS)
  assert set(config_lib.checkpoint_settings(cfg)) == old
  tagged = dataclasses.replace(cfg, recipe="paper-ema", stop_at_target=True,
                               after_target=10)
  assert set(config_lib.checkpoint_settings(tagged)) == old
  lion = config_lib.checkpoint_settings(
      dataclasses.replace(cfg, optimizer="lion"))
  assert lion["optimizer"] == "lion"


def test_should_stop_after_target():
  cfg = config_lib.ModularConfig(stop_at_target=True, after_target=20)
  hist = [{"step": s, "val_acc": a}
          for s, a in ((10, 0.5), (20, 0.96), (30, 0.9))]
  assert not cfg.should_stop(hist) and cfg.should_stop(
      hist + [{"step": 40, "val_acc": 0.97}])
  assert not config_lib.ModularConfig().should_stop(hist)


# -------------------------------------------------------- command line


def _cfg(*argv):
  args = cli.build_parser().parse_args(["modular", *argv])
  return train_lib.make_config(harness.given_from_args(train_lib.TASK, args))


def test_recipe_then_explicit_flags():
  cfg = _cfg("--recipe", "lion-clip", "--lr", "3e-4", "--betas", "0.8,0.9",
             "--filter", "ema", "--weight-norm-axis", "matrix",
             "--weight-norm-scope", "blocks")
  assert (cfg.recipe, cfg.optimizer, cfg.lr, cfg.beta1, cfg.beta2) == (
      "lion-clip", "lion", 3e-4, 0.8, 0.9)
  # Another filter than the recipe's: its paper alpha/lamb, the recipe's wd.
  assert (cfg.filter, cfg.alpha, cfg.lamb, cfg.weight_decay) == (
      "ema", 0.98, 2.0, 0.0)
  assert (cfg.max_weight_norm, cfg.weight_norm_axis) == (2.0, "matrix")
  ma = _cfg("--recipe", "paper-ma", "--lamb", "3")
  assert (ma.filter, ma.window_size, ma.lamb, ma.weight_decay) == (
      "ma", 100, 3.0, 0.01)
  assert _cfg() == config_lib.paper_config("ema")  # no recipe: as before
  iir = _cfg("--filter", "iir", "--order", "3", "--cutoff", "0.05",
             "--optimizer", "muon", "--loss", "stablemax", "--orthograd")
  assert (iir.iir_order, iir.iir_cutoff, iir.lamb, iir.optimizer, iir.loss,
          iir.orthograd) == (3, 0.05, 2.0, "muon", "stablemax", True)


@pytest.mark.parametrize("argv, flag", [
    (["--lr", "-1"], "--lr"),
    (["--betas", "0.9"], "--betas"),
    (["--betas", "1.5,0.9"], "--betas"),
    (["--max-weight-norm", "0"], "--max-weight-norm"),
    (["--filter", "iir", "--cutoff", "1.5"], "--cutoff"),
    (["--filter", "iir", "--order", "0"], "--order"),
    (["--after-target", "5"], "--after-target"),
    (["--recipe", "nope"], "--recipe"),
    (["--optimizer", "lion", "--decoupled-wd"], "--decoupled-wd"),
    (["--max-weight-norm", "2", "--weight-norm-scope", "all",
      "--weight-norm-axis", "column"], "--weight-norm-scope"),
])
def test_bad_values_exit_2_with_one_line_naming_the_flag(argv, flag, tmp_path,
                                                         capsys):
  argv = [str(tmp_path) if a == "CKPT" else a for a in argv]
  assert cli.main(["modular", *argv, *TINY, "--out", str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and flag in err


@pytest.mark.parametrize("argv", [["--optimizer", "sgd"], ["--loss", "mse"],
                                  ["--weight-norm-axis", "2"]])
def test_bad_choices_are_argparse_errors(argv, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["modular", *argv])
  assert e.value.code == 2 and argv[0] in capsys.readouterr().err


# ------------------------------------------------------- training runs


def _train(cfg):
  run = harness.train(train_lib.TASK, cfg, progress=False)
  return run.results, run.state[0], run.state[1]


def test_cli_runs_adamw_orthograd_stablemax_iir(tmp_path):
  out = tmp_path / "run"
  assert cli.main(["modular", "--optimizer", "adamw", "--orthograd",
                   "--loss", "stablemax", "--filter", "iir", "--order", "2",
                   "--cutoff", "0.2", "--max-steps", "3", *TINY,
                   "--out", str(out)]) == 0
  r = json.loads((out / "results.json").read_text())
  s = r["settings"]
  assert (s["optimizer"], s["orthograd"], s["loss"], s["filter"],
          s["iir_cutoff"], s["recipe"]) == ("adamw", True, "stablemax",
                                            "iir", 0.2, None)
  assert all(np.isfinite(h["train_loss"]) for h in r["history"])
  assert "spectrum" not in r


def test_cli_egd_recipe_whitens_the_blocks_kernels_first(tmp_path):
  out = tmp_path / "run"
  assert cli.main(["modular", "--recipe", "egd", "--max-steps", "3", *TINY,
                   "--out", str(out)]) == 0
  r = json.loads((out / "results.json").read_text())
  assert (r["settings"]["egd"], r["settings"]["optimizer"],
          r["settings"]["filter"]) == (True, "adam", "none")
  assert all(np.isfinite(h["train_loss"]) for h in r["history"])
  # The chain whitens the blocks' kernels only: EGD turns [[1, 2], [0, 1]]
  # into its polar factor [[.707, .707], [-.707, .707]], so Adam's first
  # step (-lr * sign) moves entry [1, 0] up there, while the head's
  # gradient, not whitened, moves it by 0 (a zero gradient).
  cfg = dataclasses.replace(recipes.resolve("egd"), warmup_steps=0)
  g = jnp.array([[1.0, 2.0], [0.0, 1.0]])
  params = {"blocks": {"0": {"fc": {"kernel": jnp.ones((2, 2))}}},
            "head": {"kernel": jnp.ones((2, 2))}}
  grads = {"blocks": {"0": {"fc": {"kernel": g}}}, "head": {"kernel": g}}
  tx = optimizers.make_optimizer(cfg)
  updates, _ = tx.update(grads, tx.init(params), params)
  lr = cfg.lr
  np.testing.assert_allclose(updates["blocks"]["0"]["fc"]["kernel"],
                             [[-lr, -lr], [lr, -lr]], rtol=1e-4)
  np.testing.assert_allclose(updates["head"]["kernel"],
                             [[-lr, -lr], [0.0, -lr]], rtol=1e-4)


def test_cli_lion_clip_recipe_records_the_spectrum(tmp_path, capsys):
  out = tmp_path / "run"
  assert cli.main(["compare", "--recipe", "lion-clip", "--filters", "ema",
                   "--record-spectrum", "--max-steps", "6", *TINY,
                   "--out", str(out)]) == 0
  r = json.loads((out / "ema" / "results.json").read_text())
  s = r["settings"]
  assert (s["recipe"], s["optimizer"], s["max_weight_norm"], s["filter"],
          s["record_spectrum"]) == ("lion-clip", "lion", 2.0, "ema", True)
  spec = r["spectrum"]
  assert spec["num_records"] == 6
  assert len(spec["freqs"]) == len(spec["power"]) == 3  # rfft of 6, f > 0
  assert (out / "ema" / "spectrum.png").read_bytes()[:4] == b"\x89PNG"
  assert "spectrum.png" in capsys.readouterr().out


def test_weight_rows_stay_bounded_muon_and_after_target():
  bound = 0.3  # below the initial row norms (about 0.58)
  cfg = recipes.resolve("weight-norm", max_weight_norm=bound,
                        optimizer="muon", lr=1e-2, stop_at_target=True,
                        target=0.01, after_target=2, max_steps=50, **TINY_CFG)
  result, params, _ = _train(cfg)
  # Chance accuracy reaches 1% at the first epoch; then 2 more updates.
  assert [h["step"] for h in result["history"]] == [1, 2, 3]
  mask = optimizers.constrained_leaves(params)
  checked = 0
  for on, w in zip(jax.tree.leaves(mask), jax.tree.leaves(params)):
    if on:
      norms = np.linalg.norm(np.asarray(w), axis=0)  # rows of [in, out]
      assert norms.max() <= bound * (1 + 1e-5)
      checked += 1
  assert checked == 4  # qkv, out, fc1, fc2


def test_clip_to_grok_scope_all_sets_rows_at_init_and_clips_all_but_edges():
  """lion-clip is the reference's: every row at norm 2.0 at init, then every
  leaf but the token embeddings and the head clipped after each update."""
  cfg = recipes.resolve("lion-clip", lr=0.2, max_steps=20, **TINY_CFG)
  assert cfg.weight_norm_scope == "all"
  result, params, _ = _train(cfg)
  assert len(result["history"]) == 20  # p=11: one update an epoch
  model_params = train_lib.init_model(cfg)
  model_params = (model_params[1] if isinstance(model_params, tuple)
                  else model_params)
  start = optimizers.initial_params(cfg, model_params)
  names = []
  for (path, w0), w in zip(jax.tree_util.tree_flatten_with_path(start)[0],
                           jax.tree.leaves(params)):
    key = jax.tree_util.keystr(path)
    axis = 1 if "embedding" in key else 0
    n0 = np.linalg.norm(np.asarray(w0), axis=axis)
    n0 = n0[n0 > 0]  # zero rows (biases at init) stay zero
    np.testing.assert_allclose(n0, 2.0, rtol=1e-5)
    norms = np.linalg.norm(np.asarray(w), axis=axis)
    if "['tok']" in key or "['head']" in key:
      names.append(key)
      assert norms.max() > 2.0  # free: lr 0.2 sign steps push them out
    else:
      assert norms.max() <= 2.0 * (1 + 1e-5), key
  assert len(names) == 2
  blocks = recipes.resolve("weight-norm", **TINY_CFG)
  assert blocks.weight_norm_scope == "blocks"
