"""Tests of grokfast_jax.spectral_attention against a float64 NumPy reference."""

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from grokfast_jax import spectral_attention as sa
from grokfast_jax.spectral_attention import _kernels

ALPHAS = (0.9, 0.99, 0.999)
C, L = 3, 5


def _components_output(logits, f, emas):
  """2 * sum_k softmax(logits)_k S_k with S built explicitly (float64)."""
  logits = np.asarray(logits, np.float64)
  w = np.exp(logits - logits.max(axis=1, keepdims=True))
  w /= w.sum(axis=1, keepdims=True)  # (C, 2N+1, L)
  n = emas.shape[0]
  comps = [f - emas[i] for i in reversed(range(n))] + [f / 2] + [
      emas[i] for i in range(n)]
  return 2 * sum(w[:, k] * comps[k] for k in range(2 * n + 1))


def _reference_batched(logits, xs, alphas, state=None):
  """Sample t uses the EMA of strictly earlier samples (float64 loop)."""
  xs = np.asarray(xs, np.float64)
  a = np.asarray(alphas, np.float64)[:, None, None]
  m = np.broadcast_to(xs[0], (len(alphas),) + xs.shape[1:]).copy() \
      if state is None else np.asarray(state, np.float64)
  outs = []
  for f in xs:
    outs.append(_components_output(logits, f, m))
    m = a * m + (1 - a) * f
  return np.stack(outs), m


def _reference_sequential(logits, xs, alphas):
  """Sample t uses the EMA including itself (float64 loop)."""
  xs = np.asarray(xs, np.float64)
  a = np.asarray(alphas, np.float64)[:, None, None]
  m = np.broadcast_to(xs[0], (len(alphas),) + xs.shape[1:]).copy()
  outs = []
  for f in xs:
    m = a * m + (1 - a) * f
    outs.append(_components_output(logits, f, m))
  return np.stack(outs), m


def _random_logits(module, seed=1):
  shape = module.logits[...].shape
  module.logits[...] = jnp.asarray(
      np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _x(b, seed=0, c=C, length=L):
  # A random walk, so the EMAs differ visibly from the current sample.
  steps = np.random.default_rng(seed).normal(size=(b, c, length))
  return jnp.asarray(np.cumsum(steps, axis=0) * 0.3, jnp.float32)


def _snapshot(module):
  """A copy of the module's state (nnx.state holds the live Variables)."""
  return jax.tree.map(lambda a: a, nnx.state(module))


@pytest.mark.parametrize("method", ["closed", "scan"])
@pytest.mark.parametrize("batch", [1, 7, 256])
def test_batched_unrolled_ema_matches_sequential_recursion(batch, method):
  bsa = sa.BatchedSpectralAttention(C, L, alphas=ALPHAS, method=method,
                                    rngs=nnx.Rngs(0))
  _random_logits(bsa)
  x = _x(batch)
  y = bsa(x)
  ref_y, ref_m = _reference_batched(bsa.logits[...], x, ALPHAS)
  scale = float(np.abs(ref_y).max())
  np.testing.assert_allclose(y, ref_y, atol=3e-6 * scale, rtol=0)
  np.testing.assert_allclose(bsa.ema[...], ref_m, atol=3e-6 * scale, rtol=0)


@pytest.mark.parametrize("method", ["closed", "scan"])
def test_closed_form_stays_accurate_for_long_batches_and_alpha_near_one(
    method):
  alphas = (0.5, 0.9, 0.999, 0.9999)
  bsa = sa.BatchedSpectralAttention(2, 4, alphas=alphas, method=method,
                                    rngs=nnx.Rngs(0))
  _random_logits(bsa)
  x = _x(400, c=2, length=4) + 10.0  # an offset makes cancellation visible
  bsa(x[:1])  # start the state from sample 0, then unroll 399 more
  y = bsa(x[1:])
  ref_y, ref_m = _reference_batched(bsa.logits[...], x, alphas)
  # Relative to the signal's size (~10): float32 rounding, no blow-up.
  np.testing.assert_allclose(y, ref_y[1:], rtol=0, atol=1e-6 * 15)
  np.testing.assert_allclose(bsa.ema[...], ref_m, rtol=1e-6, atol=0)


def test_sequential_module_matches_reference_recursion():
  m = sa.SpectralAttention(C, L, alphas=ALPHAS, rngs=nnx.Rngs(0))
  _random_logits(m)
  x = _x(20)
  ys = jnp.stack([m(xi) for xi in x])
  ref_y, ref_m = _reference_sequential(m.logits[...], x, ALPHAS)
  np.testing.assert_allclose(ys, ref_y, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(m.ema[...], ref_m, atol=1e-5, rtol=1e-5)


def test_identity_at_initialization_both_modules():
  x = _x(50) + 3.0
  bsa = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))
  for chunk in (x[:20], x[20:]):
    np.testing.assert_allclose(bsa(chunk), chunk, rtol=1e-6, atol=1e-6)
  seq = sa.SpectralAttention(C, L, rngs=nnx.Rngs(0))
  for xi in x:
    np.testing.assert_allclose(seq(xi), xi, rtol=1e-6, atol=1e-6)
  learn = sa.BatchedSpectralAttention(C, L, learnable_alpha=True,
                                      rngs=nnx.Rngs(0))
  np.testing.assert_allclose(learn(x), x, rtol=1e-6, atol=1e-6)
  # The initial logits are -(N - k)^2 / 4, symmetric about k = N.
  np.testing.assert_allclose(bsa.logits[...][0, :, 0],
                             [-9 / 4, -1, -1 / 4, 0, -1 / 4, -1, -9 / 4])


