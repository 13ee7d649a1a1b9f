"""Shared pytest fixtures and the suite's numerics on accelerators."""

import os

import jax
import pytest

# The tests check float32 math against float32/float64 references. On a CPU
# that is what runs; a GPU contracts float32 in a reduced-precision mode by
# default and a TPU in bfloat16, and GPU scatter-adds (embedding gradients)
# may sum in any order. So that the suite means the same on every backend
# (on CPU both settings change nothing): full-precision contractions, and
# deterministic GPU kernels (as a user needs for a bit-exact resume there).
jax.config.update("jax_default_matmul_precision", "highest")
if "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_gpu_deterministic_ops=true").strip()
# Under pytest-xdist every worker is a process of its own: on a GPU each would
# otherwise reserve most of its memory at start.
if "PYTEST_XDIST_WORKER" in os.environ:
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# The command line keeps a persistent compilation cache in the user's cache
# folder; the suite's commands (in this process and in the subprocesses it
# starts) leave it alone. test_cli_cache.py turns it on in a temporary one.
os.environ.setdefault("GROKFAST_JAX_NO_COMPILE_CACHE", "1")


@pytest.fixture
def strict_dtype_promotion():
  """Fail on any implicit dtype promotion (e.g. bf16 silently mixed with f32)."""
  with jax.numpy_dtype_promotion("strict"):
    yield
