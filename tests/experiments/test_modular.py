"""Tests of the modular-arithmetic experiment: data, model, training."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from grokfast_jax.experiments.modular import config as config_lib
from grokfast_jax.experiments.modular import data as data_lib
from grokfast_jax.experiments.modular import model as model_lib
from grokfast_jax.experiments.modular import optimizers
from grokfast_jax.experiments.modular import task as train_lib

# ---------------------------------------------------------------- data


def test_dataset_size_and_tokens():
  data = data_lib.make_equations("*", 97)
  assert data.inputs.shape == (9312, 4) and data.labels.shape == (9312,)
  assert data.inputs.dtype == np.int32
  assert set(data.inputs[:, 0]) == set(range(97))
  assert set(data.inputs[:, 2]) == set(range(1, 97))
  assert (data.inputs[:, 1] == 97).all() and (data.inputs[:, 3] == 98).all()
  assert data_lib.vocab_size(97) == 99
  assert len({tuple(r) for r in data.inputs}) == 9312


def test_split_sizes_determinism_and_disjointness():
  train, val = data_lib.make_splits("*", 97, 0.5, seed=3)
  assert len(train.labels) == 4656 and len(val.labels) == 4656
  train2, _ = data_lib.make_splits("*", 97, 0.5, seed=3)
  np.testing.assert_array_equal(train.inputs, train2.inputs)
  other, _ = data_lib.make_splits("*", 97, 0.5, seed=4)
  assert not np.array_equal(train.inputs, other.inputs)
  a = {tuple(r) for r in train.inputs}
  b = {tuple(r) for r in val.inputs}
  assert not a & b and len(a | b) == 9312
  tr, va = data_lib.make_splits("+", 11, 0.3, seed=0)
  assert len(tr.labels) == 33 and len(va.labels) == 77


@pytest.mark.parametrize("op, fn", [
    ("*", lambda x, y, p: x * y % p),
    ("+", lambda x, y, p: (x + y) % p),
    ("-", lambda x, y, p: (x - y) % p),
])
def test_operator_answers(op, fn):
  p = 13
  data = data_lib.make_equations(op, p)
  for (x, _, y, _), z in zip(data.inputs, data.labels):
    assert z == fn(int(x), int(y), p)


def test_division_uses_modular_inverse():
  p = 13
  data = data_lib.make_equations("/", p)
  for (x, _, y, _), z in zip(data.inputs, data.labels):
    assert (int(z) * int(y)) % p == x  # z = x * y^-1
  assert data_lib.answers("/", [6, 1], [3, 2], 97).tolist() == [2, 49]


@pytest.mark.parametrize("kwargs, name", [
    ({"p": 1}, "p"), ({"p": 2}, "p"), ({"p": 15}, "p"), ({"p": 9.0}, "p"),
    ({"op": "^"}, "op"), ({"train_fraction": 0.0}, "train_fraction"),
    ({"train_fraction": 1.0}, "train_fraction"),
    ({"train_fraction": -0.5}, "train_fraction"),
])
def test_bad_arguments_raise(kwargs, name):
  with pytest.raises(ValueError, match=name):
    data_lib.make_splits(**kwargs)


def test_bad_config_raises():
  with pytest.raises(ValueError, match="filter"):
    config_lib.paper_config("sma")
  with pytest.raises(ValueError, match="max_steps"):
    config_lib.ModularConfig(max_steps=0)
  with pytest.raises(ValueError, match="weight_decay"):
    config_lib.ModularConfig(weight_decay=-1.0)


def test_paper_defaults():
  ema = config_lib.paper_config("ema")
  assert (ema.alpha, ema.lamb, ema.weight_decay) == (0.98, 2.0, 0.005)
  ma = config_lib.paper_config("ma")
  assert (ma.window_size, ma.lamb, ma.weight_decay) == (100, 5.0, 0.01)
  assert config_lib.paper_config("none").weight_decay == 0.0
  assert config_lib.paper_config("ema", lamb=3.0).lamb == 3.0

# --------------------------------------------------------------- model


@pytest.fixture(scope="module")
def model():
  """The paper's model as the trainer initializes it (only inspected)."""
  return nnx.merge(*train_lib.init_model(config_lib.paper_config("ema")))


