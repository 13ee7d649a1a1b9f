"""Every operation of the modular task against a brute-force table."""

import itertools

import numpy as np
import pytest

from grokfast_jax.experiments.modular import data as data_lib

# Each operation written out again, one equation at a time.
BRUTE = {
    "*": lambda x, y, p: x * y % p,
    "+": lambda x, y, p: (x + y) % p,
    "-": lambda x, y, p: (x - y) % p,
    "/": lambda x, y, p: next(z for z in range(p) if z * y % p == x),
    "x^2+y^2": lambda x, y, p: (x ** 2 + y ** 2) % p,
    "x^2+xy+y^2": lambda x, y, p: (x ** 2 + x * y + y ** 2) % p,
    "x^2+xy+y^2+x": lambda x, y, p: (x ** 2 + x * y + y ** 2 + x) % p,
    "x^3+xy": lambda x, y, p: (x ** 3 + x * y) % p,
    "x^3+xy^2+y": lambda x, y, p: (x ** 3 + x * y ** 2 + y) % p,
}


@pytest.mark.parametrize("op", sorted(BRUTE))
@pytest.mark.parametrize("p", [7, 97])
def test_modular_operations_match_brute_force(op, p):
  data = data_lib.make_equations(op, p)
  first_y = 1 if op in data_lib.REFERENCE_OPS else 0
  pairs = [(x, y) for x in range(p) for y in range(first_y, p)]
  assert len(data.labels) == len(pairs)
  want = [BRUTE[op](x, y, p) for x, y in pairs]
  np.testing.assert_array_equal(data.labels, want)
  np.testing.assert_array_equal(data.inputs[:, 0], [x for x, _ in pairs])
  np.testing.assert_array_equal(data.inputs[:, 2], [y for _, y in pairs])
  assert set(data.inputs[:, 1]) == {p} and set(data.inputs[:, 3]) == {p + 1}
  assert data_lib.vocab_size(p, op) == p + 2
  assert data.inputs.dtype == data.labels.dtype == np.int32


def test_s5_is_composition_of_all_permutations_of_five():
  perms = list(itertools.permutations(range(5)))
  data = data_lib.make_equations("s5", 97)
  assert data.inputs.shape == (14_400, 4)
  assert data_lib.vocab_size(97, "s5") == 122
  assert set(data.inputs[:, 1]) == {120} and set(data.inputs[:, 3]) == {121}
  for (x, _, y, _), z in zip(data.inputs, data.labels):
    assert perms[z] == tuple(perms[x][perms[y][i]] for i in range(5))
  table = data_lib.s5_table()
  identity = perms.index(tuple(range(5)))
  assert (table[identity] == np.arange(120)).all()
  assert all(sorted(row) == list(range(120)) for row in table)  # a group
  # Not commutative, unlike every modular operation.
  assert (table != table.T).any()


def test_split_of_a_new_operation_is_seeded_and_disjoint():
  tr, va = data_lib.make_splits("s5", 97, 0.5, seed=1)
  assert len(tr.labels) == len(va.labels) == 7_200
  seen = {tuple(r) for r in tr.inputs}
  assert not seen & {tuple(r) for r in va.inputs}
  tr2, _ = data_lib.make_splits("s5", 97, 0.5, seed=1)
  np.testing.assert_array_equal(tr.inputs, tr2.inputs)
  with pytest.raises(ValueError, match="op must be one of"):
    data_lib.make_equations("x^4", 97)