def test_causality_later_samples_do_not_change_earlier_outputs():
  bsa = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))
  _random_logits(bsa)
  state = _snapshot(bsa)
  x = _x(12)
  y1 = bsa(x)
  nnx.update(bsa, state)
  y2 = bsa(x.at[6].add(5.0))
  np.testing.assert_array_equal(y1[:6], y2[:6])
  assert not np.allclose(y1[6:], y2[6:])
  assert not np.allclose(y1[7], y2[7])  # a later sample sees the change


@pytest.mark.parametrize("method", ["closed", "scan"])
@pytest.mark.parametrize("bptt", [True, False])
def test_bptt_gradient_reaches_earlier_samples_only_when_enabled(bptt, method):
  bsa = sa.BatchedSpectralAttention(C, L, bptt=bptt, method=method,
                                    rngs=nnx.Rngs(0))
  _random_logits(bsa)
  bsa(_x(4, seed=3))  # a carried state, so sample 0 is not the EMA seed
  graphdef, state = nnx.split(bsa)
  x = _x(8)

  def later_output(inputs):
    return jnp.sum(nnx.merge(graphdef, state, copy=True)(inputs)[7] ** 2)

  grad = jax.grad(later_output)(x)
  assert np.all(np.isfinite(grad))
  assert np.abs(grad[7]).max() > 0  # the sample's own input
  earlier = np.abs(grad[:7]).max()
  if bptt:
    assert earlier > 1e-4
  else:
    assert earlier == 0.0


@pytest.mark.parametrize("method", ["closed", "scan"])
def test_one_batch_of_2b_equals_two_batches_of_b(method):
  for learnable in (False, True):
    one = sa.BatchedSpectralAttention(C, L, learnable_alpha=learnable,
                                      method=method, rngs=nnx.Rngs(0))
    _random_logits(one)
    two = sa.BatchedSpectralAttention(C, L, learnable_alpha=learnable,
                                      method=method, rngs=nnx.Rngs(0))
    nnx.update(two, _snapshot(one))
    x = _x(64)
    y_one = one(x)
    y_two = jnp.concatenate([two(x[:32]), two(x[32:])])
    np.testing.assert_allclose(y_one, y_two, atol=2e-5, rtol=0)
    np.testing.assert_allclose(one.ema[...], two.ema[...], atol=2e-5, rtol=0)