@pytest.fixture(scope="module")
def small():
  """A small model (p = 11), initialized as the trainer does (jitted)."""
  cfg = config_lib.paper_config("none", p=11, width=32, heads=2)
  return nnx.merge(*train_lib.init_model(cfg))


def test_model_output_shapes_and_last_only_path(small):
  x = jax.random.randint(jax.random.key(1), (8, 4), 0, 13)
  last = jax.jit(lambda m, x: m(x))(small, x)
  full = jax.jit(lambda m, x: m(x, all_positions=True))(small, x)
  assert last.shape == (8, 13) and full.shape == (8, 4, 13)
  assert len(small.blocks) == 2
  np.testing.assert_allclose(last, full[:, -1], atol=1e-5)


def test_model_is_causal(small):
  x = jax.random.randint(jax.random.key(1), (4, 4), 0, 13)
  y = x.at[:, 3].set((x[:, 3] + 1) % 13)
  f = jax.jit(lambda m, x: m(x, all_positions=True))
  a, b = f(small, x), f(small, y)
  np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-5)
  assert not np.allclose(a[:, 3], b[:, 3])


def _uniform_ok(w, bound):
  w = np.asarray(w)
  assert np.abs(w).max() <= bound
  assert np.abs(w).max() > 0.95 * bound  # really uses the whole range
  sd = bound / math.sqrt(3)  # std of U(-bound, bound)
  np.testing.assert_allclose(w.std(), sd, rtol=0.15)
  assert abs(w.mean()) < 5 * sd / math.sqrt(w.size)


def test_init_follows_pytorch_defaults(model):
  d = 128
  np.testing.assert_allclose(np.std(model.tok.embedding[...]), 1.0, rtol=0.05)
  np.testing.assert_allclose(np.std(model.pos.embedding[...]), 1.0, rtol=0.2)
  for block in model.blocks:
    _uniform_ok(block.attn.qkv.kernel[...], math.sqrt(6 / (d + 3 * d)))
    assert block.attn.qkv.kernel.shape == (d, 3 * d)
    assert not np.any(block.attn.qkv.bias[...])
    _uniform_ok(block.attn.out.kernel[...], 1 / math.sqrt(d))
    assert not np.any(block.attn.out.bias[...])
    _uniform_ok(block.fc1.kernel[...], 1 / math.sqrt(d))
    _uniform_ok(block.fc1.bias[...], 1 / math.sqrt(d))
    _uniform_ok(block.fc2.kernel[...], 1 / math.sqrt(4 * d))
    _uniform_ok(block.fc2.bias[...], 1 / math.sqrt(4 * d))
    for ln in (block.ln1, block.ln2):
      assert ln.epsilon == 1e-5
      np.testing.assert_array_equal(ln.scale[...], 1.0)
      np.testing.assert_array_equal(ln.bias[...], 0.0)
  _uniform_ok(model.head.kernel[...], 1 / math.sqrt(d))
  assert model.head.bias is None
  assert len(model.blocks) == 2


def test_jitted_init_matches_eager_init():
  # init_model compiles the initialization as one unoptimized jit; it must
  # draw the same values as building the model eagerly.
  cfg = config_lib.paper_config("none", p=11, width=32, heads=2, seed=5)
  _, params = train_lib.init_model(cfg)
  eager = model_lib.Transformer(13, 4, width=32, heads=2, rngs=nnx.Rngs(5))
  for a, b in zip(jax.tree.leaves(params),
                  jax.tree.leaves(nnx.state(eager, nnx.Param))):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_gelu_is_exact_erf_gelu():
  x = jnp.linspace(-6, 6, 1001)
  np.testing.assert_allclose(model_lib.gelu(x),
                             jax.nn.gelu(x, approximate=False), atol=1e-6)
  np.testing.assert_allclose(
      jax.jit(jax.grad(lambda x: model_lib.gelu(x).sum()))(x),
      jax.grad(lambda x: jax.nn.gelu(x, approximate=False).sum())(x),
      atol=1e-5)

