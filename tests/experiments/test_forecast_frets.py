"""Tests of the FreTS forecaster (``forecasting.models.frets``): forward and
gradients against a PyTorch restatement of the reference definition, the
reference's diagonal frequency weights and unused channel learner,
channel independence, initialization and the BSA slot."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grokfast_jax.experiments.forecasting import models
from grokfast_jax.experiments.forecasting.models import frets


def _call(model, x):
  return nnx.jit(lambda m, inputs: m(inputs))(model, x)


@nnx.jit
def _grad_of_sum(model, x, weights):
  return nnx.grad(lambda m: jnp.sum(m(x) * weights))(model)


def _inputs(shape, seed=0, scale=1.0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale,
                     jnp.float32)


def _torch_reference(torch):
  """The reference ``models/FreTS.py`` forward, restated: (B, L, N) in,
  (B, H, N) out; `channel_independence` compared with the string '1' as
  there; the frequency products as its ``einsum('bijd,dd->bijd')``, or a
  full matrix product with ``dense``."""
  nn, F = torch.nn, torch.nn.functional

  class Reference(nn.Module):

    def __init__(self, channels, lookback, horizon, channel_independence,
                 dense, embed=8, hidden=16):
      super().__init__()
      self.n, self.l, self.d = channels, lookback, embed
      self.channel_independence = channel_independence
      self.eq = "bijd,de->bije" if dense else "bijd,dd->bijd"
      p = lambda *s: nn.Parameter(torch.zeros(*s))  # noqa: E731
      self.embeddings = p(1, embed)
      for k in ("1", "2"):
        for name in ("r", "i"):
          setattr(self, name + k, p(embed, embed))
        for name in ("rb", "ib"):
          setattr(self, name + k, p(embed))
      self.fc = nn.Sequential(nn.Linear(lookback * embed, hidden),
                              nn.LeakyReLU(), nn.Linear(hidden, horizon))

    def fre_mlp(self, x, r, i, rb, ib):
      real = F.relu(torch.einsum(self.eq, x.real, r)
                    - torch.einsum(self.eq, x.imag, i) + rb)
      imag = F.relu(torch.einsum(self.eq, x.imag, r)
                    + torch.einsum(self.eq, x.real, i) + ib)
      y = F.softshrink(torch.stack([real, imag], dim=-1), lambd=0.01)
      return torch.view_as_complex(y)

    def forward(self, x_enc):
      b, _, n = x_enc.shape
      x = x_enc.permute(0, 2, 1).unsqueeze(3) * self.embeddings
      bias = x
      if self.channel_independence == "1":
        h = torch.fft.rfft(x.permute(0, 2, 1, 3), dim=2, norm="ortho")
        h = self.fre_mlp(h, self.r1, self.i1, self.rb1, self.ib1)
        x = torch.fft.irfft(h, n=self.n, dim=2, norm="ortho").permute(
            0, 2, 1, 3)
      h = torch.fft.rfft(x, dim=2, norm="ortho")
      h = self.fre_mlp(h, self.r2, self.i2, self.rb2, self.ib2)
      x = torch.fft.irfft(h, n=self.l, dim=2, norm="ortho") + bias
      return self.fc(x.reshape(b, n, -1)).permute(0, 2, 1)

  return Reference


def _load(torch, ref, model):
  """Copies the FreTS model's parameters into the reference restatement."""
  t = lambda a: torch.tensor(np.asarray(a[...]))  # noqa: E731
  with torch.no_grad():
    ref.embeddings.copy_(t(model.embeddings))
    layers = [("2", model.temporal)]
    if model.channel is not None:
      layers.append(("1", model.channel))
    for k, layer in layers:
      for name in ("r", "i", "rb", "ib"):
        getattr(ref, name + k).copy_(t(getattr(layer, name)))
    for lin, fc in ((ref.fc[0], model.fc1), (ref.fc[2], model.fc2)):
      lin.weight.copy_(t(fc.kernel).T)
      lin.bias.copy_(t(fc.bias))


