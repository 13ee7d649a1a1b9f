"""TimesNet's long-term forecast restated in plain PyTorch, on our parameters.

A benchmark- and test-only restatement of the reference's forward pass
(Time-Series-Library's ``models/TimesNet.py`` with ``layers/Embed.py`` and
``layers/Conv_Blocks.py``, as the BSA repository carries them: zero padding
to a multiple of the period, no time-feature embedding, no dropout), written
the reference's way: ``torch.topk`` on the batch's mean amplitude, the
periods moved to NumPy, a Python loop over them, each Inception block as its
separate Conv2d averaged. It takes the parameters of a
:class:`~grokfast_jax.experiments.forecasting.models.timesnet.TimesNet`
(:func:`params_from`), so the two can be compared output for output and
gradient for gradient (``tests/experiments/test_forecast_timesnet.py``) and
timed side by side (``benchmarks/micro/timesnet_cost.py --torch``).

PyTorch is an optional, benchmark-only dependency (``pip install torch``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flax import nnx

F = torch.nn.functional


def flat_names(state: nnx.State) -> dict[str, np.ndarray]:
  """{"b0.conv1.2.kernel": array, "token": array, ...} from a State of our
  model's Params (or of their gradients)."""
  out = {}
  for path, value in nnx.to_flat_state(state):
    name = ".".join(str(k) for k in path)
    name = name.replace("blocks.", "b").replace(".kernels.", ".")
    out[name] = np.asarray(value[...])
  return out


def params_from(model: Any, requires_grad: bool = False
                ) -> dict[str, torch.Tensor]:
  """Our TimesNet's Params as float32 tensors named as :func:`flat_names`."""
  return {k: torch.tensor(v, requires_grad=requires_grad)
          for k, v in flat_names(nnx.state(model, nnx.Param)).items()}


def positional_embedding(length: int, d_model: int) -> torch.Tensor:
  """PositionalEmbedding's table for `length` steps, computed in PyTorch."""
  position = torch.arange(0, length).float().unsqueeze(1)
  div = (torch.arange(0, d_model, 2).float()
         * -(np.log(10000.0) / d_model)).exp()
  pe = torch.zeros(length, d_model)
  pe[:, 0::2] = torch.sin(position * div)
  pe[:, 1::2] = torch.cos(position * div)
  return pe


def forward(p: dict[str, torch.Tensor], x_bcl: torch.Tensor, *,
            lookback: int, horizon: int, top_k: int, num_kernels: int,
            layers: int) -> torch.Tensor:
  """The reference's forecast on parameters `p`: (B, C, L) -> (B, H, C)."""
  x = x_bcl.permute(0, 2, 1)  # (B, L, C)
  means = x.mean(1, keepdim=True).detach()
  x = x - means
  stdev = torch.sqrt(torch.var(x, dim=1, keepdim=True, unbiased=False)
                     + 1e-5)
  x = x / stdev
  # TokenEmbedding: circular Conv1d with weight (D, C, 3); ours is (3, C, D).
  d_model = p["token"].shape[-1]
  enc = F.conv1d(F.pad(x.permute(0, 2, 1), (1, 1), mode="circular"),
                 p["token"].permute(2, 1, 0))
  enc = enc.transpose(1, 2) + positional_embedding(lookback, d_model)
  enc = F.linear(enc.permute(0, 2, 1), p["predict_linear.kernel"].T,
                 p["predict_linear.bias"]).permute(0, 2, 1)
  seq = lookback + horizon

  def inception(h, name):
    # Our kernels are HWIO; Conv2d's are OIHW.
    outs = [F.conv2d(h, p[f"{name}.{i}.kernel"].permute(3, 2, 0, 1),
                     p[f"{name}.{i}.bias"], padding=i)
            for i in range(num_kernels)]
    return torch.stack(outs, dim=-1).mean(-1)

  for layer in range(layers):
    b, t, n = enc.shape
    xf = torch.fft.rfft(enc, dim=1)
    freq = abs(xf).mean(0).mean(-1)
    freq[0] = 0
    _, top = torch.topk(freq, top_k)
    top = top.detach().cpu().numpy()
    periods = t // top
    weight = abs(xf).mean(-1)[:, top]
    res = []
    for period in periods:
      period = int(period)
      if seq % period != 0:
        length = (seq // period + 1) * period
        out = torch.cat([enc, torch.zeros(b, length - seq, n)], dim=1)
      else:
        length, out = seq, enc
      out = out.reshape(b, length // period, period, n).permute(0, 3, 1, 2)
      out = inception(F.gelu(inception(out, f"b{layer}.conv1")),
                      f"b{layer}.conv2")
      res.append(out.permute(0, 2, 3, 1).reshape(b, -1, n)[:, :seq])
    res = torch.stack(res, dim=-1)
    weight = F.softmax(weight, dim=1)[:, None, None, :]
    enc = (res * weight).sum(-1) + enc
    enc = F.layer_norm(enc, (n,), p["norm.scale"], p["norm.bias"], 1e-5)
  dec = F.linear(enc, p["projection.kernel"].T, p["projection.bias"])
  dec = dec * stdev + means
  return dec[:, -horizon:]
