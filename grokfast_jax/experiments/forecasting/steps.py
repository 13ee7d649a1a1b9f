"""The pure pieces of forecasting: windows, the update, evaluation streams.

A model is split into its graph, its ``nnx.Param`` state and the rest (the
Spectral Attention EMA state, empty for a model without BSA); every function
here takes those trees, so the training stages (:mod:`.stages`) trace them
inside the harness's jitted chunks. Windows are gathered on the fly from the
normalized (T, C) series by their start index.

:func:`update` is the one optimizer step, a pure function of
``(state, batch)`` once its static :class:`Spec` is bound. :func:`evaluate`
and :func:`predict` score or forecast a whole split with a built model (used
after training, for the results and the plot).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grokfast_jax.experiments.forecasting import data as fdata
from grokfast_jax.spectral_attention import reset_all


class Spec(NamedTuple):
  """What :func:`update` needs besides the state (static, hashable).

  Attributes:
    graphdef: the model's graph (``nnx.split(model, nnx.Param, ...)[0]``).
    tx: the optimizer (cached per settings: :func:`base_optimizer`,
      :func:`finetune_optimizer`).
  """

  graphdef: Any
  tx: optax.GradientTransformation


def gather(series: jax.Array, starts: jax.Array, lookback: int,
           horizon: int) -> tuple[jax.Array, jax.Array]:
  """Inputs (B, C, L) and targets (B, C, H) of the windows at `starts`."""
  x = series[starts[:, None] + jnp.arange(lookback)[None]]
  y = series[starts[:, None] + lookback + jnp.arange(horizon)[None]]
  return jnp.swapaxes(x, 1, 2), jnp.swapaxes(y, 1, 2)


def forward(graphdef, params, rest, x):
  """Forecasts of windows `x` and the model's rest state after the call."""
  # copy=True: fresh Variables at the current trace level.
  model = nnx.merge(graphdef, params, rest, copy=True)
  pred = model(x)
  return pred, nnx.split(model, nnx.Param, ...)[2]


def reset_rest(graphdef, params, rest):
  """The rest state with every Spectral Attention EMA forgotten (`rest`
  itself is left as it is)."""
  model = nnx.merge(graphdef, params, rest, copy=True)
  reset_all(model)
  return nnx.split(model, nnx.Param, ...)[2]


@functools.lru_cache(maxsize=None)
def base_optimizer(lr: float) -> optax.GradientTransformation:
  """Adam for base training (cached so jitted epochs are reused)."""
  return optax.adam(lr)


@functools.lru_cache(maxsize=None)
def finetune_optimizer(lr_spectral: float, lr_base: float,
                       weight_decay: float) -> optax.GradientTransformation:
  """Adam on the spectral parameters, AdamW on the rest, values clipped to 1.

  Parameters whose path contains ``"spectral"`` are the BSA's.
  """
  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "spectral" if any(
            getattr(k, "key", None) == "spectral" for k in path) else "base",
        params)
  return optax.chain(
      optax.clip(1.0),
      optax.multi_transform(
          {"spectral": optax.adam(lr_spectral),
           "base": optax.adamw(lr_base, weight_decay=weight_decay)}, labels))


def update(spec: Spec, state: dict, batch: tuple[jax.Array, jax.Array]
           ) -> tuple[dict, dict[str, jax.Array]]:
  """One MSE step on a batch of windows.

  Pure: bind `spec` (``functools.partial(update, spec)``) for a function of
  ``(state, batch)``.

  Args:
    spec: the model's graph and the optimizer.
    state: ``{"params", "rest", "opt"}`` (other keys pass through).
    batch: inputs (B, C, L) and targets (B, C, H), in time order when the
      model holds BSA (its EMA state carries from sample to sample).

  Returns:
    ``(state, {"train_mse": loss})``.
  """
  x, y = batch

  def loss_fn(p, r):
    pred, r = forward(spec.graphdef, p, r, x)
    return jnp.mean((pred - y) ** 2), r

  params = state["params"]
  (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params, state["rest"])
  updates, opt = spec.tx.update(grads, state["opt"], params)
  return ({**state, "params": optax.apply_updates(params, updates),
           "rest": rest, "opt": opt}, {"train_mse": loss})


def stream_sums(graphdef, lookback, horizon, params, rest, series, batches,
                mask):
  """Squared and absolute error sums over the masked samples of a stream.

  Args:
    graphdef, params, rest: the model.
    lookback, horizon: the window.
    series: (T, C) normalized series.
    batches: (n, B) window starts, in time order.
    mask: (n, B) bool, the samples that count.

  Returns:
    ``(sum_sq, sum_abs, n_values, rest)``.
  """
  def body(r, inputs):
    starts, m = inputs
    x, y = gather(series, starts, lookback, horizon)
    pred, r = forward(graphdef, params, r, x)
    w = m[:, None, None].astype(jnp.float32)
    err = pred - y
    return r, (jnp.sum(w * err ** 2), jnp.sum(w * jnp.abs(err)),
               jnp.sum(w) * err.shape[1] * err.shape[2])

  rest, (sq, ab, n) = jax.lax.scan(body, rest, (batches, mask))
  return jnp.sum(sq), jnp.sum(ab), jnp.sum(n), rest


