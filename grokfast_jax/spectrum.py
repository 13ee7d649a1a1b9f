"""What frequencies do the gradients hold? Record, analyse and plot them.

Grokfast's premise is that the slow (low-frequency) part of each parameter's
gradient over training steps drives generalization. This module measures
that: :func:`record_gradients` is a pass-through transform that keeps a ring
buffer of a few sampled gradient coordinates, :func:`gradient_spectrum` turns
it into a mean power spectrum, and :func:`plot_spectrum` draws it with the
power gain of candidate filters (see :mod:`grokfast_jax.filters`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grokfast_jax import _common
from grokfast_jax.filters import _design

# A filter's b or a coefficients.
Coefficients = Union[Sequence[float], np.ndarray]


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class SampledCoordinates:
  """The gradient coordinates :func:`record_gradients` records (static data).

  Column `k` of the buffer is entry ``indices[k]`` of the flattened leaf
  number ``leaves[k]`` (counting the params' non-`None` leaves in
  ``jax.tree.leaves`` order), whose path is ``paths[k]``
  (``jax.tree_util.keystr``). Sorted by leaf, then index.
  """

  paths: tuple[str, ...]
  leaves: tuple[int, ...]
  indices: tuple[int, ...]


class RecordGradientsState(NamedTuple):
  """State of :func:`record_gradients`.

  Attributes:
    count: number of updates seen so far, an int32 scalar.
    written: number of rows written to `buffer` so far (the next goes to row
      ``written % buffer_size``), an int32 scalar.
    buffer: ring buffer of sampled gradient values, float32
      ``[buffer_size, num_coords]``.
    coords: which coordinates the columns hold, static
      (:class:`SampledCoordinates`).
  """

  count: jax.typing.ArrayLike
  written: jax.Array
  buffer: jax.Array
  coords: SampledCoordinates


def _sample_coordinates(
  params: Any, num_coords: int, seed: int
) -> SampledCoordinates:
  with_paths = jax.tree_util.tree_flatten_with_path(params)[0]
  sizes = np.array(
    [int(np.prod(jnp.shape(x))) for _, x in with_paths], np.int64
  )
  total = int(sizes.sum())
  if total == 0:
    raise ValueError("record_gradients: the params hold no entries to sample")
  rng = np.random.default_rng(seed)
  flat = np.sort(rng.choice(total, size=num_coords, replace=num_coords > total))
  ends = np.cumsum(sizes)
  leaves = np.searchsorted(ends, flat, side="right")
  indices = flat - (ends - sizes)[leaves]
  paths = [jax.tree_util.keystr(path) for path, _ in with_paths]
  return SampledCoordinates(
    paths=tuple(paths[i] for i in leaves),
    leaves=tuple(int(i) for i in leaves),
    indices=tuple(int(i) for i in indices),
  )


def record_gradients(
  num_coords: int = 64,
  every: int = 1,
  *,
  buffer_size: int = 4096,
  seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
  r"""A pass-through transform that records sampled gradient coordinates.

  At init, `num_coords` coordinates are drawn uniformly over all entries of
  the params (without replacement when there are enough; deterministic from
  `seed`) and kept as static data in the state. Every `every`-th update
  (calls :math:`t = 1, 1 + e, 1 + 2e, \dots`) writes their values, as
  float32, to the next row of a ring buffer of `buffer_size` rows; the
  updates themselves pass through unchanged. Chain it where the signal of
  interest is, e.g. first (raw gradients) or after a Grokfast filter.

  The buffer costs ``4 * buffer_size * num_coords`` bytes; a step gathers
  `num_coords` values. Read it with :func:`gradient_history` or
  :func:`gradient_spectrum`.

  Args:
    num_coords: number of coordinates to record, a static int >= 1.
    every: record every `every`-th update, a static int >= 1.
    buffer_size: rows of the ring buffer (the longest history kept), a
      static int >= 1.
    seed: seed of the coordinate draw, an int.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` whose state is a
    :class:`RecordGradientsState`. Under :func:`optax.inject_hyperparams`
    pass all four arguments in ``static_args``.

  Raises:
    ValueError: an argument that is not an int of the allowed range; params
      with no entries (at init); updates with a different number of leaves
      than the params (at update).

  Example:
    >>> import jax.numpy as jnp, optax, grokfast_jax as gj
    >>> tx = optax.chain(gj.record_gradients(num_coords=4, buffer_size=8),
    ...                  optax.sgd(0.1))
    >>> params = {"w": jnp.zeros((3, 3))}
    >>> state = tx.init(params)
    >>> for t in range(3):
    ...   grads = {"w": jnp.full((3, 3), float(t))}
    ...   updates, state = tx.update(grads, state, params)
    >>> gj.gradient_history(state[0]).tolist()
    [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]
    >>> state[0].coords.paths[0]
    "['w']"
  """
  num_coords = _common.static_positive_int("num_coords", num_coords)
  every = _common.static_positive_int("every", every)
  buffer_size = _common.static_positive_int("buffer_size", buffer_size)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f"seed must be an int, got {seed!r}")
  seed = int(seed)

  def init_fn(params):
    coords = _sample_coordinates(params, num_coords, seed)
    return RecordGradientsState(
      count=jnp.zeros([], jnp.int32),
      written=jnp.zeros([], jnp.int32),
      buffer=jnp.zeros((buffer_size, num_coords), jnp.float32),
      coords=coords,
    )

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    leaves = jax.tree.leaves(updates)
    coords = state.coords
    if coords.leaves and coords.leaves[-1] >= len(leaves):
      raise ValueError(
        f"record_gradients: the updates have {len(leaves)} leaves, fewer "
        f"than the params it was initialized with"
      )
    leaf_ids = np.asarray(coords.leaves)
    flat_idx = np.asarray(coords.indices)
    parts = []
    for i in np.unique(leaf_ids):
      g = leaves[i]
      take = flat_idx[leaf_ids == i]
      parts.append(
        jnp.take(jnp.ravel(g), jnp.asarray(take)).astype(jnp.float32)
      )
    row = jnp.concatenate(parts)
    count, written = state.count, state.written
    write = count % every == 0
    slot = written % buffer_size
    old = jax.lax.dynamic_index_in_dim(state.buffer, slot, 0, keepdims=False)
    buffer = jax.lax.dynamic_update_index_in_dim(
      state.buffer, jnp.where(write, row, old), slot, 0
    )
    written = jnp.where(write, optax.safe_increment(written), written)
    return updates, RecordGradientsState(
      count=optax.safe_increment(count),
      written=written,
      buffer=buffer,
      coords=coords,
    )

  # The state holds static data (`SampledCoordinates`, a pytree node without
  # leaves), which optax's `OptState` annotation does not admit.
  return optax.GradientTransformationExtraArgs(
    init_fn,  # pyright: ignore[reportArgumentType]
    update_fn,  # pyright: ignore[reportArgumentType]
  )


def gradient_history(state: RecordGradientsState) -> np.ndarray:
  """The recorded values in time order, float32 ``[rows, num_coords]``.

  Only the filled rows, oldest first: ``min(written, buffer_size)`` rows,
  with the ring buffer unrolled after it has wrapped around.
  """
  buf = np.asarray(state.buffer)
  written, size = int(state.written), buf.shape[0]
  if written <= size:
    return buf[:written]
  return np.roll(buf, -(written % size), axis=0)


def gradient_spectrum(
  state_or_array: Union[RecordGradientsState, Any],
  *,
  detrend: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
  r"""The mean power spectrum of recorded gradient coordinates.

  A plain periodogram per coordinate, averaged over the coordinates: with
  :math:`x_{t,k}` the value of coordinate :math:`k` at record :math:`t`
  (:math:`T` records, :math:`K` coordinates),

  .. math::

    P(f_j) = \frac{1}{K} \sum_k \frac{1}{T}
      \Bigl| \sum_t x_{t,k} e^{-2\pi i f_j t} \Bigr|^2, \qquad
    f_j = j / T, \ j = 0, \dots, \lfloor T/2 \rfloor .

  Frequencies are in cycles per record (per step when recorded with
  ``every=1``; divide by `every` otherwise).

  Args:
    state_or_array: a :class:`RecordGradientsState` (its filled rows are
      used, in time order), or an array ``[T]`` or ``[T, K]`` in time order.
    detrend: subtract each coordinate's mean first (then :math:`P(0) = 0`,
      and the rest is not swamped by the mean's leakage).

  Returns:
    ``(freqs, power)``: float64 NumPy arrays of shape ``[T // 2 + 1]``.

  Raises:
    ValueError: fewer than 2 records, or an array of rank other than 1 or 2.

  Example:
    >>> import numpy as np, grokfast_jax as gj
    >>> t = np.arange(64)
    >>> f, p = gj.gradient_spectrum(np.cos(2 * np.pi * 0.25 * t))
    >>> float(f[np.argmax(p)])
    0.25
  """
  if isinstance(state_or_array, RecordGradientsState):
    x = gradient_history(state_or_array)
  else:
    x = np.asarray(state_or_array)
  x = np.asarray(x, np.float64)
  if x.ndim == 1:
    x = x[:, None]
  if x.ndim != 2:
    raise ValueError(f"expected an array [T] or [T, K], got shape {x.shape}")
  if x.shape[0] < 2:
    raise ValueError(
      f"need at least 2 records for a spectrum, got {x.shape[0]}"
    )
  if detrend:
    x = x - x.mean(axis=0, keepdims=True)
  t = x.shape[0]
  power = np.mean(np.abs(np.fft.rfft(x, axis=0)) ** 2, axis=1) / t
  return np.fft.rfftfreq(t), power


def plot_spectrum(
  freqs: Any,
  power: Any,
  path: Union[str, os.PathLike],
  *,
  filters: Optional[Mapping[str, tuple[Coefficients, Coefficients]]] = None,
  title: str = "gradient power spectrum",
) -> Path:
  """Plots a gradient power spectrum with filters' power gains over it.

  The spectrum (left axis) and each filter's :math:`|H(f)|^2` (right axis)
  on log-log axes; the :math:`f = 0` bin is left out. Draws on a standalone
  `matplotlib.figure.Figure` with its own Agg canvas, so it needs no display
  and leaves pyplot's state alone. Needs matplotlib (the ``experiments``
  extra), imported only here.

  Args:
    freqs: frequencies in cycles per step, as :func:`gradient_spectrum`
      returns them.
    power: the power at `freqs`.
    path: image file to write (the suffix picks the format, e.g. ``.png``).
    filters: label -> ``(b, a)`` filter coefficients, e.g.
      ``{"ema 0.98": gj.ema_coefficients(0.98)}``.
    title: figure title.

  Returns:
    The path written.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  freqs = np.asarray(freqs, np.float64)
  power = np.asarray(power, np.float64)
  keep = freqs > 0
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig = Figure(figsize=(7, 4.5))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  lines = ax.plot(
    freqs[keep], power[keep], color="k", lw=1.0, label="gradient power"
  )
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("frequency (cycles / step)")
  ax.set_ylabel("mean power")
  if filters:
    gain_ax = ax.twinx()
    for label, (b, a) in filters.items():
      b_n, a_n = _design.normalize_coefficients(b, a, check_stable=False)
      gain = np.abs(_design._response_at(b_n, a_n, freqs[keep])) ** 2
      lines += gain_ax.plot(freqs[keep], gain, "--", label=f"{label} |H|²")
    gain_ax.set_yscale("log")
    gain_ax.set_ylabel("filter power gain |H(f)|²")
  ax.grid(True, which="both", alpha=0.3)
  ax.set_title(title)
  ax.legend(
    lines, [str(ln.get_label()) for ln in lines], loc="best", fontsize="small"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return path
