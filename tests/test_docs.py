"""The docstring examples of the public API run as written."""

import doctest
import importlib

import pytest

# By module path: `grokfast_jax.transforms.orthograd` and
# `grokfast_jax.losses.stablemax` are also the names of the functions the
# subpackages export, which shadow the modules as attributes.
MODULES = [
    "grokfast_jax.filters.ema",
    "grokfast_jax.filters.ma",
    "grokfast_jax.filters.iir",
    "grokfast_jax.filters.design",
    "grokfast_jax.transforms.orthograd",
    "grokfast_jax.transforms.weight_norm",
    "grokfast_jax.losses.stablemax",
    "grokfast_jax.spectrum",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  result = doctest.testmod(importlib.import_module(name), raise_on_error=False)
  assert result.attempted > 0
  assert result.failed == 0