def test_reset_restarts_from_the_next_input():
  for module, x in ((sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0)),
                     _x(6)),
                    (sa.SpectralAttention(C, L, rngs=nnx.Rngs(0)), _x(6)[0])):
    _random_logits(module)
    fresh_state = _snapshot(module)
    first = module(x)
    module(x + 4.0)
    assert bool(module.initialized[...])
    module.reset()
    assert not bool(module.initialized[...])
    np.testing.assert_array_equal(module.ema[...],
                                  np.zeros(module.ema[...].shape))
    np.testing.assert_allclose(module(x), first, rtol=1e-6, atol=1e-6)
    nnx.update(module, fresh_state)


def test_learnable_alpha_init_gradient_and_agreement_with_fixed():
  bsa = sa.BatchedSpectralAttention(C, L, learnable_alpha=True,
                                    rngs=nnx.Rngs(0))
  assert bsa.alpha_logits[...].shape == (3, C)
  np.testing.assert_allclose(bsa.alpha_array(),
                             np.broadcast_to(np.array(ALPHAS)[:, None],
                                             (3, C)), rtol=1e-6)
  np.testing.assert_allclose(jax.nn.sigmoid(bsa.alpha_logits[...][:, 0]),
                             ALPHAS, rtol=1e-6)
  _random_logits(bsa)
  fixed = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))
  fixed.logits[...] = bsa.logits[...]
  x = _x(16)
  np.testing.assert_allclose(bsa(x), fixed(x), atol=1e-5, rtol=1e-5)

  bsa.reset()
  graphdef, params, rest = nnx.split(bsa, nnx.Param, ...)

  def loss(p):
    return jnp.sum(nnx.merge(graphdef, p, rest, copy=True)(x) ** 2)

  grads = jax.grad(loss)(params)
  g = np.asarray(grads["alpha_logits"][...])
  assert g.shape == (3, C) and np.all(np.isfinite(g))
  assert np.abs(g).min() > 0


def test_jit_matches_eager_and_updates_state():
  eager = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))
  _random_logits(eager)
  jitted = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))
  nnx.update(jitted, _snapshot(eager))
  step = nnx.jit(lambda m, x: m(x))
  x = _x(30)
  for chunk in (x[:10], x[10:20], x[20:]):
    np.testing.assert_allclose(step(jitted, chunk), eager(chunk), atol=1e-5,
                               rtol=1e-5)
  np.testing.assert_allclose(jitted.ema[...], eager.ema[...], atol=1e-5)
  assert bool(jitted.initialized[...])
  reset = nnx.jit(lambda m: m.reset())
  reset(jitted)
  assert not bool(jitted.initialized[...])

  seq = sa.SpectralAttention(C, L, rngs=nnx.Rngs(0))
  ref = sa.SpectralAttention(C, L, rngs=nnx.Rngs(0))
  for xi in x[:5]:
    np.testing.assert_allclose(step(seq, xi), ref(xi), atol=1e-6)
  np.testing.assert_allclose(seq.ema[...], ref.ema[...], atol=1e-6)


def test_state_is_saved_and_restored_and_is_not_a_param():
  bsa = sa.BatchedSpectralAttention(C, L, learnable_alpha=True,
                                    rngs=nnx.Rngs(0))
  _random_logits(bsa)
  x = _x(30)
  bsa(x[:10])
  saved = _snapshot(bsa)
  spectral = nnx.state(bsa, sa.SpectralState)
  assert set(spectral.keys()) == {"ema", "initialized"}
  assert set(nnx.state(bsa, nnx.Param).keys()) == {"logits", "alpha_logits"}
  y1 = bsa(x[10:])
  bsa.reset()
  bsa(x[:3] * 7.0)
  nnx.update(bsa, saved)
  np.testing.assert_array_equal(bsa(x[10:]), y1)

  # An optimizer over nnx.Param leaves the carried state alone.
  opt = nnx.Optimizer(bsa, optax.sgd(0.1), wrt=nnx.Param)
  ema_before = np.asarray(bsa.ema[...])
  grads = nnx.grad(lambda m: jnp.sum(m(x[:4]) ** 2))(bsa)
  ema_after_forward = np.asarray(bsa.ema[...])
  opt.update(bsa, grads)
  np.testing.assert_array_equal(bsa.ema[...], ema_after_forward)
  assert not np.array_equal(ema_before, ema_after_forward)


