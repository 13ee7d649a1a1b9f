"""The EGD authors' setting (benchmarks/studies/egd_mlp.py): its data, its
model and its optimizers, on a few updates."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks.studies import egd_mlp


def test_pairs_are_every_pair_but_division_by_zero():
  for op, n_pairs, n in (("*", 97 * 97, 97), ("/", 97 * 96, 97),
                         ("s5", 120 * 120, 120)):
    xy, ans, got_n = egd_mlp.pairs(op)
    assert xy.shape == (n_pairs, 2) and ans.shape == (n_pairs,)
    assert got_n == n and ans.min() >= 0 and ans.max() < n
  xy, ans, _ = egd_mlp.pairs("*")
  np.testing.assert_array_equal(ans, (xy[:, 0] * xy[:, 1]) % 97)
  train, test = egd_mlp.split(xy, 3)
  assert len(train) == len(xy) // 2 and len(test) == len(xy) - len(xy) // 2
  assert not set(train) & set(test)


def test_logits_are_the_one_hot_mlp():
  params = egd_mlp.init(jax.random.key(0), 5)
  xy = jnp.asarray([[1, 4], [0, 0]])
  one_hot = np.zeros((2, 10), np.float32)
  one_hot[0, [1, 9]] = one_hot[1, [0, 5]] = 1.0
  want = np.maximum(one_hot @ params["w1"] + params["b1"], 0) @ params["w2"]
  np.testing.assert_allclose(egd_mlp.logits(params, xy, 5), want, rtol=1e-5)


def test_egd_whitens_only_the_first_layer():
  tx = egd_mlp.optimizer("egd")
  params = egd_mlp.init(jax.random.key(1), 7)
  grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.1 + p, params)
  upd, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  u, s, vt = np.linalg.svd(np.asarray(grads["w1"]), full_matrices=False)
  np.testing.assert_allclose(upd["w1"], -egd_mlp.LR * (u @ vt), atol=1e-4)
  for k in ("b1", "w2"):
    np.testing.assert_allclose(upd[k], -egd_mlp.LR * grads[k], rtol=1e-6)


# The plain, the masked SVD and the stateful front (every front is built by
# each optimizer() call).
@pytest.mark.parametrize("method", ["sgd", "egd", "grokfast-ma"])
def test_a_cell_runs_and_reports_every_seed(method):
  cell = egd_mlp.run_cell("+", method, [0, 1], 1, progress=False)
  assert cell["epochs_to_95"] == [None, None] and cell["reached"] == 0
  assert cell["updates_per_epoch"] == (97 * 97 // 2) // egd_mlp.BATCH
  assert len(cell["best_test_acc"]) == 2 and cell["epochs_run"] == 1
  assert egd_mlp.fmt_cell(cell).startswith("| `+` | " + method + " | never")


def test_the_loss_holds_the_l2_term():
  params = egd_mlp.init(jax.random.key(2), 5)
  xy, y = jnp.asarray([[1, 2]]), jnp.asarray([3])
  ce = optax.softmax_cross_entropy_with_integer_labels(
    egd_mlp.logits(params, xy, 5), y).mean()
  l2 = jnp.sum(params["w1"] ** 2) + jnp.sum(params["w2"] ** 2)
  np.testing.assert_allclose(egd_mlp.loss(params, xy, y, 5),
                             ce + 0.5 * egd_mlp.WD * l2, rtol=1e-6)