# ------------------------------------------------------------ training


def test_padded_batch_loss_and_grad_equal_unpadded(small):
  graphdef, params = nnx.split(small, nnx.Param)
  x = jax.random.randint(jax.random.key(2), (48, 4), 0, 13)
  y = jax.random.randint(jax.random.key(3), (48,), 0, 11)
  pad = 512 - 48
  xp = jnp.concatenate([x, jnp.zeros((pad, 4), x.dtype)])
  yp = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)])
  mask = jnp.concatenate([jnp.ones(48), jnp.zeros(pad)])

  def loss(p, x, y, m):
    return train_lib.batch_loss(nnx.merge(graphdef, p)(x), y, m)[0]

  vg = jax.jit(jax.value_and_grad(loss))
  l_pad, g_pad = vg(params, xp, yp, mask)
  l_ref, g_ref = vg(params, x, y, None)
  np.testing.assert_allclose(l_pad, l_ref, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g_pad), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_epoch_batches_cover_each_example_once():
  idx, mask = jax.jit(train_lib.epoch_batches, static_argnums=(1, 2))(
      jax.random.key(0), 4656, 512)
  assert idx.shape == mask.shape == (10, 512)
  real = np.asarray(idx)[np.asarray(mask) > 0]
  assert sorted(real.tolist()) == list(range(4656))
  assert np.asarray(mask)[-1].sum() == 48


def test_optimizer_chain_and_lr_warmup():
  cfg = config_lib.paper_config("ema")
  sched = optimizers.lr_schedule(cfg)
  assert float(sched(0)) == 0.0
  np.testing.assert_allclose(float(sched(5)), 5e-4)
  np.testing.assert_allclose(float(sched(10)), 1e-3)
  np.testing.assert_allclose(float(sched(1000)), 1e-3)
  # Coupled L2: first real update (count 1) equals Adam on g + wd * w.
  tx = optimizers.make_optimizer(dataclasses.replace(cfg, lamb=0.0))
  w = {"w": jnp.array([1.0, -2.0])}
  g = {"w": jnp.array([0.5, 0.25])}
  state = tx.init(w)
  u0, state = tx.update(g, state, w)
  assert not np.any(u0["w"])  # lr factor 0 at the first update
  u1, state = tx.update(g, state, w)
  adam = optax.chain(optax.scale_by_adam(0.9, 0.98, 1e-8))
  s = adam.init(w)
  gw = {"w": g["w"] + 0.005 * w["w"]}
  _, s = adam.update(gw, s)
  ref, _ = adam.update(gw, s)
  np.testing.assert_allclose(u1["w"], -1e-4 * ref["w"], rtol=1e-5)


def test_short_training_run_loss_falls():
  cfg = config_lib.paper_config(
      "ema", p=11, op="+", width=32, heads=2, depth=1, max_steps=60,
      train_fraction=0.8, batch_size=32, lr=3e-3, seed=0)
  result = train_lib.run(cfg, progress=False)
  hist = result["history"]
  assert result["steps_per_epoch"] == 3  # 88 train examples, batches of 32
  assert hist[-1]["step"] == 60 and len(hist) == 20
  # Chance is log(11) = 2.40; the first epoch starts above it.
  assert hist[0]["train_loss"] > 2.5
  assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.2
  assert hist[-1]["val_loss"] == pytest.approx(result["final"]["val_loss"])
  assert all(h["seconds"] > 0 for h in hist)
  assert result["backend"] == jax.default_backend()
  assert result["settings"]["filter"] == "ema"


def test_stop_at_target_stops_early():
  # Chance accuracy (1/11 of 55 validation equations) beats a 1% target at
  # once, so a run honouring stop_at_target ends after its first epoch.
  cfg = config_lib.paper_config(
      "ema", p=11, op="+", width=32, heads=2, depth=1, max_steps=3000,
      batch_size=32, seed=0, stop_at_target=True, target=0.01)
  result = train_lib.run(cfg, progress=False)
  assert result["final"]["val_acc"] >= 0.01
  assert result["final"]["step"] == 2 and len(result["history"]) == 1