def test_warm_up_equals_running_the_history_through_the_module():
  x = _x(100)
  run = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))
  for i in range(0, 100, 25):
    run(x[i:i + 25])
  warm = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))
  sa.warm_up(warm, x)
  # rtol: float32 rounding (an H100's accumulates differently from a CPU's).
  np.testing.assert_allclose(warm.ema[...], run.ema[...], rtol=1e-5,
                             atol=2e-5)
  seq = sa.SpectralAttention(C, L, rngs=nnx.Rngs(0))
  for xi in x[:10]:
    seq(xi)
  seq_warm = sa.SpectralAttention(C, L, rngs=nnx.Rngs(0))
  sa.warm_up(seq_warm, x[:10])
  np.testing.assert_allclose(seq_warm.ema[...], seq.ema[...], atol=1e-5)
  # An empty history changes nothing, on a warmed-up module or a fresh one.
  before = np.asarray(seq_warm.ema[...]).copy()
  sa.warm_up(seq_warm, x[:0])
  np.testing.assert_array_equal(seq_warm.ema[...], before)
  fresh = sa.SpectralAttention(C, L, rngs=nnx.Rngs(0))
  sa.warm_up(fresh, x[:0])
  assert not bool(fresh.initialized[...])
  np.testing.assert_array_equal(fresh.ema[...], 0.0)
  with pytest.raises(ValueError, match="history"):
    sa.warm_up(warm, x[:, :, :2])


def test_reset_all_reaches_nested_modules():
  class Net(nnx.Module):

    def __init__(self):
      self.inner = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))

  net = Net()
  net.inner(_x(4))
  sa.reset_all(net)
  assert not bool(net.inner.initialized[...])


@pytest.mark.parametrize("kwargs, match", [
    ({"channels": 0}, "channels"),
    ({"channels": -2}, "channels"),
    ({"channels": 2.5}, "channels"),
    ({"channels": True}, "channels"),
    ({"length": 0}, "length"),
    ({"alphas": ()}, "alphas"),
    ({"alphas": (0.9, 1.0)}, r"\(0, 1\)"),
    ({"alphas": (0.0,)}, r"\(0, 1\)"),
    ({"alphas": (float("nan"),)}, "alphas"),
    ({"alphas": 0.9}, "alphas"),
])
def test_bad_arguments_raise(kwargs, match):
  args = {"channels": C, "length": L, **kwargs}
  for cls in (sa.SpectralAttention, sa.BatchedSpectralAttention):
    with pytest.raises(ValueError, match=match):
      cls(args["channels"], args["length"],
          **({"alphas": args["alphas"]} if "alphas" in args else {}),
          rngs=nnx.Rngs(0))


@pytest.mark.parametrize("method", ["Scan", "", "sequential", None, 1])
def test_bad_method_raises(method):
  with pytest.raises(ValueError, match=r"method.*'auto', 'closed', 'scan'"):
    sa.BatchedSpectralAttention(C, L, method=method, rngs=nnx.Rngs(0))


def test_auto_method_picks_from_the_batch_size():
  assert _kernels._resolve_method("closed", 4096, 7) == "closed"
  assert _kernels._resolve_method("scan", 1, 7) == "scan"
  for channels in (1, 7, 63):
    assert _kernels._resolve_method("auto", 1, channels) == "closed"
    assert _kernels._resolve_method("auto", 16, channels) == "closed"
  for channels in (1, 7, 63, 64, 321):
    assert _kernels._resolve_method("auto", 17, channels) == "scan"
    assert _kernels._resolve_method("auto", 1024, channels) == "scan"
  assert _kernels._resolve_method("auto", 1, 64) == "scan"
  assert _kernels._resolve_method("auto", 16, 321) == "scan"
  bsa = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))
  assert bsa.method == "auto"