def _scaled_up(model, rngs_seed=3):
  """The frequency weights at 0.02 make the spectral branch small next to
  the residual; larger random values test it harder."""
  key = jax.random.key(rngs_seed)
  layers = [model.temporal] + ([model.channel] if model.channel else [])
  for layer in layers:
    for name in ("r", "i", "rb", "ib"):
      key, sub = jax.random.split(key)
      p = getattr(layer, name)
      p[...] = 0.5 * jax.random.normal(sub, p[...].shape, jnp.float32)


@pytest.mark.parametrize("channels,lookback,channel_mixing,dense", [
    (3, 16, False, False),   # the reference as run
    (4, 15, False, False),   # odd length: no Nyquist bin
    (3, 16, True, False),    # channel learner on (odd C)
    (4, 15, True, True),     # dense products, even C
])
def test_matches_the_pytorch_reference(channels, lookback, channel_mixing,
                                       dense):
  torch = pytest.importorskip("torch")
  horizon, batch = 5, 6
  model = frets.FreTS(channels, lookback, horizon, embed_size=8,
                      hidden_size=16, channel_mixing=channel_mixing,
                      dense=dense, rngs=nnx.Rngs(0))
  _scaled_up(model)
  ref = _torch_reference(torch)(channels, lookback, horizon,
                                "1" if channel_mixing else 0, dense)
  _load(torch, ref, model)
  x = _inputs((batch, channels, lookback), seed=1, scale=2.0)
  weights = _inputs((batch, channels, horizon), seed=2)

  out = _call(model, x)
  grads = _grad_of_sum(model, x, weights)
  x_t = torch.tensor(np.asarray(x)).permute(0, 2, 1)
  out_t = ref(x_t)
  (out_t * torch.tensor(np.asarray(weights)).permute(0, 2, 1)).sum().backward()
  np.testing.assert_allclose(out, out_t.detach().permute(0, 2, 1).numpy(),
                             rtol=1e-4, atol=1e-4)
  assert out.shape == (batch, channels, horizon) and out.dtype == jnp.float32

  g = lambda p: np.asarray(p[...])  # noqa: E731
  pairs = [(g(grads.embeddings), ref.embeddings.grad),
           (g(grads.fc1.kernel), ref.fc[0].weight.grad.T),
           (g(grads.fc1.bias), ref.fc[0].bias.grad),
           (g(grads.fc2.kernel), ref.fc[2].weight.grad.T),
           (g(grads.fc2.bias), ref.fc[2].bias.grad)]
  layers = [("2", grads.temporal)]
  if channel_mixing:
    layers.append(("1", grads.channel))
  for k, layer in layers:
    for name in ("r", "i", "rb", "ib"):
      pairs.append((g(getattr(layer, name)), getattr(ref, name + k).grad))
  for ours, theirs in pairs:
    theirs = theirs.numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-3,
                               atol=1e-4 * max(1.0, np.abs(theirs).max()))


def test_reference_reads_only_the_diagonal_and_no_channel_learner():
  d = 8
  model = frets.FreTS(3, 12, 4, embed_size=d, rngs=nnx.Rngs(0))
  assert model.channel is None and model.revin is None
  assert model.temporal.r[...].shape == (d, d)
  x = _inputs((2, 3, 12), seed=4)
  grads = _grad_of_sum(model, x, _inputs((2, 3, 4), seed=9))
  for name in ("r", "i"):
    grad = np.asarray(getattr(grads.temporal, name)[...])
    assert np.all(grad[~np.eye(d, dtype=bool)] == 0)
    assert np.any(np.diagonal(grad) != 0)
  # Off-diagonal entries change nothing; with dense=True they do.
  before = _call(model, x)
  r = model.temporal.r
  r[...] = r[...] + 0.5 * (1 - jnp.eye(d))
  np.testing.assert_array_equal(_call(model, x), before)
  model.temporal.dense = True
  assert not np.allclose(_call(model, x), before)


