"""The docstring examples of the public API run as written."""

import doctest
import importlib

import pytest

# The modules that define the public functions (the subpackages re-export
# them); doctest finds a docstring only in the module of its definition.
MODULES = [
    "grokfast_jax.filters._ema",
    "grokfast_jax.filters._ma",
    "grokfast_jax.filters._iir",
    "grokfast_jax.filters._design",
    "grokfast_jax.transforms._egalitarian",
    "grokfast_jax.transforms._orthograd",
    "grokfast_jax.transforms._weight_norm",
    "grokfast_jax.losses._stablemax",
    "grokfast_jax.spectrum",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  result = doctest.testmod(importlib.import_module(name), raise_on_error=False)
  assert result.attempted > 0
  assert result.failed == 0