def _outputs_and_grads(method, x, alphas, learnable, bptt, channels, length,
                       state_from=None):
  """BSA outputs, final state and grads w.r.t. x and all nnx.Params."""
  bsa = sa.BatchedSpectralAttention(channels, length, alphas=alphas,
                                    learnable_alpha=learnable, bptt=bptt,
                                    method=method, rngs=nnx.Rngs(0))
  _random_logits(bsa)
  if learnable:  # distinct alphas per channel, still up to 0.999
    theta = np.asarray(bsa.alpha_logits[...])
    bsa.alpha_logits[...] = jnp.asarray(
        theta - np.linspace(0.0, 0.5, channels)[None], jnp.float32)
  if state_from is not None:
    bsa(state_from)  # a carried state, so E_0 is not the first sample
  graphdef, params, rest = nnx.split(bsa, nnx.Param, ...)
  weights = jnp.asarray(
      np.random.default_rng(5).normal(size=x.shape), jnp.float32)

  def loss(p, inputs):
    module = nnx.merge(graphdef, p, rest, copy=True)
    out = module(inputs)
    # A loss that weighs every sample differently, plus the carried state.
    return (jnp.sum(weights * out) + jnp.sum(module.ema[...]),
            (out, module.ema[...]))

  (_, (out, final)), (g_params, g_x) = jax.jit(jax.value_and_grad(
      loss, argnums=(0, 1), has_aux=True))(params, x)
  grads = {"x": g_x, **{k: v[...] for k, v in g_params.items()}}
  return out, final, grads


def _assert_rel_close(actual, expected, rtol, what):
  actual, expected = np.asarray(actual), np.asarray(expected)
  scale = np.abs(expected).max()
  err = np.abs(actual - expected).max() / scale
  assert scale > 0 and err <= rtol, f"{what}: relative error {err:.2e}"


@pytest.mark.parametrize("batch, channels, length, learnable, bptt", [
    (5, 3, 4, True, True),      # shorter than one scan block
    (33, 3, 4, False, False),   # a partial last block
    (1024, 2, 3, True, True),
    (1024, 2, 3, True, False),
    # The default channel chunks: 3 per chunk, the second one padded.
    (1024, 5, 96, True, True),
])
def test_scan_matches_closed_form_outputs_and_gradients(
    batch, channels, length, learnable, bptt):
  alphas = (0.5, 0.9, 0.99, 0.999)
  x = _x(batch, seed=2, c=channels, length=length) + 2.0
  state_from = _x(3, seed=4, c=channels, length=length)
  closed = _outputs_and_grads("closed", x, alphas, learnable, bptt, channels,
                              length, state_from)
  scan = _outputs_and_grads("scan", x, alphas, learnable, bptt, channels,
                            length, state_from)
  _assert_rel_close(scan[0], closed[0], 1e-5, "outputs")
  _assert_rel_close(scan[1], closed[1], 1e-5, "final state")
  assert set(scan[2]) == ({"x", "logits", "alpha_logits"} if learnable
                          else {"x", "logits"})
  for name in scan[2]:
    _assert_rel_close(scan[2][name], closed[2][name], 1e-5, name)
  if learnable:  # the smoothing factors learn, with or without BPTT
    assert np.abs(np.asarray(scan[2]["alpha_logits"])).min() > 0
  if not bptt:  # only the sample's own term: grad of x[t] is w[t] coef_f
    ref = np.asarray(closed[2]["x"])
    np.testing.assert_array_equal(np.asarray(scan[2]["x"]) == 0, ref == 0)


@pytest.mark.parametrize("block", [1, 16])  # 300 = 18 * 16 + 12
def test_scan_blocks_match_a_float64_recursion(block):
  """Any block length (1: a plain associative scan) gives the same EMAs."""
  alphas = np.array([0.5, 0.9, 0.999, 0.9999])
  theta = jnp.asarray(np.log(alphas / (1 - alphas))[:, None].repeat(2, 1),
                      jnp.float32)
  f = _x(300, seed=6, c=2, length=3) + 10.0
  m0 = jnp.asarray(np.random.default_rng(7).normal(size=(4, 2, 3)),
                   jnp.float32)
  emas, final = jax.jit(_kernels._scan_emas, static_argnums=(3, 4))(
      theta, f, m0, True, block)
  ref = [np.asarray(m0, np.float64)]
  a = alphas[:, None, None]
  for ft in np.asarray(f, np.float64):
    ref.append(a * ref[-1] + (1 - a) * ft)
  # 2e-6 of the EMAs' scale (max |EMA| = 23 here: 4.6e-5). Largest error
  # seen: 3.7e-6 on CPU, 2.1e-5 on an H100 (block 1).
  ref = np.stack(ref)
  tol = 2e-6 * np.abs(ref).max()
  np.testing.assert_allclose(emas, ref[:-1], rtol=0, atol=tol)
  np.testing.assert_allclose(final, ref[-1], rtol=0, atol=tol)


