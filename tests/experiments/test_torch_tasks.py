"""Tests of the PyTorch restatements of the paper's tasks
(``benchmarks.torch.common``, ``mnist``, ``qm9``, ``imdb``)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks.torch import common, imdb, mnist, qm9  # noqa: E402


def test_grokfast_ema_follows_its_recursion():
  p = torch.nn.Parameter(torch.zeros(3))
  ema = common.GrokfastEMA([p], alpha=0.8, lamb=0.5)
  grads = [torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, 0.5, -1.0])]
  mu = None
  for g in grads:
    p.grad = g.clone()
    ema()
    mu = g if mu is None else 0.8 * mu + 0.2 * g
    torch.testing.assert_close(p.grad, g + 0.5 * mu)


def test_mnist_model_shape_and_scaled_init():
  torch.manual_seed(0)
  model = mnist.mnist_model()
  common.scale_parameters_(model, 8.0)
  first = model[0]
  bound = 8.0 / np.sqrt(784)
  assert first.weight.shape == (200, 784)
  assert first.weight.abs().max() <= bound
  assert first.weight.abs().max() > 0.9 * bound
  assert model(torch.zeros(2, 784)).shape == (2, 10)


def test_nnconv_equals_its_equation():
  torch.manual_seed(0)
  conv = qm9.NNConv(3, 2, edge_features=4, edge_hidden=5)
  x = torch.randn(4, 3)
  edge_index = torch.tensor([[0, 1, 1, 3], [1, 0, 2, 2]])
  edge_attr = torch.randn(4, 4)
  out = conv(x, edge_index, edge_attr)
  expected = x @ conv.root + conv.bias
  weights = conv.edge_net(edge_attr).view(-1, 3, 2)
  expected = expected.clone()
  for k, (j, i) in enumerate(edge_index.T.tolist()):
    expected[i] += x[j] @ weights[k]
  torch.testing.assert_close(out, expected)


def test_collate_offsets_edges_and_pools_per_molecule():
  class Mol:

    def __init__(self, n, edges, y):
      self.x = np.ones((n, 11), np.float32)
      self.edge_index = np.array(edges, np.int32).reshape(2, -1)
      self.edge_attr = np.ones((self.edge_index.shape[1], 4), np.float32)
      self.y = y
      self.n_nodes = n

  g = qm9.collate([Mol(2, [[0, 1], [1, 0]], 1.0), Mol(3, [[2], [0]], 2.0)])
  assert g.edge_index.tolist() == [[0, 1, 4], [1, 0, 2]]
  assert g.node_graph.tolist() == [0, 0, 1, 1, 1]
  assert g.n_graphs == 2
  torch.manual_seed(0)
  assert qm9.Qm9Net()(g).shape == (2,)


def test_train_mnist_reports_marks_and_history():
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.random((20, 784), dtype=np.float32))
  y = torch.from_numpy(rng.integers(0, 10, 20))
  cfg = mnist.MnistSettings(mnist.MNIST_RUNS["grokfast-ema"], steps=4,
                            eval_every=2, train_size=20, batch_size=10,
                            hidden=(8,))
  res = mnist.train_mnist(cfg, (x, y, x, y, "random"), name="grokfast-ema")
  assert [h["step"] for h in res["history"]] == [0, 2, 4]
  assert set(res["steps_to_val_acc"]) == {"0.85", "0.9", "0.95"}
  assert res["settings"]["alpha"] == 0.8 and res["settings"]["lamb"] == 0.1
  assert "| grokfast-ema |" in mnist.describe_mnist(res)


def test_lstm_classifier_outputs_probabilities():
  torch.manual_seed(0)
  model = imdb.LSTMClassifier(11, 4, 6, 2)
  prob = model(torch.randint(0, 11, (3, 7)))
  assert prob.shape == (3,)
  assert bool(((prob > 0) & (prob < 1)).all())


def test_runs_option_rejects_unknown_names():
  parser = mnist.build_parser()
  args = parser.parse_args(["run", "--runs", "baseline,grokfast-ema"])
  assert args.runs == ["baseline", "grokfast-ema"]
  with pytest.raises(SystemExit):
    parser.parse_args(["run", "--runs", "grokfast-ma"])
