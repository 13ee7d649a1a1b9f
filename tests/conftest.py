"""Shared pytest fixtures."""

import jax
import pytest


@pytest.fixture
def strict_dtype_promotion():
  """Fail on any implicit dtype promotion (e.g. bf16 silently mixed with f32)."""
  with jax.numpy_dtype_promotion("strict"):
    yield