def _closed_reference(logits, theta, f, m0, bptt):
  emas, final = _kernels._unrolled_emas(theta, f, m0, bptt)
  return _kernels._mix(logits, f, emas), final


@pytest.mark.parametrize("batch, channels, budget_channels, bptt", [
    (1024, 6, 3, True),    # two chunks of 3 channels (a divisor: no padding)
    (1024, 5, 2, True),    # chunks of 2 channels, the last one padded
    (1000, 5, 2, False),   # and a partial last block (1000 = 62 * 16 + 8)
    (1000, 7, 1, True),    # one channel per chunk
])
def test_chunked_scan_matches_closed_form_outputs_and_gradients(
    batch, channels, budget_channels, bptt):
  """The channel-chunked scan (lax.map + checkpoint) equals the closed form.

  Outputs, final state and gradients w.r.t. the input, the mixing logits, the
  alpha logits and the carried state, alpha up to 0.999, to 1e-5 relative.
  """
  n, length = 4, 3
  rng = np.random.default_rng(11)
  alphas = np.array([0.5, 0.9, 0.99, 0.999])
  # Distinct alphas per channel, still up to 0.999.
  theta = jnp.asarray(np.log(alphas / (1 - alphas))[:, None]
                      - np.linspace(0.0, 0.5, channels)[None], jnp.float32)
  logits = jnp.asarray(rng.normal(size=(channels, 2 * n + 1, length)),
                       jnp.float32)
  f = _x(batch, seed=12, c=channels, length=length) + 2.0
  m0 = jnp.asarray(rng.normal(size=(n, channels, length)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=f.shape), jnp.float32)
  k = _kernels._SCAN_BLOCK
  per_channel = n * -(-batch // k) * k * length
  budget = budget_channels * per_channel
  cc = _kernels._chunk_channels(channels, per_channel, budget)
  assert cc == budget_channels and -(-channels // cc) >= 2  # several chunks

  def run(core):
    def loss(lg, th, x, m):
      out, final = core(lg, th, x, m)
      return jnp.sum(weights * out) + jnp.sum(final), (out, final)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3),
                                      has_aux=True))(logits, theta, f, m0)

  (_, (out, final)), grads = run(
      lambda lg, th, x, m: _kernels._scan_mix(lg, th, x, m, bptt,
                                              chunk_elements=budget))
  (_, (ref_out, ref_final)), ref_grads = run(
      lambda lg, th, x, m: _closed_reference(lg, th, x, m, bptt))
  _assert_rel_close(out, ref_out, 1e-5, "outputs")
  _assert_rel_close(final, ref_final, 1e-5, "final state")
  for name, g, ref in zip(("logits", "alpha logits", "x", "state"), grads,
                          ref_grads):
    _assert_rel_close(g, ref, 1e-5, name)
  if not bptt:  # only each sample's own term reaches the input
    np.testing.assert_array_equal(np.asarray(grads[2]) == 0,
                                  np.asarray(ref_grads[2]) == 0)


