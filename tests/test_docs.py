"""Every docstring example in the package runs as written.

The modules are found by walking the package, so a new module's
``Examples`` run without being listed here; doctest finds a docstring only
in the module that defines it (the subpackages re-export the public names).
"""

import doctest
import importlib
import pkgutil

import pytest

import grokfast_jax


def _modules_with_examples() -> list[str]:
  names = []
  for info in pkgutil.walk_packages(grokfast_jax.__path__, "grokfast_jax."):
    module = importlib.import_module(info.name)
    tests = doctest.DocTestFinder().find(module, info.name)
    if any(t.examples for t in tests):
      names.append(info.name)
  return names


MODULES = _modules_with_examples()


def test_the_examples_are_found():
  # The modules whose public functions carry examples (a floor: more is
  # fine, fewer means the walk missed some).
  for name in ("grokfast_jax.filters._ema", "grokfast_jax.spectrum",
               "grokfast_jax.spectral_attention._modules",
               "grokfast_jax.experiments.checkpoint",
               "grokfast_jax.experiments.forecasting.data"):
    assert name in MODULES
  assert len(MODULES) >= 30


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  result = doctest.testmod(importlib.import_module(name), raise_on_error=False)
  assert result.attempted > 0
  assert result.failed == 0
