"""Devices for a run: one device, a mesh (dp / fsdp), several processes.

``--mesh dp|fsdp --devices N`` puts the params on a 1-D mesh
(:mod:`grokfast_jax.experiments.sharding`) and splits every batch over it.
``--distributed`` joins the processes of several hosts first
(:func:`start_distributed`); the mesh then spans every process's devices,
each process holds the same data, and only process 0 writes results.
"""

from __future__ import annotations

from typing import Any, Optional

import jax

from grokfast_jax.experiments import sharding
from grokfast_jax.experiments.harness._task import Context

MESHES = ("none", "dp", "fsdp")


def start_distributed(
  coordinator_address: Optional[str] = None,
  num_processes: Optional[int] = None,
  process_id: Optional[int] = None,
) -> None:
  """Joins this process to the others of a multi-host run.

  Args:
    coordinator_address: ``HOST:PORT`` of process 0 (None: JAX finds it, as
      on Cloud TPU or under SLURM).
    num_processes: how many processes take part (None: found by JAX).
    process_id: this process's index in ``[0, num_processes)``.

  Raises:
    ValueError: an argument out of its range.
  """
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"num_processes must be an int >= 1, got {num_processes}")
  if (
    process_id is not None
    and num_processes is not None
    and not (0 <= process_id < num_processes)
  ):
    raise ValueError(
      f"process_id must be in [0, {num_processes}), got {process_id}"
    )
  if coordinator_address is not None and ":" not in coordinator_address:
    raise ValueError(
      f"coordinator_address must be HOST:PORT, got {coordinator_address!r}"
    )
  # CPU collectives between processes go over gloo (set before the backend
  # starts; asking for the backend here would start it too early).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator_address,
    num_processes=num_processes,
    process_id=process_id,
  )


def is_writer() -> bool:
  """Whether this process writes results and plots (process 0 only)."""
  return jax.process_index() == 0


def make_context(layout: str = "none", devices: int = 0) -> Context:
  """The :class:`Context` of a run on one device or a mesh.

  Args:
    layout: "none" (one device), "dp" or "fsdp".
    devices: devices in the mesh (0: all, every process's).

  Raises:
    ValueError: unknown layout or device count out of range.
  """
  if layout not in MESHES:
    raise ValueError(f"mesh must be one of {MESHES}, got {layout!r}")
  if layout == "none":
    if jax.process_count() > 1:
      raise ValueError("several processes need --mesh dp or fsdp")
    return Context()
  mesh = sharding.make_mesh(devices)
  split = sharding.batch_split(mesh)
  repl = sharding.replicated(mesh)

  def place_data(tree: Any) -> Any:
    return jax.tree.map(lambda a: _put_global(a, repl), tree)

  def shard_batch(x: Any) -> Any:
    return jax.lax.with_sharding_constraint(x, split)

  return Context(
    mesh=mesh,
    layout=layout,
    place_params=lambda p: sharding.place_params(p, mesh, layout),
    place_data=place_data,
    shard_batch=shard_batch,
    devices=int(mesh.devices.size),
  )


def _put_global(a: Any, sharding_: Any) -> Any:
  """A replicated global array from the same host value on every process."""
  if jax.process_count() == 1:
    return jax.device_put(a, sharding_)
  import numpy as np

  host = np.asarray(a)
  return jax.make_array_from_callback(
    host.shape, sharding_, lambda idx: host[idx]
  )