def test_channel_independent_unless_channel_mixing():
  x = _inputs((4, 3, 16), seed=5)
  x2 = x.at[:, 1].set(_inputs((4, 16), seed=6))
  for mixing in (False, True):
    model = frets.FreTS(3, 16, 6, embed_size=8, hidden_size=16,
                        channel_mixing=mixing, rngs=nnx.Rngs(1))
    _scaled_up(model)
    out = _call(model, jnp.concatenate([x, x2]))
    y, y2 = out[:4], out[4:]
    assert not np.allclose(y2[:, 1], y[:, 1])
    if mixing:
      assert not np.allclose(y2[:, 0], y[:, 0])
    else:
      np.testing.assert_array_equal(y2[:, 0], y[:, 0])
      np.testing.assert_array_equal(y2[:, 2], y[:, 2])


def test_initialization_follows_the_reference():
  model = frets.FreTS(2, 24, 8, channel_mixing=True, rngs=nnx.Rngs(0))
  emb = np.asarray(model.embeddings[...])
  assert emb.shape == (1, 128) and 0.8 < emb.std() < 1.2
  for layer in (model.temporal, model.channel):
    for name in ("r", "i"):
      w = np.asarray(getattr(layer, name)[...])
      assert 0.019 < w.std() < 0.021 and abs(w.mean()) < 0.001
    for name in ("rb", "ib"):
      assert getattr(layer, name)[...].shape == (128,)
  assert not np.allclose(model.temporal.r[...], model.channel.r[...])
  for fc, fan_in in ((model.fc1, 24 * 128), (model.fc2, 256)):
    bound = 1 / np.sqrt(fan_in)
    kernel, bias = np.abs(fc.kernel[...]), np.abs(fc.bias[...])
    assert kernel.max() <= bound and kernel.max() > 0.99 * bound
    assert bias.max() <= bound and bias.std() > 0.1 * bound
  assert model.fc1.kernel[...].shape == (24 * 128, 256)
  assert model.fc2.kernel[...].shape == (256, 8)


def test_hermitian_irfft_ignores_imaginary_dc_and_nyquist():
  rng = np.random.default_rng(7)
  for n in (8, 9, 1, 2):
    bins = n // 2 + 1
    re = rng.normal(size=(bins, 3)).astype(np.float32)
    im = rng.normal(size=(bins, 3)).astype(np.float32)
    ours = frets.hermitian_irfft(jnp.asarray(re), jnp.asarray(im), n, axis=0)
    expected = np.fft.irfft(re + 1j * im, n=n, axis=0, norm="ortho")
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    im[0] += 100.0
    im[-1] += 100.0 * (n % 2 == 0)
    np.testing.assert_allclose(
        frets.hermitian_irfft(jnp.asarray(re), jnp.asarray(im), n, axis=0),
        ours, rtol=1e-5, atol=1e-5)


def test_softshrink():
  x = jnp.asarray([-1.0, -0.01, -0.005, 0.0, 0.004, 0.02, 3.0])
  np.testing.assert_allclose(frets.softshrink(x, 0.01),
                             [-0.99, 0, 0, 0, 0, 0.01, 2.99], atol=1e-7)


def test_registered_with_the_bsa_on_the_raw_window():
  assert "frets" in models.MODELS
  base = models.make_model("frets", 3, 16, 4, seed=0)
  assert isinstance(base, frets.FreTS) and isinstance(base, models.Forecaster)
  with_bsa = models.make_model("frets", 3, 16, 4, seed=1, spectral={})
  models.transfer_params(base, with_bsa)
  x = _inputs((5, 3, 16), seed=8, scale=3.0)
  # Move the BSA off the identity: the model must forecast from the
  # BSA's output on the raw window.
  logits = with_bsa.spectral.logits
  logits[...] = jax.random.normal(jax.random.key(0), logits[...].shape)
  filtered = nnx.clone(with_bsa.spectral)(x)  # the BSA carries state
  assert not np.allclose(filtered, x)
  np.testing.assert_allclose(_call(with_bsa, x),
                             nnx.jit(lambda m, v: m.forecast(v))(base,
                                                                  filtered),
                             rtol=1e-5, atol=1e-5)


def test_rejects_bad_sizes():
  with pytest.raises(ValueError, match="lookback"):
    frets.FreTS(2, 0, 4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="embed_size"):
    frets.FreTS(2, 8, 4, embed_size=0, rngs=nnx.Rngs(0))