eval_stream = jax.jit(stream_sums, static_argnums=(0, 1, 2))


def has_state(rest) -> bool:
  """Whether a model's rest state holds anything (SpectralState EMAs)."""
  return len(jax.tree_util.tree_leaves(rest)) > 0


def eval_inputs(fd: fdata.ForecastData, split: str, batch_size: int,
                warm_up: bool) -> tuple[np.ndarray, np.ndarray]:
  """The padded stream (batches, mask) scoring `split` (with its warm-up)."""
  starts = fd.starts[split]
  return fdata.padded_stream(int(starts[0]), int(starts[-1]), batch_size,
                             0 if warm_up else None)


def evaluate(model: nnx.Module, fd: fdata.ForecastData, split: str, *,
             batch_size: int = 256, warm_up: Optional[bool] = None
             ) -> dict[str, float]:
  """Test-style MSE and MAE over a split's windows (normalized units).

  A model holding Spectral Attention is reset and then run over every earlier
  window of the series in time order (warm-up, errors not counted) before the
  split's windows, so its EMAs see the full history; the padding of the
  stream repeats its first window, which leaves the EMAs unchanged.

  Args:
    model: a forecaster.
    fd: the data.
    split: "train", "val" or "test".
    batch_size: samples per evaluation batch.
    warm_up: warm the state up; default: whether the model has
      SpectralState variables.

  Returns:
    ``{"mse": ..., "mae": ...}``. The model's state is left as after the run.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if warm_up is None:
    warm_up = has_state(rest)
  if warm_up:
    rest = reset_rest(graphdef, params, rest)
  batches, mask = eval_inputs(fd, split, batch_size, warm_up)
  sq, ab, n, rest = eval_stream(graphdef, fd.lookback, fd.horizon, params,
                                rest, jnp.asarray(fd.series),
                                jnp.asarray(batches), jnp.asarray(mask))
  nnx.update(model, rest)
  return {"mse": float(sq / n), "mae": float(ab / n)}


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def predict_stream(graphdef, lookback, horizon, params, rest, series,
                   batches):
  """Forecasts (n, B, C, H) of a stream of batches (n, B) of window starts.

  Returns:
    ``(predictions, rest)``.
  """
  def body(r, starts):
    x, _ = gather(series, starts, lookback, horizon)
    pred, r = forward(graphdef, params, r, x)
    return r, pred

  rest, preds = jax.lax.scan(body, rest, batches)
  return preds, rest


def predict(model: nnx.Module, fd: fdata.ForecastData, starts, *,
            batch_size: int = 256, warm_up: Optional[bool] = None
            ) -> np.ndarray:
  """Forecasts at the given window starts, as :func:`evaluate` scores them.

  A model holding Spectral Attention is reset and warmed up over every
  window before the first requested one, then run over the windows from the
  first to the last requested start in time order; only the requested
  forecasts are kept (so the range between them should be short).

  Args:
    model: a forecaster.
    fd: the data.
    starts: window starts (any order).
    batch_size: samples per batch.
    warm_up: warm the state up; default: whether the model has
      SpectralState variables.

  Returns:
    (len(starts), C, H) float32 forecasts in normalized units.
  """
  starts = np.asarray(starts, np.int64)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if warm_up is None:
    warm_up = has_state(rest)
  if warm_up:
    rest = reset_rest(graphdef, params, rest)
  batches, mask = fdata.padded_stream(int(starts.min()), int(starts.max()),
                                      batch_size, 0 if warm_up else None)
  first = int(np.argmax(mask.any(axis=1)))
  series = jnp.asarray(fd.series)
  if first > 0:
    rest = eval_stream(graphdef, fd.lookback, fd.horizon, params, rest,
                       series, jnp.asarray(batches[:first]),
                       jnp.asarray(mask[:first]))[3]
  preds, rest = predict_stream(graphdef, fd.lookback, fd.horizon, params,
                               rest, series, jnp.asarray(batches[first:]))
  nnx.update(model, rest)
  preds = np.asarray(preds).reshape(-1, *preds.shape[2:])
  flat, keep = batches[first:].ravel(), mask[first:].ravel()
  where = {int(s): i for i, s in enumerate(flat) if keep[i]}
  return preds[[where[int(s)] for s in starts]]
