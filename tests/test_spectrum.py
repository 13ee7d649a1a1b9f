"""Tests for grokfast_jax.spectrum: recording gradients and their spectrum."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import grokfast_jax as gj

pytestmark = pytest.mark.usefixtures("strict_dtype_promotion")


def _params():
  return {"w": jnp.zeros((6, 5)), "b": jnp.zeros(5, jnp.bfloat16),
          "frozen": None}


def _record(tx, params, grads):
  state = tx.init(params)
  update = jax.jit(tx.update)
  for g in grads:
    out, state = update(g, state, params)
    assert out is g or jax.tree.all(jax.tree.map(
        lambda a, b: bool(jnp.array_equal(a, b)), out, g))
  return state


def test_coordinates_are_static_deterministic_and_cover_the_leaves():
  params = _params()
  s1 = gj.record_gradients(num_coords=12, seed=3).init(params)
  s2 = gj.record_gradients(num_coords=12, seed=3).init(params)
  s3 = gj.record_gradients(num_coords=12, seed=4).init(params)
  assert s1.coords == s2.coords and s1.coords != s3.coords
  assert s1.buffer.shape == (4096, 12) and s1.buffer.dtype == jnp.float32
  assert jax.tree.leaves(s1.coords) == []  # static: no array leaves
  c = s1.coords
  assert len(set(zip(c.leaves, c.indices))) == 12  # without replacement
  sizes = {"['b']": 5, "['w']": 30}
  for path, index in zip(c.paths, c.indices):
    assert 0 <= index < sizes[path]
  assert list(zip(c.leaves, c.indices)) == sorted(zip(c.leaves, c.indices))
  # More coordinates than entries: drawn with replacement.
  many = gj.record_gradients(num_coords=50).init({"a": jnp.zeros(3)})
  assert set(many.coords.indices) <= {0, 1, 2}


def test_records_the_sampled_values_every_k_steps_and_passes_through():
  params = _params()
  rng = np.random.default_rng(0)
  grads = [{"w": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=5), jnp.bfloat16),
            "frozen": None} for _ in range(7)]
  tx = gj.record_gradients(num_coords=8, every=3, buffer_size=16)
  state = _record(tx, params, grads)
  assert int(state.count) == 7 and int(state.written) == 3
  hist = gj.gradient_history(state)
  assert hist.shape == (3, 8)
  leaves = jax.tree.leaves(grads[0])  # b, w: the order coords.leaves counts
  for row, t in zip(hist, (0, 3, 6)):
    flat = [np.asarray(x, np.float32).ravel()
            for x in jax.tree.leaves(grads[t])]
    want = [flat[i][j] for i, j in zip(state.coords.leaves,
                                       state.coords.indices)]
    np.testing.assert_array_equal(row, want)
  assert len(leaves) == 2


def test_ring_buffer_unrolls_in_time_order_after_wrapping():
  tx = gj.record_gradients(num_coords=1, buffer_size=5)
  grads = [jnp.full((2,), float(t)) for t in range(13)]
  state = _record(tx, jnp.zeros(2), grads)
  assert int(state.written) == 13
  np.testing.assert_array_equal(gj.gradient_history(state)[:, 0],
                                [8.0, 9.0, 10.0, 11.0, 12.0])
  # Before wrapping, only the filled rows.
  state = _record(tx, jnp.zeros(2), grads[:3])
  np.testing.assert_array_equal(gj.gradient_history(state)[:, 0],
                                [0.0, 1.0, 2.0])


def test_a_sinusoid_peaks_at_its_frequency():
  freq, steps = 0.125, 256
  rng = np.random.default_rng(1)
  phase = rng.uniform(0, 2 * np.pi, size=(4, 4))
  grads = [jnp.asarray(np.cos(2 * np.pi * freq * t + phase) + 3.0, jnp.float32)
           for t in range(steps)]
  state = _record(gj.record_gradients(num_coords=6, buffer_size=200),
                  jnp.zeros((4, 4)), grads)
  freqs, power = gj.gradient_spectrum(state)
  assert freqs.shape == power.shape == (101,)
  assert freqs[0] == 0.0 and freqs[-1] == 0.5
  assert freqs[np.argmax(power)] == pytest.approx(freq, abs=1 / 200)
  assert power[0] == pytest.approx(0.0, abs=1e-6)  # detrended
  _, raw = gj.gradient_spectrum(state, detrend=False)
  assert np.argmax(raw) == 0  # the mean (3.0) dominates undetrended
  # Arrays work too, [T] or [T, K].
  t = np.arange(64)
  f, p = gj.gradient_spectrum(np.sin(2 * np.pi * 0.25 * t))
  assert f[np.argmax(p)] == 0.25
  with pytest.raises(ValueError, match="at least 2 records"):
    gj.gradient_spectrum(np.zeros((1, 3)))


def test_plot_spectrum_writes_a_png(tmp_path):
  pytest.importorskip("matplotlib")
  freqs, power = gj.gradient_spectrum(
      np.random.default_rng(2).normal(size=(128, 4)))
  path = gj.plot_spectrum(
      freqs, power, tmp_path / "sub" / "spectrum.png",
      filters={"ema 0.98": gj.ema_coefficients(0.98),
               "butter 2": gj.butterworth(2, 0.05)},
      title="test")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inside_a_chain_under_jit_and_bad_arguments():
  params = {"w": jnp.ones(4)}
  tx = optax.chain(gj.record_gradients(num_coords=2, buffer_size=4),
                   optax.sgd(1.0))
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    g = jax.tree.map(lambda p: p * 2.0, params)
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state

  params, state = step(params, state)
  np.testing.assert_allclose(params["w"], -np.ones(4))
  np.testing.assert_array_equal(gj.gradient_history(state[0]), [[2.0, 2.0]])
  for kwargs, match in [(dict(num_coords=0), "num_coords must be an int"),
                        (dict(every=1.5), "every must be an int"),
                        (dict(buffer_size=-1), "buffer_size must be an int"),
                        (dict(seed="x"), "seed must be an int")]:
    with pytest.raises(ValueError, match=match):
      gj.record_gradients(**kwargs)
  with pytest.raises(ValueError, match="no entries"):
    gj.record_gradients().init({"a": jnp.zeros(0)})
