"""TimesNet (models/timesnet.py): the static period branches, one
compilation for any periods, the merged Inception convolution and its
gradients, and agreement with a PyTorch restatement of the reference's
forecast (outputs and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grokfast_jax.experiments.forecasting.models import timesnet


def _windows(seed, b, c, length):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(size=(b, c, length)) * 3 + 1, jnp.float32)


def test_period_branches_group_the_frequencies_by_period():
  periods, branch = timesnet.period_branches(20)
  assert periods == (20, 10, 6, 5, 4, 3, 2)
  assert branch.shape == (11,)
  for f in range(1, 11):
    assert periods[branch[f]] == 20 // f
  assert periods[branch[0]] == 20  # the guard for a selected zero frequency
  # Many frequencies, few periods: 55 for T = 96 + 720.
  assert len(timesnet.period_branches(816)[0]) == 55


def test_positional_embedding_sine_and_cosine():
  pe = timesnet.sinusoid_table(5, 4)
  assert pe.dtype == np.float32 and pe.shape == (5, 4)
  t = np.arange(5)
  np.testing.assert_allclose(pe[:, 0], np.sin(t), atol=1e-6)
  np.testing.assert_allclose(pe[:, 1], np.cos(t), atol=1e-6)
  np.testing.assert_allclose(pe[:, 2], np.sin(t / 100.0), atol=1e-6)
  np.testing.assert_allclose(pe[:, 3], np.cos(t / 100.0), atol=1e-6)


def test_merged_inception_is_the_mean_of_its_convolutions():
  block = timesnet.InceptionBlock(3, 4, 3, nnx.Rngs(0))
  for conv in block.kernels:  # non-zero biases
    conv.bias[...] = jnp.asarray(np.random.default_rng(1).normal(size=4),
                                 jnp.float32)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3, 3)),
                  jnp.float32)
  kernel, bias = block.merged()
  assert kernel.shape == (5, 5, 3, 4)
  np.testing.assert_allclose(
      timesnet.conv_same(x, kernel, 2) + bias,
      jnp.mean(jnp.stack([conv(x) for conv in block.kernels]), axis=0),
      rtol=1e-5, atol=1e-5)


def test_conv_same_gradients_equal_jax_autodiff():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 4, 3, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(5, 5, 5, 6)), jnp.float32)

  def plain(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), [(2, 2)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def loss(conv):
    return lambda x, kernel: jnp.sum(jnp.sin(conv(x, kernel)))

  ours = jax.grad(loss(lambda a, b: timesnet.conv_same(a, b, 2)),
                  argnums=(0, 1))(x, kernel)
  want = jax.grad(loss(plain), argnums=(0, 1))(x, kernel)
  for a, b in zip(ours, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_sizes_raise():
  with pytest.raises(ValueError, match="even"):
    timesnet.TimesNet(2, 8, 4, d_model=5, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="top_k"):
    timesnet.TimesNet(2, 8, 4, top_k=8, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="horizon"):
    timesnet.TimesNet(2, 8, 0, rngs=nnx.Rngs(0))


def test_one_compilation_for_any_selected_periods():
  """Inputs whose dominant periods differ run through one traced program."""
  model = timesnet.TimesNet(2, 16, 4, d_model=4, d_ff=4, top_k=2,
                            num_kernels=2, layers=1, rngs=nnx.Rngs(0))
  traces = []

  @nnx.jit
  def call(m, x):
    traces.append(1)
    return m(x)

  t = np.arange(16, dtype=np.float32)
  outs = []
  for period in (16, 8, 5, 3, 2):
    wave = np.sin(2 * np.pi * t / period) + 0.1 * t
    x = jnp.asarray(np.broadcast_to(wave, (3, 2, 16)))
    outs.append(call(model, x))
  assert len(traces) == 1
  assert all(o.shape == (3, 2, 4) and bool(jnp.all(jnp.isfinite(o)))
             for o in outs)


def test_each_layer_holds_one_switch_over_the_distinct_periods():
  model = timesnet.TimesNet(2, 16, 4, d_model=4, d_ff=4, top_k=3,
                            num_kernels=2, layers=2, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  jaxpr = jax.make_jaxpr(
      lambda s, x: nnx.merge(graphdef, s)(x))(state, _windows(0, 2, 2, 16))
  text = str(jaxpr)
  assert text.count("cond[") == 1
  # T = 20: periods 20, 10, 6, 5, 4, 3, 2, each one branch.
  assert text.count("branches=(") == 1


def test_matches_the_pytorch_reference_outputs_and_gradients():
  """Against ``benchmarks.torch.timesnet`` (the reference's forward pass in
  PyTorch, with its own FFT, top-k, padding and six separate Conv2d per
  Inception block). L = 12, H = 8: T = 20 has 10 non-zero frequencies and 7
  distinct periods (6 and 3 need padding); top_k = 9 keeps f = 3 or f = 6."""
  torch = pytest.importorskip("torch")
  from benchmarks.torch import timesnet as reference

  lookback, horizon, c, top_k = 12, 8, 3, 9
  model = timesnet.TimesNet(c, lookback, horizon, d_model=8, d_ff=12,
                            top_k=top_k, num_kernels=3, layers=2,
                            rngs=nnx.Rngs(3))
  x = _windows(4, 5, c, lookback)
  target = _windows(5, 5, c, horizon)

  def loss(m, inputs):
    return jnp.mean((m(inputs) - target) ** 2)

  value, (grads, x_grad) = nnx.jit(nnx.value_and_grad(
      loss, argnums=(0, 1)))(model, x)
  y = nnx.jit(lambda m, inputs: m(inputs))(model, x)

  params = reference.params_from(model, requires_grad=True)
  tx = torch.tensor(np.asarray(x), requires_grad=True)
  ty = reference.forward(params, tx, lookback=lookback, horizon=horizon,
                         top_k=top_k, num_kernels=3, layers=2)
  np.testing.assert_allclose(np.asarray(y),
                             ty.detach().numpy().transpose(0, 2, 1),
                             rtol=2e-5, atol=2e-5)
  tloss = torch.mean(
      (ty - torch.tensor(np.asarray(target)).permute(0, 2, 1)) ** 2)
  np.testing.assert_allclose(float(value), tloss.item(), rtol=1e-5)
  tloss.backward()
  np.testing.assert_allclose(np.asarray(x_grad), tx.grad.numpy(), rtol=1e-4,
                             atol=1e-6)
  ours = reference.flat_names(grads)
  assert set(ours) == set(params)
  for name, g in ours.items():
    np.testing.assert_allclose(g, params[name].grad.numpy(), rtol=1e-4,
                               atol=1e-6, err_msg=name)