def _equations(jaxpr):
  """Every equation of `jaxpr` and of its sub-jaxprs (jit, remat, scan...)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      yield from _equations(sub)


@pytest.mark.parametrize("method", ["closed", "scan"])
def test_every_contraction_runs_at_full_float32_precision(method):
  """GPUs contract float32 in a reduced mode and TPUs in bf16 by default."""
  module = sa.BatchedSpectralAttention(C, L, method=method, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)

  def loss(p, x):
    return jnp.sum(nnx.merge(graphdef, p, rest, copy=True)(x) ** 2)

  # Traced at the default precision (conftest.py raises it for the suite):
  # a contraction without its own precision would show DEFAULT here.
  with jax.default_matmul_precision("default"):
    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(params, _x(40))
  dots = [eqn.params["precision"] for eqn in _equations(jaxpr.jaxpr)
          if eqn.primitive.name == "dot_general"]
  assert dots, "no contraction found"
  highest = jax.lax.Precision.HIGHEST
  assert all(p == (highest, highest) for p in dots), dots


def test_scan_chunk_budget_follows_the_backend(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert _kernels._default_chunk_elements() == _kernels._SCAN_CHUNK_ELEMENTS
  for backend in ("gpu", "tpu"):
    monkeypatch.setattr(jax, "default_backend", lambda b=backend: b)
    assert (_kernels._default_chunk_elements()
            == _kernels._SCAN_CHUNK_ELEMENTS_ACCELERATOR)
  # B = 1024, C = 321 is one chunk on an accelerator, 107 on a CPU.
  per = 3 * 1024 * 96
  assert _kernels._chunk_channels(
      321, per, _kernels._SCAN_CHUNK_ELEMENTS_ACCELERATOR) == 321

  # The scan takes its budget from the backend: chunks (a loop) under a tiny
  # budget, one chunk (no loop) under a huge one. (The budget is read when
  # the jitted core is traced: a new batch size per call forces a trace.)
  def loops(budget, batch):
    monkeypatch.setattr(_kernels, "_default_chunk_elements", lambda: budget)
    module = sa.BatchedSpectralAttention(C, L, method="scan",
                                         rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(module)
    jaxpr = jax.make_jaxpr(
        lambda st, x: nnx.merge(graphdef, st)(x))(state, _x(batch))
    return any(eqn.primitive.name == "scan"
               for eqn in _equations(jaxpr.jaxpr))

  assert loops(1, 41)
  assert not loops(1 << 40, 42)


def test_chunk_channels_prefers_divisors_and_bounds_the_chunk():
  per = 3 * 1024 * 96  # N * B * L at B = 1024, L = 96
  budget = _kernels._SCAN_CHUNK_ELEMENTS
  assert _kernels._chunk_channels(321, per, budget) == 3    # 107 chunks
  assert _kernels._chunk_channels(862, per, budget) == 2    # 431, no padding
  assert _kernels._chunk_channels(7, per, budget) == 3      # 7 is prime: padded
  assert _kernels._chunk_channels(2, 100, budget) == 2      # small: one chunk
  assert _kernels._chunk_channels(5, 2 * budget, budget) == 1  # one per chunk
  # A divisor whose chunks would be tiny (2 of 586 = 2 * 293 at B = 16) is
  # not taken: even chunks under the bound, the last padded.
  assert _kernels._chunk_channels(586, 3 * 16 * 96, budget) == 196
  for channels in range(1, 200):
    for per_channel in (1000, 30000, 300000, 3000000):
      cc = _kernels._chunk_channels(channels, per_channel, budget)
      assert 1 <= cc <= channels
      assert cc in (1, channels) or cc * per_channel <= budget


def test_wrong_input_shapes_raise():
  with pytest.raises(ValueError, match="shape"):
    sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))(jnp.zeros((C, L)))
  with pytest.raises(ValueError, match="shape"):
    sa.SpectralAttention(C, L, rngs=nnx.Rngs(0))(jnp.zeros((2, C, L)))


def test_orbax_checkpoint_round_trips_the_carried_state(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  bsa = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))
  _random_logits(bsa)
  x = _x(20)
  bsa(x[:10])
  state = nnx.to_pure_dict(nnx.state(bsa))
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(tmp_path / "ckpt", state)
  expected = bsa(x[10:])

  fresh = sa.BatchedSpectralAttention(C, L, rngs=nnx.Rngs(0))
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          nnx.to_pure_dict(nnx.state(fresh)))
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(tmp_path / "ckpt", abstract)
  nnx.replace_by_pure_dict(fresh_state := nnx.state(fresh), restored)
  nnx.update(fresh, fresh_state)
  assert bool(fresh.initialized[...])
  np.testing.assert_array_equal(fresh(x[10:]), expected)
