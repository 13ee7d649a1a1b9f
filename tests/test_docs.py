"""The docstring examples of the public API run as written."""

import doctest

import pytest

from grokfast_jax import ema, ma


@pytest.mark.parametrize("module", [ema, ma])
def test_docstring_examples(module):
  result = doctest.testmod(module, raise_on_error=False)
  assert result.attempted > 0
  assert result.failed == 0

