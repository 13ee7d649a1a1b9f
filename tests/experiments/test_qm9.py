"""Tests of the QM9 polarizability experiment: featurization, loading, the
model (training, CLI, resume and meshes: test_qm9_task.py)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

pytest.importorskip("rdkit", reason="the QM9 experiment needs RDKit "
                    '(pip install "grokfast_jax[chem]")')

from grokfast_jax import cli  # noqa: E402
from grokfast_jax.experiments.qm9 import data as data_lib  # noqa: E402
from grokfast_jax.experiments.qm9 import model as model_lib  # noqa: E402
from grokfast_jax.experiments.qm9 import training  # noqa: E402

SHARED_CSV = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
              / "qm9" / "qm9_first138.csv")
HEADER = "gdb_id,smiles,alpha,uncharacterized\n"
# Small H/C/N/O/F molecules for synthetic CSVs (alpha values made up).
SMILES = ["C", "N", "O", "C#C", "C#N", "C=O", "CO", "CC", "CCO", "CC#N",
          "c1cc[nH]c1", "FC(F)F", "CC(C)=O", "OCC=O"]

S, D, T, A = np.eye(4, dtype=np.float32)  # single, double, triple, aromatic


def _write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
  path.write_text(header + "".join(r + "\n" for r in rows))
  return path


def _synthetic_csv(path: Path, n: int = 12, uncharacterized=()) -> Path:
  rows = [f"{i + 1},{SMILES[i % len(SMILES)]},{10.0 + 2.5 * (i % 7)},"
          f"{int(i + 1 in uncharacterized)}" for i in range(n)]
  return _write_csv(path, rows)


def _molecules(smiles=SMILES) -> list[data_lib.Molecule]:
  return [data_lib.Molecule(i + 1, s, *data_lib.featurize(s), 10.0 + i)
          for i, s in enumerate(smiles)]


def _edges(x, edge_index, edge_attr) -> dict:
  """{(sender, receiver): one-hot tuple}."""
  return {(int(a), int(b)): tuple(e)
          for a, b, e in zip(edge_index[0], edge_index[1], edge_attr)}


_gather = jax.jit(model_lib.gather_batch, static_argnums=(2, 3))


@functools.partial(jax.jit, static_argnums=(0, 3))
def _loss_and_grads(graphdef, params, batch, per_edge):
  """((loss, predictions), grads)."""
  def loss_fn(p):
    predictions = nnx.merge(graphdef, p)(batch, per_edge=per_edge)
    return model_lib.masked_mse(predictions, batch), predictions
  return jax.value_and_grad(loss_fn, has_aux=True)(params)


# ------------------------------------------------------------ featurization


H_ROW = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]


def test_featurize_methane():
  x, edge_index, edge_attr = data_lib.featurize("C")
  assert x.dtype == np.float32 and edge_index.dtype == np.int32
  assert edge_attr.dtype == np.float32
  np.testing.assert_array_equal(
      x, np.array([[0, 1, 0, 0, 0, 6, 0, 0, 0, 1, 4]] + [H_ROW] * 4))
  np.testing.assert_array_equal(
      edge_index, [[0, 0, 0, 0, 1, 2, 3, 4], [1, 2, 3, 4, 0, 0, 0, 0]])
  np.testing.assert_array_equal(edge_attr, np.tile(S, (8, 1)))


def test_featurize_water():
  x, edge_index, edge_attr = data_lib.featurize("O")
  np.testing.assert_array_equal(
      x, np.array([[0, 0, 0, 1, 0, 8, 0, 0, 0, 1, 2], H_ROW, H_ROW]))
  np.testing.assert_array_equal(edge_index, [[0, 0, 1, 2], [1, 2, 0, 0]])
  np.testing.assert_array_equal(edge_attr, np.tile(S, (4, 1)))


def test_featurize_pyrrole():
  x, edge_index, edge_attr = data_lib.featurize("c1cc[nH]c1")
  ring_c = [0, 1, 0, 0, 0, 6, 1, 0, 1, 0, 1]
  ring_n = [0, 0, 1, 0, 0, 7, 1, 0, 1, 0, 1]
  np.testing.assert_array_equal(
      x, np.array([ring_c, ring_c, ring_c, ring_n, ring_c] + [H_ROW] * 5))
  ring = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)]
  hydrogens = [(0, 5), (1, 6), (2, 7), (3, 8), (4, 9)]
  expected = {}
  for bonds, kind in ((ring, A), (hydrogens, S)):
    for a, b in bonds:
      expected[(a, b)] = expected[(b, a)] = tuple(kind)
  assert _edges(x, edge_index, edge_attr) == expected
  assert edge_index.shape == (2, 20)
  # Sorted by sender, then receiver.
  pairs = list(zip(edge_index[0].tolist(), edge_index[1].tolist()))
  assert pairs == sorted(pairs)


def test_featurize_hybridization_and_bond_orders():
  x, edge_index, edge_attr = data_lib.featurize("C#N")  # H-C#N
  np.testing.assert_array_equal(x[0], [0, 1, 0, 0, 0, 6, 0, 1, 0, 0, 1])
  np.testing.assert_array_equal(x[1], [0, 0, 1, 0, 0, 7, 0, 1, 0, 0, 0])
  assert _edges(x, edge_index, edge_attr)[(0, 1)] == tuple(T)
  x, edge_index, edge_attr = data_lib.featurize("C=O")
  np.testing.assert_array_equal(x[0], [0, 1, 0, 0, 0, 6, 0, 0, 1, 0, 2])
  np.testing.assert_array_equal(x[1], [0, 0, 0, 1, 0, 8, 0, 0, 1, 0, 0])
  assert _edges(x, edge_index, edge_attr)[(1, 0)] == tuple(D)
  x, _, _ = data_lib.featurize("FC(F)F")
  np.testing.assert_array_equal(x[0], [0, 0, 0, 0, 1, 9, 0, 0, 0, 1, 0])


def test_featurize_rejects_bad_smiles_and_elements():
  with pytest.raises(ValueError, match="cannot parse the SMILES 'C1CC'"):
    data_lib.featurize("C1CC")
  with pytest.raises(ValueError, match="element Cl"):
    data_lib.featurize("CCl")


def test_missing_rdkit_names_the_extra(monkeypatch, tmp_path, capsys):
  monkeypatch.setitem(sys.modules, "rdkit", None)
  monkeypatch.setitem(sys.modules, "rdkit.Chem", None)
  with pytest.raises(ImportError, match=r'pip install "grokfast_jax\[chem\]"'):
    data_lib.featurize("C")
  with pytest.raises(ValueError, match=r"grokfast_jax\[chem\]"):
    data_lib.load_molecules(_synthetic_csv(tmp_path / "q.csv"), size=4)
  out = tmp_path / "out"
  assert cli.main(["qm9", "--data", str(tmp_path / "q.csv"), "--size", "4",
                   "--batch-size", "1", "--out", str(out)]) == 2
  assert 'grokfast_jax[chem]' in capsys.readouterr().err
  assert not out.exists()


# ------------------------------------------------------------------ loading


def test_load_molecules_skips_uncharacterized(tmp_path):
  path = _synthetic_csv(tmp_path / "q.csv", n=12, uncharacterized=(2, 5))
  mols = data_lib.load_molecules(path, size=8)
  assert [m.gdb_id for m in mols] == [1, 3, 4, 6, 7, 8, 9, 10]
  assert mols[0].smiles == "C" and mols[0].y == 10.0
  assert mols[0].x.shape == (5, 11) and mols[0].edge_index.shape == (2, 8)
  with pytest.raises(ValueError, match=r"only 10 usable .*2 uncharacterized"
                     r".*size is 11"):
    data_lib.load_molecules(path, size=11)


BAD_CSVS = {
    "missing column": (HEADER.replace(",alpha", ",mu"), ["1,C,13.2,0"],
                       r"missing column alpha"),
    "empty file": ("", [], r"empty file"),
    "bad smiles": (HEADER, ["1,C,13.2,0", "2,C1CC,9.0,0"],
                   r"row 2 \(line 3\), gdb_id 2: RDKit cannot parse the "
                   r"SMILES 'C1CC'"),
    "bad alpha": (HEADER, ["1,C,13.2,0", "2,N,abc,0"],
                  r"row 2 \(line 3\): alpha must be a finite number, got "
                  r"'abc'"),
    "bad element": (HEADER, ["1,C,13.2,0", "2,CCl,9.0,0"],
                    r"row 2 \(line 3\), gdb_id 2: .*element Cl"),
    "too few rows": (HEADER, ["1,C,13.2,0", "2,N,9.0,1"],
                     r"only 1 usable"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_malformed_csv_gives_one_error_and_no_output(case, tmp_path, capsys):
  header, rows, message = BAD_CSVS[case]
  path = _write_csv(tmp_path / "bad.csv", rows, header)
  with pytest.raises(ValueError, match=message) as info:
    data_lib.load_molecules(path, size=2)
  assert str(path) in str(info.value)
  out = tmp_path / "out"
  assert cli.main(["qm9", "--data", str(path), "--size", "2",
                   "--batch-size", "1", "--out", str(out),
                   "--no-progress"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("grokfast-jax qm9: error:") and "\n" not in err
  assert not out.exists()


def test_missing_file_and_bad_settings(tmp_path, capsys):
  with pytest.raises(ValueError, match="no such file"):
    data_lib.load_molecules(tmp_path / "nowhere.csv")
  out = tmp_path / "out"
  assert cli.main(["qm9-compare", "--data", str(tmp_path / "nowhere.csv"),
                   "--out", str(out)]) == 2
  assert "nowhere.csv: no such file" in capsys.readouterr().err
  csv_path = _synthetic_csv(tmp_path / "q.csv")
  for argv, message in (
      (["--batch-size", "60"], "batch_size must be in [1, 50]"),
      (["--alpha", "1.5"], "alpha must be in [0, 1)"),
      (["--size", "1"], "size must be >= 2"),
      (["--max-steps", "0"], "max_steps must be >= 1")):
    assert cli.main(["qm9", "--data", str(csv_path), "--out", str(out),
                     *argv]) == 2
    assert message in capsys.readouterr().err
  assert not out.exists()


def test_split_is_seeded_and_disjoint():
  mols = _molecules()
  train, test = data_lib.split(mols, seed=3)
  assert len(train) == 7 and len(test) == 7
  ids = [m.gdb_id for m in train + test]
  assert sorted(ids) == list(range(1, 15))
  again, _ = data_lib.split(mols, seed=3)
  assert [m.gdb_id for m in again] == [m.gdb_id for m in train]
  other, _ = data_lib.split(mols, seed=4)
  assert [m.gdb_id for m in other] != [m.gdb_id for m in train]
  assert len(data_lib.split(mols[:5], 0)[0]) == 2


# -------------------------------------------------------------------- model


def _np_linear(layer, v):
  return v @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])


def _dense_nnconv(conv, x, edge_index, edge_attr):
  """NNConv by a loop over edges, in NumPy (PyG's definition)."""
  root, bias = np.asarray(conv.root[...]), np.asarray(conv.bias[...])
  out = x @ root + bias
  for (j, i), e in zip(edge_index.T, edge_attr):
    hidden = np.maximum(_np_linear(conv.edge_in, e), 0.0)
    w = _np_linear(conv.edge_out, hidden).reshape(conv.in_channels,
                                                  conv.out_channels)
    out[i] += x[j] @ w
  return out


def test_nnconv_matches_dense_loop():
  rng = np.random.default_rng(0)
  conv = model_lib.NNConv(3, 2, 4, edge_hidden=5, init_scale=3.0,
                          rngs=nnx.Rngs(1))
  conv.bias[...] = jnp.array([0.5, -0.25])  # make the bias matter
  x = rng.normal(size=(4, 3)).astype(np.float32)
  # Directed, asymmetric edges (3 -> 0 only), two sharing features.
  edge_index = np.array([[0, 1, 1, 2, 3], [1, 0, 2, 1, 0]], np.int32)
  types = np.array([0, 0, 1, 2, 1])
  table = rng.normal(size=(3, 4)).astype(np.float32)
  edge_attr = table[types]
  expected = _dense_nnconv(conv, x.astype(np.float64), edge_index,
                           edge_attr.astype(np.float64))
  # A padding edge (mask 0) with arbitrary features must change nothing.
  senders = np.append(edge_index[0], 2)
  receivers = np.append(edge_index[1], 3)
  attr = np.vstack([edge_attr, rng.normal(size=(1, 4))]).astype(np.float32)
  mask = np.array([1, 1, 1, 1, 1, 0], np.float32)
  got = nnx.jit(lambda c, *a: c(*a))(conv, x, senders, receivers, attr, mask)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  got = nnx.jit(lambda c, *a: c.typed(*a))(
      conv, x, senders, receivers, np.append(types, 1), table, mask)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_padding_invariance():
  mols = _molecules()
  idx = np.array([3, 10, 12], np.int32)
  tight = model_lib.full_batch([mols[i] for i in idx])  # no padding at all
  n, e = len(tight.x), len(tight.senders)
  loose = _gather(data_lib.pack(mols), np.array([3, -1, 10, 12, -1]),
                  n + 17, e + 23)
  assert float(loose.node_mask.sum()) == n and float(loose.edge_mask.sum()) == e
  graphdef, params = training.init_params(3.0, 0)
  (loss_t, out_t), grads_t = _loss_and_grads(graphdef, params, tight, False)
  (loss_l, out_l), grads_l = _loss_and_grads(graphdef, params, loose, False)
  np.testing.assert_allclose(out_l[np.array([0, 2, 3])], out_t, rtol=1e-5)
  np.testing.assert_allclose(loss_l, loss_t, rtol=1e-5)
  for gt, gl in zip(jax.tree.leaves(grads_t), jax.tree.leaves(grads_l)):
    np.testing.assert_allclose(gl, gt, rtol=1e-4,
                               atol=1e-5 * float(jnp.abs(gt).max()))
  # The per-edge form ignores padding as well.
  (_, out_pe), _ = _loss_and_grads(graphdef, params, loose, True)
  np.testing.assert_allclose(out_pe[np.array([0, 2, 3])], out_t, rtol=1e-5)


def test_batching_invariance_and_typed_equals_per_edge():
  mols = _molecules()
  packed = data_lib.pack(mols)
  graphdef, params = training.init_params(3.0, 0)
  idx = [10, 0, 13]
  n, e = data_lib.batch_capacity(mols, 3)
  batch = _gather(packed, np.array(idx), n, e)
  (_, together), _ = _loss_and_grads(graphdef, params, batch, False)
  for slot, i in enumerate(idx):
    single = _gather(packed, np.array([i, -1, -1]), n, e)
    (_, alone), _ = _loss_and_grads(graphdef, params, single, False)
    np.testing.assert_allclose(alone[0], together[slot], rtol=1e-5)
    assert float(single.y[0]) == mols[i].y
  (_, per_edge), _ = _loss_and_grads(graphdef, params, batch, True)
  np.testing.assert_allclose(per_edge, together, rtol=1e-5)
  # Node features and local edges land where they belong.
  np.testing.assert_array_equal(batch.x[:10], mols[10].x)
  np.testing.assert_array_equal(batch.node_graph[10:15], 1)
  np.testing.assert_array_equal(
      batch.senders[:mols[10].n_edges], mols[10].edge_index[0])
  np.testing.assert_array_equal(
      batch.receivers[20:28], mols[0].edge_index[1] + 10)
  real = int(batch.edge_mask.sum())
  assert real == sum(mols[i].n_edges for i in idx) < e
  np.testing.assert_array_equal(
      batch.edge_table[batch.edge_type[:real]], batch.edge_attr[:real])
  # The NumPy batch of the same molecules is the gathered one, unpadded.
  exact = model_lib.full_batch([mols[i] for i in idx])
  for field in ("x", "senders", "receivers", "edge_attr", "node_graph", "y"):
    got = np.asarray(getattr(batch, field))
    want = getattr(exact, field)
    np.testing.assert_array_equal(got[:len(want)], want)
  np.testing.assert_array_equal(exact.edge_table[exact.edge_type],
                                exact.edge_attr)


def test_init_scaling():
  graphdef, params = training.init_params(3.0, 5)  # jitted, as in training
  big = nnx.merge(graphdef, params)
  graphdef, params = training.init_params(1.0, 5)
  one = nnx.merge(graphdef, params)
  fan_in = {"edge_in": 4, "edge_out": 32}
  for conv, in_ch in ((big.conv1, 11), (big.conv2, 32)):
    assert not np.any(np.asarray(conv.bias[...]))
    root = np.abs(np.asarray(conv.root[...]))
    assert 0.8 * 3 / np.sqrt(in_ch) < root.max() <= 3 / np.sqrt(in_ch)
    for name, fan in fan_in.items():
      for p in (getattr(conv, name).kernel, getattr(conv, name).bias):
        assert np.abs(np.asarray(p[...])).max() <= 3 / np.sqrt(fan)
    kernel = np.abs(np.asarray(conv.edge_out.kernel[...]))
    assert kernel.max() > 0.95 * 3 / np.sqrt(32)
  for layer, fan in ((big.head1, 16), (big.head2, 32)):
    assert np.abs(np.asarray(layer.kernel[...])).max() <= 3 / np.sqrt(fan)
  for a, b in zip(jax.tree.leaves(nnx.state(big, nnx.Param)),
                  jax.tree.leaves(nnx.state(one, nnx.Param))):
    np.testing.assert_allclose(a, 3.0 * b, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="init_scale must be > 0"):
    model_lib.Qm9Net(init_scale=0.0, rngs=nnx.Rngs(0))
  # The jitted initialization draws what eager construction draws.
  init_key, _ = jax.random.split(jax.random.key(5))
  eager = nnx.state(model_lib.NNConv(11, 32, 4, init_scale=3.0,
                                     rngs=nnx.Rngs(params=init_key)),
                    nnx.Param)
  np.testing.assert_allclose(eager["root"][...], big.conv1.root[...],
                             rtol=1e-6, atol=1e-6)  # an ulp of the bound


# --------------------------------------------------------- the shared data


@pytest.mark.skipif(not SHARED_CSV.exists(),
                    reason=f"shared QM9 CSV not found at {SHARED_CSV}")
def test_shared_csv_first_100_characterized():
  mols = data_lib.load_molecules(SHARED_CSV, size=100)
  ids = [m.gdb_id for m in mols]
  assert ids == [i for i in range(1, 104) if i not in (58, 61, 80)]
  pyrrole = mols[ids.index(50)]
  assert pyrrole.smiles == "c1cc[nH]c1"
  np.testing.assert_array_equal(pyrrole.x,
                                data_lib.featurize("c1cc[nH]c1")[0])
  assert mols[0].smiles == "C" and mols[0].y == pytest.approx(13.21)
  assert all(m.x.shape[1] == 11 and m.edge_attr.shape[1] == 4 for m in mols)
  train, test = data_lib.split(mols, seed=0)
  assert len(train) == 50 and len(test) == 50
  assert not {m.gdb_id for m in train} & {m.gdb_id for m in test}
