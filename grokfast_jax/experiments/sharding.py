"""Placing an experiment's state on a mesh of devices (data parallel, FSDP).

The Grokfast filters need nothing from here: their state follows the params
it shadows. This module only decides where the params go.

- ``"dp"``: params (and so optimizer and filter state) replicated on every
  device; each batch is split over the devices, and XLA adds the gradient
  all-reduce.
- ``"fsdp"``: each param split along its largest axis that the device count
  divides (replicated if none does); optimizer and filter state follow, so
  each device holds about 1/n of them.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def make_mesh(devices: int = 0) -> Mesh:
  """A 1-D mesh over the first `devices` devices (0: all of them)."""
  available = jax.devices()
  n = len(available) if devices == 0 else devices
  if not 1 <= n <= len(available):
    raise ValueError(
      f"devices must be in [1, {len(available)}] (0: all), got {devices}"
    )
  return Mesh(np.array(available[:n]), (AXIS,))


def fsdp_spec(shape: tuple[int, ...], n: int) -> P:
  """Split the largest axis that `n` divides; replicate if none does."""
  axes = sorted(range(len(shape)), key=lambda i: -shape[i])
  for i in axes:
    if shape[i] % n == 0 and shape[i] >= n:
      return P(*(AXIS if j == i else None for j in range(len(shape))))
  return P()


def place_params(params: Any, mesh: Mesh, layout: str) -> Any:
  """`params` placed on `mesh`: replicated ("dp") or split ("fsdp")."""
  if layout not in ("dp", "fsdp"):
    raise ValueError(f"layout must be 'dp' or 'fsdp', got {layout!r}")
  n = mesh.devices.size

  def put(x):
    spec = fsdp_spec(x.shape, n) if layout == "fsdp" else P()
    return jax.device_put(x, NamedSharding(mesh, spec))

  return jax.tree.map(put, params)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_split(mesh: Mesh) -> NamedSharding:
  """Split the leading (batch) axis over the devices."""
  return NamedSharding(mesh, P(AXIS))
