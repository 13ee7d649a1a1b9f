"""Tests of the Crossformer forecaster: shapes, jit, gradients, the identity
BSA at init, and the forward against a PyTorch restatement of the
Time-Series-Library definition."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from grokfast_jax.experiments.forecasting.models import transfer_params
from grokfast_jax.experiments.forecasting.models.crossformer import (
    Crossformer)

SPECTRAL = {"alphas": (0.9, 0.99, 0.999), "learnable_alpha": False,
            "bptt": True}
# A small model for the cheap tests.
SMALL = {"d_model": 16, "heads": 4, "d_ff": 32, "factor": 2}
# One jitted forward, so that equal models and shapes compile once.
CALL = nnx.jit(lambda model, inputs: model(inputs))


@pytest.fixture(scope="module")
def small() -> Crossformer:
  """C = 3, L = 30, H = 20 with two scales: the window is padded (30 ->
  36), so are its 3 segments before merging (3 -> 4 -> 2), and the 24
  predicted steps are cropped to 20. Every attention sees >= 2 keys."""
  return Crossformer(3, 30, 20, e_layers=2, rngs=nnx.Rngs(3), **SMALL)


def _windows(rng: np.random.Generator, batch: int, channels: int,
             length: int, start: int = 0) -> jnp.ndarray:
  """`batch` consecutive windows of a random walk (one step apart)."""
  walk = np.cumsum(rng.normal(size=(channels, start + batch + length)),
                   axis=1)
  idx = start + np.arange(batch)[:, None] + np.arange(length)[None]
  return jnp.asarray(np.transpose(walk[:, idx], (1, 0, 2)), jnp.float32)


@pytest.mark.parametrize("channels", [1, 7])
@pytest.mark.parametrize("lookback,horizon", [(96, 96), (96, 720), (36, 24),
                                              (36, 60)])
def test_output_shapes(lookback, horizon, channels):
  # The sizes that do not change the shapes are small, for speed.
  model = Crossformer(channels, lookback, horizon, rngs=nnx.Rngs(0), **SMALL)
  assert model.in_segments == math.ceil(lookback / 12)
  assert model.out_segments == math.ceil(horizon / 12)
  x = jnp.asarray(np.random.default_rng(0).normal(
      size=(2, channels, lookback)), jnp.float32)
  y = CALL(model, x)
  assert y.shape == (2, channels, horizon) and y.dtype == jnp.float32
  assert np.all(np.isfinite(y))


@pytest.mark.parametrize("kwargs,named", [
    ({"lookback": 0}, "lookback must be an int >= 1"),
    ({"horizon": 0}, "horizon must be an int >= 1"),
    ({"seg_len": 0}, "seg_len must be an int >= 1"),
    ({"e_layers": 0}, "e_layers must be an int >= 1"),
    ({"d_model": 20, "heads": 8}, "d_model must be even and a multiple of"),
    ({"d_model": 15, "heads": 5}, "d_model must be even"),
])
def test_bad_sizes_raise(kwargs, named):
  args = {"channels": 3, "lookback": 24, "horizon": 12, **kwargs}
  with pytest.raises(ValueError, match=named):
    Crossformer(args.pop("channels"), args.pop("lookback"),
                args.pop("horizon"), rngs=nnx.Rngs(0), **args)


def test_a_one_step_lookback_works():
  # Any look-back >= 1 is padded to whole segments: here one segment, which
  # the merge pads to two and merges back to one.
  model = Crossformer(2, 1, 5, rngs=nnx.Rngs(0), **SMALL)
  assert model.in_segments == 1
  y = CALL(model, jnp.ones((3, 2, 1), jnp.float32))
  assert y.shape == (3, 2, 5) and np.all(np.isfinite(y))


def test_jit_equals_eager():
  model = Crossformer(2, 30, 20, e_layers=1, rngs=nnx.Rngs(1), **SMALL)
  x = _windows(np.random.default_rng(1), 3, 2, 30)
  eager = model(x)
  np.testing.assert_allclose(CALL(model, x), eager, rtol=1e-5, atol=1e-5)
  split_merge = jax.jit(lambda graph, state, inputs: nnx.merge(
      graph, state)(inputs), static_argnums=0)(*nnx.split(model), x)
  np.testing.assert_allclose(split_merge, eager, rtol=1e-5, atol=1e-5)


def test_gradients_are_finite_and_channels_mix(small):
  model = small
  rng = np.random.default_rng(1)
  x = _windows(rng, 4, 3, 30)
  target = jnp.asarray(rng.normal(size=(4, 3, 20)), jnp.float32)
  grads = nnx.jit(nnx.grad(
      lambda m: jnp.mean((m(x) - target) ** 2)))(model)
  leaves = jax.tree_util.tree_leaves_with_path(grads)
  assert len(leaves) == len(jax.tree.leaves(nnx.state(model, nnx.Param)))
  for path, g in leaves:
    assert np.all(np.isfinite(g)), path
    if "'key'" in str(path) and "'bias'" in str(path):
      # A key bias shifts all scores of a query alike, which the softmax
      # ignores: its gradient is zero up to rounding.
      np.testing.assert_allclose(g, 0.0, atol=1e-6)
    else:
      assert np.any(g != 0), path  # every other parameter takes part

  # Cross-dimension attention: a change of channel 1 moves channel 0.
  y = CALL(model, x)
  y2 = CALL(model, x.at[:, 1].add(1.0))
  assert not np.allclose(y2[:, 0], y[:, 0], atol=1e-4)


def test_identity_bsa_at_init_matches_the_base_model():
  x1 = _windows(np.random.default_rng(2), 8, 7, 96)
  x2 = _windows(np.random.default_rng(2), 8, 7, 96, start=8)
  base = Crossformer(7, 96, 96, rngs=nnx.Rngs(0))
  bsa = Crossformer(7, 96, 96, spectral=SPECTRAL, rngs=nnx.Rngs(1))
  y1, y2 = CALL(base, x1), CALL(base, x2)
  # Different seeds differ before the transfer (the test can fail).
  assert not np.allclose(CALL(bsa, x1), y1, atol=1e-3)
  bsa.spectral.reset()
  transfer_params(base, bsa)
  np.testing.assert_allclose(CALL(bsa, x1), y1, rtol=1e-5, atol=1e-5)
  assert bool(bsa.spectral.initialized[...])
  ema = np.asarray(bsa.spectral.ema[...])
  assert np.any(ema != 0)
  # The second batch uses the EMA state the first one left.
  np.testing.assert_allclose(CALL(bsa, x2), y2, rtol=1e-5, atol=1e-5)
  assert not np.allclose(np.asarray(bsa.spectral.ema[...]), ema)


# --- an independent PyTorch restatement of the reference definition -------


def _torch_modules(torch):
  """Time-Series-Library's Crossformer (long-term forecasting, eval mode),
  restated with plain torch ops in the reference's structure."""
  nn = torch.nn

  class FullAttention(nn.Module):

    def forward(self, q, k, v):  # (B, L, H, E), (B, S, H, E)
      scale = 1.0 / math.sqrt(q.shape[-1])
      scores = torch.einsum("blhe,bshe->bhls", q, k)
      weights = torch.softmax(scale * scores, dim=-1)
      return torch.einsum("bhls,bshd->blhd", weights, v)

  class AttentionLayer(nn.Module):

    def __init__(self, d_model, heads):
      super().__init__()
      self.inner = FullAttention()
      self.q = nn.Linear(d_model, d_model)
      self.k = nn.Linear(d_model, d_model)
      self.v = nn.Linear(d_model, d_model)
      self.o = nn.Linear(d_model, d_model)
      self.heads = heads

    def forward(self, queries, keys, values):
      b, lq, _ = queries.shape
      s = keys.shape[1]
      q = self.q(queries).view(b, lq, self.heads, -1)
      k = self.k(keys).view(b, s, self.heads, -1)
      v = self.v(values).view(b, s, self.heads, -1)
      return self.o(self.inner(q, k, v).reshape(b, lq, -1))

  def mlp(d_in, hidden):
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(),
                         nn.Linear(hidden, d_in))

  class TwoStageAttentionLayer(nn.Module):

    def __init__(self, seg_num, factor, d_model, heads, d_ff):
      super().__init__()
      self.time_attention = AttentionLayer(d_model, heads)
      self.dim_sender = AttentionLayer(d_model, heads)
      self.dim_receiver = AttentionLayer(d_model, heads)
      self.router = nn.Parameter(torch.randn(seg_num, factor, d_model))
      self.norm1, self.norm2, self.norm3, self.norm4 = (
          nn.LayerNorm(d_model) for _ in range(4))
      self.MLP1 = mlp(d_model, d_ff)
      self.MLP2 = mlp(d_model, d_ff)

    def forward(self, x):
      b, ts_d, seg_num, d_model = x.shape
      time_in = x.reshape(b * ts_d, seg_num, d_model)
      dim_in = self.norm1(
          time_in + self.time_attention(time_in, time_in, time_in))
      dim_in = self.norm2(dim_in + self.MLP1(dim_in))
      dim_send = dim_in.reshape(b, ts_d, seg_num, d_model).permute(
          0, 2, 1, 3).reshape(b * seg_num, ts_d, d_model)
      batch_router = self.router.repeat(b, 1, 1)
      dim_buffer = self.dim_sender(batch_router, dim_send, dim_send)
      dim_receive = self.dim_receiver(dim_send, dim_buffer, dim_buffer)
      dim_enc = self.norm3(dim_send + dim_receive)
      dim_enc = self.norm4(dim_enc + self.MLP2(dim_enc))
      return dim_enc.reshape(b, seg_num, ts_d, d_model).permute(0, 2, 1, 3)

  class SegMerging(nn.Module):

    def __init__(self, d_model, win_size):
      super().__init__()
      self.win_size = win_size
      self.linear_trans = nn.Linear(win_size * d_model, d_model)
      self.norm = nn.LayerNorm(win_size * d_model)

    def forward(self, x):
      seg_num = x.shape[2]
      pad_num = seg_num % self.win_size
      if pad_num != 0:
        pad_num = self.win_size - pad_num
        x = torch.cat((x, x[:, :, -pad_num:, :]), dim=-2)
      pieces = [x[:, :, i::self.win_size, :] for i in range(self.win_size)]
      return self.linear_trans(self.norm(torch.cat(pieces, -1)))

  class ScaleBlock(nn.Module):

    def __init__(self, win_size, d_model, heads, d_ff, seg_num, factor):
      super().__init__()
      self.merge_layer = (SegMerging(d_model, win_size) if win_size > 1
                          else None)
      self.encode_layers = nn.ModuleList(
          [TwoStageAttentionLayer(seg_num, factor, d_model, heads, d_ff)])

    def forward(self, x):
      if self.merge_layer is not None:
        x = self.merge_layer(x)
      for layer in self.encode_layers:
        x = layer(x)
      return x

  class DecoderLayer(nn.Module):

    def __init__(self, seg_num, factor, d_model, heads, d_ff, seg_len):
      super().__init__()
      self.self_attention = TwoStageAttentionLayer(seg_num, factor, d_model,
                                                   heads, d_ff)
      self.cross_attention = AttentionLayer(d_model, heads)
      self.norm1 = nn.LayerNorm(d_model)
      self.norm2 = nn.LayerNorm(d_model)
      self.MLP1 = mlp(d_model, d_model)
      self.linear_pred = nn.Linear(d_model, seg_len)

    def forward(self, x, cross):
      b = x.shape[0]
      x = self.self_attention(x)
      _, ts_d, out_seg, d_model = x.shape
      x = x.reshape(b * ts_d, out_seg, d_model)
      cross = cross.reshape(b * ts_d, cross.shape[2], d_model)
      x = self.norm1(x + self.cross_attention(x, cross, cross))
      out = self.norm2(x + self.MLP1(x)).reshape(b, ts_d, out_seg, d_model)
      predict = self.linear_pred(out).reshape(b, ts_d * out_seg, -1)
      return out, predict

  class Model(nn.Module):

    def __init__(self, channels, seq_len, pred_len, d_model, heads, d_ff,
                 factor, e_layers, seg_len=12, win_size=2):
      super().__init__()
      self.pred_len, self.seg_len, self.d_model = pred_len, seg_len, d_model
      pad_in_len = math.ceil(seq_len / seg_len) * seg_len
      pad_out_len = math.ceil(pred_len / seg_len) * seg_len
      in_seg_num = pad_in_len // seg_len
      # PatchEmbedding(d_model, seg_len, seg_len, pad_in_len - seq_len, 0)
      self.pad = nn.ReplicationPad1d((0, pad_in_len - seq_len))
      self.value_embedding = nn.Linear(seg_len, d_model, bias=False)
      pe = torch.zeros(in_seg_num, d_model)
      position = torch.arange(0, in_seg_num).float().unsqueeze(1)
      div_term = (torch.arange(0, d_model, 2).float()
                  * -(math.log(10000.0) / d_model)).exp()
      pe[:, 0::2] = torch.sin(position * div_term)
      pe[:, 1::2] = torch.cos(position * div_term)
      self.register_buffer("pe", pe.unsqueeze(0))
      self.enc_pos_embedding = nn.Parameter(
          torch.randn(1, channels, in_seg_num, d_model))
      self.pre_norm = nn.LayerNorm(d_model)
      self.encoder = nn.ModuleList([
          ScaleBlock(1 if l == 0 else win_size, d_model, heads, d_ff,
                     in_seg_num if l == 0
                     else math.ceil(in_seg_num / win_size ** l), factor)
          for l in range(e_layers)])
      self.dec_pos_embedding = nn.Parameter(
          torch.randn(1, channels, pad_out_len // seg_len, d_model))
      self.decoder = nn.ModuleList([
          DecoderLayer(pad_out_len // seg_len, factor, d_model, heads, d_ff,
                       seg_len) for _ in range(e_layers + 1)])

    def forward(self, x_enc):  # (B, L, C) -> (B, H, C)
      x = self.pad(x_enc.permute(0, 2, 1))
      b, n_vars = x.shape[:2]
      x = x.unfold(dimension=-1, size=self.seg_len, step=self.seg_len)
      x = x.reshape(b * n_vars, x.shape[2], x.shape[3])
      x = self.value_embedding(x) + self.pe[:, :x.shape[1]]
      x = x.reshape(b, n_vars, -1, self.d_model)
      x = self.pre_norm(x + self.enc_pos_embedding)
      enc_out = [x]
      for block in self.encoder:
        x = block(x)
        enc_out.append(x)
      dec = self.dec_pos_embedding.repeat(b, 1, 1, 1)
      final = None
      for layer, cross in zip(self.decoder, enc_out):
        dec, predict = layer(dec, cross)
        final = predict if final is None else final + predict
      final = final.reshape(b, n_vars, -1, self.seg_len).reshape(
          b, n_vars, -1).permute(0, 2, 1)
      return final[:, -self.pred_len:, :]

  return Model


def _load_weights(torch, tmodel, model: Crossformer) -> None:
  """Copies the JAX parameters into the torch restatement."""

  def put(param, value):
    value = torch.from_numpy(np.array(value))
    assert param.shape == value.shape, (param.shape, value.shape)
    param.data.copy_(value)

  def linear(t, j):
    put(t.weight, np.asarray(j.kernel[...]).T)
    if t.bias is not None:
      put(t.bias, j.bias[...])

  def norm(t, j):
    put(t.weight, j.scale[...])
    put(t.bias, j.bias[...])

  def attention(t, j):
    for tl, jl in ((t.q, j.query), (t.k, j.key), (t.v, j.value),
                   (t.o, j.out)):
      linear(tl, jl)

  def mlp(t, j):
    linear(t[0], j.fc1)
    linear(t[2], j.fc2)

  def tsa(t, j):
    attention(t.time_attention, j.time_attn)
    attention(t.dim_sender, j.dim_sender)
    attention(t.dim_receiver, j.dim_receiver)
    put(t.router, j.router[...])
    for k in range(1, 5):
      norm(getattr(t, f"norm{k}"), getattr(j, f"norm{k}"))
    mlp(t.MLP1, j.mlp1)
    mlp(t.MLP2, j.mlp2)

  linear(tmodel.value_embedding, model.embed)
  put(tmodel.enc_pos_embedding, model.enc_pos[...][None])
  norm(tmodel.pre_norm, model.pre_norm)
  assert len(tmodel.encoder) == len(model.encoder)
  for tb, jb in zip(tmodel.encoder, model.encoder):
    assert (tb.merge_layer is None) == (jb.merge is None)
    if jb.merge is not None:
      linear(tb.merge_layer.linear_trans, jb.merge.linear)
      norm(tb.merge_layer.norm, jb.merge.norm)
    for tl, jl in zip(tb.encode_layers, jb.layers):
      tsa(tl, jl)
  put(tmodel.dec_pos_embedding, model.dec_pos[...][None])
  assert len(tmodel.decoder) == len(model.decoder)
  for tl, jl in zip(tmodel.decoder, model.decoder):
    tsa(tl.self_attention, jl.self_attn)
    attention(tl.cross_attention, jl.cross_attn)
    norm(tl.norm1, jl.norm1)
    norm(tl.norm2, jl.norm2)
    mlp(tl.MLP1, jl.mlp)
    linear(tl.linear_pred, jl.predict)


def _check_against_torch(model: Crossformer, lookback: int, horizon: int,
                         sizes: dict) -> None:
  torch = pytest.importorskip("torch")
  channels = model.enc_pos.shape[0]
  args = {"d_model": 64, "heads": 8, "d_ff": 256, "factor": 3,
          "e_layers": 2, **sizes}
  tmodel = _torch_modules(torch)(channels, lookback, horizon, **args)
  _load_weights(torch, tmodel, model)
  n_torch = sum(p.numel() for p in tmodel.parameters())
  assert n_torch == sum(v.size for v in
                        jax.tree.leaves(nnx.state(model, nnx.Param)))
  tmodel.eval()
  x = _windows(np.random.default_rng(4), 4, channels, lookback)
  with torch.no_grad():
    expected = tmodel(torch.from_numpy(
        np.ascontiguousarray(np.asarray(x).transpose(0, 2, 1)))).numpy()
  got = np.asarray(CALL(model, x)).transpose(0, 2, 1)
  assert got.shape == expected.shape == (4, horizon, channels)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_forward_matches_torch_with_padding_merging_and_crop(small):
  _check_against_torch(small, 30, 20, dict(SMALL, e_layers=2))


def test_forward_matches_torch_at_the_defaults():
  pytest.importorskip("torch")
  _check_against_torch(Crossformer(7, 96, 96, rngs=nnx.Rngs(5)), 96, 96, {})
